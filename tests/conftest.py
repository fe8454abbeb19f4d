"""Shared test setup: Triton's interpreter on machines without a GPU, a fixed seed per test, NaN poisoning."""
import os

import torch

# Must happen before anything imports triton: without a GPU, Triton kernels run in the interpreter.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def one_thread():
    """One torch thread for the test.  SFVQ fits run thousands of tiny steps (64 x 16 tensors); on two shared
    cores intra-op threads mostly wait for each other (measured 5-10x slower per step under load); torchrun
    workers (OMP_NUM_THREADS=1) are compared against this process with the same float operations."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def poison_(t: torch.Tensor) -> torch.Tensor:
    """Fill a freshly allocated output with NaN (or -1 for integers) so an unwritten element fails a test."""
    if t.is_floating_point():
        return t.fill_(float("nan"))
    return t.fill_(-1)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

#: where tests run the Triton backends: the GPU when there is one, else the CPU through Triton's interpreter
TRITON_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def on_device(t: torch.Tensor, device) -> torch.Tensor:
    """``t`` copied to ``device`` with the same shape, strides and storage offset (``Tensor.to`` would make a
    non-dense view contiguous, and the non-contiguous tests would test nothing on the GPU)."""
    if t.device == torch.device(device):
        return t
    size = t.untyped_storage().nbytes() // t.element_size()
    out = torch.empty(size, dtype=t.dtype, device=device).as_strided(t.shape, t.stride(), t.storage_offset())
    return out.copy_(t)
