"""A small CNN that estimates the generative factors of a 32x32 scene (see :mod:`.scenes`): regression for the
continuous factors (``x, y, size, rotation, hue, bg_hue``), classification for ``shape``.

It is trained on rendered scenes only (:func:`train_factor_predictor`, script ``scripts/train_factor_predictor.py``)
and evaluated on scenes from held-out seeds (:func:`evaluate_factor_predictor`); the factor benchmark uses it to
measure which factor an edit of a generated image changes.  Rotation is not defined for circles: its loss and its
R^2 leave circles out.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Dict, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..._checks import as_tensor, check_floating, check_int, check_ndim, check_nonempty
from .scenes import CONTINUOUS_FACTORS, SHAPES, render_scenes

Tensor = torch.Tensor

__all__ = ["FactorPredictor", "train_factor_predictor", "evaluate_factor_predictor", "load_factor_predictor",
           "PREDICTOR_FILE", "PREDICTOR_LOG"]

HERE = Path(__file__).resolve().parent
PREDICTOR_FILE = HERE / "factor_predictor.pt"
PREDICTOR_LOG = HERE / "factor_predictor_log.json"
ROTATION = CONTINUOUS_FACTORS.index("rotation")
CIRCLE = SHAPES.index("circle")


class FactorPredictor(nn.Module):
    """images (B, 3, 32, 32) in [-1, 1] -> (continuous (B, 6) in CONTINUOUS_FACTORS order, shape logits (B, 4))."""

    def __init__(self, width: int = 32):
        super().__init__()
        w = check_int("width", width, low=4)
        self.width = w

        def block(i, o):
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(inplace=True))

        self.features = nn.Sequential(block(3, w // 2), block(w // 2, w), nn.MaxPool2d(2),   # 16
                                      block(w, w), nn.MaxPool2d(2),                            # 8
                                      block(w, 2 * w), nn.MaxPool2d(2),                        # 4
                                      block(2 * w, 2 * w))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * w * 16, 128), nn.ReLU(inplace=True),
                                  nn.Linear(128, len(CONTINUOUS_FACTORS) + len(SHAPES)))

    def forward(self, images: Tensor):
        out = self.head(self.features(images))
        return out[:, :len(CONTINUOUS_FACTORS)], out[:, len(CONTINUOUS_FACTORS):]

    @torch.no_grad()
    def predict(self, images, batch_size: int = 256) -> Dict[str, Tensor]:
        """images (B, 3, 32, 32) in [-1, 1] -> {"shape": (B,) int64, "shape_probs": (B, 4), and each continuous
        factor (B,) float32 (not clamped, nominally in [0, 1])}.  Runs in eval mode."""
        images = check_floating("images", as_tensor("images", images))
        check_ndim("images", images, 4, "(B, 3, 32, 32)")
        if tuple(images.shape[1:]) != (3, 32, 32):
            raise ValueError(f"images: expected shape (B, 3, 32, 32), got {tuple(images.shape)}")
        check_nonempty("images", images)
        was = self.training
        self.eval()
        dev = next(self.parameters()).device
        cont, logits = [], []
        for chunk in images.split(batch_size):
            c, lg = self(chunk.to(dev, torch.float32))
            cont.append(c.cpu())
            logits.append(lg.cpu())
        self.train(was)
        cont, logits = torch.cat(cont), torch.cat(logits)
        out = {k: cont[:, i] for i, k in enumerate(CONTINUOUS_FACTORS)}
        out["shape_probs"] = logits.softmax(1)
        out["shape"] = logits.argmax(1)
        return out


def _targets(factors: Dict[str, Tensor]) -> Tensor:
    return torch.stack([factors[k].float() for k in CONTINUOUS_FACTORS], 1)


def _loss(model: FactorPredictor, images: Tensor, factors: Dict[str, Tensor]) -> Tensor:
    cont, logits = model(images)
    err = (cont - _targets(factors)).square()
    keep = torch.ones_like(err)
    keep[:, ROTATION] = (factors["shape"] != CIRCLE).float()  # rotation of a circle is not observable
    return (err * keep).sum() / keep.sum() * len(CONTINUOUS_FACTORS) + F.cross_entropy(logits, factors["shape"])


def _augment(images: Tensor, g: torch.Generator, noise: float, blur_prob: float) -> Tensor:
    """Pixel noise and, on a share of the batch, a light blur, so the predictor tolerates GAN artefacts."""
    if blur_prob > 0:
        k = torch.tensor([1.0, 2.0, 1.0])
        k = (torch.outer(k, k) / 16).expand(3, 1, 3, 3)
        blurred = F.conv2d(F.pad(images, [1, 1, 1, 1], mode="replicate"), k, groups=3)
        pick = (torch.rand(images.shape[0], generator=g) < blur_prob)[:, None, None, None]
        images = torch.where(pick, blurred, images)
    if noise > 0:
        images = images + noise * torch.rand(images.shape[0], 1, 1, 1, generator=g) * torch.randn(
            images.shape, generator=g)
    return images


def train_factor_predictor(*, steps: int = 2000, batch: int = 64, lr: float = 2e-3, width: int = 32,
                           seed: int = 0, noise: float = 0.08, blur_prob: float = 0.3, log_every: int = 100,
                           verbose: bool = False):
    """Train a :class:`FactorPredictor` on fresh scenes (data seed ``seed``; the evaluation seeds are distinct, see
    :func:`evaluate_factor_predictor`).  Adam with cosine decay.  Returns (model in eval mode, log list)."""
    steps = check_int("steps", steps, low=1)
    batch = check_int("batch", batch, low=2)
    torch.manual_seed(seed)
    model = FactorPredictor(width)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = torch.Generator().manual_seed(seed * 1000 + 17)
    log, t0, run = [], time.time(), 0.0
    model.train()
    for step in range(1, steps + 1):
        images, factors = render_scenes(batch, generator=g)
        loss = _loss(model, _augment(images, g, noise, blur_prob), factors)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        run += float(loss.detach())
        if step % log_every == 0 or step == steps:
            n = log_every if step % log_every == 0 else step % log_every
            log.append({"step": step, "loss": round(run / n, 5), "wall_seconds": round(time.time() - t0, 1)})
            run = 0.0
            if verbose:
                print(json.dumps(log[-1]), flush=True)
    return model.eval(), log


@torch.no_grad()
def evaluate_factor_predictor(model: FactorPredictor, n: int = 2000, seed: int = 10**6) -> Dict[str, float]:
    """Held-out accuracy on n fresh scenes from ``seed`` (far from any training seed): R^2 per continuous factor
    (rotation over non-circles only), shape accuracy, and the trivial baselines (R^2 0, majority-class accuracy)."""
    images, factors = render_scenes(check_int("n", n, low=2), seed=seed)
    pred = model.predict(images)
    out: Dict[str, float] = {}
    for k in CONTINUOUS_FACTORS:
        y, p = factors[k].double(), pred[k].double()
        if k == "rotation":
            m = factors["shape"] != CIRCLE
            y, p = y[m], p[m]
        out[f"r2_{k}"] = float(1 - (y - p).square().sum() / (y - y.mean()).square().sum())
    out["shape_accuracy"] = float((pred["shape"] == factors["shape"]).double().mean())
    out["shape_majority_baseline"] = float(np.bincount(factors["shape"].numpy(), minlength=len(SHAPES)).max() / n)
    out["n"], out["seed"] = n, seed
    return out


def load_factor_predictor(path: Optional[Union[str, Path]] = None, device: Union[str, torch.device] = "cpu"
                          ) -> FactorPredictor:
    """The shipped predictor (``factor_predictor.pt`` beside this module) or the one at ``path``, in eval mode."""
    path = Path(path) if path is not None else PREDICTOR_FILE
    if not path.is_file():
        raise FileNotFoundError(f"path: factor predictor weights not found at {path} (train them with "
                                f"scripts/train_factor_predictor.py)")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or "state_dict" not in blob or "width" not in blob:
        raise ValueError(f"path: {path} is not a latentfast factor predictor file (expected a dict with "
                         f"'state_dict' and 'width')")
    model = FactorPredictor(int(blob["width"]))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()})
    return model.to(device).eval().requires_grad_(False)
