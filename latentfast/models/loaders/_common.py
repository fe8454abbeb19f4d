"""Helpers shared by the checkpoint readers: torch.load with weights_only, filling a module by name, FIR kernels."""
from __future__ import annotations

import argparse
import pickle
import zipfile
from pathlib import Path
from typing import Dict

import torch
from torch import nn

from .._safe_pickle import UnsafePickleError, one_line, torch_refusal

Tensor = torch.Tensor


def _torch_load(path: Path):
    """torch.load(weights_only=True); argparse.Namespace (rosinality's saved training args) is allowed too."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafePickleError(f"{path}: torch.load(weights_only=True) refused the file: {torch_refusal(e)}") \
            from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError) as e:
        raise ValueError(f"{path}: expected a torch checkpoint, but it is truncated or corrupt "
                         f"({type(e).__name__}: {one_line(e)})") from e


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


def _fir_from(kernel, source: str, what: str) -> Tensor:
    """A StyleGAN2 resample filter (1-D taps or a 2-D kernel) as a normalised 4x4 kernel.  latentfast's StyleGAN2
    implements the 4-tap filters of both reference codes ([1, 3, 3, 1] by default); any other size is refused
    naming the setting."""
    if not isinstance(kernel, Tensor):
        raise ValueError(f"{source}: {what}: expected a tensor FIR kernel, got {type(kernel).__name__}")
    k = kernel.detach().to(torch.float32)
    if k.dim() == 1:
        k = torch.outer(k, k)
    if k.dim() != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"{source}: {what}: expected a square FIR kernel, got shape {tuple(kernel.shape)}")
    if k.shape[0] != 4:
        raise ValueError(f"{source}: {what}: a {k.shape[0]}-tap resample filter is not supported; latentfast's "
                         f"StyleGAN2 expects a 4-tap filter such as the default [1, 3, 3, 1]")
    return k / k.sum()
