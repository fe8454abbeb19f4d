"""Every subcommand, given each class of bad input, exits with status 2 and exactly one line on stderr that names
the flag (and the user's path), leaves existing outputs untouched and writes nothing (issue 10).

Classes: missing file, wrong kind of file, bad values in a file (zero / NaN / Inf / width / rank), existing
output, a directory where a file is expected (and the reverse), a missing parent, NaN/zero/inf numbers, a bad
suffix, a bad device, an inconsistent --resume, an unknown option."""
from pathlib import Path

import numpy as np
import pytest
import torch

from latentfast import cli

W_DIM = 32  # the tiny generator's (tests/cli/conftest.py)

CUDA = torch.cuda.is_available()


def run(argv):
    try:
        return cli.main(argv)
    except SystemExit as exc:  # argparse
        return exc.code


def _base(f, out):
    return {
        "basis": ["basis", "--num", "2", "-k", "2", "--out", str(out["dir"])],
        "traverse": ["traverse", "-k", "2", "--frames", "3", "--out", str(out["png"])],
        "warpage": ["warpage", "--num", "4", "-k", "1", "--eps", "0.1", "--out", str(out["dir"])],
        "fit": ["sfvq", "fit", "--latents", str(f["latents"]), "--num-vertices", "4", "--epochs", "1",
                "--out", str(out["pt"])],
        "assign": ["sfvq", "assign", "--curve", str(f["curve"]), "--latents", str(f["latents"]),
                   "--out", str(out["npz"])],
        "render": ["sfvq", "render", "--curve", str(f["curve"]), "--out", str(out["png"])],
        "demo": ["demo", "--quick", "--out", str(out["dir"])],
    }


def _set(argv, flag, value):
    argv = list(argv)
    if flag in argv:
        argv[argv.index(flag) + 1] = str(value)
    else:
        argv += [flag, str(value)]
    return argv


