"""The ``latentfast`` command.

  latentfast demo --out DIR [--quick]            the main job on the embedded default generator
  latentfast basis     [--checkpoint P] --out DIR     local bases at sampled latents -> .npy + GANSpace .npz
  latentfast traverse  [--checkpoint P] --out FILE    linear / iterative traversal grid (PNG)
  latentfast warpage   [--checkpoint P] --out DIR     Grassmannian warpage numbers + plot
  latentfast sfvq fit  [--checkpoint P | --latents F] --out FILE.pt
  latentfast sfvq assign --curve FILE.pt --latents F --out FILE.npz
  latentfast sfvq render [--checkpoint P] --curve FILE.pt --out FILE.png
  latentfast info                                 versions and backends
  latentfast bench [...]                          benchmarks (from a source checkout)

Each subcommand lives in its own module (``add_parser(sub)`` registers it, ``run(args)`` runs it).  Errors in the
arguments or inputs print one line naming the argument and exit with status 2.
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from .._dispatch import BackendUnavailable
from . import basis, bench, demo_command, info, sfvq, traverse, warpage

COMMANDS = (demo_command, basis, traverse, warpage, sfvq, info, bench)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="latentfast", description="Fast Local Basis and SFVQ for GAN latent spaces.")
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError, PermissionError, BackendUnavailable) as exc:
        print(f"latentfast {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
