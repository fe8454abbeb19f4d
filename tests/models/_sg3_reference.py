"""Test-side StyleGAN3: network classes that pickle like NVIDIA's ``training/networks_stylegan3.py`` (same class
names, constructor attributes and state: numpy size arrays, numpy float64 cutoffs and gains, designed Kaiser / radial
filters, EasyDict kwargs) and an independent float64 forward pass, sample by sample, written from the paper's
definitions (explicit sampling grid, zero insertion, 2-D filter kernels, convolution then subsampling).
Nothing here imports latentfast."""
import math

import numpy as np
import scipy.signal
import scipy.special
import torch
import torch.nn.functional as F

from . import _fake_nvidia as nv

P_ = torch.nn.Parameter


@nv.persistent_class
class FullyConnectedLayer(torch.nn.Module):
    def __init__(self, in_features, out_features, activation="linear", bias=True, lr_multiplier=1, weight_init=1,
                 bias_init=0):
        super().__init__()
        self.in_features, self.out_features, self.activation = in_features, out_features, activation
        self.weight = P_(torch.randn([out_features, in_features]) * (weight_init / lr_multiplier))
        b = np.broadcast_to(np.asarray(bias_init, dtype=np.float32), [out_features])
        self.bias = P_(torch.from_numpy(b / lr_multiplier)) if bias else None
        self.weight_gain = lr_multiplier / np.sqrt(in_features)
        self.bias_gain = lr_multiplier


@nv.persistent_class
class MappingNetwork(torch.nn.Module):
    def __init__(self, z_dim, c_dim, w_dim, num_ws, num_layers=2, lr_multiplier=0.01, w_avg_beta=0.998):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers, self.w_avg_beta = num_layers, w_avg_beta
        self.embed = FullyConnectedLayer(c_dim, w_dim) if c_dim > 0 else None
        dims = [z_dim + (w_dim if c_dim > 0 else 0)] + [w_dim] * num_layers
        for i in range(num_layers):
            setattr(self, f"fc{i}", FullyConnectedLayer(dims[i], dims[i + 1], activation="lrelu",
                                                        lr_multiplier=lr_multiplier))
        self.register_buffer("w_avg", torch.zeros([w_dim]))


@nv.persistent_class
class SynthesisInput(torch.nn.Module):
    def __init__(self, w_dim, channels, size, sampling_rate, bandwidth):
        super().__init__()
        self.w_dim, self.channels = w_dim, channels
        self.size = np.broadcast_to(np.asarray(size), [2])
        self.sampling_rate, self.bandwidth = sampling_rate, bandwidth
        f = torch.randn([channels, 2])
        r = f.square().sum(1, keepdim=True).sqrt()
        f = f / (r * r.square().exp().pow(0.25)) * bandwidth
        self.weight = P_(torch.randn([channels, channels]))
        self.affine = FullyConnectedLayer(w_dim, 4, weight_init=0, bias_init=[1, 0, 0, 0])
        self.register_buffer("transform", torch.eye(3, 3))
        self.register_buffer("freqs", f.float())
        self.register_buffer("phases", torch.rand([channels]) - 0.5)


def lowpass(numtaps, cutoff, width, fs, radial=False):
    if numtaps == 1:
        return None
    if not radial:
        return torch.as_tensor(scipy.signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs),
                               dtype=torch.float32)
    t = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(t, t))
    f = scipy.special.j1(2 * cutoff * np.pi * r) / (np.pi * r)
    beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(numtaps, width / (fs / 2)))
    win = np.kaiser(numtaps, beta)
    f = f * np.outer(win, win)
    return torch.as_tensor(f / f.sum(), dtype=torch.float32)


