"""NVIDIA stylegan2-ada-pytorch / stylegan3 network pickles, already unpickled by the restricted unpickler of
:mod:`latentfast.models._safe_pickle` (every network object is a :class:`PersistentStub`)."""
from __future__ import annotations

import math
from typing import Dict, Optional

import torch
from torch import nn

from .._safe_pickle import PersistentStub
from ..adapters import Generator
from ..stylegan2 import MappingNetwork, StyleGAN2Generator, StyleMappingMixin
from ._common import _fill, _fir_from

Tensor = torch.Tensor


def _attr(stub, name: str, source: str, where: str):
    try:
        return getattr(stub, name)
    except AttributeError:
        raise ValueError(f"{source}: {where}: expected attribute {name!r} of NVIDIA's "
                         f"{getattr(stub, 'class_name', type(stub).__name__)}, not found") from None


def _stub(obj, cls: str, source: str, where: str) -> PersistentStub:
    if not isinstance(obj, PersistentStub) or obj.class_name != cls:
        seen = obj.class_name if isinstance(obj, PersistentStub) else type(obj).__name__
        raise ValueError(f"{source}: {where}: expected an NVIDIA {cls}, got {seen}")
    return obj


def _fc_into(layer, stub: PersistentStub, prefix: str, t: Dict[str, Tensor], source: str, where: str):
    t[f"{prefix}.weight"] = _attr(stub, "weight", source, where)
    b = _attr(stub, "bias", source, where)
    if b is None:
        raise ValueError(f"{source}: {where}: expected a bias, got None")
    t[f"{prefix}.bias"] = b
    layer.weight_gain = float(_attr(stub, "weight_gain", source, where))
    layer.bias_gain = float(_attr(stub, "bias_gain", source, where))


class MappingOnlyGenerator(StyleMappingMixin, nn.Module, Generator):
    """The mapping network of an NVIDIA generator loaded with ``mapping_only=True``: ``f``, ``mlp_spec``, classes,
    ``w_avg`` and ``truncate`` work (:class:`StyleMappingMixin`); ``synthesize`` raises NotImplementedError."""

    def __init__(self, mapping: MappingNetwork, w_avg: Optional[Tensor], num_ws: int, reason: str):
        super().__init__()
        self.mapping, self.num_ws, self.z_dim, self.reason = mapping, num_ws, mapping.z_dim, reason
        self.w_dim = mapping.w_dim
        self.register_buffer("w_avg", w_avg.clone() if w_avg is not None else torch.zeros(mapping.w_dim))
        self.has_w_avg = w_avg is not None

    def synthesize(self, latent: Tensor) -> Tensor:
        raise NotImplementedError(f"synthesize: {self.reason}")


def _nvidia_mapping(M: PersistentStub, source: str):
    """NVIDIA's MappingNetwork (stylegan2-ada and stylegan3 share it) -> (:class:`MappingNetwork`, w_avg or None)."""
    _stub(M, "MappingNetwork", source, "G_ema.mapping")
    z_dim, c_dim, w_dim = (int(_attr(M, k, source, "G_ema.mapping")) for k in ("z_dim", "c_dim", "w_dim"))
    n = int(_attr(M, "num_layers", source, "G_ema.mapping"))
    fcs = [_stub(_attr(M, f"fc{i}", source, "G_ema.mapping"), "FullyConnectedLayer", source, f"mapping.fc{i}")
           for i in range(n)]
    for i, fc in enumerate(fcs):
        act = _attr(fc, "activation", source, f"mapping.fc{i}")
        if act != "lrelu":
            raise ValueError(f"{source}: mapping.fc{i}: activation {act!r} is not supported; expected 'lrelu'")
    embed = _stub(_attr(M, "embed", source, "G_ema.mapping"), "FullyConnectedLayer", source, "mapping.embed") \
        if c_dim else None
    if embed is not None and _attr(embed, "activation", source, "mapping.embed") != "linear":
        raise ValueError(f"{source}: mapping.embed: activation {embed.activation!r} is not supported; expected "
                         f"'linear'")
    hidden = fcs[0].weight.shape[0] if n > 1 else None
    mapping = MappingNetwork(z_dim, w_dim, n, hidden_dim=hidden, c_dim=c_dim,
                             embed_dim=embed.weight.shape[0] if embed is not None else None)
    t: Dict[str, Tensor] = {}
    for i, fc in enumerate(fcs):
        _fc_into(mapping.layers[i], fc, f"layers.{i}", t, source, f"mapping.fc{i}")
    if embed is not None:
        _fc_into(mapping.embed, embed, "embed", t, source, "mapping.embed")
    _fill(mapping, t, source + " (mapping)")
    w_avg = M.w_avg if M.has("w_avg") and isinstance(M.w_avg, Tensor) else None
    return mapping, w_avg


