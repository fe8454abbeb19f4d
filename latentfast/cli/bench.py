"""``latentfast bench``: the benchmark suite of a source checkout (``benchmarks/run.py``, not installed with the
package: it needs the official codes' re-implementations in ``benchmarks/baselines``).

The options are defined here once and used by ``python -m benchmarks`` too.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ._args import positive_int


def add_arguments(p) -> None:
    """The benchmark options, shared by ``latentfast bench`` and ``python -m benchmarks``."""
    p.add_argument("--quick", action="store_true", help="CI-sized workloads (seconds, not minutes)")
    p.add_argument("--only", default="", help="comma-separated subset of the workloads LB, ITER, SEG, FIT, GRASS; "
                                              "default: all")
    p.add_argument("--out", help="output directory; default: a new benchmarks/results/runs/<UTC time>_<device> "
                                 "(pass --out benchmarks/results to refresh the committed latest_* files)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto = CUDA when present")
    p.add_argument("--threads", type=positive_int("--threads"),
                   help="torch intra-op threads; default: torch's own choice, usually one per core")


def add_parser(sub):
    be = sub.add_parser("bench", help="benchmarks against the official codes (needs a source checkout)",
                        description="Run the benchmark suite of a latentfast source checkout (python -m benchmarks).")
    add_arguments(be)
    be.set_defaults(func=run)


def source_checkout():
    """The checkout this latentfast was imported from (the folder holding ``benchmarks/run.py`` beside the
    package), or None for an installed package."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "benchmarks" / "run.py").is_file() and (root / "benchmarks" / "workloads.py").is_file() \
        else None


def run(args) -> int:
    root = source_checkout()
    if root is None:
        raise ValueError("bench: needs a latentfast source checkout (benchmarks/ is not installed with the package); "
                         "run `python -m benchmarks --quick` from the root of a checkout")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from benchmarks.run import run as run_benchmarks

    given = [f"--{k}" if v is True else f"--{k} {v}" for k, v in vars(args).items()
             if k in ("quick", "only", "out", "device", "threads") and v not in (None, False, "", "auto")]
    return int(run_benchmarks(args, command=" ".join(["latentfast bench", *given])) or 0)
