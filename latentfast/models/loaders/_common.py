"""Helpers shared by the checkpoint readers: torch.load with weights_only, filling a module by name, FIR kernels."""
from __future__ import annotations

import argparse
import pickle
import zipfile
from pathlib import Path
from typing import Dict

import torch
from torch import nn

from .._safe_pickle import UnsafePickleError

Tensor = torch.Tensor


def _torch_load(path: Path):
    """torch.load(weights_only=True); argparse.Namespace (rosinality's saved training args) is allowed too."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafePickleError(f"{path}: torch.load(weights_only=True) refused the file: {e}") from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError) as e:
        raise ValueError(f"{path}: expected a torch checkpoint, but it is truncated or corrupt "
                         f"({type(e).__name__}: {str(e)[:300]})") from e


def _fill(model: nn.Module, tensors: Dict[str, Tensor], source: str) -> None:
    """Copy tensors into model by name; every entry of the model's state dict must be given, shapes must agree."""
    own = model.state_dict()
    missing = [k for k in own if k not in tensors]
    extra = [k for k in tensors if k not in own]
    if missing or extra:
        raise ValueError(f"{source}: checkpoint does not match the inferred architecture: missing {missing[:8]}, "
                         f"unexpected {extra[:8]}")
    for k, v in tensors.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise ValueError(f"{source}: tensor for {k!r}: expected shape {tuple(own[k].shape)}, "
                             f"got {tuple(v.shape)}")
        if not v.is_floating_point():
            raise ValueError(f"{source}: tensor for {k!r}: expected floating point, got {v.dtype}")
    model.load_state_dict({k: v.detach().to(torch.float32) for k, v in tensors.items()})


def _fir_from(kernel: Tensor, source: str, what: str) -> Tensor:
    k = kernel.detach().to(torch.float32)
    if k.dim() == 1:
        k = torch.outer(k, k)
    if k.dim() != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"{source}: {what}: expected a square FIR kernel, got shape {tuple(kernel.shape)}")
    return k / k.sum()


