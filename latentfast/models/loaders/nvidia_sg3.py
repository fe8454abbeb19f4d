"""NVIDIA stylegan3 synthesis networks (``training/networks_stylegan3.py``: ``input`` + layers ``L0_..``..``LN_..``)
from their unpickled :class:`PersistentStub` state -> :class:`~latentfast.models.StyleGAN3Generator`.

Everything a layer computes is read from what the pickle stores (filters, up/down factors, padding, sizes,
conv_clamp, magnitude_ema), so T and R configs, any resolution, channel count and layer count load alike."""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import torch

from .._safe_pickle import PersistentStub
from ..stylegan2 import MappingNetwork
from ..stylegan3 import StyleGAN3Generator, SynthesisInput3, SynthesisLayer3, SynthesisNetwork3
from ._common import _fill
from .nvidia_pkl import _attr, _fc_into, _stub

Tensor = torch.Tensor


def _size(value, source: str, where: str) -> tuple:
    """NVIDIA's ``np.broadcast_to(size, [2])`` (an ndarray [width, height]) -> (width, height) ints."""
    a = np.asarray(value).reshape(-1)
    if a.size not in (1, 2) or a.dtype.kind not in "iuf" or (a <= 0).any():
        raise ValueError(f"{source}: {where}: expected a positive size [width, height], got {value!r}")
    return int(a[0]), int(a[-1])


def _filter(value, source: str, where: str) -> Optional[Tensor]:
    if value is None:
        return None
    if not isinstance(value, Tensor) or value.dim() not in (1, 2) or not value.is_floating_point():
        raise ValueError(f"{source}: {where}: expected None or a 1-D/2-D float FIR filter, got "
                         f"{tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__}")
    return value


def _taps(f: Optional[Tensor]) -> tuple:
    return (1, 1) if f is None else (f.shape[-1], f.shape[0])


def load_stylegan3(G: PersistentStub, S: PersistentStub, mapping: MappingNetwork, w_avg: Optional[Tensor],
                   num_ws: int, source: str) -> StyleGAN3Generator:
    """Build a :class:`StyleGAN3Generator` from NVIDIA's Generator ``G`` / SynthesisNetwork ``S`` stubs."""
    res = int(_attr(G, "img_resolution", source, "G_ema"))
    img_channels = int(_attr(G, "img_channels", source, "G_ema"))
    I = _stub(_attr(S, "input", source, "G_ema.synthesis"), "SynthesisInput", source, "synthesis.input")
    w_dim = int(_attr(I, "w_dim", source, "synthesis.input"))
    inp = SynthesisInput3(w_dim, int(_attr(I, "channels", source, "synthesis.input")),
                          _size(_attr(I, "size", source, "synthesis.input"), source, "synthesis.input.size"),
                          float(_attr(I, "sampling_rate", source, "synthesis.input")),
                          float(_attr(I, "bandwidth", source, "synthesis.input")))
    t: Dict[str, Tensor] = {f"input.{k}": _attr(I, k, source, "synthesis.input")
                            for k in ("weight", "transform", "freqs", "phases")}
    _fc_into(inp.affine, _stub(_attr(I, "affine", source, "synthesis.input"), "FullyConnectedLayer", source,
                               "synthesis.input.affine"), "input.affine", t, source, "synthesis.input.affine")
    names = _attr(S, "layer_names", source, "G_ema.synthesis")
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names) or not names:
        raise ValueError(f"{source}: G_ema.synthesis.layer_names: expected a list of layer names, got {names!r}")
    layers, size, ch = [], inp.size, inp.channels
    for i, name in enumerate(names):
        where = f"synthesis.{name}"
        L = _stub(_attr(S, name, source, "G_ema.synthesis"), "SynthesisLayer", source, where)
        get = lambda k: _attr(L, k, source, where)  # noqa: E731
        in_size, out_size = _size(get("in_size"), source, where + ".in_size"), _size(get("out_size"), source,
                                                                                    where + ".out_size")
        if (int(get("in_channels")), in_size) != (ch, size):
            raise ValueError(f"{source}: {where}: expected input {ch} channels of size {size} (the previous "
                             f"layer's output), got {int(get('in_channels'))} of size {in_size}")
        fu, fd = _filter(get("up_filter"), source, where + ".up_filter"), _filter(get("down_filter"), source,
                                                                                  where + ".down_filter")
        up, down, k = int(get("up_factor")), int(get("down_factor")), int(get("conv_kernel"))
        pad = [int(p) for p in get("padding")]
        if up < 1 or down < 1 or len(pad) != 4:
            raise ValueError(f"{source}: {where}: expected up_factor, down_factor >= 1 and 4 paddings, got "
                             f"up_factor={up}, down_factor={down}, padding={pad}")
        (fuw, fuh), (fdw, fdh) = _taps(fu), _taps(fd)
        got = ((in_size[0] + k - 1) * up + pad[0] + pad[1] - (fuw - 1) - (fdw - 1) + down - 1) // down, \
              ((in_size[1] + k - 1) * up + pad[2] + pad[3] - (fuh - 1) - (fdh - 1) + down - 1) // down
        if got != out_size:
            raise ValueError(f"{source}: {where}: its filters, up/down factors and padding give output size {got}, "
                             f"but out_size is {out_size}; this layer configuration is not supported")
        clamp = get("conv_clamp")
        layer = SynthesisLayer3(w_dim, ch, int(get("out_channels")), k, is_torgb=bool(get("is_torgb")), up=up,
                                down=down, padding=pad, up_filter=fu, down_filter=fd,
                                conv_clamp=None if clamp is None else float(clamp), out_size=out_size)
        p = f"layers.{i}"
        t.update({f"{p}.weight": get("weight"), f"{p}.bias": get("bias"), f"{p}.magnitude_ema": get("magnitude_ema")})
        if fu is not None:
            t[f"{p}.up_filter"] = fu
        if fd is not None:
            t[f"{p}.down_filter"] = fd
        _fc_into(layer.affine, _stub(get("affine"), "FullyConnectedLayer", source, where + ".affine"),
                 f"{p}.affine", t, source, where + ".affine")
        layers.append(layer)
        size, ch = out_size, layer.out_channels
    if not layers[-1].is_torgb or (ch, size) != (img_channels, (res, res)):
        raise ValueError(f"{source}: synthesis.{names[-1]}: expected a ToRGB layer with {img_channels} channels of "
                         f"size {(res, res)}, got {ch} channels of size {size}")
    synthesis = SynthesisNetwork3(inp, layers, size=res, img_channels=img_channels,
                                  output_scale=float(_attr(S, "output_scale", source, "G_ema.synthesis")))
    _fill(synthesis, t, source)
    if synthesis.num_ws != num_ws:
        raise ValueError(f"{source}: G_ema.num_ws: expected {synthesis.num_ws} for {len(layers)} synthesis layers, "
                         f"got {num_ws}")
    Gm = StyleGAN3Generator(mapping, synthesis, w_avg)
    Gm.source_format = "nvidia-stylegan3"
    return Gm.eval()
