"""Factor benchmark: which known generative factor does each discovered direction control, and how purely?

Only for a generator whose images have ground-truth factors and a trained factor predictor — the embedded default
generator (scenes of one object: shape, x, y, size, rotation, hue, background hue; see models/default).

Protocol (the same for every method):
  * held-out latents: drawn from a seed that no method saw when finding its directions;
  * one edit size A for every method and direction (a distance in W), both signs: w - A d and w + A d, d a unit
    vector; Local Basis uses each latent's own local directions u_i(z), the global methods the same d for all;
  * the predictor estimates the factors of both images; the change of a continuous factor is |f(+) - f(-)| / 2
    (factors live in [0, 1]); of the shape, half the total variation between the two class distributions; the
    rotation change is weighted by the probability that the object is not a circle (rotation is undefined there);
  * per direction: the change of each continuous factor averaged over the latents, its dominant factor, its
    total effect (sum over factors), and its purity = dominant change / total change (1 = one factor only);
  * the shape is reported beside, not inside, the purity: the shipped generator draws shapes poorly (mostly
    rounded blobs), so the predicted class flickers under almost any edit and would swamp every direction;
  * per method: the mean purity over its top-k directions, and which factor each direction controls.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch

from ._progress import progress as progress_bar
from .localbasis import local_basis

Tensor = torch.Tensor


@torch.no_grad()
def _factor_changes(G, predictor, w: Tensor, directions: Tensor, A: float, names) -> Tensor:
    """w (B, d), directions (B, d) unit -> (B, F) change of each factor."""
    from .models.default.scenes import SHAPES

    plus = predictor.predict(G.synthesize(w + A * directions))
    minus = predictor.predict(G.synthesize(w - A * directions))
    circle = SHAPES.index("circle")
    not_circle = 1 - 0.5 * (plus["shape_probs"][:, circle] + minus["shape_probs"][:, circle])
    cols = []
    for n in names:
        if n == "shape":
            cols.append(0.5 * (plus["shape_probs"] - minus["shape_probs"]).abs().sum(1))
        else:
            c = 0.5 * (plus[n] - minus[n]).abs()
            cols.append(c * not_circle if n == "rotation" else c)
    return torch.stack(cols, 1)


def factor_benchmark(G, f, methods: Dict[str, Optional[Tensor]], *, k: int, edit_size: float,
                     num_latents: int = 64, seed: int = 1, predictor=None, method: str = "auto",
                     progress: bool = False) -> dict:
    """Measure the factors each method's top-k directions change; see the module docstring.

    methods: name -> (k', d) unit directions in W (global methods), or None for Local Basis (computed per latent
    from f with ``method``).  ``progress``: a bar over the directions (see :mod:`latentfast._progress`).
    Returns a JSON-ready dict.
    """
    from .models.default.factors import load_factor_predictor
    from .models.default.scenes import CONTINUOUS_FACTORS

    predictor = predictor or load_factor_predictor()
    names = ("shape",) + tuple(CONTINUOUS_FACTORS)
    z = G.sample_z(num_latents, torch.Generator().manual_seed(10_000 + seed))
    with torch.no_grad():
        w = G.f(z)
    out = {"description": __doc__.split("Protocol")[0].strip().splitlines()[0],
           "edit_size": edit_size, "num_latents": num_latents, "seed": 10_000 + seed, "factors": list(names),
           "methods": {}}
    n_dirs = sum(k if d is None else min(k, d.shape[0]) for d in methods.values())
    with progress_bar(total=n_dirs, desc="factor benchmark", unit="direction", enabled=progress) as bar:
        for name, dirs in methods.items():
            bar.set_postfix_str(name)
            if dirs is None:
                lb = local_basis(f, z, k, method, generator=torch.Generator().manual_seed(seed))
                per_dir = [lb.basis[:, :, i] for i in range(k)]
            else:
                dirs = dirs[:k] / dirs[:k].norm(dim=1, keepdim=True)
                per_dir = [dirs[i].expand_as(w) for i in range(dirs.shape[0])]
            rows = []
            for d in per_dir:
                rows.append(_factor_changes(G, predictor, w, d, edit_size, names).mean(0))
                bar.update()
            change = torch.stack(rows)
            cont = change[:, 1:]  # continuous factors; column 0 is the shape
            total = cont.sum(1)
            purity = cont.max(1).values / total.clamp_min(1e-12)
            out["methods"][name] = {
                "mean_purity": float(purity.mean()),
                "purity": [round(float(p), 4) for p in purity],
                "dominant_factor": [CONTINUOUS_FACTORS[int(i)] for i in cont.argmax(1)],
                "effect": [round(float(t), 4) for t in total],
                "shape_change": [round(float(c), 4) for c in change[:, 0]],
                "change": [[round(float(c), 4) for c in row] for row in change],
            }
    return out