# id -> (command, how to change its good arguments, words the one line must contain, words it must not)
def _cases(f, out, tmp):
    existing_dir = tmp / "existing"
    existing_file = tmp / "existing.png"
    blocker = tmp / "a-file"
    C = {}

    def case(cid, cmd, change, words, absent=()):
        C[cid] = (cmd, change, words, absent)

    miss = f["missing"]
    for cmd in ("basis", "traverse", "warpage", "render"):
        case(f"{cmd}-checkpoint-missing", cmd, lambda a: _set(a, "--checkpoint", miss), ["--checkpoint", str(miss)])
    case("render-checkpoint-text", "render", lambda a: _set(a, "--checkpoint", f["text"]), ["--checkpoint", "notes.pt"])
    case("traverse-direction-missing", "traverse", lambda a: _set(a, "--direction", miss), ["--direction", str(miss)])
    case("fit-latents-missing", "fit", lambda a: _set(a, "--latents", miss), ["--latents", str(miss)])
    case("assign-latents-missing", "assign", lambda a: _set(a, "--latents", miss), ["--latents", str(miss)])
    for cmd in ("assign", "render"):
        case(f"{cmd}-curve-missing", cmd, lambda a: _set(a, "--curve", miss), ["--curve", str(miss)])
        case(f"{cmd}-curve-png", cmd, lambda a: _set(a, "--curve", f["png"]), ["--curve", "img.png"])
        case(f"{cmd}-curve-empty", cmd, lambda a: _set(a, "--curve", f["empty"]), ["--curve", "empty.pt"])
        case(f"{cmd}-curve-is-latents", cmd, lambda a: _set(a, "--curve", f["latents"]), ["--curve", "latents.npy"])
    # wrong kind of file, or bad values in it
    for key in ("png", "pickle_npy", "text", "empty", "dir", "latents_nan", "latents_1d"):
        case(f"fit-latents-{key}", "fit", lambda a, key=key: _set(a, "--latents", f[key]), ["--latents"],
             ["pickled data", "weights_only=False"])
    case("render-curve-width", "render", lambda a: _set(a, "--curve", f["curve7"]), ["--curve", "width 7", "32"])
    case("assign-latents-width", "assign", lambda a: _set(a, "--latents", f["direction_rank"].parent / "w7.npy"),
         ["--latents", str(W_DIM)])
    for key in ("png", "pickle_npy", "text", "direction_zero", "direction_nan", "direction_inf", "direction_width",
                "direction_rank", "latents"):
        case(f"traverse-direction-{key}", "traverse", lambda a, key=key: _set(a, "--direction", f[key]),
             ["--direction"], ["pickled data", "weights_only=False"])
    case("traverse-iterative-direction-zero", "traverse",
         lambda a: _set(a, "--direction", f["direction_zero"]) + ["--iterative"], ["--direction", "zero"])
    # existing outputs (refused without --overwrite), directories where files go and the reverse
    for cmd in ("basis", "warpage", "demo"):
        case(f"{cmd}-out-exists", cmd, lambda a: _set(a, "--out", existing_dir), ["--out", str(existing_dir),
                                                                                    "--overwrite"])
        case(f"{cmd}-out-is-file", cmd, lambda a: _set(a, "--out", blocker), ["--out", "not a directory"])
    for cmd, suffix in (("traverse", ".png"), ("fit", ".pt"), ("assign", ".npz"), ("render", ".png")):
        target = existing_file.with_suffix(suffix)
        case(f"{cmd}-out-exists", cmd, lambda a, t=target: _set(a, "--out", t), ["--out", str(target), "--overwrite"])
        d = tmp / f"adir{suffix}"
        case(f"{cmd}-out-is-dir", cmd, lambda a, d=d: _set(a, "--out", d), ["--out", str(d), "is a directory"])
        p = blocker / f"x{suffix}"
        case(f"{cmd}-out-parent-missing", cmd, lambda a, p=p: _set(a, "--out", p), ["--out", "not a directory"])
    case("basis-out-parent-missing", "basis", lambda a: _set(a, "--out", tmp / "no" / "such"), ["--out", "does not exist"])
    # suffixes
    for cmd, bad in (("traverse", "t.xyz"), ("traverse", "t"), ("render", "c.txt"), ("fit", "c.npy"),
                     ("assign", "a.txt")):
        case(f"{cmd}-out-suffix-{bad}", cmd, lambda a, bad=bad: _set(a, "--out", tmp / bad), ["--out", bad])
    # numbers
    for cmd, flag, values in (("traverse", "--size", ["nan", "0", "-1", "inf"]), ("traverse", "--frames", ["0"]),
                              ("traverse", "--steps", ["0"]), ("warpage", "--eps", ["nan", "0"]),
                              ("warpage", "--num", ["0"]), ("fit", "--lr", ["nan", "0", "inf"]),
                              ("fit", "--save-every", ["0"]), ("fit", "--num-vertices", ["x"]),
                              ("basis", "--num", ["0", "-3", "2.5"]), ("basis", "-k", ["0"])):
        for v in values:
            case(f"{cmd}{flag}={v}", cmd, lambda a, flag=flag, v=v: _set(a, flag, v), [flag])
    # devices
    for cmd in ("basis", "traverse", "warpage", "fit", "render"):
        if not CUDA:
            case(f"{cmd}-device-cuda", cmd, lambda a: _set(a, "--device", "cuda"), ["--device", "CUDA is not available"])
        case(f"{cmd}-device-tpu", cmd, lambda a: _set(a, "--device", "tpu"), ["--device", "tpu"])
    # resume
    case("fit-resume-without-state", "fit", lambda a: a + ["--resume"], ["--resume", "pt.ckpt"])
    case("fit-state-without-resume", "fit", lambda a: a, ["--resume", "interrupted"])
    # sharded jobs
    case("basis-rows-reversed", "basis", lambda a: _set(a, "--latents", f["latents"]) + ["--rows", "5:2"], ["--rows"])
    case("basis-rows-text", "basis", lambda a: _set(a, "--latents", f["latents"]) + ["--rows", "x"], ["--rows"])
    case("basis-rows-past-the-end", "basis", lambda a: _set(a, "--latents", f["latents"]) + ["--rows", "0:301"],
         ["--rows", "300"])
    case("basis-rows-without-latents", "basis", lambda a: a + ["--rows", "0:2"], ["--rows", "--latents"])
    case("basis-latents-missing", "basis", lambda a: _set(a, "--latents", miss), ["--latents", str(miss)])
    case("basis-latents-png", "basis", lambda a: _set(a, "--latents", f["png"]), ["--latents", "img.png"])
    case("basis-latents-out-exists", "basis", lambda a: _set(_set(a, "--latents", f["latents"]), "--out", existing_dir),
         ["--out", str(existing_dir), "--overwrite"])
    case("assign-dir-out-exists", "assign", lambda a: _set(a, "--out", existing_dir), ["--out", "--overwrite"])
    case("assign-dir-out-is-file", "assign", lambda a: _set(a, "--out", blocker), ["--out", "not a directory"])
    case("warpage-one-latent", "warpage", lambda a: _set(a, "--num", 1), ["--num", "at least 2"])
    case("warpage-chunk-1", "warpage", lambda a: _set(a, "--chunk", 1), ["--chunk", "at least 2"])
    case("warpage-rows-without-latents", "warpage", lambda a: a + ["--rows", "0:2"], ["--rows", "--latents"])
    case("warpage-one-row", "warpage", lambda a: _set(a, "--latents", f["latents"]) + ["--rows", "3:4"],
         ["--rows", "at least 2"])
    case("warpage-latents-png", "warpage", lambda a: _set(a, "--latents", f["png"]), ["--latents", "img.png"])
    case("basis-unknown-option", "basis", lambda a: a + ["--bogus"], ["--bogus"])
    return C


