"""``latentfast info``: versions and the backends of every op."""
from __future__ import annotations


def add_parser(sub):
    i = sub.add_parser("info", help="versions and backends")
    i.set_defaults(func=run)


def run(args) -> int:
    from ..info import report

    print(report())
    return 0
