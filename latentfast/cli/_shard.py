"""Row-sharded jobs: one command over the rows of a latent file, split across the ranks of ``torchrun`` (or a
slice of it chosen with ``--rows a:b``), each rank writing its part of every output array.

Layout of an output directory ``DIR``::

    DIR/manifest.json                      written by rank 0 once every rank is done
    DIR/<array>/part-00000-of-00002.npy    rows [lo, hi) of <array> computed by rank 0, and so on

The directory is complete or absent: the ranks write into one temporary directory beside ``DIR``; after a
barrier that also collects every rank's outcome, rank 0 writes the manifest and renames it into place, or, if
any rank failed, removes it, and every rank fails with the first failing rank's error.  Parts are written
incrementally (``np.lib.format.open_memmap``), so no rank holds its output, or the input, in memory.

Rows are processed in blocks of ``chunk`` rows counted from the first selected row, and ranks get whole
blocks, so each block sees the same rows (and the same seeded random probes) for any number of ranks: sharded
outputs equal one process's row for row.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import socket
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import torch

from .._io import _umask, _write_error, check_output

FORMAT = "latentfast.parts"


def rows_arg(s: str) -> Tuple[int, int | None]:
    """``a:b`` (either end may be left out) -> (a, b or None); 0 <= a < b."""
    parts = s.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        a = int(parts[0]) if parts[0] else 0
        b = int(parts[1]) if parts[1] else None
    except ValueError:
        raise argparse.ArgumentTypeError(f"--rows: expected a:b (row indices, end exclusive), got {s!r}")
    if a < 0 or (b is not None and b <= a):
        raise argparse.ArgumentTypeError(f"--rows: expected 0 <= a < b, got {s!r}")
    return a, b


def add_shard_args(p, chunk_default: int, chunk_note: str = "") -> None:
    p.add_argument("--rows", type=rows_arg, help="a:b: only rows a..b-1 of --latents (a scheduler's split of the "
                                                 "job); default: all rows")
    from ._args import positive_int

    p.add_argument("--chunk", type=positive_int("--chunk"), default=chunk_default,
                   help=f"rows per block ({chunk_note}bounds memory; --rows boundaries at multiples of it "
                        f"reproduce one run's rows exactly)")


@dataclass
class Job:
    """This process's place in the job: ``rank`` of ``world``, on ``device`` (cuda:LOCAL_RANK under torchrun)."""

    rank: int
    world: int
    device: str

    def blocks(self, n: int, chunk: int) -> Tuple[int, int]:
        """This rank's rows [lo, hi) of ``n`` rows: a contiguous run of whole ``chunk``-row blocks."""
        nb = -(-n // chunk)
        b0, b1 = nb * self.rank // self.world, nb * (self.rank + 1) // self.world
        return min(b0 * chunk, n), min(b1 * chunk, n)

    def part_name(self, rank: int) -> str:
        return f"part-{rank:05d}-of-{self.world:05d}.npy"


@contextmanager
def job(device: str):
    """A :class:`Job`: under torchrun (WORLD_SIZE > 1) the process group is started (nccl for CUDA, gloo on the
    CPU) and stopped afterwards; otherwise a one-rank job."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1 or dist.is_initialized():
        yield Job(dist.get_rank() if dist.is_initialized() else 0,
                  dist.get_world_size() if dist.is_initialized() else 1, device)
        return
    if device.startswith("cuda"):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    try:
        yield Job(dist.get_rank(), dist.get_world_size(), device)
    finally:
        dist.destroy_process_group()


def _gather(job: Job, obj):
    if job.world == 1:
        return [obj]
    import torch.distributed as dist

    out = [None] * job.world
    dist.all_gather_object(out, obj)
    return out


class RankFailed(ValueError):
    """Another rank of the job failed; the message is that rank's error."""


@contextmanager
def sharded_output(job: Job, out, *, overwrite: bool, manifest: dict, name: str = "--out",
                   finalize: Optional[Callable[[Path], None]] = None):
    """Yield the job's temporary directory (the same on every rank); see the module docstring.

    ``manifest`` (rank 0's) is written as manifest.json with ``world_size`` and ``date`` added, after every rank
    has finished its body without an error; then rank 0 runs ``finalize(tmp)`` (files made from every rank's
    parts, e.g. with :func:`load_parts`), and an error there fails the job like a rank's.
    """
    out = Path(out)
    tmp = None
    if job.rank == 0:
        try:
            check_output(name, out, kind="dir", overwrite=overwrite)
            tmp = tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.resolve().parent)
            os.chmod(tmp, 0o777 & ~_umask())
        except ValueError as exc:
            tmp = exc
        except OSError as exc:
            tmp = _write_error(name, out, exc)
    tmp = _gather(job, tmp)[0]
    if isinstance(tmp, Exception):
        raise tmp if job.rank == 0 else RankFailed(f"rank 0: {tmp}")
    tmp = Path(tmp)
    error = None
    try:
        yield tmp
    except BaseException as exc:  # tell the other ranks before failing
        error = exc
    statuses = _gather(job, None if error is None else f"{type(error).__name__}: {' '.join(str(error).split())}")
    failed = [(r, s) for r, s in enumerate(statuses) if s is not None]
    if failed:
        if job.rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
        _gather(job, None)  # nobody leaves before the temporary is gone
        if error is not None:
            if isinstance(error, OSError):
                raise _write_error(name, out, error) from error
            raise error
        r, msg = failed[0]
        raise RankFailed(f"rank {r} of {job.world} failed: {msg}")
    if job.rank == 0:
        try:
            manifest = dict(manifest, world_size=job.world,
                            date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                            host=socket.gethostname())
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
            os.chmod(tmp / "manifest.json", 0o666 & ~_umask())
            if finalize is not None:
                finalize(tmp)
            old = None
            if out.exists():
                old = out.resolve().parent / f".{out.name}.old-{os.getpid()}"
                os.replace(out, old)
            os.replace(tmp, out)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            _gather(job, f"{type(exc).__name__}: {' '.join(str(exc).split())}")
            if isinstance(exc, OSError):
                raise _write_error(name, out, exc) from exc
            raise
    statuses = _gather(job, None)
    if statuses[0] is not None:
        raise RankFailed(f"rank 0 of {job.world} failed: {statuses[0]}")


