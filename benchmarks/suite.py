"""The pytest-benchmark front end of benchmarks/workloads.py (the report front end is run.py).

Each ``benchmarks/test_<workload>.py`` sets ``WORKLOAD = "<NAME>"`` and takes ``test_checks`` and ``test_timing``
from :func:`suite_tests`.  At collection the workload runs once under a :class:`workloads.Recorder`: its
correctness checks run for real, its timed callables are recorded as cases instead of timed (conftest.py
parametrizes ``test_timing`` over them).  ``test_checks`` fails on any failed check; ``test_timing`` checks again
before it times, then times one case with pytest-benchmark in the group of its workload (``FIT`` by batch size),
so the official approach (``baseline``) and latentfast sit in one table, ratios beside them.  Every member of a
group is timed on the same amount of work: the smallest ``n`` of the group (the baselines are timed on a subset).

    pytest benchmarks/ --benchmark-only [--bench-size quick|full] [--bench-device auto|cpu|cuda]
    pytest benchmarks/ --benchmark-only --benchmark-autosave       # then, on another commit:
    pytest benchmarks/ --benchmark-only --benchmark-compare
    pytest benchmarks/ --benchmark-disable --bench-size quick     # CI: checks, and each case run once
"""
from __future__ import annotations

import inspect
import os
from typing import Dict, Tuple

import torch

from . import workloads

_CACHE: Dict[Tuple[str, str, str], dict] = {}


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def group_of(workload: str, case_name: str) -> str:
    """The benchmark group: the workload, split by batch size where the workload has several (FIT)."""
    return f"{workload} {case_name.split()[-1]}" if "batch=" in case_name else workload


def collect(workload: str, size: str, device: str) -> dict:
    """Run ``workload`` once under a Recorder (cached): {"result", "cases", "error"}; every case's ``n`` set to
    the smallest of its group for callables sized with ``n=``."""
    key = (workload, size, device)
    if key in _CACHE:
        return _CACHE[key]
    kind = "cuda" if device.startswith("cuda") else "cpu"
    rec = workloads.Recorder()
    prev = workloads.recording(rec)
    out = dict(result=None, cases=[], error=None)
    try:
        out["result"] = workloads.WORKLOADS[workload](workloads.SIZES[size][kind][workload], device)
    except Exception as exc:  # reported by the tests, not at collection
        out["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        workloads.recording(prev)
    groups: Dict[str, int] = {}
    for c in rec.cases:
        c["group"] = group_of(workload, c["name"])
        c["n"] = _default_n(c["fn"])
        if c["n"] is not None:
            groups[c["group"]] = min(groups.get(c["group"], c["n"]), c["n"])
    for c in rec.cases:
        if c["n"] is not None:
            c["n"] = groups[c["group"]]
    out["cases"] = rec.cases
    _CACHE[key] = out
    return out


def _default_n(fn):
    p = inspect.signature(fn).parameters.get("n")
    return None if p is None or p.default is inspect.Parameter.empty else int(p.default)


def failed_checks(res: dict) -> dict:
    return {name: c for name, c in res["checks"].items() if not c.get("passed", True)}


def suite_tests(workload: str):
    """(test_checks, test_timing) for the module of ``workload``."""

    def test_checks(bench_collected):
        assert bench_collected["error"] is None, bench_collected["error"]
        res = bench_collected["result"]
        assert res["checks"], f"{workload}: the workload ran no correctness check"
        assert not failed_checks(res), failed_checks(res)

    def test_timing(benchmark, bench_collected, bench_case):
        assert bench_collected["error"] is None, bench_collected["error"]
        failed = failed_checks(bench_collected["result"])
        assert not failed, f"not timed: correctness checks failed first: {failed}"
        c = bench_case
        fn = (lambda: c["fn"](n=c["n"])) if c["n"] is not None else c["fn"]
        benchmark.group = c["group"]
        benchmark.extra_info.update(kind=c["kind"], backend=c["backend"], n=c["n"], device=c["device"],
                                    load_average=list(os.getloadavg()) if hasattr(os, "getloadavg") else None)
        sync = (lambda: torch.cuda.synchronize()) if c["device"].startswith("cuda") else (lambda: None)

        def call():
            fn()
            sync()

        for _ in range(c["warmup"]):
            call()
        benchmark.pedantic(call, rounds=max(1, c["repeats"]), iterations=1)

    test_checks.__doc__ = f"{workload}: every correctness check of the workload passes (before any timing)."
    test_timing.__doc__ = f"{workload}: one implementation timed (pytest-benchmark group {workload})."
    return test_checks, test_timing
