"""Resumable SFVQ training state: one verified file (see :mod:`latentfast.sfvq._files`) per fit.

A checkpoint holds everything the next step depends on, so a resumed fit is bit-identical to one that never
stopped: the fit's arguments and a fingerprint of the latents (a resume with other ones is refused), the stage,
epoch and batch position, the vertices (in the fit's scaled units), the optimizer's ``state_dict()``, the
generator's state now and at the start of the epoch (which re-draws the epoch's permutation), the partial
sums of the epoch and the log so far.  Nothing in it depends on the world size: every rank reads the same
file and takes its own part of each global batch, so a fit may resume with another number of processes.
"""
from __future__ import annotations

import os

from . import _files

FORMAT = "latentfast.SFVQCheckpoint"
VERSION = 1


def save(path, state: dict) -> None:
    """Write ``state`` (plain containers and tensors) atomically to ``path``, checksummed."""
    _files.write(path, {"format": FORMAT, "version": VERSION, **state}, name="checkpoint")


def _differences(saved: dict, now: dict) -> str:
    keys = sorted(set(saved) | set(now))
    return ", ".join(f"{k} {saved.get(k)!r} in the checkpoint, {now.get(k)!r} now" for k in keys
                     if saved.get(k) != now.get(k))


def load(path, config: dict, latents: dict) -> dict:
    """Read and verify the checkpoint at ``path`` for a fit with ``config`` on latents with fingerprint
    ``latents``; raises ValueError naming ``checkpoint`` when it is missing, corrupt or for another fit."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"checkpoint: no checkpoint file at {path!r} to resume from")
    state = _files.read(path, FORMAT, name="checkpoint")
    if state.get("version") != VERSION or "checksum" not in state:
        raise ValueError(f"checkpoint: {path!r} is checkpoint version {state.get('version')!r} "
                         f"{'with' if 'checksum' in state else 'without'} a checksum; this latentfast reads "
                         f"version {VERSION}")
    if state.get("config") != config:
        raise ValueError(f"checkpoint: {path!r} is for a fit with other arguments: "
                         f"{_differences(state.get('config') or {}, config)}")
    if state.get("latents") != latents:
        raise ValueError(f"checkpoint: {path!r} is for other latents: "
                         f"{_differences(state.get('latents') or {}, latents)}")
    return state