def load_nvidia_pickle(data, source: str = "pickle", *, mapping_only: bool = False) -> Generator:
    """Build a generator from the unpickled content of an NVIDIA network pickle (a dict with "G_ema").

    StyleGAN2 synthesis networks (blocks ``b4``..``bN``) become a :class:`StyleGAN2Generator`, StyleGAN3 ones
    (layers ``input``, ``L0_...``) a :class:`StyleGAN3Generator`; ``mapping_only=True`` loads the mapping network
    alone (a :class:`MappingOnlyGenerator`) and never looks at the synthesis network."""
    if not isinstance(data, dict) or "G_ema" not in data:
        raise ValueError(f"{source}: expected an NVIDIA network pickle (a dict with 'G_ema')")
    G = _stub(data["G_ema"], "Generator", source, "G_ema")
    mapping, w_avg = _nvidia_mapping(_attr(G, "mapping", source, "G_ema"), source)
    S = _stub(_attr(G, "synthesis", source, "G_ema"), "SynthesisNetwork", source, "G_ema.synthesis")
    num_ws = int(_attr(G, "num_ws", source, "G_ema")) if G.has("num_ws") else int(_attr(S, "num_ws", source, "G_ema"))
    if mapping_only:
        return MappingOnlyGenerator(mapping, w_avg, num_ws,
                                    f"{source} was loaded with mapping_only=True; its synthesis network was not "
                                    f"loaded").eval()
    if isinstance(S.children.get("input"), PersistentStub):
        from .nvidia_sg3 import load_stylegan3
        return load_stylegan3(G, S, mapping, w_avg, num_ws, source)
    res = int(_attr(G, "img_resolution", source, "G_ema"))
    if not isinstance(S.children.get("b4"), PersistentStub):
        raise ValueError(f"{source}: G_ema.synthesis: expected StyleGAN2 blocks b4..b{res} or StyleGAN3 layers "
                         f"(input, L0_...), got children {list(S.children)[:6]}; pass mapping_only=True to load "
                         f"the mapping network alone")

    resolutions = [2 ** i for i in range(2, int(math.log2(res)) + 1)]
    blocks = [_stub(_attr(S, f"b{r}", source, "G_ema.synthesis"), "SynthesisBlock", source, f"synthesis.b{r}")
              for r in resolutions]
    channels, clamp = {}, None
    for r, B in zip(resolutions, blocks):
        arch = _attr(B, "architecture", source, f"synthesis.b{r}")
        if arch != "skip":
            raise ValueError(f"{source}: synthesis.b{r}: architecture {arch!r} is not supported; expected 'skip' "
                             f"(StyleGAN2 config-f); pass mapping_only=True to load the mapping network alone")
        channels[r] = int(_stub(_attr(B, "conv1", source, f"synthesis.b{r}"), "SynthesisLayer", source,
                                f"synthesis.b{r}.conv1").weight.shape[0])
        clamp = _attr(B.conv1, "conv_clamp", source, f"synthesis.b{r}.conv1")
    img_channels = int(_attr(G, "img_channels", source, "G_ema"))
    Gm = StyleGAN2Generator(res, mapping.w_dim, len(mapping.layers), channels=channels, z_dim=mapping.z_dim,
                            c_dim=mapping.c_dim,
                            mapping_hidden_dim=mapping.layers[0].weight.shape[0] if len(mapping.layers) > 1 else None,
                            conv_clamp=None if clamp is None else float(clamp), img_channels=img_channels)
    Gm.mapping = mapping
    t: Dict[str, Tensor] = {f"mapping.{k}": v for k, v in mapping.state_dict().items()}

    def layer(dst: str, L: PersistentStub, where: str, up: bool):
        _stub(L, "SynthesisLayer", source, where)
        if _attr(L, "activation", source, where) != "lrelu":
            raise ValueError(f"{source}: {where}: expected activation 'lrelu', got {L.activation!r}")
        if int(_attr(L, "up", source, where)) != (2 if up else 1):
            raise ValueError(f"{source}: {where}: expected up={2 if up else 1}, got {L.up}")
        w = _attr(L, "weight", source, where)
        if w.dim() != 4 or w.shape[2:] != (3, 3):
            raise ValueError(f"{source}: {where}: expected a 3x3 weight, got shape {tuple(w.shape)}")
        t[f"{dst}.conv.weight"] = w
        _fc_into(Gm.get_submodule(f"{dst}.conv.affine"), _stub(_attr(L, "affine", source, where),
                 "FullyConnectedLayer", source, where + ".affine"), f"{dst}.conv.affine", t, source, where + ".affine")
        t[f"{dst}.bias"] = _attr(L, "bias", source, where)
        r = int(_attr(L, "resolution", source, where))
        if _attr(L, "use_noise", source, where):
            t[f"{dst}.noise_const"] = _attr(L, "noise_const", source, where)
            t[f"{dst}.noise_strength"] = _attr(L, "noise_strength", source, where).reshape(())
        else:
            t[f"{dst}.noise_const"] = torch.zeros(r, r)
            t[f"{dst}.noise_strength"] = torch.zeros(())
        if up:
            t[f"{dst}.conv.kernel"] = _fir_from(_attr(L, "resample_filter", source, where), source, where)

    for j, (r, B) in enumerate(zip(resolutions, blocks)):
        dst, where = f"synthesis.blocks.{j}", f"synthesis.b{r}"
        filt = _fir_from(_attr(B, "resample_filter", source, where), source, where + ".resample_filter")
        t[f"{dst}.kernel"] = filt
        if j == 0:
            t[f"{dst}.const"] = _attr(B, "const", source, where)
        else:
            layer(f"{dst}.conv0", _attr(B, "conv0", source, where), where + ".conv0", True)
        layer(f"{dst}.conv1", B.conv1, where + ".conv1", False)
        R = _stub(_attr(B, "torgb", source, where), "ToRGBLayer", source, where + ".torgb")
        t[f"{dst}.torgb.conv.weight"] = _attr(R, "weight", source, where + ".torgb")
        t[f"{dst}.torgb.bias"] = _attr(R, "bias", source, where + ".torgb")
        _fc_into(Gm.get_submodule(f"{dst}.torgb.conv.affine"), _stub(_attr(R, "affine", source, where),
                 "FullyConnectedLayer", source, where + ".torgb.affine"), f"{dst}.torgb.conv.affine", t, source,
                 where + ".torgb.affine")
    t["w_avg"] = w_avg if w_avg is not None else torch.zeros(mapping.w_dim)
    _fill(Gm, t, source)
    if Gm.num_ws != num_ws:
        raise ValueError(f"{source}: G_ema.num_ws: expected {Gm.num_ws} for resolution {res}, got {num_ws}")
    Gm.has_w_avg = w_avg is not None
    Gm.source_format = "nvidia"
    return Gm.eval()