def open_parts(job: Job, tmp: Path, arrays: Dict[str, tuple], rows: int) -> Dict[str, np.ndarray]:
    """This rank's part of each array, as writable memory maps: ``arrays`` maps name -> (dtype, row shape)."""
    parts = {}
    for key, (dtype, tail) in arrays.items():
        (tmp / key).mkdir(exist_ok=True)
        parts[key] = np.lib.format.open_memmap(tmp / key / job.part_name(job.rank), mode="w+", dtype=dtype,
                                               shape=(rows, *tail))
    return parts


def fill_parts(job: Job, tmp: Path, arrays: Dict[str, tuple], x, first: int, n: int, chunk: int,
               compute: Callable[[int, torch.Tensor], object], desc: str) -> None:
    """This rank's blocks of rows ``first .. first + n`` of ``x``, ``chunk`` rows at a time: ``compute(row,
    rows)`` (row: the global index of the block's first row) returns a dict, or an object, with one item or
    attribute per array, written into this rank's memory-mapped parts (see :func:`open_parts`), which are
    flushed at the end.  One progress bar, on rank 0."""
    from .._progress import progress

    lo, hi = job.blocks(n, chunk)
    parts = open_parts(job, tmp, arrays, hi - lo)
    with progress(total=n, desc=desc, unit="row", enabled=job.rank == 0) as bar:
        for c in range(lo, hi, chunk):
            c2 = min(c + chunk, hi)
            out = compute(first + c, rows_tensor(x, first + c, first + c2, job.device))
            for key in arrays:
                t = (out[key] if isinstance(out, dict) else getattr(out, key)).detach()
                t = t.float() if t.is_floating_point() else t  # bfloat16 has no numpy dtype; parts are float32
                parts[key][c - lo:c2 - lo] = t.cpu().numpy()
            bar.update(min((c2 - c) * job.world, bar.total - bar.n))
    for part in parts.values():
        part.flush()


def manifest_for(job: Job, command: str, arrays: Dict[str, tuple], first: int, n: int, chunk: int,
                 provenance: dict) -> dict:
    """The manifest rank 0 writes: arrays (full shape, dtype), each part's file and rows, the job's provenance."""
    import latentfast

    parts = []
    for r in range(job.world):
        lo, hi = Job(r, job.world, job.device).blocks(n, chunk)
        parts.append({"rank": r, "rows": [first + lo, first + hi],
                      "files": {k: f"{k}/{job.part_name(r)}" for k in arrays}})
    return {"format": FORMAT, "version": 1, "command": command, "rows": [first, first + n], "chunk": chunk,
            "arrays": {k: {"shape": [n, *tail], "dtype": np.dtype(dt).name} for k, (dt, tail) in arrays.items()},
            "parts": parts, "provenance": dict(provenance, latentfast=latentfast.__version__,
                                              torch=torch.__version__, numpy=np.__version__)}


def load_parts(path, mmap: bool = True) -> Dict[str, np.ndarray]:
    """Every array of a sharded output directory, its parts concatenated in row order (a dict name -> array)."""
    path = Path(path)
    man = json.loads((path / "manifest.json").read_text())
    if man.get("format") != FORMAT:
        raise ValueError(f"path: {path} is not a latentfast sharded output (manifest format {man.get('format')!r})")
    out = {}
    for key in man["arrays"]:
        pieces = [np.load(path / p["files"][key], mmap_mode="r" if mmap else None) for p in man["parts"]]
        out[key] = np.concatenate(pieces) if len(pieces) > 1 else pieces[0]
    return out


def rows_tensor(x, a: int, b: int, device) -> torch.Tensor:
    """Rows a..b-1 of a (memory-mapped) array or tensor as a float32 tensor on ``device`` (read only now)."""
    return torch.from_numpy(np.array(x[a:b], dtype=np.float32)).to(device)


def select_rows(x, rows) -> Tuple[int, int]:
    """(first, count) of the rows ``--rows`` selects of ``x`` (all when None); errors name --rows."""
    n = x.shape[0]
    a, b = rows if rows is not None else (0, None)
    b = n if b is None else b
    if b > n:
        raise ValueError(f"--rows: {a}:{b} goes past the {n} rows of --latents")
    return a, b - a
