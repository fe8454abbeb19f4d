"""rosinality/stylegan2-pytorch ``.pt`` checkpoints (a torch.save dict with ``"g_ema"``, optionally ``"latent_avg"``
and ``"args"``) -> :class:`~latentfast.models.StyleGAN2Generator`."""
from __future__ import annotations

import re
from typing import Dict

import torch

from ..stylegan2 import StyleGAN2Generator
from ._common import _fill, _fir_from

Tensor = torch.Tensor


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


