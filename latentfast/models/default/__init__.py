"""The default generator shipped inside the package: a small StyleGAN2 (32x32) trained on procedurally rendered
scenes with known factors (:mod:`.scenes`), so latentfast works with no download and discovered directions can be
checked against ground truth (:mod:`.factors`).

Files beside this module (package data): ``default_generator.pt`` (EMA generator weights, a plain state dict loaded
with ``weights_only=True``), ``default_config.json`` (constructor arguments and a training summary),
``training_log.json`` (losses over training), ``factor_predictor.pt`` and ``factor_predictor_log.json``.  They are
produced by ``scripts/train_default_generator.py`` and ``scripts/train_factor_predictor.py``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Union

import torch

from ..stylegan2 import StyleGAN2Generator

__all__ = ["load_default_generator", "default_config", "DEFAULT_DIR", "WEIGHTS_FILE", "CONFIG_FILE"]

DEFAULT_DIR = Path(__file__).resolve().parent
WEIGHTS_FILE = DEFAULT_DIR / "default_generator.pt"
CONFIG_FILE = DEFAULT_DIR / "default_config.json"


def default_config() -> dict:
    """The shipped default_config.json (generator constructor arguments under "generator", training summary)."""
    if not CONFIG_FILE.is_file():
        raise FileNotFoundError(f"default generator config not found: {CONFIG_FILE} (the package data is "
                                f"incomplete; reinstall latentfast or run scripts/train_default_generator.py)")
    return json.loads(CONFIG_FILE.read_text())


def load_default_generator(device: Union[str, torch.device] = "cpu") -> StyleGAN2Generator:
    """The shipped default StyleGAN2 generator in eval mode with frozen parameters.

    It is a :class:`~latentfast.models.Generator`: ``f`` is the mapping network (z_dim 64 -> w_dim 64, MLP with
    PixelNorm; ``mlp_spec()`` available), ``synthesize(w or ws)`` gives (B, 3, 32, 32) images in [-1, 1],
    ``num_ws`` = 8, and ``w_avg`` holds the mean W latent (truncation centre).
    """
    cfg = default_config()
    if not WEIGHTS_FILE.is_file():
        raise FileNotFoundError(f"default generator weights not found: {WEIGHTS_FILE} (the package data is "
                                f"incomplete; reinstall latentfast or run scripts/train_default_generator.py)")
    try:
        kw = dict(cfg["generator"])
        kw["channels"] = {int(k): int(v) for k, v in kw["channels"].items()}
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{CONFIG_FILE}: expected a 'generator' entry with the constructor arguments "
                         f"(including 'channels'), got {cfg.get('generator')!r}") from e
    G = StyleGAN2Generator(**kw)
    state = torch.load(WEIGHTS_FILE, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{WEIGHTS_FILE}: expected a state dict, got {type(state).__name__}")
    try:
        G.load_state_dict({k: v.float() for k, v in state.items()})
    except RuntimeError as e:
        raise ValueError(f"{WEIGHTS_FILE}: weights do not match the architecture in {CONFIG_FILE}: {e}") from e
    G.has_w_avg = True
    return G.to(device).eval().requires_grad_(False)
