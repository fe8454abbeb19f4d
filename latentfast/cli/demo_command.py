"""``latentfast demo``: the command line of the main job (the job itself is :mod:`latentfast.cli.demo`)."""
from __future__ import annotations

from .._io import check_output
from ._args import add_overwrite, add_quiet


def add_parser(sub):
    d = sub.add_parser("demo", help="the main job on the embedded default generator")
    d.add_argument("--out", required=True, help="output directory (pictures, report.md, report.json)")
    d.add_argument("--quick", action="store_true", help="reduced sizes (CI)")
    add_overwrite(d)
    add_quiet(d)
    d.set_defaults(func=run)


def run(args) -> int:
    from .demo import run_demo

    check_output("--out", args.out, kind="dir", overwrite=args.overwrite)
    report = run_demo(args.out, quick=args.quick, overwrite=args.overwrite, progress=not args.quiet)
    print(f"wrote {args.out} (report.md, report.json, pictures) in {report['timings_s']['total']:.1f} s")
    return 0
