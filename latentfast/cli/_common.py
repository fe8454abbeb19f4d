"""Pieces shared by the subcommands: loading a generator and latents, saving directions, charts."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .._io import atomic_write_bytes, check_output


def load_generator_arg(checkpoint: Optional[str], device: str = "cpu"):
    """``--checkpoint`` path, or the embedded default generator when omitted; errors name ``--checkpoint``."""
    if checkpoint:
        from ..models import load_generator

        if not Path(checkpoint).exists():
            raise ValueError(f"--checkpoint: {checkpoint} does not exist")
        try:
            return load_generator(checkpoint, device=device)
        except ValueError as exc:
            raise ValueError(f"--checkpoint: {exc}") from exc
    from ..models.default import load_default_generator

    return load_default_generator(device=device)


_NPY_MAGIC, _ZIP_MAGIC = b"\x93NUMPY", b"PK\x03\x04"


def load_array_arg(path: str, name: str, *, mmap: bool = False):
    """The one array loader of the command: a .npy array or a torch file holding one tensor, told apart by their
    first bytes (not the suffix).  Returns a numpy array (memory-mapped when ``mmap`` and .npy) or a CPU tensor.

    Raises ValueError naming ``name`` and ``path`` for a missing file, a directory, any other kind of file
    (an image, a pickle, text: never unpickled), or an unreadable one.
    """
    p = Path(path)
    if not p.exists():
        raise ValueError(f"{name}: {path} does not exist")
    if not p.is_file():
        raise ValueError(f"{name}: {path} is not a file")
    try:
        with open(p, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise ValueError(f"{name}: cannot read {path}: {exc.strerror}") from exc
    if head.startswith(_NPY_MAGIC):
        try:
            arr = np.load(p, mmap_mode="r" if mmap else None, allow_pickle=False)
        except Exception as exc:
            raise ValueError(f"{name}: {path} is not a readable .npy array "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc
        if arr.dtype == object:
            raise ValueError(f"{name}: {path} holds Python objects; expected a numeric array")
        return arr
    if head.startswith(_ZIP_MAGIC):
        try:
            x = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(f"{name}: {path} is not a tensor file that loads safely (torch.load with "
                             f"weights_only=True refused it: {type(exc).__name__})") from exc
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{name}: {path} holds {type(x).__name__}, expected one tensor")
        return x
    raise ValueError(f"{name}: {path} is not a .npy array or a torch tensor file (it starts with {head!r})")


def _is_floating(x) -> bool:
    return x.is_floating_point() if isinstance(x, torch.Tensor) else np.issubdtype(x.dtype, np.floating)


def _all_finite(x, chunk: int = 1 << 16) -> bool:
    if isinstance(x, torch.Tensor):
        return bool(torch.isfinite(x).all())
    return all(np.isfinite(x[i:i + chunk]).all() for i in range(0, x.shape[0], chunk))  # memory-mapped: in pieces


def load_latents_arg(path: str, name: str = "--latents", *, width: Optional[int] = None, mmap: bool = False):
    """A finite floating (N, D) array (``D == width`` when given).  A float32 tensor, or with ``mmap`` the
    memory-mapped numpy array itself for .npy files (rows are read only when used)."""
    x = load_array_arg(path, name, mmap=mmap)
    if x.ndim != 2 or not _is_floating(x):
        raise ValueError(f"{name}: expected a floating array of shape (N, D) in {path}, got shape "
                         f"{tuple(x.shape)} {x.dtype}")
    if x.shape[0] == 0:
        raise ValueError(f"{name}: {path} holds no rows (shape {tuple(x.shape)})")
    if width is not None and x.shape[1] != width:
        raise ValueError(f"{name}: expected rows of width {width}, got shape {tuple(x.shape)} in {path}")
    if not _all_finite(x):
        raise ValueError(f"{name}: {path} contains NaN or Inf")
    if mmap and isinstance(x, np.ndarray):
        return x
    return (x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))).float()


def load_direction_arg(path: str, width: int, name: str = "--direction") -> torch.Tensor:
    """A unit (width,) float32 direction from a (width,) or (1, width) array; zero, NaN/Inf, other widths or
    ranks are refused naming ``name``."""
    d = load_array_arg(path, name)
    d = d if isinstance(d, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(d))
    if d.dtype == torch.bool or d.is_complex():
        raise ValueError(f"{name}: expected a real vector in {path}, got dtype {d.dtype}")
    if not (d.dim() == 1 or (d.dim() == 2 and d.shape[0] == 1)) or d.shape[-1] != width:
        raise ValueError(f"{name}: expected a vector of shape ({width},) or (1, {width}) in {path}, got shape "
                         f"{tuple(d.shape)}")
    d = d.reshape(-1).double()
    if not torch.isfinite(d).all():
        raise ValueError(f"{name}: {path} contains NaN or Inf")
    norm = d.norm()
    if not norm > 0 or not torch.isfinite(norm):
        raise ValueError(f"{name}: {path} is the zero vector (or too small to normalise); expected a non-zero "
                         f"direction")
    return (d / norm).float()


def load_curve_arg(path: str, name: str = "--curve"):
    """An SFVQ curve file written by ``SFVQ.save``; every failure is one ValueError naming ``name`` and ``path``."""
    from ..sfvq import SFVQ

    p = Path(path)
    if not p.exists():
        raise ValueError(f"{name}: {path} does not exist")
    if not p.is_file():
        raise ValueError(f"{name}: {path} is not a file")
    with open(p, "rb") as fh:
        head = fh.read(4)
    if head != _ZIP_MAGIC:  # SFVQ.save writes torch's zip format; nothing else is unpickled
        raise ValueError(f"{name}: {path} is not a latentfast SFVQ file (it starts with {head!r})")
    try:
        return SFVQ.load(p)
    except ValueError as exc:  # SFVQ.load's message names the path (and never torch's weights_only advice)
        msg = str(exc)
        raise ValueError(f"{name}: {msg[len('path: '):] if msg.startswith('path: ') else msg}") from exc
    except Exception as exc:  # torch's own errors for truncated or foreign files
        raise ValueError(f"{name}: {path} is not a readable latentfast SFVQ file ({type(exc).__name__})") from exc


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


# suffix -> pillow format of the image outputs (JPEG is RGB only: any alpha is dropped)
IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF",
                 ".tiff": "TIFF"}


def check_image_out(path, overwrite: bool, name: str = "--out") -> Path:
    """An image output: its suffix names a format pillow writes, and it passes the output rule."""
    p = check_output(name, path, kind="file", overwrite=overwrite)
    if p.suffix.lower() not in IMAGE_FORMATS:
        raise ValueError(f"{name}: expected an image file name ending in one of {', '.join(IMAGE_FORMATS)}, "
                         f"got {path}")
    return p


def write_image(path, img, overwrite: bool, name: str = "--out") -> None:
    """A pillow image to ``path`` atomically, in the format its suffix names (see :data:`IMAGE_FORMATS`)."""
    import io

    fmt = IMAGE_FORMATS[check_image_out(path, overwrite, name).suffix.lower()]
    buf = io.BytesIO()
    (img.convert("RGB") if fmt == "JPEG" else img).save(buf, format=fmt)
    atomic_write_bytes(path, buf.getvalue(), overwrite=overwrite, name=name)


def write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def sefa_weights(generator) -> list:
    """The style-affine weights of a StyleGAN2's modulated convolutions (not ToRGB), as SeFa uses them."""
    from ..models.stylegan2 import StyledLayer

    mods = [m for m in generator.modules() if isinstance(m, StyledLayer)] if isinstance(generator, torch.nn.Module) else []
    return [m.conv.affine.effective()[0] for m in mods]
