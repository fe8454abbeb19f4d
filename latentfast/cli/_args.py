"""Argument types and the option groups several subcommands share."""
from __future__ import annotations

import argparse

import torch


def positive_int(name):
    def parse(s):
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}: expected a positive integer, got {s!r}")
        if v < 1:
            raise argparse.ArgumentTypeError(f"{name}: expected a positive integer, got {v}")
        return v
    return parse


def add_model_args(p):
    p.add_argument("--checkpoint", help="generator file (rosinality .pt, NVIDIA .pkl, BigGAN dir); "
                                        "default: the embedded default generator")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def latents_for(G, args, n):
    g = torch.Generator().manual_seed(args.seed)
    return G.sample_z(n, g, device=args.device)
