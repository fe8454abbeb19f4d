"""``load_generator(path)``: read a checkpoint of a known format into a latentfast :class:`Generator`.

Formats, recognised from the file's content (not its name), one module each:

* rosinality/stylegan2-pytorch ``.pt`` (:mod:`.rosinality`): a torch.save dict with ``"g_ema"`` (state dict:
  ``style.N.*``, ``input.input``, ``conv1.*``, ``to_rgb1.*``, ``convs.N.*``, ``to_rgbs.N.*``, ``noises.noise_N``)
  and optionally ``"latent_avg"`` and ``"args"``; read with ``torch.load(weights_only=True)``.
* NVIDIA stylegan2-ada-pytorch / stylegan3 network pickles (``.pkl`` with ``"G_ema"``, :mod:`.nvidia_pkl`): read
  with the restricted unpickler of :mod:`latentfast.models._safe_pickle` (no NVIDIA code is needed or run):
  StyleGAN2 synthesis becomes a StyleGAN2Generator, StyleGAN3-T/-R (:mod:`.nvidia_sg3`) a StyleGAN3Generator,
  class-conditional mapping networks included; ``mapping_only=True`` loads the mapping network alone (a
  :class:`MappingOnlyGenerator` whose ``synthesize`` raises) without reading the synthesis network.
* pytorch-pretrained-BigGAN (:mod:`.biggan`): a directory with ``config.json`` and ``pytorch_model.bin`` (or the
  ``.bin`` itself with ``config.json`` beside it).

Everything that is not one of these — a missing, empty, truncated or foreign file, a pickle that references any
other global — raises ``ValueError`` naming the file and what was expected, in one line (``UnsafePickleError``, a
ValueError, for disallowed globals).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import torch

from .._safe_pickle import TORCH_LEGACY_MAGIC, UnsafePickleError, safe_load_pickle
from ..adapters import Generator
from ..biggan import BigGANConfig
from ._common import _torch_load
from .biggan import load_biggan
from .nvidia_pkl import MappingOnlyGenerator, load_nvidia_pickle
from .rosinality import load_rosinality

__all__ = ["load_generator", "load_rosinality", "load_nvidia_pickle", "load_biggan", "MappingOnlyGenerator",
           "UnsafePickleError"]

PathLike = Union[str, os.PathLike]


_FORMATS = ("a rosinality stylegan2-pytorch .pt with 'g_ema', an NVIDIA stylegan2-ada/stylegan3 .pkl with "
            "'G_ema', or a pytorch-pretrained-BigGAN directory with config.json and pytorch_model.bin")


def _from_torch_dict(obj, path: Path, mapping_only: bool, biggan_kwargs: dict) -> Generator:
    if isinstance(obj, dict) and "g_ema" in obj:
        return load_rosinality(obj, str(path))
    if isinstance(obj, dict) and any(isinstance(k, str) and k.startswith("generator.gen_z.") for k in obj):
        cfg_path = path.parent / "config.json"
        if not cfg_path.is_file():
            raise ValueError(f"{path}: looks like a pytorch-pretrained-BigGAN state dict, but expected its "
                             f"config.json beside it at {cfg_path}")
        return load_biggan(obj, BigGANConfig.from_json_file(cfg_path), str(path), **biggan_kwargs)
    if isinstance(obj, dict) and "G_ema" in obj:
        return load_nvidia_pickle(obj, str(path), mapping_only=mapping_only)
    keys = list(obj)[:8] if isinstance(obj, dict) else None
    raise ValueError(f"{path}: unknown checkpoint format: expected {_FORMATS}; got "
                     + (f"a dict with keys {keys}" if keys is not None else f"an object of type {type(obj).__name__}"))


def load_generator(path: PathLike, *, device: Union[str, torch.device] = "cpu", mapping_only: bool = False,
                   **biggan_kwargs) -> Generator:
    """Load a generator checkpoint of any supported format (see the module docstring).

    path:         file (``.pt``/``.pkl``/``.bin``) or a BigGAN directory.
    device:       where the returned module lives.
    mapping_only: for NVIDIA pickles, load the mapping network alone (a :class:`MappingOnlyGenerator`).
    biggan_kwargs: class_index, truncation, f_layer for :class:`BigGANGenerator`.
    Returns an ``nn.Module`` implementing :class:`Generator`, in eval mode, float32.
    Raises ValueError (naming the file) for anything unreadable or unrecognised, UnsafePickleError (a ValueError)
    for a pickle that references a global outside the allow-list — no code from the file is run.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a str or os.PathLike, got an object of type {type(path).__name__}")
    path = Path(path)
    if path.is_dir():
        cfg, weights = path / "config.json", path / "pytorch_model.bin"
        if not (cfg.is_file() and weights.is_file()):
            raise ValueError(f"{path}: expected a BigGAN directory with config.json and pytorch_model.bin, found "
                             f"{sorted(p.name for p in path.iterdir())[:10]}")
        sd = _torch_load(weights)
        if not isinstance(sd, dict):
            raise ValueError(f"{weights}: expected a BigGAN state dict, got {type(sd).__name__}")
        G = load_biggan(sd, BigGANConfig.from_json_file(cfg), str(weights), **biggan_kwargs)
        return G.to(device)
    if not path.is_file():
        raise ValueError(f"{path}: expected a generator checkpoint file, but no such file exists")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if len(head) < 2:
        raise ValueError(f"{path}: expected a generator checkpoint ({_FORMATS}), got an empty file")
    if head[:2] == b"PK":  # torch.save zip archive
        G = _from_torch_dict(_torch_load(path), path, mapping_only, biggan_kwargs)
    elif head[0] == 0x80:  # a pickle stream: NVIDIA network pickle or legacy torch.save
        with open(path, "rb") as fh:
            obj = safe_load_pickle(fh, str(path))
        if isinstance(obj, int) and obj == TORCH_LEGACY_MAGIC:
            G = _from_torch_dict(_torch_load(path), path, mapping_only, biggan_kwargs)
        else:
            G = _from_torch_dict(obj, path, mapping_only, biggan_kwargs)
    else:
        raise ValueError(f"{path}: unknown format (starts with bytes {head!r}); expected {_FORMATS}")
    return G.to(device)
