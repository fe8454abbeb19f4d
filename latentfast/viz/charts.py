"""Charts with matplotlib's Agg backend (no display, no pyplot state): each function returns a ``PIL.Image``."""
from __future__ import annotations

import io
from typing import Dict, Optional, Sequence

import numpy as np
import torch
from PIL import Image

DPI = 100


def _figure(w_px: int, h_px: int):
    from matplotlib.figure import Figure

    return Figure(figsize=(w_px / DPI, h_px / DPI), dpi=DPI, layout="constrained")


def figure_to_image(fig) -> Image.Image:
    """Render a matplotlib Figure (Agg) to an RGB pillow image."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def line_chart(x: Sequence[float], series: Dict[str, Sequence[float]], *, title: str = "", xlabel: str = "",
               ylabel: str = "", size=(640, 400), errors: Optional[Dict[str, Sequence[float]]] = None) -> Image.Image:
    """A line chart, one line per entry of ``series`` (name -> y values at ``x``), with a legend; ``errors``
    (name -> values) draws +- error bars."""
    fig = _figure(*size)
    ax = fig.add_subplot()
    for name, ys in series.items():
        err = None if not errors or name not in errors else np.asarray(errors[name], dtype=float)
        ax.errorbar(np.asarray(x, dtype=float), np.asarray(ys, dtype=float), yerr=err, marker="o", ms=4,
                    capsize=3, label=name)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure_to_image(fig)


def warpage_chart(wp, *, title: str = "Grassmannian warpage", size=(820, 480)) -> Image.Image:
    """The warpage study (a :class:`latentfast.localbasis.Warpage`): mean +- std of the distance per subspace
    size k for each curve, the random-subspace level as a shaded band."""
    ks = np.asarray(wp.ks, dtype=float)
    fig = _figure(*size)
    ax = fig.add_subplot()

    def curve(stats, label, **kw):
        m = np.array([stats[k].mean for k in wp.ks])
        s = np.array([stats[k].std for k in wp.ks])
        ax.errorbar(ks, m, yerr=s, capsize=3, ms=4, label=label, **kw)
        return m, s

    m, s = np.array([wp.random_subspaces[k].mean for k in wp.ks]), np.array([wp.random_subspaces[k].std for k in wp.ks])
    ax.fill_between(ks, m - s, m + s, color="0.85", label=None)
    ax.plot(ks, m, "k--", lw=1.5, label="random subspaces (no structure)")
    for e in wp.eps:
        curve({k: wp.local[k][e] for k in wp.ks}, f"local: z vs z + {e:g}·e (nearby latent)", marker="o")
    curve(wp.random_points, "random pairs of latents", marker="s", color="tab:red")
    if wp.global_:
        curve(wp.global_, "local vs the global GANSpace basis", marker="^", color="tab:purple")
    ax.set_xscale("log")
    ax.set_xticks(ks, [f"{int(k)}" for k in ks])
    ax.minorticks_off()
    ax.set(title=title, xlabel="subspace size k (top-k local directions)",
           ylabel=f"{wp.metric} distance on the Grassmannian (rad)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return figure_to_image(fig)


def iterative_path_chart(cosines: np.ndarray, indices: np.ndarray, labels: Sequence[str], *, title: str,
                         size=(640, 640)) -> Image.Image:
    """The iterative traversal's path, step by step: ``cosines`` (R, S) |cos| of each step with the starting
    direction, ``indices`` (R, S) the local-basis index followed into each step, one line per row label; the x
    axis is the signed step number (-S/2 .. S/2, 0 = the start)."""
    R, S = cosines.shape
    steps = np.arange(S) - S // 2
    fig = _figure(*size)
    top, bot = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    for r in range(R):
        top.plot(steps, cosines[r], marker="o", ms=3, label=labels[r])
        bot.plot(steps, indices[r] + 0.05 * (r - (R - 1) / 2), drawstyle="steps-mid", marker="o", ms=3)
    top.axhline(1.0, color="k", lw=0.8, ls=":")
    top.set(title=title, ylabel="cos(step, starting direction)")
    top.grid(alpha=0.3)
    fig.legend(*top.get_legend_handles_labels(), loc="outside right center", fontsize=8, title="direction")
    bot.set(xlabel="step (negative side ← 0 = start → positive side)", ylabel="index followed")
    bot.set_yticks(range(int(indices.max()) + 1))
    bot.set_xticks(steps if S <= 13 else steps[::2])
    bot.grid(alpha=0.3)
    return figure_to_image(fig)


def sfvq_pca_chart(latents: torch.Tensor, vertices: torch.Tensor, *, title: str, highlight: Sequence[int] = (),
                   size=(620, 520)) -> Image.Image:
    """Latents (N, D) and the curve's vertices (M, D) projected on the latents' first two principal axes; the
    curve drawn through its vertices (numbered), the ``highlight`` segments (j: vertex j to j + 1) thicker."""
    x = latents.detach().double().cpu()
    v = vertices.detach().double().cpu()
    mean = x.mean(0)
    _, S, Vt = torch.linalg.svd(x - mean, full_matrices=False)
    P = Vt[:2].T
    xp, vp = ((x - mean) @ P).numpy(), ((v - mean) @ P).numpy()
    share = (S[:2] ** 2 / (S ** 2).sum()).numpy()
    fig = _figure(*size)
    ax = fig.add_subplot()
    ax.scatter(xp[:, 0], xp[:, 1], s=3, alpha=0.25, color="tab:blue", label=f"{len(xp)} latents", rasterized=True)
    ax.plot(vp[:, 0], vp[:, 1], "-o", color="tab:orange", ms=4, lw=1.5, label="SFVQ curve (vertices in order)")
    for j in highlight:
        ax.plot(vp[j:j + 2, 0], vp[j:j + 2, 1], "-", color="tab:red", lw=4, alpha=0.55)
    if len(highlight):
        ax.plot([], [], "-", color="tab:red", lw=4, alpha=0.55, label="segments used for edits")
    for i, (a, b) in enumerate(vp):  # alternate sides, so that neighbours close in the projection stay legible
        ax.annotate(str(i), (a, b), textcoords="offset points", xytext=(6, 4) if i % 2 else (-14, -10), fontsize=8,
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8))
    ax.set(title=title, xlabel=f"principal axis 1 ({share[0]:.0%} of the variance)",
           ylabel=f"principal axis 2 ({share[1]:.0%})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return figure_to_image(fig)


def sfvq_training_chart(stages, *, title: str = "SFVQ training, stage by stage", size=(820, 340)) -> Image.Image:
    """Per stage (M = 2, 4, 8, ... vertices) of an :class:`SFVQTrainingLog`'s ``stages``: the last epoch's
    perplexity (segment usage, at most M - 1) against its ceiling, and the last epoch's loss."""
    Ms = [s.num_vertices for s in stages]
    perp = [s.perplexity[-1] for s in stages]
    loss = [s.loss[-1] for s in stages]
    xs = np.arange(len(Ms))
    fig = _figure(*size)
    a, b = fig.subplots(1, 2)
    a.bar(xs, [m - 1 for m in Ms], color="0.85", label="ceiling M - 1 (every segment used equally)")
    a.bar(xs, perp, width=0.5, color="tab:blue", label="perplexity (last epoch)")
    for x, p in zip(xs, perp):
        a.annotate(f"{p:.1f}", (x, p), textcoords="offset points", xytext=(0, 2), ha="center", fontsize=8)
    a.set_xticks(xs, [str(m) for m in Ms])
    a.set(xlabel="stage: number of vertices M", ylabel="perplexity of segment usage", title="usage per stage")
    a.set_ylim(0, 1.35 * max(Ms))
    a.legend(fontsize=8, loc="upper left")
    b.plot(xs, loss, "-o", color="tab:orange")
    b.set_xticks(xs, [str(m) for m in Ms])
    b.set(xlabel="stage: number of vertices M", ylabel="training loss (dithered MSE per entry)",
          title="loss per stage (last epoch)")
    b.grid(alpha=0.3)
    fig.suptitle(title)
    return figure_to_image(fig)


