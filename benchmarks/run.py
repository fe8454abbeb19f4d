"""``python -m benchmarks [--quick] [--only LB,SEG] [--out DIR]``: run the workloads, write JSON + markdown + PNG.

``latentfast bench`` runs the same (``run(args)``; the options are defined once, in latentfast/cli/bench.py).
Files: ``<out>/latest_<device>[_quick].json``, ``.md`` and ``.png``; without ``--out`` a new directory
``benchmarks/results/runs/<UTC time>_<device>[_quick]``, so the committed ``benchmarks/results/latest_*`` change
only when asked (``--out benchmarks/results``).  Exit status 0 when every correctness
check passed (targets missed do not fail the run; they are reported with the factor by which they were missed).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch

from latentfast._progress import progress

from . import workloads
from .plot import bar_plot

REPO = Path(__file__).resolve().parents[1]
RUNS = REPO / "benchmarks" / "results" / "runs"


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=20).stdout.rstrip()
    except Exception:  # not a checkout, or git missing
        return ""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def provenance(device: str, mode: str) -> dict:
    try:
        import triton

        triton_version = triton.__version__
    except Exception:
        triton_version = None
    import latentfast
    from latentfast import _dispatch

    dirty = _git("status", "--porcelain", "--", "latentfast", "benchmarks", "csrc")
    prov = dict(
        date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        git_commit=_git("rev-parse", "HEAD").strip(), git_dirty_paths=[l[3:] for l in dirty.splitlines()],
        latentfast=latentfast.__version__, python=platform.python_version(), torch=torch.__version__,
        torch_cuda=torch.version.cuda, triton=triton_version, numpy=np.__version__,
        native_extension_built=_dispatch.native_module() is not None,
        cpu_model=_cpu_model(), cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(),
        platform=platform.platform(), device=device, mode=mode,
        gpu=torch.cuda.get_device_name() if device.startswith("cuda") else None,
        gpu_note=None if device.startswith("cuda") else
        ("no GPU in this run" + ("" if torch.cuda.is_available() else " (torch.cuda.is_available() is False)")),
    )
    try:
        prov["load_average_start"] = list(os.getloadavg())
    except OSError:
        prov["load_average_start"] = None
    return prov


def evaluate_targets(results: dict, device_kind: str) -> List[dict]:
    out = []
    for tg in workloads.TARGETS[device_kind]:
        w = results.get(tg["workload"])
        entry = dict(tg)
        if w is None or "rows" not in w:
            entry.update(status="not run")
            out.append(entry)
            continue
        rows = {r["name"]: r for r in w["rows"]}
        r, v = rows.get(tg["row"]), rows.get(tg["vs"])
        if r is None or v is None:
            entry.update(status="not measured", reason=f"row {tg['row']!r} or {tg['vs']!r} missing (backend unavailable)")
            out.append(entry)
            continue
        if "max_slowdown" in tg:
            slow = r["seconds_per_item_median"] / v["seconds_per_item_median"]
            met = slow <= tg["max_slowdown"]
            entry.update(measured=slow, measured_kind="slowdown", status="MET" if met else "MISSED",
                         missed_by=None if met else slow / tg["max_slowdown"])
        else:
            ratio = v["seconds_per_item_median"] / r["seconds_per_item_median"]
            met = ratio >= tg["min_ratio"]
            entry.update(measured=ratio, measured_kind="speedup", status="MET" if met else "MISSED",
                         missed_by=None if met else tg["min_ratio"] / ratio)
        # a target on an inexact or inaccurate row is not met, whatever the time
        chk = w.get("checks", {})
        failing = [name for name, c in chk.items() if not c.get("passed", True) and name.startswith(tg["row"])]
        if failing and entry["status"] == "MET":
            entry.update(status="MISSED", reason="correctness check failed: " + ", ".join(failing))
        out.append(entry)
    return out


def _fmt_time(s: float) -> str:
    for unit, f in (("s", 1.0), ("ms", 1e3), ("us", 1e6), ("ns", 1e9)):
        if s * f >= 1.0 or unit == "ns":
            return f"{s * f:.3g} {unit}"
    return f"{s:.3g} s"


def _ratio(r: Optional[float]) -> str:
    return "" if r is None else (f"{r:.3g}x" if r < 100 else f"{r:.0f}x")


def markdown(report: dict) -> str:
    p = report["provenance"]
    L = [f"# latentfast benchmarks ({p['device']}, {p['mode']})", ""]
    L.append(f"- date: {p['date']}; commit `{p['git_commit'][:12]}`"
             + (f" (uncommitted changes in: {', '.join(p['git_dirty_paths'])})" if p["git_dirty_paths"] else ""))
    L.append(f"- machine: {p['cpu_model']}, {p['cpu_count']} CPUs, torch threads {p['torch_threads']}"
             + (f", GPU {p['gpu']}" if p["gpu"] else f"; {p['gpu_note']}"))
    la = p.get("load_average_start")
    lb = p.get("load_average_end")
    if la:
        L.append(f"- load average (1/5/15 min) at start {la[0]:.2f}/{la[1]:.2f}/{la[2]:.2f}"
                 + (f", at end {lb[0]:.2f}/{lb[1]:.2f}/{lb[2]:.2f}" if lb else "")
                 + " (the machine is shared: absolute times are noisy, ratios less so)")
    L.append(f"- python {p['python']}, torch {p['torch']}, numpy {p['numpy']}, triton {p['triton']}, "
             f"native extension built: {p['native_extension_built']}")
    L.append(f"- command: `{report['command']}`; wall time {report['seconds']:.0f} s")
    L.append("")
    L.append("Times are per item (latent, traversal, point, step, pair): median of the repeats, [min - max] "
             "spread. `timed on` = items per timed call; the slow baselines are timed on a subset of the same "
             "work and extrapolated linearly to the workload (`workload`). `x baseline` = baseline time / "
             "row time.")
    L.append("")
    L.append("## Targets")
    L.append("")
    L.append("| target | source | required | measured | status |")
    L.append("|---|---|---|---|---|")
    for t in report["targets"]:
        req = (f"<= {t['max_slowdown']}x of {t['vs']}" if "max_slowdown" in t else f">= {t['min_ratio']:g}x vs {t['vs']}")
        if "measured" in t:
            meas = _ratio(t["measured"]) + (" slower" if t["measured_kind"] == "slowdown" else "")
        else:
            meas = "-"
        st = t["status"]
        if st == "MISSED" and t.get("missed_by"):
            st = f"**MISSED** by {t['missed_by']:.2f}x"
        if t.get("reason"):
            st += f" ({t['reason']})"
        L.append(f"| {t['what']} | {t['source']} | {req} | {meas} | {st} |")
    L.append("")
    for name, w in report["workloads"].items():
        L.append(f"## {name}")
        L.append("")
        if "error" in w:
            L.append(f"FAILED: `{w['error']}`")
            L.append("")
            continue
        shapes = ", ".join(f"{k}={v}" for k, v in w["shapes"].items())
        L.append(f"{shapes}; dtype {w['dtype']}; {w['seconds']:.0f} s")
        L.append("")
        floor = any("ratio_to_floor" in r for r in w["rows"])
        L.append("| implementation | backend | timed on | per item (median [min - max]) | workload | x baseline"
                 + (" | x floor |" if floor else " |"))
        L.append("|---|---|---|---|---|---" + ("|---|" if floor else "|"))
        for r in w["rows"]:
            spread = f"{_fmt_time(r['seconds_per_item_median'])} [{_fmt_time(r['seconds_per_item_min'])} - " \
                     f"{_fmt_time(r['seconds_per_item_max'])}] {r['unit'].split('/')[1]}"
            if "steps_per_second" in r:
                spread += f" ({r['steps_per_second']:.3g} steps/s)"
            work = _fmt_time(r["workload_seconds_median"]) if "workload_seconds_median" in r else ""
            ratio = _ratio(r.get("ratio_to_baseline")) if r["kind"] != "baseline" else "1x"
            if r.get("ratio_to") and r["ratio_to"] != "baseline" and r["kind"] != "baseline":
                ratio += f" (vs {r['ratio_to']})"
            line = f"| {r['name']} | {r['backend'] or '-'} | {r['timed_on']} x {r['repeats']} | {spread} | {work} | {ratio}"
            if floor:
                line += f" | {r['ratio_to_floor']:.2f}" if "ratio_to_floor" in r else " | "
            L.append(line + " |")
        L.append("")
        L.append("Checks (run before timing):")
        L.append("")
        for cname, c in w["checks"].items():
            status = "info" if c.get("informational") else ("PASS" if c["passed"] else "**FAIL**")
            detail = {k: v for k, v in c.items() if k not in ("passed", "informational", "rule", "losses",
                                                              "baseline_losses")}
            L.append(f"- {status} {cname}: {c.get('rule', '')} — " + _fmt_detail(detail))
        if w.get("skipped_backends"):
            for op, sk in w["skipped_backends"].items():
                for b, reasons in sk.items():
                    L.append(f"- skipped {op} backend `{b}`: {'; '.join(reasons)}")
        L.append("")
    return "\n".join(L) + "\n"


def _fmt_detail(d: dict) -> str:
    parts = []
    for k, v in d.items():
        if isinstance(v, dict):
            parts.append(f"{k}: {{" + _fmt_detail(v) + "}")
        elif isinstance(v, float):
            parts.append(f"{k} {v:.3g}")
        else:
            parts.append(f"{k} {v}")
    return ", ".join(parts)


def parse(argv):
    from latentfast.cli._args import Parser
    from latentfast.cli.bench import add_arguments

    ap = Parser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    add_arguments(ap)
    return ap.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    return run(parse(argv), command="python -m benchmarks " + " ".join(argv))


def run(args, command: str) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    kind = "cuda" if device.startswith("cuda") else "cpu"
    mode = "quick" if args.quick else "full"
    names = [n.strip().upper() for n in args.only.split(",") if n.strip()] or list(workloads.WORKLOADS)
    unknown = [n for n in names if n not in workloads.WORKLOADS]
    if unknown:
        print(f"--only: unknown workload(s) {unknown}; expected some of {list(workloads.WORKLOADS)}", file=sys.stderr)
        return 2
    prov = provenance(device, mode)
    sizes = workloads.SIZES[mode][kind]
    report = dict(provenance=prov, command=command.strip(),
                  sizes={n: sizes[n] for n in names}, workloads={})
    start = time.perf_counter()
    all_passed = True
    bar = progress(total=len(names), desc="benchmarks", unit="workload")
    for n in names:
        bar.set_description_str(f"benchmarks: {n} ({mode}, {device})")
        t0 = time.perf_counter()
        try:
            res = workloads.WORKLOADS[n](sizes[n], device)
        except Exception as exc:  # keep the other workloads' results; the run fails at the end
            bar.clear()  # the traceback starts on a clean line
            traceback.print_exc()
            res = dict(error=f"{type(exc).__name__}: {exc}")
            all_passed = False
        res["seconds"] = time.perf_counter() - t0
        if "checks" in res:
            all_passed &= all(c["passed"] for c in res["checks"].values())
        report["workloads"][n] = res
        bar.update()
    bar.close()
    report["seconds"] = time.perf_counter() - start
    try:
        prov["load_average_end"] = list(os.getloadavg())
    except OSError:
        prov["load_average_end"] = None
    report["targets"] = evaluate_targets(report["workloads"], kind)
    report["all_checks_passed"] = all_passed

    stem = f"latest_{kind}" + ("_quick" if args.quick else "")
    if args.out:
        out = Path(args.out)
    else:
        out = RUNS / (_dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + stem[len("latest"):])
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    md = markdown(report)
    (out / f"{stem}.md").write_text(md)
    bar_plot(report, out / f"{stem}.png")
    print(md)
    print(f"[benchmarks] wrote {out / stem}.json/.md/.png", file=sys.stderr)
    for t in report["targets"]:
        if t["status"] == "MISSED":
            by = f" by {t['missed_by']:.2f}x" if t.get("missed_by") else ""
            print(f"[benchmarks] target MISSED{by}: {t['what']}", file=sys.stderr)
    if not all_passed:
        print("[benchmarks] some correctness checks FAILED (see the report)", file=sys.stderr)
    return 0 if all_passed else 1


if __name__ == "__main__":
    sys.exit(main())
