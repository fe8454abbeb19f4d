"""Sharded jobs (issue 12): `basis --latents`, `sfvq assign --out DIR` and `warpage` under torchrun (gloo, 2 processes)
equal one process row for row, `--rows a:b` splits a job without torchrun, and a failing rank fails the whole
job with its error and leaves no output directory."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from latentfast import cli
from latentfast.cli._shard import load_parts

REPO = Path(__file__).resolve().parents[2]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args, cwd, nproc=2, script=None):
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--nnodes", "1",
              "--master_addr", "127.0.0.1", "--master_port", str(_free_port())]
    target = [str(script)] if script else ["-m", "latentfast.cli"]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", LATENTFAST_QUIET="1")
    return subprocess.run(launch + target + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def latents(tmp_path):
    z = tmp_path / "z.npy"
    np.save(z, np.random.default_rng(0).normal(size=(37, 64)).astype(np.float32))  # the embedded G: z_dim 64
    return z


def _no_leftovers(root):
    assert not [p.name for p in root.iterdir() if p.name.startswith(".")]


@pytest.mark.slow
def test_sharded_basis_and_assign_equal_one_process(tmp_path, latents, one_thread):
    from latentfast.sfvq import SFVQ

    curve = tmp_path / "c.pt"
    SFVQ.from_vertices(torch.randn(16, 64)).save(curve)
    r = torchrun(["basis", "--latents", str(latents), "-k", "3", "--method", "randomized", "--chunk", "8",
                  "--out", str(tmp_path / "sharded")], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    r = torchrun(["sfvq", "assign", "--curve", str(curve), "--latents", str(latents), "--chunk", "5",
                  "--out", str(tmp_path / "assign_sharded")], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]

    assert cli.main(["basis", "--latents", str(latents), "-k", "3", "--method", "randomized", "--chunk", "8",
                     "--out", str(tmp_path / "one")]) == 0
    assert cli.main(["sfvq", "assign", "--curve", str(curve), "--latents", str(latents),
                     "--out", str(tmp_path / "a.npz")]) == 0
    sharded, one = load_parts(tmp_path / "sharded"), load_parts(tmp_path / "one")
    assert set(sharded) == {"points", "basis", "singular_values", "input_basis", "residual"}
    for key in one:
        assert sharded[key].shape[0] == 37
        np.testing.assert_array_equal(sharded[key], one[key], err_msg=key)
    man = json.loads((tmp_path / "sharded" / "manifest.json").read_text())
    assert man["world_size"] == 2 and [p["rows"] for p in man["parts"]] == [[0, 16], [16, 37]]
    assert man["arrays"]["basis"] == {"shape": [37, 64, 3], "dtype": "float32"}
    assert man["provenance"]["k"] == 3 and man["provenance"]["method"] == "randomized"
    a, b = np.load(tmp_path / "a.npz"), load_parts(tmp_path / "assign_sharded")
    for key in ("index", "t", "distance_sq"):
        np.testing.assert_array_equal(b[key], a[key], err_msg=key)
    _no_leftovers(tmp_path)


@pytest.mark.slow
def test_sharded_warpage_equals_one_process(tmp_path, latents, one_thread):
    """Per-latent distances row for row and the summary (warpage.json) identical; random pairs stay within their
    --chunk block."""
    args = ["warpage", "--latents", str(latents), "-k", "1", "3", "--eps", "0.1", "1", "--chunk", "8"]
    r = torchrun(args + ["--out", str(tmp_path / "sharded")], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert cli.main(args + ["--out", str(tmp_path / "one")]) == 0
    sharded, one = load_parts(tmp_path / "sharded"), load_parts(tmp_path / "one")
    assert set(one) == {"local", "random_points", "partner", "global"}
    for key in one:
        np.testing.assert_array_equal(sharded[key], one[key], err_msg=key)
    assert one["local"].shape == (37, 2, 2) and one["global"].shape == (37, 2)
    p = one["partner"]
    paired = np.flatnonzero(p >= 0)
    assert (p[p[paired]] == paired).all() and (p[paired] // 8 == paired // 8).all()
    left = np.flatnonzero(p < 0)
    assert len(left) == 1 and left[0] >= 32  # blocks 0-3 have 8 rows, the last 5: one latent there is unpaired
    summary = [json.loads((tmp_path / d / "warpage.json").read_text()) for d in ("sharded", "one")]
    assert summary[0] == summary[1] and summary[0]["num_latents"] == 37
    mean = summary[0]["random_points"]["3"]["mean"]
    assert mean == pytest.approx(float(one["random_points"][paired, 1].mean()), rel=1e-6)
    assert (tmp_path / "sharded" / "warpage.png").stat().st_size > 0
    assert json.loads((tmp_path / "sharded" / "manifest.json").read_text())["world_size"] == 2
    _no_leftovers(tmp_path)


@pytest.mark.parametrize("cmd, split", [
    (["basis", "-k", "2", "--method", "randomized"], 8),
    (["warpage", "-k", "2", "--eps", "0.5"], 12),
])
def test_rows_split_a_job_without_torchrun(tmp_path, tiny_generator, cmd, split):
    lat = tmp_path / "z32.npy"
    np.save(lat, np.random.default_rng(1).normal(size=(21, 32)).astype(np.float32))
    base = cmd + ["--latents", str(lat), "--chunk", "4"]
    assert cli.main(base + ["--out", str(tmp_path / "all")]) == 0
    assert cli.main(base + ["--rows", f"0:{split}", "--out", str(tmp_path / "p0")]) == 0
    assert cli.main(base + ["--rows", f"{split}:", "--out", str(tmp_path / "p1")]) == 0
    whole, p0, p1 = (load_parts(tmp_path / n) for n in ("all", "p0", "p1"))
    for key in whole:
        np.testing.assert_array_equal(np.concatenate([p0[key], p1[key]]), whole[key], err_msg=key)
    assert json.loads((tmp_path / "p1" / "manifest.json").read_text())["rows"] == [split, 21]
    assert cli.main(base + ["--rows", f"{split}:99", "--out", str(tmp_path / "p2")]) == 2
    assert not (tmp_path / "p2").exists()


FAILING = """
import os, sys
import {module} as target
real = target.{name}
def failing(*a, **k):
    if os.environ["RANK"] == "{rank}":
        raise ValueError("simulated failure on rank {rank}")
    return real(*a, **k)
