"""Test-side StyleGAN2: a canonical random parameter set (NVIDIA names), an independent float64 forward pass that
follows NVIDIA's *reference* (slow-path) semantics — upsample by zero insertion, FIR, then a true convolution,
sample by sample — and writers for rosinality's state-dict layout.  Nothing here imports latentfast."""
import math

import torch
import torch.nn.functional as F

LR = 0.01


def random_params(size=16, w_dim=12, z_dim=10, n_mlp=3, channels=None, seed=0):
    """Dict of NVIDIA-named tensors (float32) of a tiny StyleGAN2 with nontrivial biases and noise strengths."""
    g = torch.Generator().manual_seed(seed)
    rn = lambda *s: torch.randn(*s, generator=g)
    channels = channels or {4: 16, 8: 12, 16: 8, 32: 8}
    P = {}
    dims = [z_dim] + [w_dim] * n_mlp
    for i in range(n_mlp):
        P[f"mapping.fc{i}.weight"] = rn(dims[i + 1], dims[i]) / LR
        P[f"mapping.fc{i}.bias"] = rn(dims[i + 1]) * 0.1 / LR
    P["mapping.w_avg"] = rn(w_dim) * 0.3
    res = [2 ** i for i in range(2, int(math.log2(size)) + 1)]

    def layer(name, cin, cout, r):
        P[f"{name}.weight"] = rn(cout, cin, 3, 3)
        P[f"{name}.bias"] = rn(cout) * 0.2
        P[f"{name}.affine.weight"] = rn(cin, w_dim)
        P[f"{name}.affine.bias"] = 1 + 0.1 * rn(cin)
        P[f"{name}.noise_const"] = rn(r, r)
        P[f"{name}.noise_strength"] = 0.3 * rn(())

    for r in res:
        b = f"synthesis.b{r}"
        if r == 4:
            P[f"{b}.const"] = rn(channels[4], 4, 4)
        else:
            layer(f"{b}.conv0", channels[r // 2], channels[r], r)
        layer(f"{b}.conv1", channels[r], channels[r], r)
        P[f"{b}.torgb.weight"] = rn(3, channels[r], 1, 1)
        P[f"{b}.torgb.bias"] = rn(3) * 0.2
        P[f"{b}.torgb.affine.weight"] = rn(channels[r], w_dim)
        P[f"{b}.torgb.affine.bias"] = 1 + 0.1 * rn(channels[r])
    return P


def fir():
    k = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=torch.float64)
    k = k[:, None] * k[None, :]
    return k / k.sum()


def upfirdn_ref(x, f, up, pad0, pad1, gain):
    """upfirdn2d(x, f, up, padding=[pad0, pad1, pad0, pad1], gain) by definition: zero insertion, pad, convolve."""
    N, C, H, W = x.shape
    if up > 1:
        y = x.new_zeros(N, C, H * up, W * up)
        y[:, :, ::up, ::up] = x
        x = y
    x = F.pad(x, [pad0, pad1, pad0, pad1])
    k = (f * gain).flip([0, 1])[None, None].repeat(C, 1, 1, 1)
    return F.conv2d(x, k, groups=C)


def mapping_ref(P, z, n_mlp):
    x = z.double()
    x = x / torch.sqrt((x ** 2).mean(1, keepdim=True) + 1e-8)
    for i in range(n_mlp):
        W, b = P[f"mapping.fc{i}.weight"].double(), P[f"mapping.fc{i}.bias"].double()
        u = x @ (W * LR / math.sqrt(W.shape[1])).T + b * LR
        x = torch.where(u >= 0, u, 0.2 * u) * math.sqrt(2)
    return x


def _affine(P, name, w):
    A, b = P[f"{name}.affine.weight"].double(), P[f"{name}.affine.bias"].double()
    return w @ (A / math.sqrt(A.shape[1])).T + b


def synthesis_ref(P, ws, size, noise=True):
    """ws (B, num_ws, w_dim) -> images (B, 3, size, size), float64, sample by sample."""
    f = fir()
    out = []
    for wsb in ws.double():
        i, x, img = 0, None, None
        for r in [2 ** k for k in range(2, int(math.log2(size)) + 1)]:
            b = f"synthesis.b{r}"
            names = ([f"{b}.conv1"] if r == 4 else [f"{b}.conv0", f"{b}.conv1"])
            if r == 4:
                x = P[f"{b}.const"].double()[None]
            for name in names:
                s = _affine(P, name, wsb[i])
                Wt = P[f"{name}.weight"].double() * s[None, :, None, None]
                Wt = Wt / torch.sqrt((Wt ** 2).sum([1, 2, 3], keepdim=True) + 1e-8)
                if name.endswith("conv0"):
                    x = upfirdn_ref(x, f, 2, 3, 2, 4.0)
                    x = F.conv2d(x, Wt.flip([2, 3]))
                else:
                    x = F.conv2d(x, Wt, padding=1)
                if noise:
                    x = x + P[f"{name}.noise_const"].double() * P[f"{name}.noise_strength"].double()
                x = x + P[f"{name}.bias"].double()[None, :, None, None]
                x = torch.where(x >= 0, x, 0.2 * x) * math.sqrt(2)
                i += 1
            s = _affine(P, f"{b}.torgb", wsb[i]) / math.sqrt(x.shape[1])
            y = F.conv2d(x, P[f"{b}.torgb.weight"].double() * s[None, :, None, None])
            y = y + P[f"{b}.torgb.bias"].double()[None, :, None, None]
            img = y if img is None else upfirdn_ref(img, f, 2, 2, 1, 4.0) + y
        out.append(img[0])
    return torch.stack(out)


def to_rosinality(P, size, n_mlp):
    """The g_ema state dict rosinality/stylegan2-pytorch would save for these parameters (exact key names)."""
    sd = {}
    for i in range(n_mlp):
        sd[f"style.{i + 1}.weight"] = P[f"mapping.fc{i}.weight"]
        sd[f"style.{i + 1}.bias"] = P[f"mapping.fc{i}.bias"]
    blur = (fir() * 4).float()  # Blur / Upsample buffers carry the factor**2 gain

    def styled(dst, src, noise_idx, up):
        sd[f"{dst}.conv.weight"] = P[f"{src}.weight"][None]
        if up:
            sd[f"{dst}.conv.blur.kernel"] = blur
        sd[f"{dst}.conv.modulation.weight"] = P[f"{src}.affine.weight"]
        sd[f"{dst}.conv.modulation.bias"] = P[f"{src}.affine.bias"]
        sd[f"{dst}.noise.weight"] = P[f"{src}.noise_strength"].reshape(1)
        sd[f"{dst}.activate.bias"] = P[f"{src}.bias"]
        sd[f"noises.noise_{noise_idx}"] = P[f"{src}.noise_const"][None, None]

    def torgb(dst, src, up):
        if up:
            sd[f"{dst}.upsample.kernel"] = blur
        sd[f"{dst}.conv.weight"] = P[f"{src}.weight"][None]
        sd[f"{dst}.conv.modulation.weight"] = P[f"{src}.affine.weight"]
        sd[f"{dst}.conv.modulation.bias"] = P[f"{src}.affine.bias"]
        sd[f"{dst}.bias"] = P[f"{src}.bias"].reshape(1, 3, 1, 1)

    sd["input.input"] = P["synthesis.b4.const"][None]
    styled("conv1", "synthesis.b4.conv1", 0, False)
    torgb("to_rgb1", "synthesis.b4.torgb", False)
    for j, r in enumerate([2 ** k for k in range(3, int(math.log2(size)) + 1)]):
        styled(f"convs.{2 * j}", f"synthesis.b{r}.conv0", 2 * j + 1, True)
        styled(f"convs.{2 * j + 1}", f"synthesis.b{r}.conv1", 2 * j + 2, False)
        torgb(f"to_rgbs.{j}", f"synthesis.b{r}.torgb", True)
    return sd
