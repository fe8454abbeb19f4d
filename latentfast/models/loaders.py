"""``load_generator(path)``: read a checkpoint of a known format into a latentfast :class:`Generator`.

Formats, recognised from the file's content (not its name):

* rosinality/stylegan2-pytorch ``.pt``: a torch.save dict with ``"g_ema"`` (state dict: ``style.N.*``,
  ``input.input``, ``conv1.*``, ``to_rgb1.*``, ``convs.N.*``, ``to_rgbs.N.*``, ``noises.noise_N``) and optionally
  ``"latent_avg"`` and ``"args"``; read with ``torch.load(weights_only=True)``.
* NVIDIA stylegan2-ada-pytorch / stylegan3 network pickles (``.pkl`` with ``"G_ema"``): read with the restricted
  unpickler of :mod:`latentfast.models._safe_pickle` (no NVIDIA code is needed or run).  StyleGAN3 synthesis
  networks are not supported: they raise, or with ``mapping_only=True`` the mapping network alone is loaded
  (a :class:`MappingOnlyGenerator` whose ``synthesize`` raises).
* pytorch-pretrained-BigGAN: a directory with ``config.json`` and ``pytorch_model.bin`` (or the ``.bin`` itself
  with ``config.json`` beside it).

Everything that is not one of these — a missing, empty, truncated or foreign file, a pickle that references any
other global — raises ``ValueError`` naming the file and what was expected (``UnsafePickleError``, a ValueError,
for disallowed globals).
"""
from __future__ import annotations

import argparse
import math
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Dict, Optional, Union

import torch
from torch import nn

from ..ops.mlp_jvp.reference import MLPSpec
from ._safe_pickle import TORCH_LEGACY_MAGIC, PersistentStub, UnsafePickleError, safe_load_pickle
from .adapters import Generator
from .biggan import BigGANConfig, BigGANGenerator
from .stylegan2 import MappingNetwork, StyleGAN2Generator

Tensor = torch.Tensor

__all__ = ["load_generator", "load_rosinality", "load_nvidia_pickle", "load_biggan", "MappingOnlyGenerator",
           "UnsafePickleError"]

PathLike = Union[str, os.PathLike]


# ---------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------
def _torch_load(path: Path):
    """torch.load(weights_only=True); argparse.Namespace (rosinality's saved training args) is allowed too."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafePickleError(f"{path}: torch.load(weights_only=True) refused the file: {e}") from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError) as e:
        raise ValueError(f"{path}: expected a torch checkpoint, but it is truncated or corrupt "
                         f"({type(e).__name__}: {str(e)[:300]})") from e


def _fill(model: nn.Module, tensors: Dict[str, Tensor], source: str) -> None:
    """Copy tensors into model by name; every entry of the model's state dict must be given, shapes must agree."""
    own = model.state_dict()
    missing = [k for k in own if k not in tensors]
    extra = [k for k in tensors if k not in own]
    if missing or extra:
        raise ValueError(f"{source}: checkpoint does not match the inferred architecture: missing {missing[:8]}, "
                         f"unexpected {extra[:8]}")
    for k, v in tensors.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise ValueError(f"{source}: tensor for {k!r}: expected shape {tuple(own[k].shape)}, "
                             f"got {tuple(v.shape)}")
        if not v.is_floating_point():
            raise ValueError(f"{source}: tensor for {k!r}: expected floating point, got {v.dtype}")
    model.load_state_dict({k: v.detach().to(torch.float32) for k, v in tensors.items()})


def _fir_from(kernel: Tensor, source: str, what: str) -> Tensor:
    k = kernel.detach().to(torch.float32)
    if k.dim() == 1:
        k = torch.outer(k, k)
    if k.dim() != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"{source}: {what}: expected a square FIR kernel, got shape {tuple(kernel.shape)}")
    return k / k.sum()


