"""``latentfast demo``: the main job — every method on the embedded default generator, pictures and a report.

Stages (each a block below, named in the progress bar):
  1. local bases at a few latents (randomized, fused MLP path), GANSpace and SeFa directions, saved;
  2. an SFVQ curve fitted on W latents; its longest segments as edit directions;
  3. the factor benchmark (only on the embedded default generator, whose scenes have known factors), so that the
     traversal grids can name the factor each direction changes;
  4. linear traversals along Local Basis, GANSpace and SeFa directions, side by side, same edit sizes;
  5. the iterative curve traversal next to the linear one, with its path step by step;
  6. the Grassmannian warpage study (local vs random points vs the global GANSpace basis vs random subspaces);
  7. the SFVQ figures: vertices in curve order, a PCA view of curve and latents, usage per stage, edits;
  8. report.json, report.md and a self-contained report.html (see :mod:`.demo_report`).
Everything is written to a temporary directory and renamed into place at the end.
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import torch

from .. import __version__, viz
from .._io import atomic_output_dir
from .. import _progress
from .._progress import progress as progress_bar
from ..baselines import ganspace_directions, sefa_directions
from ..localbasis import local_basis, traverse_iterative, warpage
from ..sfvq import SFVQ
from ._common import basis_method, sample_w, save_directions, sefa_weights, write_json
from .demo_report import render_html, render_markdown

STAGES = ("local bases", "SFVQ fit", "factor benchmark", "linear traversals", "iterative traversal", "warpage",
          "SFVQ figures", "report")


@dataclass
class DemoConfig:
    num_latents: int = 8         # latents whose local bases are computed
    num_base: int = 2            # base latents shown in every traversal grid (the first num_base of them)
    k: int = 8                   # directions per method shown / saved
    frames: int = 7              # images per traversal row (odd: the centre one is the original)
    iter_steps: int = 12         # iterative traversal steps per side
    warpage_latents: int = 64
    warpage_k: tuple = (1, 2, 3, 5, 10, 20, 30, 40, 50)  # the paper's k axis, cut at the latent widths
    warpage_eps: tuple = (0.01, 0.1, 1.0)
    ganspace_samples: int = 20000
    sfvq_latents: int = 8192
    sfvq_vertices: int = 16
    sfvq_epochs: int = 5
    factor_latents: int = 64     # held-out latents for the factor benchmark
    seed: int = 0

    @classmethod
    def quick(cls) -> "DemoConfig":
        return cls(num_latents=2, num_base=2, k=3, frames=5, iter_steps=2, warpage_latents=8, warpage_k=(1, 2, 5),
                   warpage_eps=(0.1, 1.0), ganspace_samples=2000, sfvq_latents=2000, sfvq_vertices=8,
                   sfvq_epochs=1, factor_latents=8)


def edit_scale(ws: torch.Tensor) -> float:
    """One edit size for every method: half the RMS distance of W samples from their mean."""
    return 0.5 * float((ws - ws.mean(0)).norm(dim=1).pow(2).mean().sqrt())


@torch.no_grad()
def traversal_images(G, w0: torch.Tensor, directions: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
    """Images of w0 + alpha d, all layers edited: w0 (B, d), directions (k, d) shared or (B, k, d) per latent,
    alphas (F,) -> (B, k, F, 3, H, W)."""
    B = w0.shape[0]
    dirs = directions if directions.dim() == 3 else directions.expand(B, *directions.shape)
    ws = w0[:, None, None, :] + alphas[None, None, :, None] * dirs[:, :, None, :]  # (B, k, F, d)
    imgs = G.synthesize(ws.reshape(-1, ws.shape[-1]))
    return imgs.reshape(*ws.shape[:3], *imgs.shape[1:])


@torch.no_grad()
def traversal_panel(G, w0: torch.Tensor, directions: torch.Tensor, alphas: torch.Tensor, title: str,
                    scale: int = 2, row_labels: Optional[Sequence] = None):
    """A labelled traversal grid (see :func:`latentfast.viz.traversal_grid`): w0 (d,) or (B, d) base latents,
    directions (k, d) or (B, k, d) unit, alphas (F,); row_labels: k labels, or B lists of k (default: indices)."""
    w0 = w0.reshape(-1, w0.shape[-1])
    B, k = w0.shape[0], directions.shape[-2]
    imgs = traversal_images(G, w0, directions, alphas)
    originals = G.synthesize(w0)
    if row_labels is None:
        row_labels = [f"#{i}" for i in range(k)]
    if isinstance(row_labels[0], str):
        row_labels = [list(row_labels)] * B
    blocks = [f"base latent {b}" for b in range(B)] if B > 1 else None
    return viz.traversal_grid(imgs, originals, [float(a) for a in alphas], row_labels, title=title,
                              block_labels=blocks, scale=scale)


def _factor_lines(fb: Optional[dict], name: str, k: int) -> list:
    """Per direction, '<dominant factor> (purity p)' from the factor benchmark, or '' when it did not run."""
    if not fb or name not in fb["methods"]:
        return [""] * k
    res = fb["methods"][name]
    return [f"\nbench: {d}, purity {p:.2f}" for d, p in zip(res["dominant_factor"], res["purity"])][:k] + [""] * (
        k - len(res["purity"]))


def _path_cosines(outputs: torch.Tensor) -> torch.Tensor:
    """outputs (S, d) of one iterative traversal (centre at S // 2) -> (S,) cosine of each step with the starting
    direction (the first step's chord, oriented with the side): 1 at the centre."""
    c = outputs.shape[0] // 2
    x = outputs.double()
    d0 = x[c + 1] - x[c - 1]
    d0 = d0 / d0.norm().clamp_min(1e-30)
    cos = torch.ones(outputs.shape[0], dtype=torch.float64)
    for s in range(outputs.shape[0]):
        if s == c:
            continue
        step = x[s] - x[s - 1] if s > c else x[s + 1] - x[s]  # both oriented from the negative to the positive end
        cos[s] = (step @ d0) / step.norm().clamp_min(1e-30)
    return cos


def run_demo(out, *, quick: bool = False, overwrite: bool = False, progress: bool = True,
             generator=None, config: DemoConfig | None = None) -> dict:
    """Run the demo into directory ``out``; returns the report dict."""
    from ._common import load_generator_arg

    cfg = config or (DemoConfig.quick() if quick else DemoConfig())
    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    G = generator if generator is not None else load_generator_arg(None)
    gen = lambda s: torch.Generator().manual_seed(cfg.seed * 1000 + s)  # noqa: E731
    report = {"latentfast": __version__, "torch": torch.__version__, "python": platform.python_version(),
              "config": asdict(cfg), "timings_s": {}, "figures": {}, "torch_threads": torch.get_num_threads(),
              "cpu_count": os.cpu_count(), "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
    nb = min(cfg.num_base, cfg.num_latents)

    with atomic_output_dir(out, overwrite=overwrite) as tmp, \
            progress_bar(total=len(STAGES), desc="demo", unit="stage", enabled=progress) as bar:
        t = [time.perf_counter()]

        def stage(i: int):
            """Close stage i - 1 (its time into the report) and name stage i on the bar."""
            if i > 0:
                report["timings_s"][STAGES[i - 1].replace(" ", "_")] = time.perf_counter() - t[0]
                bar.update()
            t[0] = time.perf_counter()
            if i < len(STAGES):
                bar.set_description_str(f"demo: {STAGES[i]}")

        def save(name: str, img, alt: str):
            viz.save_png(img, tmp / name)
            report["figures"][name] = {"alt": alt, "width": img.width, "height": img.height}

        # 1. local bases, global directions ------------------------------------------------------------------
        stage(0)
        (tmp / "directions").mkdir()
        z = G.sample_z(cfg.num_latents, gen(1))
        spec = G.mlp_spec()
        f = spec if spec is not None else G.f
        method = basis_method(cfg.k, z.shape[1])
        lb = local_basis(f, z, cfg.k, method, generator=gen(2))
        w_samples = sample_w(G, cfg.ganspace_samples, gen(3))
        w_mean = w_samples.mean(0)
        save_directions(tmp / "directions", "localbasis_z0", lb.basis[0].T, lb.points[0], lb.singular_values[0])
        gs = ganspace_directions(w_samples, cfg.k)
        save_directions(tmp / "directions", "ganspace", gs.components, gs.mean, gs.stdev)
        weights = sefa_weights(G)
        sefa = sefa_directions(weights, cfg.k) if weights else None
        if sefa is not None:
            save_directions(tmp / "directions", "sefa", sefa.directions, w_mean)
        report["local_basis"] = {"method": lb.method, "k": cfg.k,
                                 "singular_values_z0": [round(float(s), 5) for s in lb.singular_values[0]],
                                 "residual_z0": float(lb.residual[0])}
        A = edit_scale(w_samples)
        alphas = torch.linspace(-A, A, cfg.frames)
        report["edit_size"] = A

        # 2. SFVQ fit -------------------------------------------------------------------------------------------
        stage(1)
        w_fit = sample_w(G, cfg.sfvq_latents, gen(6))
        curve = SFVQ(cfg.sfvq_vertices, w_fit.shape[1])
        # the fit's own progress only where the demo's bar shows too (a terminal, not quiet), so nothing is
        # printed into a log
        shown = progress and not _progress.is_quiet() and _progress._stderr_is_terminal()
        log = curve.fit(w_fit, epochs_per_stage=cfg.sfvq_epochs, progress=shown, generator=gen(7))
        curve.save(tmp / "sfvq_curve.pt")
        seg_len = curve.directions(normalize=False).norm(dim=1).detach()
        top_segments = seg_len.argsort(descending=True)[: cfg.k]
        dirs = curve.directions()[top_segments].detach()
        save_directions(tmp / "directions", "sfvq_segments", dirs, w_mean)
        assign = curve.assign(w_fit)
        report["sfvq"] = {"num_vertices": cfg.sfvq_vertices, "final_loss": log.final_loss,
                          "final_perplexity": log.final_perplexity,
                          "mean_distance_sq": float(assign.distance_sq.mean()),
                          "segments_shown": [int(j) for j in top_segments],
                          "segment_lengths_shown": [round(float(seg_len[j]), 4) for j in top_segments],
                          "stages": [{"num_vertices": s.num_vertices, "perplexity": s.perplexity[-1],
                                      "loss": s.loss[-1]} for s in log.stages]}

        # 3. factor benchmark -----------------------------------------------------------------------------------
        stage(2)
        fb = None
        if generator is None:  # ground-truth factors exist only for the embedded default generator
            from ..factor_bench import factor_benchmark

            methods = {"Local Basis": None, "GANSpace": gs.components, "SFVQ segments": dirs}
            if sefa is not None:
                methods["SeFa"] = sefa.directions
            fb = factor_benchmark(G, f, methods, k=cfg.k, edit_size=A, num_latents=cfg.factor_latents,
                                  seed=cfg.seed + 1, method=method, progress=shown)
            report["factor_benchmark"] = fb

        # 4. linear traversals side by side ---------------------------------------------------------------------
        stage(3)
        w0 = lb.points[:nb]
        sv = lb.singular_values
        lb_dirs = lb.basis[:nb].transpose(1, 2)  # (B, k, d): each latent's own directions
        fl = _factor_lines(fb, "Local Basis", cfg.k)
        lb_labels = [[f"LB #{i}, σ = {float(sv[b, i]):.2f}{fl[i]}" for i in range(cfg.k)] for b in range(nb)]
        fl = _factor_lines(fb, "GANSpace", cfg.k)
        gs_labels = [f"GANSpace PC{i}, sd {float(gs.stdev[i]):.2f}{fl[i]}" for i in range(cfg.k)]
        lb_panel = traversal_panel(G, w0, lb_dirs, alphas, "Local Basis (each latent's own directions)",
                                   row_labels=lb_labels)
        panels = [lb_panel, traversal_panel(G, w0, gs.components, alphas, "GANSpace (global PCA of W)",
                                            row_labels=gs_labels)]
        if sefa is not None:
            fl = _factor_lines(fb, "SeFa", cfg.k)
            labels = [f"SeFa #{i}, eig {float(sefa.eigenvalues[i].detach()):.2f}{fl[i]}" for i in range(cfg.k)]
            panels.append(traversal_panel(G, w0, sefa.directions, alphas, "SeFa (global, from the weights)",
                                          row_labels=labels))
        save("traversal_linear.png", viz.hstack(panels, gap=24), "linear traversals")

        # 5. iterative traversal next to the linear one ---------------------------------------------------------
        stage(4)
        step = A / cfg.iter_steps
        picks = torch.linspace(0, 2 * cfg.iter_steps, cfg.frames).round().long()
        outs, idx = [], []
        for i in range(cfg.k):
            tr = traverse_iterative(f, z[:nb], i, num_steps=cfg.iter_steps, step=step, k=cfg.k, method=method)
            outs.append(tr.outputs.reshape(nb, -1, tr.outputs.shape[-1]))
            idx.append(tr.indices.reshape(nb, -1))
        outs = torch.stack(outs, 1)  # (B, k, S, d)
        with torch.no_grad():
            ws = outs[:, :, picks]
            flat = G.synthesize(ws.reshape(-1, ws.shape[-1]))
            imgs = flat.reshape(*ws.shape[:3], *flat.shape[1:])
            originals = G.synthesize(w0)
        it_alphas = [float(step * (p - cfg.iter_steps)) for p in picks]
        it_labels = [[f"iterative #{i}, σ = {float(sv[b, i]):.2f}" for i in range(cfg.k)] for b in range(nb)]
        it_panel = viz.traversal_grid(imgs, originals, it_alphas, it_labels,
                                      title="Local Basis, iterative curve (α = distance along it)",
                                      block_labels=[f"base latent {b}" for b in range(nb)] if nb > 1 else None)
        cos = torch.stack([_path_cosines(outs[0, i]) for i in range(cfg.k)]).numpy()
        chart = viz.iterative_path_chart(cos, torch.stack(idx, 1)[0].numpy(), [f"#{i}" for i in range(cfg.k)],
                                         title=f"path from base latent 0 (step {step:.3f} in W)")
        save("traversal_iterative.png", viz.hstack([lb_panel, it_panel, chart], gap=24), "iterative traversal")
        report["iterative"] = {"step": step, "steps_per_side": cfg.iter_steps,
                               "min_cosine_latent0": [round(float(c.min()), 4) for c in cos],
                               "index_switches_latent0": [int((ix[1:] != ix[:-1]).sum())
                                                          for ix in torch.stack(idx, 1)[0]]}

        # 6. warpage --------------------------------------------------------------------------------------------
        stage(5)
        zw = G.sample_z(cfg.warpage_latents, gen(4))
        width = min(zw.shape[1], w_samples.shape[1])
        ks = [kk for kk in cfg.warpage_k if kk <= width]
        g_basis = ganspace_directions(w_samples, max(ks)).components.T
        wp = warpage(f, zw, ks, eps=cfg.warpage_eps, global_basis=g_basis, generator=gen(5),
                     method=basis_method(max(ks), zw.shape[1]))
        save("warpage.png", viz.warpage_chart(wp, title=f"Grassmannian warpage of W ({cfg.warpage_latents} latents)"),
             "warpage")
        report["warpage"] = wp.to_dict()

        # 7. SFVQ figures ---------------------------------------------------------------------------------------
        stage(6)
        with torch.no_grad():
            v_imgs = G.synthesize(curve.vertices.detach())
        save("sfvq_curve.png", viz.vertex_grid(v_imgs, f"SFVQ curve: the image of each of its {cfg.sfvq_vertices} "
                                                       "vertices, in curve order", cols=16), "SFVQ curve")
        save("sfvq_pca.png", viz.sfvq_pca_chart(w_fit, curve.vertices, highlight=[int(j) for j in top_segments],
                                                title="SFVQ curve through the W latents (2-D PCA view)"),
             "SFVQ curve in a PCA view")
        save("sfvq_training.png", viz.sfvq_training_chart(log.stages), "SFVQ usage per stage")
        fl = _factor_lines(fb, "SFVQ segments", cfg.k)
        labels = [f"segment {int(j)} (v{int(j)}→v{int(j) + 1})\nlength {float(seg_len[j]):.2f}{fl[n]}"
                  for n, j in enumerate(top_segments)]
        save("sfvq_edits.png", traversal_panel(G, w0, dirs, alphas, "SFVQ segment directions (the longest segments)",
                                               row_labels=labels), "SFVQ edits")
        if fb:
            save("factor_benchmark.png", viz.factor_chart(fb), "factor benchmark")

        # 8. report ---------------------------------------------------------------------------------------------
        stage(7)
        report["timings_s"]["total"] = time.perf_counter() - t_start
        write_json(tmp / "report.json", report)
        (tmp / "report.md").write_text(render_markdown(report))
        (tmp / "report.html").write_text(render_html(report, tmp))
        stage(len(STAGES))
    report["timings_s"]["total"] = time.perf_counter() - t_start
    return report
