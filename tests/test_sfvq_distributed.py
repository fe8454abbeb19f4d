"""Data-parallel SFVQ fits on torch.distributed (issue 12): 2 gloo processes on the CPU, launched here with
torch.multiprocessing.spawn, against 1 process.  Each test spawns fresh interpreters (a few seconds each)."""
import os
import signal
import socket
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from latentfast import SFVQ
from latentfast.sfvq import fit as sfvq_fit

ROOT = Path(__file__).resolve().parents[1]
# 1200 // 40 = 30 steps per epoch, 2 epochs, stages 4 -> 8 -> 16: 180 steps
KW = dict(epochs_per_stage=2, batch_size=40, lr=1e-2, shuffle=True, progress=False)
M, D = 16, 8

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, job):
    """One rank: join the group (short timeout, so a lost rank fails the job instead of hanging it), fit on the
    memory-mapped latents, rank 0 writes the result."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=30))
    try:
        real = sfvq_fit._dp_step
        calls = [0]

        def step(*args, **kwargs):
            calls[0] += 1
            if calls[0] == job.get("stop_at") and rank == 0:
                os.kill(os.getpid(), signal.SIGINT)  # only rank 0 is interrupted: the flag stops every rank
            if calls[0] == job.get("fail_at") and rank == job.get("fail_rank"):
                raise RuntimeError(f"rank {rank} failed on purpose at step {calls[0]}")
            return real(*args, **kwargs)

        sfvq_fit._dp_step = step
        latents = np.load(job["latents"], mmap_mode="r")
        model = SFVQ(M, D)
        try:
            log = model.fit(latents, generator=torch.Generator().manual_seed(job.get("seed", 5)),
                            checkpoint=job.get("checkpoint"), checkpoint_every=job.get("every"),
                            resume=job.get("resume", False), **KW)
        except KeyboardInterrupt:
            Path(job["out"] + f".interrupted-{rank}").write_text(str(calls[0]))
            return
        if rank == 0:
            model.save(job["out"])
        assert log.world_size == world
    finally:
        dist.destroy_process_group()


def _spawn(world, **job):
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    mp.start_processes(_worker, args=(world, _free_port(), job), nprocs=world, join=True, start_method="spawn")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dist")
    x = (torch.randn(1213, D, generator=torch.Generator().manual_seed(0)) * torch.linspace(0.5, 2, D)).numpy()
    path = folder / "w.npy"
    np.save(path, x)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    one = SFVQ(M, D)
    one_log = one.fit(torch.from_numpy(x), generator=torch.Generator().manual_seed(5), **KW)
    torch.set_num_threads(before)
    return {"path": path, "x": x, "one": one, "one_log": one_log}


@pytest.fixture(scope="module")
def two(data, tmp_path_factory):
    """The uninterrupted 2-process fit (one spawn, shared by the tests below)."""
    out = tmp_path_factory.mktemp("two") / "curve.pt"
    _spawn(2, latents=str(data["path"]), out=str(out))
    assert sorted(p.name for p in out.parent.iterdir()) == ["curve.pt"]  # rank 0 wrote one file, nothing else
    return SFVQ.load(out)


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


def test_two_processes_equal_one(data, two):
    rel = _rel(two.vertices.detach(), data["one"].vertices.detach())
    print(f"max |two - one| / max |one| = {rel:.3g}", file=sys.stderr)
    assert rel <= 1e-5
    log, ref = two.training_log, data["one_log"]
    assert log.world_size == 2 and log.rows_per_rank == [20, 20]
    assert log.runs == [{"world_size": 2, "rows_per_rank": [20, 20], "first_step": 0, "steps": 180}]
    assert [s.num_vertices for s in log.stages] == [4, 8, 16]
    for a, b in zip(log.stages, ref.stages):
        assert torch.equal(a.segment_counts, b.segment_counts)  # the same assignments, step by step
        np.testing.assert_allclose(a.loss, b.loss, rtol=1e-5)
    assert log.mean_distance_sq == pytest.approx(ref.mean_distance_sq, rel=1e-5)


@pytest.mark.slow
def test_interrupted_two_process_fit_resumes_with_one_or_two(data, two, tmp_path):
    ckpt = tmp_path / "fit.ckpt"
    _spawn(2, latents=str(data["path"]), out=str(tmp_path / "never.pt"), checkpoint=str(ckpt), stop_at=77)
    # rank 0 got SIGINT during step 77, after that step's all-reduce had carried its flag: the flag goes with
    # step 78's, and every rank stops after step 78
    assert (tmp_path / "never.pt.interrupted-0").read_text() == "78"
    assert (tmp_path / "never.pt.interrupted-1").read_text() == "78"
    assert not (tmp_path / "never.pt").exists()
    state = torch.load(ckpt, weights_only=True)
    assert state["step"] == 78 and state["stage"] == 1  # mid-stage (stage 2 is steps 61-120)
    saved = ckpt.read_bytes()
    # with two processes again: the same as the uninterrupted two-process fit, bit for bit
    _spawn(2, latents=str(data["path"]), out=str(tmp_path / "resumed2.pt"), checkpoint=str(ckpt), resume=True)
    resumed2 = SFVQ.load(tmp_path / "resumed2.pt")
    assert torch.equal(two.vertices, resumed2.vertices)
    assert [r["world_size"] for r in resumed2.training_log.runs] == [2, 2]
    # with one process (no process group)
    ckpt.write_bytes(saved)
    torch.set_num_threads(1)
    one = SFVQ(M, D)
    log = one.fit(data["x"], generator=torch.Generator().manual_seed(5), checkpoint=ckpt, resume=True, **KW)
    assert [r["world_size"] for r in log.runs] == [2, 1] and [r["steps"] for r in log.runs] == [78, 102]
    assert _rel(one.vertices.detach(), data["one"].vertices.detach()) <= 1e-5


def test_a_failing_rank_fails_the_job_with_its_error(data, tmp_path):
    out = tmp_path / "curve.pt"
    with pytest.raises(Exception, match="rank 1 failed on purpose at step 50"):
        _spawn(2, latents=str(data["path"]), out=str(out), fail_rank=1, fail_at=50)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no curve, no temporary


def test_bad_latents_on_one_rank_fail_every_rank(data, tmp_path):
    """NaN in rank 1's block: every rank fails with rank 1's message (whichever the launcher reports first); nobody
    waits for the timeout."""
    x = data["x"].copy()
    x[1000, 2] = np.nan
    np.save(tmp_path / "bad.npy", x)
    with pytest.raises(Exception, match="latents: expected finite values"):
        _spawn(2, latents=str(tmp_path / "bad.npy"), out=str(tmp_path / "curve.pt"))
    assert not (tmp_path / "curve.pt").exists()