@nv.persistent_class
class SynthesisLayer(torch.nn.Module):
    def __init__(self, w_dim, is_torgb, is_critically_sampled, use_fp16, in_channels, out_channels, in_size, out_size,
                 in_sampling_rate, out_sampling_rate, in_cutoff, out_cutoff, in_half_width, out_half_width,
                 conv_kernel=3, filter_size=6, lrelu_upsampling=2, use_radial_filters=False, conv_clamp=256,
                 magnitude_ema_beta=0.999):
        super().__init__()
        self.w_dim, self.is_torgb, self.is_critically_sampled, self.use_fp16 = (w_dim, is_torgb,
                                                                                 is_critically_sampled, use_fp16)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.in_size = np.broadcast_to(np.asarray(in_size), [2])
        self.out_size = np.broadcast_to(np.asarray(out_size), [2])
        self.in_sampling_rate, self.out_sampling_rate = in_sampling_rate, out_sampling_rate
        self.tmp_sampling_rate = max(in_sampling_rate, out_sampling_rate) * (1 if is_torgb else lrelu_upsampling)
        self.in_cutoff, self.out_cutoff, self.in_half_width, self.out_half_width = (in_cutoff, out_cutoff,
                                                                                     in_half_width, out_half_width)
        self.conv_kernel = 1 if is_torgb else conv_kernel
        self.conv_clamp, self.magnitude_ema_beta = conv_clamp, magnitude_ema_beta
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = P_(torch.randn([out_channels, in_channels, self.conv_kernel, self.conv_kernel]))
        self.bias = P_(torch.zeros([out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))
        self.up_factor = int(np.rint(self.tmp_sampling_rate / in_sampling_rate))
        self.up_taps = filter_size * self.up_factor if self.up_factor > 1 and not is_torgb else 1
        self.register_buffer("up_filter", lowpass(self.up_taps, in_cutoff, in_half_width * 2, self.tmp_sampling_rate))
        self.down_factor = int(np.rint(self.tmp_sampling_rate / out_sampling_rate))
        self.down_taps = filter_size * self.down_factor if self.down_factor > 1 and not is_torgb else 1
        self.down_radial = use_radial_filters and not is_critically_sampled
        self.register_buffer("down_filter", lowpass(self.down_taps, out_cutoff, out_half_width * 2,
                                                    self.tmp_sampling_rate, self.down_radial))
        total = (self.out_size - 1) * self.down_factor + 1 - (self.in_size + self.conv_kernel - 1) * self.up_factor \
            + self.up_taps + self.down_taps - 2
        lo = (total + self.up_factor) // 2
        hi = total - lo
        self.padding = [int(lo[0]), int(hi[0]), int(lo[1]), int(hi[1])]


@nv.persistent_class
class SynthesisNetwork(torch.nn.Module):
    def __init__(self, w_dim, img_resolution, img_channels, channel_base=32768, channel_max=512, num_layers=14,
                 num_critical=2, first_cutoff=2, first_stopband=2 ** 2.1, last_stopband_rel=2 ** 0.3, margin_size=10,
                 output_scale=0.25, num_fp16_res=4, **layer_kwargs):
        super().__init__()
        self.w_dim, self.num_ws, self.img_resolution, self.img_channels = w_dim, num_layers + 2, img_resolution, \
            img_channels
        self.num_layers, self.num_critical, self.margin_size = num_layers, num_critical, margin_size
        self.output_scale, self.num_fp16_res = output_scale, num_fp16_res
        e = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
        cut = first_cutoff * (img_resolution / 2 / first_cutoff) ** e
        stop = first_stopband * (img_resolution / 2 * last_stopband_rel / first_stopband) ** e
        sr = np.exp2(np.ceil(np.log2(np.minimum(stop * 2, img_resolution))))
        hw = np.maximum(stop, sr / 2) - cut
        sizes = sr + margin_size * 2
        sizes[-2:] = img_resolution
        ch = np.rint(np.minimum((channel_base / 2) / cut, channel_max))
        ch[-1] = img_channels
        self.input = SynthesisInput(w_dim, int(ch[0]), int(sizes[0]), sr[0], cut[0])
        self.layer_names = []
        for i in range(num_layers + 1):
            p = max(i - 1, 0)
            layer = SynthesisLayer(w_dim, i == num_layers, i >= num_layers - num_critical,
                                   sr[i] * 2 ** num_fp16_res > img_resolution, int(ch[p]), int(ch[i]), int(sizes[p]),
                                   int(sizes[i]), int(sr[p]), int(sr[i]), cut[p], cut[i], hw[p], hw[i], **layer_kwargs)
            name = f"L{i}_{layer.out_size[0]}_{layer.out_channels}"
            setattr(self, name, layer)
            self.layer_names.append(name)


@nv.persistent_class
class Generator(torch.nn.Module):
    def __init__(self, z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs={}, **synthesis_kwargs):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                          **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **mapping_kwargs)


