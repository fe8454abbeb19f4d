"""How many segments a projection bound leaves for an exact nearest-segment search (the FIT workload's data).

``python -m benchmarks.prune_bound``: for points near the FFHQ 10-bit curve (uniform on a segment + noise), the
lower bound  dist^2(x, seg) >= dist^2(P x, P seg) + max(0, |R x| - max(|R a|, |R b|))^2  (P: the top d principal
directions of the points, R = I - P; any orthogonal projection makes it a bound) and the fraction of segments
whose bound does not exceed the exact nearest distance: those a pruned search would still have to score
exactly.  Everything in float64; the bound is checked against the exact distances.
"""
from __future__ import annotations

import torch

from .workloads import _ffhq_curve, _points_near


def _segment_dist_sq(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    a, d = c[:-1], c[1:] - c[:-1]
    xa, xd = x @ a.T, x @ d.T
    ad, dd, aa = (a * d).sum(1), (d * d).sum(1), (a * a).sum(1)
    t = ((xd - ad) / dd).clamp(0, 1)
    return ((x * x).sum(1, keepdim=True) - 2 * xa + aa - 2 * t * (xd - ad) + t * t * dd).clamp_min(0)


def main(n: int = 4096) -> None:
    curve = _ffhq_curve(10).double()
    print(f"FFHQ 10-bit curve, {curve.shape[0] - 1} segments; {n} points uniform on the curve + noise")
    for noise in (1.0, 0.3):
        x = _points_near(curve.float(), n, noise, seed=6).double()
        mu = x.mean(0)
        X, C = x - mu, curve - mu
        exact = _segment_dist_sq(X, C)
        best = exact.min(1).values
        _, s, vt = torch.linalg.svd(X, full_matrices=False)
        kept_var = (s * s).cumsum(0) / (s * s).sum()
        for d in (32, 64, 128):
            P = vt[:d].T
            px, pc = X @ P, C @ P
            rx = ((X * X).sum(1) - (px * px).sum(1)).clamp_min(0).sqrt()
            rc = ((C * C).sum(1) - (pc * pc).sum(1)).clamp_min(0).sqrt()
            lower = _segment_dist_sq(px, pc) + (rx[:, None] - torch.maximum(rc[:-1], rc[1:])[None]).clamp_min(0) ** 2
            assert bool((lower <= exact * (1 + 1e-9) + 1e-9).all()), "the bound must hold"
            left = (lower <= best[:, None]).double().mean(1)
            print(f"  noise {noise:g}, d = {d:3d} (variance kept {float(kept_var[d - 1]):.2f}): segments left "
                  f"{100 * float(left.mean()):.1f} % on average, {100 * float(left.median()):.1f} % median")


if __name__ == "__main__":
    main()
