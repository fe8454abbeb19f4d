"""The command's argument machinery: a parser whose errors are one line, option types that check their values
(each error names its flag), help that states every default, and the option groups several subcommands share."""
from __future__ import annotations

import argparse
import math
import re
import sys

import torch


class Interrupted(KeyboardInterrupt):
    """A KeyboardInterrupt with the line to print (e.g. how to resume); the command exits with status 130."""


class HelpFormatter(argparse.HelpFormatter):
    """Appends each option's default to its help ("off" for flags); required options and --help say none."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "%(default)" in text or "default:" in text or action.required or not action.option_strings or action.default is None \
                or action.default is argparse.SUPPRESS:
            return text
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            return f"{text} (default: {'on' if action.default else 'off'})"
        default = " ".join(map(str, action.default)) if isinstance(action.default, (list, tuple)) else action.default
        return f"{text} (default: {default})"


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``latentfast traverse: error: --size: ...`` and exit status 2."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        # our option types name their flag themselves: "argument --size: --size: ..." -> "--size: ..."
        message = re.sub(r"^argument [^:]*: (?=-)", "", message)
        sys.stderr.write(f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")
        sys.exit(2)


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


def positive_float(name):
    """A finite number > 0 (NaN, inf, zero and negatives are refused, naming ``name``)."""
    def parse(s):
        try:
            v = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}: expected a finite positive number, got {s!r}")
        if not math.isfinite(v) or v <= 0:
            raise argparse.ArgumentTypeError(f"{name}: expected a finite positive number, got {s!r}")
        return v
    return parse


def device(s: str) -> str:
    """``cpu``, ``cuda`` or ``cuda:N``; CUDA only when this torch can use it."""
    try:
        dev = torch.device(s)
    except (RuntimeError, ValueError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"--device: expected cpu, cuda or cuda:N, got {s!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA device is visible"
            raise argparse.ArgumentTypeError(f"--device: CUDA is not available ({why}, torch {torch.__version__}); "
                                             f"use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"--device: {s!r} does not exist ({torch.cuda.device_count()} CUDA "
                                             f"device(s) visible)")
    return s


def add_model_args(p):
    p.add_argument("--checkpoint", help="generator file (rosinality .pt, NVIDIA .pkl, BigGAN dir); "
                                        "default: the embedded default generator")
    p.add_argument("--device", type=device, default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled latents and randomized methods")
    add_quiet(p)


def add_quiet(p):
    p.add_argument("--quiet", action="store_true", help="no progress bars (they show only on a terminal anyway)")


def add_overwrite(p):
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")


def latents_for(G, args, n):
    g = torch.Generator().manual_seed(args.seed)
    return G.sample_z(n, g, device=args.device)
