"""``latentfast bench``: the benchmark suite of a source checkout (benchmarks/run.py)."""
from __future__ import annotations

import argparse


def add_parser(sub):
    be = sub.add_parser("bench", help="benchmarks against the official codes (source checkout)")
    be.add_argument("rest", nargs=argparse.REMAINDER)
    be.set_defaults(func=run)


def run(args) -> int:
    try:
        from benchmarks.run import main as bench_main
    except ImportError as exc:
        raise ValueError("bench: the benchmarks/ folder of a latentfast source checkout must be importable "
                         f"(run from the repository root): {exc}") from exc
    return int(bench_main(args.rest) or 0)