def build(cfg="T", res=16, z_dim=8, w_dim=12, c_dim=0, mapping_layers=2, num_layers=4, num_critical=2,
          channel_base=128, channel_max=16, margin_size=3, num_fp16_res=2, conv_clamp=256, seed=0, transform=None):
    """A random NVIDIA-layout StyleGAN3 Generator (config "T" or "R", as NVIDIA's train.py sets them up) with
    nontrivial biases, magnitude EMAs, input affine and w_avg."""
    torch.manual_seed(seed)
    kw = dict(conv_kernel=3, use_radial_filters=False)
    if cfg == "R":
        kw = dict(conv_kernel=1, use_radial_filters=True)
        channel_base, channel_max = channel_base * 2, channel_max * 2
    G = Generator(z_dim, c_dim, w_dim, res, 3, mapping_kwargs=nv.EasyDict(num_layers=mapping_layers),
                  channel_base=channel_base, channel_max=channel_max, num_layers=num_layers,
                  num_critical=num_critical, margin_size=margin_size, num_fp16_res=num_fp16_res,
                  conv_clamp=conv_clamp, **kw)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p) / (100 if "mapping.fc" in name else 1))
            if name.endswith("input.affine.weight"):
                p.normal_(0, 0.5)
        for name, b in G.named_buffers():
            if name.endswith("magnitude_ema"):
                b.fill_(float(torch.rand(()) * 2 + 0.3))
        G.mapping.w_avg.normal_(0, 0.3)
        if transform is not None:
            G.synthesis.input.transform.copy_(transform)
    return G.eval().requires_grad_(False)


def pickle_bytes(G, snapshot=True):
    """What NVIDIA's training loop writes (G, D, G_ema, augment_pipe, kwargs), or a bare {"G_ema": G} dict."""
    return nv.network_pickle_bytes(G, extra=nv.snapshot_extras(G)) if snapshot else nv.plain_pickle_bytes({"G_ema": G})


# ---------------------------------------------------------------------------------------------------------------
# float64 reference forward
# ---------------------------------------------------------------------------------------------------------------
def _fc(L, x):
    return x @ (L.weight.double() * float(L.weight_gain)).T + L.bias.double() * float(L.bias_gain)


def mapping_ref(G, z, c=None, psi=1.0, cutoff=None):
    M = G.mapping
    x = z.double() / (z.double().square().mean(1, keepdim=True) + 1e-8).sqrt()
    if M.c_dim:
        y = _fc(M.embed, c.double())
        x = torch.cat([x, y / (y.square().mean(1, keepdim=True) + 1e-8).sqrt()], 1)
    for i in range(M.num_layers):
        u = _fc(getattr(M, f"fc{i}"), x)
        x = torch.where(u >= 0, u, 0.2 * u) * math.sqrt(2)
    ws = x[:, None].repeat(1, M.num_ws, 1)
    k = M.num_ws if cutoff is None else cutoff
    ws[:, :k] = M.w_avg.double() + psi * (ws[:, :k] - M.w_avg.double())
    return ws