def _prepare(tmp_path, files):
    from latentfast.sfvq import SFVQ

    files["curve"] = tmp_path / "inputs" / "curve.pt"
    SFVQ.from_vertices(torch.randn(8, W_DIM)).save(files["curve"])
    files["curve7"] = tmp_path / "inputs" / "curve7.pt"
    SFVQ.from_vertices(torch.randn(8, 7)).save(files["curve7"])
    np.save(tmp_path / "inputs" / "w7.npy", np.zeros((4, 7), np.float32))
    work = tmp_path / "work"
    work.mkdir()
    out = {"dir": work / "out", "png": work / "t.png", "pt": work / "c.pt", "npz": work / "a.npz"}
    (work / "existing").mkdir()
    (work / "existing" / "precious.txt").write_text("user data")
    for s in (".png", ".pt", ".npz"):
        (work / f"existing{s}").write_text("user data")
        (work / f"adir{s}").mkdir()
    (work / "a-file").write_text("user data")
    return work, out


def _snapshot(root):
    return sorted((str(p.relative_to(root)), p.read_bytes() if p.is_file() else b"") for p in root.rglob("*"))


@pytest.fixture
def table(tmp_path, files):
    work, out = _prepare(tmp_path, files)
    return work, out, _base(files, out), _cases(files, out, work)


class _Names(dict):
    def __missing__(self, key):
        return Path(key)


CASE_IDS = sorted(_cases(_Names(), {}, Path("/t")))  # the ids depend on the names only


@pytest.mark.parametrize("cid", CASE_IDS)
def test_bad_input_exits_2_with_one_line(cid, table, tiny_generator, capsys):
    work, out, base, cases = table
    cmd, change, words, absent = cases[cid]
    if cid == "fit-state-without-resume":
        (work / "c.pt.ckpt").write_bytes(b"state of an interrupted fit")
    before = _snapshot(work)
    rc = run(change(base[cmd]))
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.endswith("\n") and len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, (w, err)
    for w in absent:
        assert w not in err, (w, err)
    assert ".tmp" not in err  # never a temporary file's name
    assert _snapshot(work) == before  # nothing written, nothing removed, user data untouched


def test_the_good_arguments_of_the_table_work(table, tiny_generator, fake_fit, capsys):
    """The table's base arguments are valid: each bad case fails for its own reason, not the base's."""
    work, out, base, _ = table
    for cmd, argv in base.items():
        if cmd == "demo":
            continue  # run on the real generator in test_cli.py
        assert run(argv + ["--overwrite"]) == 0, (cmd, capsys.readouterr().err)