# ---------------------------------------------------------------------------------------------------------------
# rosinality/stylegan2-pytorch
# ---------------------------------------------------------------------------------------------------------------
def load_rosinality(ckpt: dict, source: str = "checkpoint") -> StyleGAN2Generator:
    """Build a :class:`StyleGAN2Generator` from a rosinality checkpoint dict (with "g_ema")."""
    sd = ckpt["g_ema"]
    if not isinstance(sd, dict) or not all(isinstance(v, Tensor) for v in sd.values()):
        raise ValueError(f"{source}: 'g_ema': expected a state dict of tensors, got {type(sd).__name__}")
    try:
        n_mlp = max(int(m.group(1)) for k in sd if (m := re.fullmatch(r"style\.(\d+)\.weight", k)))
        n_convs = 1 + max(int(m.group(1)) for k in sd if (m := re.fullmatch(r"convs\.(\d+)\.conv\.weight", k)))
        style_dim = sd["style.1.weight"].shape[0]
        z_dim = sd["style.1.weight"].shape[1]
        channels = {4: sd["conv1.conv.weight"].shape[1]}
        for i in range(n_convs // 2):
            channels[2 ** (i + 3)] = sd[f"convs.{2 * i}.conv.weight"].shape[1]
        up_kernel = sd.get("to_rgbs.0.upsample.kernel")
    except (KeyError, ValueError) as e:
        raise ValueError(f"{source}: 'g_ema' does not look like a rosinality StyleGAN2 generator (expected keys "
                         f"style.N.weight, conv1.conv.weight, convs.N.conv.weight; {type(e).__name__}: {e})") from e
    if n_convs % 2:
        raise ValueError(f"{source}: expected an even number of convs.N layers, got {n_convs}")
    size = 2 ** (n_convs // 2 + 2)
    args = ckpt.get("args")
    lr_mlp = float(getattr(args, "lr_mlp", 0.01)) if args is not None else 0.01
    kernel = _fir_from(up_kernel, source, "to_rgbs.0.upsample.kernel") if up_kernel is not None else None
    G = StyleGAN2Generator(size, style_dim, n_mlp, channels=channels, z_dim=z_dim, lr_mlp=lr_mlp,
                           blur_kernel=(1, 3, 3, 1))
    t: Dict[str, Tensor] = {}
    for i in range(n_mlp):
        t[f"mapping.layers.{i}.weight"] = sd[f"style.{i + 1}.weight"]
        t[f"mapping.layers.{i}.bias"] = sd[f"style.{i + 1}.bias"]

    def styled(dst: str, src: str, noise_idx: int, up: bool):
        t[f"{dst}.conv.weight"] = sd[f"{src}.conv.weight"][0]
        t[f"{dst}.conv.affine.weight"] = sd[f"{src}.conv.modulation.weight"]
        t[f"{dst}.conv.affine.bias"] = sd[f"{src}.conv.modulation.bias"]
        t[f"{dst}.noise_strength"] = sd[f"{src}.noise.weight"].reshape(())
        t[f"{dst}.bias"] = sd[f"{src}.activate.bias"]
        t[f"{dst}.noise_const"] = sd[f"noises.noise_{noise_idx}"][0, 0]
        if up:
            blur = sd.get(f"{src}.conv.blur.kernel")
            t[f"{dst}.conv.kernel"] = _fir_from(blur, source, f"{src}.conv.blur.kernel") if blur is not None \
                else G.state_dict()[f"{dst}.conv.kernel"]

    def torgb(dst: str, src: str):
        t[f"{dst}.conv.weight"] = sd[f"{src}.conv.weight"][0]
        t[f"{dst}.conv.affine.weight"] = sd[f"{src}.conv.modulation.weight"]
        t[f"{dst}.conv.affine.bias"] = sd[f"{src}.conv.modulation.bias"]
        t[f"{dst}.bias"] = sd[f"{src}.bias"].reshape(-1)

    try:
        t["synthesis.blocks.0.const"] = sd["input.input"][0]
        styled("synthesis.blocks.0.conv1", "conv1", 0, False)
        torgb("synthesis.blocks.0.torgb", "to_rgb1")
        for j in range(1, n_convs // 2 + 1):
            b = f"synthesis.blocks.{j}"
            styled(f"{b}.conv0", f"convs.{2 * j - 2}", 2 * j - 1, True)
            styled(f"{b}.conv1", f"convs.{2 * j - 1}", 2 * j, False)
            torgb(f"{b}.torgb", f"to_rgbs.{j - 1}")
        for j in range(n_convs // 2 + 1):
            t[f"synthesis.blocks.{j}.kernel"] = kernel if kernel is not None else G.state_dict()[
                f"synthesis.blocks.{j}.kernel"]
    except KeyError as e:
        raise ValueError(f"{source}: 'g_ema' is missing key {e} of a rosinality StyleGAN2 generator of size "
                         f"{size}") from None
    latent_avg = ckpt.get("latent_avg")
    t["w_avg"] = latent_avg.reshape(-1) if isinstance(latent_avg, Tensor) else torch.zeros(style_dim)
    _fill(G, t, source)
    G.has_w_avg = isinstance(latent_avg, Tensor)
    G.source_format = "rosinality"
    return G.eval()


# ---------------------------------------------------------------------------------------------------------------
# NVIDIA stylegan2-ada-pytorch / stylegan3
# ---------------------------------------------------------------------------------------------------------------
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


class MappingOnlyGenerator(nn.Module, Generator):
    """The mapping network of a generator whose synthesis network is not supported (StyleGAN3): ``f`` and
    ``mlp_spec`` work; ``synthesize`` raises NotImplementedError naming the reason."""

    def __init__(self, mapping: MappingNetwork, w_avg: Tensor, num_ws: int, reason: str):
        super().__init__()
        self.mapping, self.num_ws, self.z_dim, self.reason = mapping, num_ws, mapping.z_dim, reason
        self.register_buffer("w_avg", w_avg.clone())

    def f(self, z: Tensor) -> Tensor:
        return self.mapping(z)

    def mlp_spec(self) -> MLPSpec:
        return self.mapping.mlp_spec()

    def synthesize(self, latent: Tensor) -> Tensor:
        raise NotImplementedError(f"synthesize: {self.reason}")


def _nvidia_mapping(M: PersistentStub, source: str):
    z_dim, c_dim, w_dim = (int(_attr(M, k, source, "G_ema.mapping")) for k in ("z_dim", "c_dim", "w_dim"))
    if c_dim:
        raise ValueError(f"{source}: G_ema.mapping: class-conditional mapping networks (c_dim={c_dim}) are not "
                         f"supported; expected c_dim=0")
    n = int(_attr(M, "num_layers", source, "G_ema.mapping"))
    fcs = [_stub(_attr(M, f"fc{i}", source, "G_ema.mapping"), "FullyConnectedLayer", source, f"mapping.fc{i}")
           for i in range(n)]
    for i, fc in enumerate(fcs):
        act = _attr(fc, "activation", source, f"mapping.fc{i}")
        if act != "lrelu":
            raise ValueError(f"{source}: mapping.fc{i}: expected activation 'lrelu', got {act!r}")
    hidden = fcs[0].weight.shape[0] if n > 1 else None
    mapping = MappingNetwork(z_dim, w_dim, n, hidden_dim=hidden)
    t: Dict[str, Tensor] = {}
    for i, fc in enumerate(fcs):
        _fc_into(mapping.layers[i], fc, f"layers.{i}", t, source, f"mapping.fc{i}")
    _fill(mapping, t, source + " (mapping)")
    w_avg = M.w_avg if M.has("w_avg") and isinstance(M.w_avg, Tensor) else None
    return mapping, w_avg


def load_nvidia_pickle(data, source: str = "pickle", *, mapping_only: bool = False) -> Generator:
    """Build a generator from the unpickled content of an NVIDIA network pickle (a dict with "G_ema")."""
    G = _stub(data["G_ema"], "Generator", source, "G_ema")
    M = _attr(G, "mapping", source, "G_ema")
    S = _attr(G, "synthesis", source, "G_ema")
    _stub(M, "MappingNetwork", source, "G_ema.mapping")
    _stub(S, "SynthesisNetwork", source, "G_ema.synthesis")
    mapping, w_avg = _nvidia_mapping(M, source)
    res = int(_attr(G, "img_resolution", source, "G_ema"))
    num_ws = int(_attr(G, "num_ws", source, "G_ema")) if G.has("num_ws") else int(_attr(S, "num_ws", source, "G_ema"))
    if not isinstance(S.children.get("b4"), PersistentStub):
        layers = [k for k in S.children][:4]
        reason = (f"{source}: synthesis network of type {S.class_name} with layers {layers}... (StyleGAN3) is not "
                  f"supported; only StyleGAN2 synthesis (blocks b4..b{res}) is")
        if not mapping_only:
            raise ValueError(reason + "; pass mapping_only=True to load the mapping network alone")
        return MappingOnlyGenerator(mapping, w_avg if w_avg is not None else torch.zeros(mapping.w_dim),
                                    num_ws, reason).eval()

    resolutions = [2 ** i for i in range(2, int(math.log2(res)) + 1)]
    blocks = [_stub(_attr(S, f"b{r}", source, "G_ema.synthesis"), "SynthesisBlock", source, f"synthesis.b{r}")
              for r in resolutions]
    channels, clamp = {}, None
    for r, B in zip(resolutions, blocks):
        arch = _attr(B, "architecture", source, f"synthesis.b{r}")
        if arch != "skip":
            raise ValueError(f"{source}: synthesis.b{r}: architecture {arch!r} is not supported; expected 'skip' "
                             f"(StyleGAN2 config-f)")
        channels[r] = int(_stub(_attr(B, "conv1", source, f"synthesis.b{r}"), "SynthesisLayer", source,
                                f"synthesis.b{r}.conv1").weight.shape[0])
        clamp = _attr(B.conv1, "conv_clamp", source, f"synthesis.b{r}.conv1")
    img_channels = int(_attr(G, "img_channels", source, "G_ema"))
    Gm = StyleGAN2Generator(res, mapping.w_dim, len(mapping.layers), channels=channels, z_dim=mapping.z_dim,
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


# ---------------------------------------------------------------------------------------------------------------
# BigGAN
# ---------------------------------------------------------------------------------------------------------------
def load_biggan(state_dict: dict, config: Union[BigGANConfig, dict], source: str = "checkpoint",
                **kwargs) -> BigGANGenerator:
    """Build a :class:`BigGANGenerator` from a pytorch-pretrained-BigGAN state dict and config."""
    cfg = config if isinstance(config, BigGANConfig) else BigGANConfig(**config)
    G = BigGANGenerator(cfg, **kwargs)
    _fill(G, {k: v for k, v in state_dict.items() if k != "class_vector"} | {"class_vector": G.class_vector},
          source)
    G.source_format = "biggan"
    return G.eval()


# ---------------------------------------------------------------------------------------------------------------
# dispatch
# ---------------------------------------------------------------------------------------------------------------
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
    mapping_only: for StyleGAN3 pickles, return a :class:`MappingOnlyGenerator` instead of raising.
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
