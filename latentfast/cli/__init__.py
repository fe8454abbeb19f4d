"""The ``latentfast`` command.

  latentfast demo --out DIR [--quick]            the main job on the embedded default generator
  latentfast basis     [--checkpoint P] --out DIR     local bases at sampled latents -> .npy + GANSpace .npz
  latentfast basis --latents z.npy [--rows a:b] --out DIR    sharded over rows (torchrun): parts + manifest
  latentfast traverse  [--checkpoint P] --out FILE    linear / iterative traversal grid (.png, .jpg, ...)
  latentfast warpage   [--checkpoint P] --out DIR     Grassmannian warpage numbers + plot
  latentfast sfvq fit  [--checkpoint P | --latents F] --out FILE.pt
  latentfast sfvq assign --curve FILE.pt --latents F --out FILE.npz | DIR   (DIR: sharded, as basis --latents)
  latentfast sfvq render [--checkpoint P] --curve FILE.pt --out FILE.png
  latentfast info                                 versions and backends
  latentfast bench [...]                          benchmarks (from a source checkout)

Each subcommand lives in its own module (``add_parser(sub)`` registers it, ``run(args)`` runs it).  Errors in the
arguments or inputs print one line naming the argument and exit with status 2; Ctrl-C prints one line and exits
with status 130.
"""
from __future__ import annotations

import os
import sys
from typing import List, Optional

from .._dispatch import BackendUnavailable
from . import basis, bench, demo_command, info, sfvq, traverse, warpage
from ._args import Parser

COMMANDS = (demo_command, basis, traverse, warpage, sfvq, info, bench)
USAGE_ERRORS = (ValueError, TypeError, OSError, BackendUnavailable)  # exit 2: the input or the arguments


def build_parser() -> Parser:
    p = Parser(prog="latentfast", description="Fast Local Basis and SFVQ for GAN latent spaces.")
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return p


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _say(line: str) -> None:
    """One line on stderr in one write: the ranks of a torchrun job share the pipe, and print() writes the text
    and its newline separately, so two ranks' lines could run together."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command; returns its exit status: 0 done, 2 bad arguments or input (one line on stderr),
    130 interrupted (Ctrl-C: one line, partial outputs removed), 1 an unexpected error (one line; the traceback
    with LATENTFAST_TRACEBACK=1)."""
    args = build_parser().parse_args(argv)
    name = f"latentfast {args.command}" + (f" {args.sfvq_command}" if args.command == "sfvq" else "")
    from .. import _progress

    was_quiet = _progress._quiet
    if getattr(args, "quiet", False):
        _progress.set_quiet(True)
    try:
        return args.func(args)
    except KeyboardInterrupt as exc:
        _say(f"{name}: {_one_line(exc) if str(exc) else 'interrupted; no output was written'}")
        return 130
    except USAGE_ERRORS as exc:
        _say(f"{name}: error: {_one_line(exc)}")
        return 2
    except Exception as exc:
        if os.environ.get("LATENTFAST_TRACEBACK", "0") not in ("", "0"):
            raise
        _say(f"{name}: internal error: {type(exc).__name__}: {_one_line(exc)} (LATENTFAST_TRACEBACK=1 shows where)")
        return 1
    finally:
        _progress.set_quiet(was_quiet)  # main() may run inside a larger program (or the tests)


if __name__ == "__main__":
    sys.exit(main())