def _upfirdn(x, f, up, down, pad):
    """Zero insertion, pad/crop, convolution with f (a separable 1-D filter along both axes, or a 2-D kernel) times
    up**2, then every down-th sample."""
    C, H, W = x.shape
    if up > 1:
        y = x.new_zeros(C, H * up, W * up)
        y[:, ::up, ::up] = x
        x = y
    x0, x1, y0, y1 = pad
    x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    x = x[:, max(-y0, 0): x.shape[1] - max(-y1, 0), max(-x0, 0): x.shape[2] - max(-x1, 0)]
    if f is not None:
        k = f.double().flip(list(range(f.dim()))) * up ** f.dim()  # gain up**2 on the (outer-product) 2-D kernel
        if k.dim() == 1:
            x = F.conv2d(F.conv2d(x[:, None], k[None, None, None, :]), k[None, None, :, None])[:, 0]
        else:
            x = F.conv2d(x[:, None], k[None, None])[:, 0]
    return x[:, ::down, ::down]


def _input_ref(I, w):
    t = _fc(I.affine, w)
    t = t / t[:2].norm()
    rot = torch.tensor([[t[0], -t[1], 0], [t[1], t[0], 0], [0, 0, 1]], dtype=torch.float64)
    tra = torch.tensor([[1, 0, -t[2]], [0, 1, -t[3]], [0, 0, 1]], dtype=torch.float64)
    T = rot @ tra @ I.transform.double()
    freqs = I.freqs.double() @ T[:2, :2]
    phases = I.phases.double() + I.freqs.double() @ T[:2, 2]
    amp = (1 - (freqs.norm(dim=1) - float(I.bandwidth)) / (float(I.sampling_rate) / 2 - float(I.bandwidth))
           ).clamp(0, 1)
    Wd, Hd = int(I.size[0]), int(I.size[1])
    gx = (torch.arange(Wd, dtype=torch.float64) + 0.5 - Wd / 2) / float(I.sampling_rate)
    gy = (torch.arange(Hd, dtype=torch.float64) + 0.5 - Hd / 2) / float(I.sampling_rate)
    arg = gx[None, None, :] * freqs[:, 0, None, None] + gy[None, :, None] * freqs[:, 1, None, None]
    feat = torch.sin(2 * math.pi * (arg + phases[:, None, None])) * amp[:, None, None]  # (C, H, W)
    return torch.einsum("oc,chw->ohw", I.weight.double() / math.sqrt(I.channels), feat)


def _layer_ref(L, x, w):
    s = _fc(L.affine, w)
    Wt = L.weight.double()
    if L.is_torgb:
        Wt = Wt * s[None, :, None, None] / math.sqrt(L.in_channels * L.conv_kernel ** 2)
    else:
        Wt = Wt / Wt.square().mean([1, 2, 3], keepdim=True).sqrt() * (s / s.square().mean().sqrt())[None, :, None,
                                                                                                      None]
        Wt = Wt / (Wt.square().sum([1, 2, 3], keepdim=True) + 1e-8).sqrt()
    Wt = Wt / L.magnitude_ema.double().sqrt()
    x = F.conv2d(x[None], Wt, padding=L.conv_kernel - 1)[0] + L.bias.double()[:, None, None]
    x = _upfirdn(x, L.up_filter, L.up_factor, 1, L.padding)
    if not L.is_torgb:
        x = torch.where(x >= 0, x, 0.2 * x) * math.sqrt(2)
    if L.conv_clamp is not None:
        x = x.clamp(-L.conv_clamp, L.conv_clamp)
    return _upfirdn(x, L.down_filter, 1, L.down_factor, [0, 0, 0, 0])


def synthesis_ref(G, ws):
    """ws (B, num_ws, w_dim) -> images (B, 3, res, res), float64, unclamped."""
    S = G.synthesis
    out = []
    for wsb in ws.double():
        x = _input_ref(S.input, wsb[0])
        for name, w in zip(S.layer_names, wsb[1:]):
            x = _layer_ref(getattr(S, name), x, w)
        out.append(x * S.output_scale)
    return torch.stack(out)