target.{name} = failing
import latentfast.cli as c
sys.exit(c.main(sys.argv[1:]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("cmd, target, rank", [
    (["basis", "-k", "3", "--method", "exact"], ("latentfast.localbasis", "local_basis"), 1),
    # rank 0's summary runs after the barrier: its error must still reach rank 1
    (["warpage", "-k", "1", "--eps", "0.1"], ("latentfast.viz", "warpage_chart"), 0),
], ids=["basis-rank-1", "warpage-summary-rank-0"])
def test_a_failing_rank_fails_the_job_and_leaves_no_output(tmp_path, latents, cmd, target, rank):
    script = tmp_path / "failing.py"
    script.write_text(FAILING.format(module=target[0], name=target[1], rank=rank))
    r = torchrun(cmd + ["--latents", str(latents), "--chunk", "8", "--out", str(tmp_path / "out")], tmp_path,
                 script=script)
    assert r.returncode != 0
    prefix = f"latentfast {cmd[0]}: error: "
    assert f"{prefix}simulated failure on rank {rank}" in r.stderr, r.stderr[-3000:]
    assert f"{prefix}rank {rank} of 2 failed: ValueError: simulated failure on rank {rank}" in r.stderr
    ours = [l for l in r.stderr.splitlines() if l.startswith(f"latentfast {cmd[0]}:")]
    assert len(ours) == 2, ours  # one line per rank (the traceback after them is torchrun's ChildFailedError)
    assert 'File "' + str(REPO / "latentfast") not in r.stderr
    assert not (tmp_path / "out").exists()
    _no_leftovers(tmp_path)


@pytest.mark.parametrize("device, backend, placed", [("cuda", "nccl", "cuda:1"), ("cpu", "gloo", "cpu")])
def test_job_places_rank_on_local_rank_and_picks_the_backend(monkeypatch, device, backend, placed):
    """Under torchrun (WORLD_SIZE > 1) a job starts the process group: nccl on cuda:LOCAL_RANK, gloo on the CPU
    (the collective calls are recorded here: CI has no GPU and no launcher)."""
    import torch.distributed as dist

    from latentfast.cli import _shard

    calls = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda b: calls.append(("init", b)))
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(dist, "destroy_process_group", lambda: calls.append(("destroy",)))
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(("set_device", d)))
    with _shard.job(device) as job:
        assert (job.rank, job.world, job.device) == (1, 2, placed)
    expect = [("set_device", 1)] if device == "cuda" else []
    assert calls == expect + [("init", backend), ("destroy",)]
