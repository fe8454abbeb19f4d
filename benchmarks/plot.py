"""A PNG bar plot of the speedups over the baseline (log scale), with the issue's targets marked; PIL only."""
from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

W, LEFT, RIGHT, BAR, GAP, TOP = 1100, 430, 40, 18, 6, 50
COLORS = {"reference": (120, 144, 180), "backend": (40, 110, 200), "floor": (150, 150, 150)}


def bar_plot(report: dict, path: Path) -> None:
    bars = []  # (label, ratio, kind, [target ratios], header?)
    targets = report.get("targets", [])
    for wname, w in report["workloads"].items():
        if "rows" not in w:
            continue
        bars.append((wname, None, "header", []))
        for r in w["rows"]:
            if r["kind"] == "baseline" or r.get("ratio_to_baseline") is None:
                continue
            marks = [t["min_ratio"] for t in targets
                     if t["workload"] == wname and t["row"] == r["name"] and "min_ratio" in t
                     and t["vs"] == r.get("ratio_to")]
            bars.append((r["name"], r["ratio_to_baseline"], r["kind"], marks))
    ratios = [b[1] for b in bars if b[1]] + [m for b in bars for m in b[3]] + [1.0]
    lo = math.floor(math.log10(max(min(ratios), 1e-3)))
    hi = math.ceil(math.log10(max(ratios) * 1.05))
    hi = max(hi, lo + 1)
    H = TOP + len(bars) * (BAR + GAP) + 40
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    p = report["provenance"]
    d.text((10, 8), f"latentfast speedup over the official codes' approach ({p['device']}, {p['mode']}, "
                    f"{p['cpu_model']}, {p['torch_threads']} threads) - log scale; | = target", fill="black", font=font)
    d.text((10, 24), f"commit {p['git_commit'][:12]}  {p['date']}", fill=(90, 90, 90), font=font)

    def x_of(v):
        return LEFT + (math.log10(v) - lo) / (hi - lo) * (W - LEFT - RIGHT)

    for e in range(lo, hi + 1):
        x = x_of(10.0 ** e)
        d.line([(x, TOP - 6), (x, H - 30)], fill=(225, 225, 225))
        d.text((x - 10, H - 26), f"{10.0 ** e:g}x", fill="black", font=font)
    x1 = x_of(1.0)
    d.line([(x1, TOP - 6), (x1, H - 30)], fill=(0, 0, 0))
    y = TOP
    for label, ratio, kind, marks in bars:
        if kind == "header":
            d.text((10, y + 3), label, fill="black", font=font)
        else:
            d.text((24, y + 3), label[:64], fill=(40, 40, 40), font=font)
            xr = x_of(ratio)
            d.rectangle([min(x1, xr), y, max(x1, xr), y + BAR], fill=COLORS.get(kind, (40, 110, 200)))
            d.text((max(x1, xr) + 4, y + 3), f"{ratio:.3g}x", fill="black", font=font)
            for m in marks:
                xm = x_of(m)
                d.line([(xm, y - 2), (xm, y + BAR + 2)], fill=(220, 30, 30), width=3)
        y += BAR + GAP
    img.save(path)
