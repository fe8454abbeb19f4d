"""Ctrl-C in any command: one line on stderr, exit status 130, no traceback, no partial output, no temporary
left; `sfvq fit` keeps its training state in OUT.ckpt and says how to resume (issue 10)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from latentfast import cli
from latentfast.cli import _common

REPO = Path(__file__).resolve().parents[2]


def _interrupt(*a, **k):
    raise KeyboardInterrupt


def _leftovers(root):
    return sorted(p.name for p in root.rglob("*") if p.name.startswith("."))


@pytest.mark.parametrize("cmd", ["basis", "warpage", "traverse", "assign", "render", "demo"])
def test_keyboard_interrupt_inside_a_command(cmd, tmp_path, tiny_generator, monkeypatch, capsys):
    from latentfast import localbasis, viz
    from latentfast.cli import demo
    from latentfast.sfvq import SFVQ

    curve = tmp_path / "c.pt"
    SFVQ.from_vertices(torch.randn(6, 32)).save(curve)
    lat = tmp_path / "w.npy"
    np.save(lat, np.zeros((5, 32), np.float32))
    out = tmp_path / "out"
    argv, target = {
        "basis": (["basis", "--num", "2", "-k", "2", "--out", str(out)], (_common, "save_directions")),
        "warpage": (["warpage", "--num", "4", "-k", "1", "--eps", "0.1", "--out", str(out)],
                    (viz, "warpage_chart")),
        "traverse": (["traverse", "-k", "2", "--frames", "3", "--iterative", "--steps", "1", "--out", str(out) + ".png"],
                     (localbasis, "traverse_iterative")),
        "assign": (["sfvq", "assign", "--curve", str(curve), "--latents", str(lat), "--out", str(out) + ".npz"],
                   (SFVQ, "assign")),
        "render": (["sfvq", "render", "--curve", str(curve), "--out", str(out) + ".png"], (viz, "vertex_grid")),
        "demo": (["demo", "--quick", "--quiet", "--out", str(out)], (demo, "local_basis")),
    }[cmd]
    monkeypatch.setattr(*target, _interrupt)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert cli.main(argv) == 130
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "interrupted" in err and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, no temporary beside it


def test_sfvq_fit_interrupted_then_resumed(tmp_path, fake_fit, capsys):
    lat = tmp_path / "w.npy"
    np.save(lat, np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32))
    out = tmp_path / "curve.pt"
    argv = ["sfvq", "fit", "--latents", str(lat), "--num-vertices", "4", "--epochs", "1", "--save-every", "7",
            "--out", str(out)]
    fake_fit.interrupt_at = 4
    assert cli.main(argv) == 130
    err = capsys.readouterr().err
    ckpt = tmp_path / "curve.pt.ckpt"
    assert len(err.splitlines()) == 1 and str(ckpt) in err and "--resume" in err, err
    assert ckpt.is_file() and not out.exists()
    assert fake_fit.calls[-1]["checkpoint"] == ckpt and fake_fit.calls[-1]["checkpoint_every"] == 7

    assert cli.main(argv) == 2  # the saved state is never silently discarded
    assert "--resume" in capsys.readouterr().err and ckpt.is_file()

    assert cli.main(argv + ["--resume"]) == 0
    assert fake_fit.calls[-1]["resume"] is True and fake_fit.calls[-1]["checkpoint"] == ckpt
    assert out.is_file() and not ckpt.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.pt", "w.npy"]


def test_sfvq_fit_interrupted_before_any_state_says_so(tmp_path, fake_fit, monkeypatch, capsys):
    from latentfast.sfvq import SFVQ

    monkeypatch.setattr(SFVQ, "fit", _interrupt)
    lat = tmp_path / "w.npy"
    np.save(lat, np.zeros((20, 8), np.float32))
    assert cli.main(["sfvq", "fit", "--latents", str(lat), "--num-vertices", "4", "--out", str(tmp_path / "c.pt")]) == 130
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "no output was written" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.npy"]


def test_real_sigint_to_the_command(tmp_path):
    """A real SIGINT to a running `latentfast basis` (the embedded generator, a long job): exit 130, one line."""
    flag, out = tmp_path / "started", tmp_path / "bases"
    code = ("import pathlib, sys; import latentfast.cli as c; pathlib.Path(sys.argv[1]).touch(); "
            "sys.exit(c.main(sys.argv[2:]))")
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    p = subprocess.Popen([sys.executable, "-c", code, str(flag), "basis", "--num", "4000", "-k", "10",
                          "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        t0 = time.time()
        while not flag.exists() and p.poll() is None and time.time() - t0 < 120:
            time.sleep(0.05)
        time.sleep(1.0)  # inside the command: loading the generator or computing the bases
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
    finally:
        p.kill()
    assert p.returncode == 130, err
    assert err.splitlines() == ["latentfast basis: interrupted; no output was written"], err
    assert sorted(x.name for x in tmp_path.iterdir()) == ["started"]
