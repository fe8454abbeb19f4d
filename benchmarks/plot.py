"""A PNG bar plot of the speedups over the baseline (log scale), the issues' targets marked; matplotlib (Agg)."""
from __future__ import annotations

from pathlib import Path

COLORS = {"reference": "#7890b4", "backend": "#286ec8", "floor": "#969696"}


def bar_plot(report: dict, path: Path) -> None:
    """One horizontal bar per non-baseline row of every workload: its time ratio to its baseline (x baseline);
    red ticks at the targets that apply to the row; workloads separated and named on the left."""
    from matplotlib.figure import Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    targets = report.get("targets", [])
    labels, ratios, colors, marks, heads = [], [], [], [], []
    for wname, w in report["workloads"].items():
        rows = [r for r in w.get("rows", []) if r["kind"] != "baseline" and r.get("ratio_to_baseline")]
        if not rows:
            continue
        heads.append((len(labels), wname))
        for r in rows:
            labels.append(f"{wname}: {r['name']}" + ("" if str(r.get("ratio_to", "baseline")).startswith("baseline")
                                                    else f"  (vs {r['ratio_to']})"))
            ratios.append(r["ratio_to_baseline"])
            colors.append(COLORS.get(r["kind"], COLORS["backend"]))
            marks.append([t["min_ratio"] for t in targets if t["workload"] == wname and t["row"] == r["name"]
                          and "min_ratio" in t and t["vs"] == r.get("ratio_to")])
    p = report["provenance"]
    fig = Figure(figsize=(11, 1.6 + 0.28 * max(len(labels), 1)), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    y = list(range(len(labels)))[::-1]
    ax.barh(y, ratios, color=colors, left=0)
    for yi, r, ms in zip(y, ratios, marks):
        ax.annotate(f"{r:.3g}x" if r < 100 else f"{r:.0f}x", (r, yi), textcoords="offset points", xytext=(3, -3), fontsize=8)
        for m in ms:
            ax.plot([m, m], [yi - 0.4, yi + 0.4], color="tab:red", lw=2.5)
    for start, _ in heads[1:]:
        ax.axhline(len(labels) - start - 0.5, color="0.6", lw=0.8)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Patch(color=COLORS["reference"], label="pure PyTorch"), Patch(color=COLORS["backend"], label="fast backend"),
               Patch(color=COLORS["floor"], label="floor (bare GEMM)"), Line2D([], [], color="tab:red", lw=2.5, label="target")]
    ax.axvline(1.0, color="k", lw=1)
    ax.set_xscale("log")
    ax.set_xlim(right=3 * max(ratios + [m for ms in marks for m in ms] + [1.0]))  # room for the labels
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel("speedup over the official approach (baseline time / row time, per item; log scale)")
    ax.set_title(f"latentfast vs the official codes' approach ({p['device']}, {p['mode']}, {p.get('gpu') or p['cpu_model']}, "
                 f"torch threads {p['torch_threads']}; commit {p['git_commit'][:12]})", fontsize=9)
    ax.grid(alpha=0.3, axis="x")
    ax.legend(handles=handles, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=4)
    fig.savefig(path, format="png", facecolor="white")