def factor_chart(fb: dict, *, size=(820, 380)) -> Image.Image:
    """The factor benchmark (dict from :func:`latentfast.factor_bench.factor_benchmark`): mean purity per
    method (bar) and each direction's purity (dots, labelled with the dominant factor), chance level 1/F."""
    names = list(fb["methods"])
    n_factors = len(fb["methods"][names[0]]["change"][0]) - 1  # continuous factors (column 0 is the shape)
    fig = _figure(*size)
    ax = fig.add_subplot()
    for i, name in enumerate(names):
        res = fb["methods"][name]
        ax.bar(i, res["mean_purity"], width=0.6, color="tab:blue", alpha=0.35)
        p = np.asarray(res["purity"])
        xs = i + np.linspace(-0.25, 0.25, len(p))
        ax.scatter(xs, p, s=14, color="tab:blue", zorder=3)
        ax.annotate(f"mean {res['mean_purity']:.2f}", (i, max(p.max(), res["mean_purity"])),
                    textcoords="offset points", xytext=(0, 8), ha="center", fontsize=9, weight="bold")
    ax.axhline(1 / n_factors, color="k", ls="--", lw=1, label=f"chance: 1/{n_factors} (change spread evenly)")
    ax.set_xticks(range(len(names)), names)
    ax.set_ylim(0, 1)
    ax.set(ylabel="purity (dominant factor's share)",
           title="Factor benchmark: mean purity (bars) and per-direction purity (dots)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="upper right")
    return figure_to_image(fig)
