"""Networks for the Local Basis tests, built here (no latentfast model code involved)."""
import copy
import math

import torch
from torch import nn


class PixelNorm(nn.Module):
    def forward(self, x):
        return x * torch.rsqrt(x.square().mean(1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Equalised learning rate: weights stored as N(0, 1)/lr_mul, scaled at run time by lr_mul/sqrt(in)."""

    def __init__(self, d_in, d_out, lr_mul=0.01, weight=None):
        super().__init__()
        w = torch.randn(d_out, d_in) / lr_mul if weight is None else weight / (lr_mul / math.sqrt(d_in))
        self.weight = nn.Parameter(w)
        self.bias = nn.Parameter(torch.randn(d_out) * 0.1 / lr_mul)
        self.scale, self.lr_mul = lr_mul / math.sqrt(d_in), lr_mul

    def forward(self, x):
        return nn.functional.leaky_relu(x @ (self.weight * self.scale).T + self.bias * self.lr_mul, 0.2) * math.sqrt(2)

    def effective(self):
        return (self.weight * self.scale).detach(), (self.bias * self.lr_mul).detach()


class Mapping(nn.Module):
    """StyleGAN2-shaped mapping network: PixelNorm, then n_layers equalised-lr linear + lrelu(0.2) * sqrt(2)."""

    def __init__(self, dim=512, n_layers=8, decay=None):
        super().__init__()
        layers = []
        for _ in range(n_layers):
            weight = None
            if decay is not None:  # singular values decaying geometrically, like a trained mapping network's
                U, _ = torch.linalg.qr(torch.randn(dim, dim))
                V, _ = torch.linalg.qr(torch.randn(dim, dim))
                weight = (U * (decay ** torch.arange(dim)) * 2.0) @ V.T
            layers.append(EqualLinear(dim, dim, weight=weight))
        self.net = nn.Sequential(PixelNorm(), *layers)

    def forward(self, z):
        return self.net(z)

    def spec(self):
        from latentfast import MLPSpec

        w, b = zip(*(layer.effective() for layer in self.net[1:]))
        return MLPSpec(list(w), list(b))


def oracle(f, z):
    """Float64 oracle: per-latent jacrev, then numpy's SVD.  Returns (J, U, S, Vt) as float64 tensors."""
    import numpy as np

    if isinstance(f, nn.Module):
        f = copy.deepcopy(f).double()  # never convert the caller's network in place
    z = z.detach().double()
    J = torch.stack([torch.func.jacrev(lambda v: f(v[None]).reshape(-1))(zi) for zi in z]).detach()
    U, S, Vt = np.linalg.svd(J.numpy(), full_matrices=False)
    return J, torch.from_numpy(U), torch.from_numpy(S), torch.from_numpy(Vt)


def sign_fix(U, V):
    idx = U.abs().argmax(dim=1, keepdim=True)
    s = torch.sign(U.gather(1, idx))
    return U * s, V * s
