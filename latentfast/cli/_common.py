"""Pieces shared by the subcommands: loading a generator and latents, saving directions, charts."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .._io import atomic_write_bytes


def load_generator_arg(checkpoint: Optional[str], device: str = "cpu"):
    """``--checkpoint`` path, or the embedded default generator when omitted."""
    if checkpoint:
        from ..models import load_generator

        return load_generator(checkpoint, device=device)
    from ..models.default import load_default_generator

    return load_default_generator(device=device)


def load_latents_arg(path: str, name: str = "--latents") -> torch.Tensor:
    """A (N, D) float array from .npy / .pt (tensors only); clear errors naming the file."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{name}: {p} is not a file")
    if p.suffix == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except Exception as exc:
            raise ValueError(f"{name}: {p} is not a readable .npy array ({exc})") from exc
        x = torch.from_numpy(np.ascontiguousarray(arr))
    elif p.suffix in (".pt", ".pth"):
        try:
            x = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(f"{name}: {p} is not a tensor file readable with weights_only=True ({exc})") from exc
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{name}: {p} holds {type(x).__name__}, expected one tensor of shape (N, D)")
    else:
        raise ValueError(f"{name}: expected a .npy or .pt file of shape (N, D), got {p.name}")
    if x.dim() != 2 or not x.is_floating_point():
        raise ValueError(f"{name}: expected a floating array of shape (N, D), got shape {tuple(x.shape)} {x.dtype}")
    return x.float()


def save_directions(out: Path, name: str, directions: torch.Tensor, mean: torch.Tensor,
                    stdev: Optional[torch.Tensor] = None) -> list:
    """Directions (k, d) as unit-vector .npy files (as the SFVQ authors publish) and a GANSpace-compatible .npz.

    The .npz holds lat_comp (k, 1, d), lat_mean (1, d) and lat_stdev (k,), the fields and layout of GANSpace's
    component files.
    """
    directions = directions.detach().double().cpu()
    unit = directions / directions.norm(dim=1, keepdim=True).clamp_min(1e-30)
    files = []
    for i, v in enumerate(unit):
        path = out / f"{name}_{i:03d}.npy"
        np.save(path, v.float().numpy())
        files.append(path.name)
    stdev = torch.ones(len(unit)) if stdev is None else stdev.detach().cpu()
    np.savez(out / f"{name}.npz", lat_comp=unit.float().numpy()[:, None, :],
             lat_mean=mean.detach().float().cpu().numpy().reshape(1, -1), lat_stdev=stdev.float().numpy())
    files.append(f"{name}.npz")
    return files


def basis_method(k: int, width: int) -> str:
    """The local-basis method the commands use: randomized once the sketch (k directions) is at most a quarter of
    the latent width, exact below that (the commands' small default generator sits on this boundary)."""
    return "randomized" if k * 4 <= width else "exact"


@torch.no_grad()
def sample_w(G, n: int, generator: Optional[torch.Generator] = None, device=None) -> torch.Tensor:
    """n W latents f(z), z ~ N(0, I), mapped in chunks of 4096 rows."""
    return torch.cat([G.f(c) for c in G.sample_z(n, generator, device=device).split(4096)])


def warpage_chart(wp, ks, eps, title: str):
    """The warpage line chart: mean distance per k for each eps, random points, the global basis, random subspaces."""
    from .. import viz

    series = {f"local eps={e:g}": [wp.local[k][e].mean for k in ks] for e in eps}
    series["random points"] = [wp.random_points[k].mean for k in ks]
    series["global (GANSpace)"] = [wp.global_[k].mean for k in ks]
    series["random subspaces"] = [wp.random_subspaces[k].mean for k in ks]
    return viz.line_chart(ks, series, title=title, xlabel="k", ylabel="distance")


def write_png(path, img) -> None:
    """A pillow image to ``path`` atomically (``--out`` in messages)."""
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue(), name="--out")


def write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def sefa_weights(generator) -> list:
    """The style-affine weights of a StyleGAN2's modulated convolutions (not ToRGB), as SeFa uses them."""
    from ..models.stylegan2 import StyledLayer

    mods = [m for m in generator.modules() if isinstance(m, StyledLayer)] if isinstance(generator, torch.nn.Module) else []
    return [m.conv.affine.effective()[0] for m in mods]
