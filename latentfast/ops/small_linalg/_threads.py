"""Run small LAPACK problems single-threaded on CPU.

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
