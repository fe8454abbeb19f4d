"""Run small LAPACK problems single-threaded on CPU (and batches of them split over several Python threads).

Measured here (torch 2.13 CPU, MKL, 2 cores with one busy): a batched SVD of 64 matrices of 54 x 54 took 28 s
with 2 intra-op threads and 0.18 s with 1 — MKL threads each tiny factorisation and every OpenMP barrier waits
for a descheduled thread.  Problems of a few dozen rows gain nothing from threads, so the small-matrix calls
(batched r x r SVD / eigh / Cholesky, k x k svdvals) run under this guard.  It sets torch's process-wide thread
count for the duration of the call and restores it afterwards.
"""
from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def single_threaded(t: torch.Tensor):
    if t.device.type != "cpu" or torch.get_num_threads() == 1:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


_POOL = None


def batch_parallel(fn, t: torch.Tensor, min_per_thread: int = 8):
    """fn(t) for a batch t (B, ...) of small problems, the batch split across torch's intra-op thread count of
    Python threads, each part run single-threaded (torch releases the GIL inside LAPACK calls; its own batched
    small-matrix routines run one matrix after another on one thread).  fn returns a tensor or a tuple of
    tensors with the batch first; the parts are concatenated.  Plain ``single_threaded`` call on CUDA, with one
    thread, or when the batch is below ``min_per_thread`` matrices per thread."""
    global _POOL
    n = torch.get_num_threads()
    parts = min(n, t.shape[0] // max(min_per_thread, 1))
    if t.device.type != "cpu" or parts < 2:
        with single_threaded(t):
            return fn(t)
    import concurrent.futures

    if _POOL is None or _POOL._max_workers < parts:
        _POOL = concurrent.futures.ThreadPoolExecutor(max_workers=parts, thread_name_prefix="latentfast-small")
    with single_threaded(t):
        outs = list(_POOL.map(fn, t.chunk(parts)))
    if isinstance(outs[0], torch.Tensor):
        return torch.cat(outs)
    return tuple(torch.cat(o) for o in zip(*outs))
