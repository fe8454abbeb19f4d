"""``latentfast demo``: the main job — every method on the embedded default generator, pictures and a report.

Steps (each a function below, so the CLI subcommands reuse them):
  1. local bases at a few latents (randomized, fused MLP path), saved as directions;
  2. linear traversals along Local Basis, GANSpace and SeFa directions, side by side, same edit size;
  3. the iterative curve traversal next to the linear one;
  4. the Grassmannian warpage plot (local vs random points vs random subspaces vs the global GANSpace basis);
  5. an SFVQ curve fitted on W latents, rendered vertex by vertex in curve order, and edits along segments;
  6. the factor benchmark (only on the embedded default generator, whose scenes have known factors);
  7. report.json + report.md.  Everything is written to a temporary directory and renamed into place at the end.
"""
from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass

import torch

from .. import __version__
from .._io import atomic_output_dir
from ..baselines import ganspace_directions, sefa_directions
from ..localbasis import local_basis, traverse_iterative, warpage
from ..sfvq import SFVQ
from .. import viz
from ._common import (Progress, basis_method, sample_w, save_directions, sefa_weights, warpage_chart,
                      write_json)


@dataclass
class DemoConfig:
    num_latents: int = 8         # latents whose local bases are computed
    k: int = 8                   # directions per method shown / saved
    frames: int = 7              # images per traversal row
    iter_steps: int = 12         # iterative traversal steps per side
    warpage_latents: int = 64
    warpage_k: tuple = (1, 2, 4, 8)
    warpage_eps: tuple = (0.01, 0.1, 1.0)
    ganspace_samples: int = 20000
    sfvq_latents: int = 8192
    sfvq_vertices: int = 16
    sfvq_epochs: int = 5
    factor_latents: int = 64     # held-out latents for the factor benchmark
    seed: int = 0

    @classmethod
    def quick(cls) -> "DemoConfig":
        return cls(num_latents=2, k=3, frames=5, iter_steps=3, warpage_latents=8, warpage_k=(1, 2),
                   warpage_eps=(0.1, 1.0), ganspace_samples=2000, sfvq_latents=2000, sfvq_vertices=8,
                   sfvq_epochs=1, factor_latents=8)


def edit_scale(ws: torch.Tensor) -> float:
    """One edit size for every method: half the RMS distance of W samples from their mean."""
    return 0.5 * float((ws - ws.mean(0)).norm(dim=1).pow(2).mean().sqrt())


@torch.no_grad()
def traversal_panel(G, w0: torch.Tensor, directions: torch.Tensor, alphas: torch.Tensor, title: str, scale: int = 2):
    """Rows = directions (k, d) (unit), columns = alphas; all layers edited (w + alpha d)."""
    k = directions.shape[0]
    ws = w0[None, None, :] + alphas[None, :, None] * directions[:, None, :]  # (k, F, d)
    imgs = G.synthesize(ws.reshape(-1, ws.shape[-1]))
    return viz.image_grid(imgs, k, len(alphas), scale=scale, title=title,
                          row_labels=[f"{i}" for i in range(k)], label_width=14)


def run_demo(out, *, quick: bool = False, overwrite: bool = False, progress: bool = True,
             generator=None, config: DemoConfig | None = None) -> dict:
    """Run the demo into directory ``out``; returns the report dict."""
    from ._common import load_generator_arg

    cfg = config or (DemoConfig.quick() if quick else DemoConfig())
    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    G = generator if generator is not None else load_generator_arg(None)
    gen = lambda s: torch.Generator().manual_seed(cfg.seed * 1000 + s)
    report = {"latentfast": __version__, "torch": torch.__version__, "python": platform.python_version(),
              "config": asdict(cfg), "timings_s": {}}
    steps = Progress("latentfast demo", 7, progress)

    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        (tmp / "directions").mkdir()
        # 1. local bases -------------------------------------------------------------------------------------
        t = time.perf_counter()
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
        report["timings_s"]["local_basis"] = time.perf_counter() - t
        steps.update()

        # 2. linear traversals side by side -----------------------------------------------------------------
        t = time.perf_counter()
        A = edit_scale(w_samples)
        alphas = torch.linspace(-A, A, cfg.frames)
        w0 = lb.points[0]
        panels = [traversal_panel(G, w0, lb.basis[0].T, alphas, "Local Basis (at this latent)"),
                  traversal_panel(G, w0, gs.components, alphas, "GANSpace (global PCA)")]
        if sefa is not None:
            panels.append(traversal_panel(G, w0, sefa.directions, alphas, "SeFa (global)"))
        viz.save_png(viz.hstack(panels), tmp / "traversal_linear.png")
        report["edit_size"] = A
        report["timings_s"]["traversal_linear"] = time.perf_counter() - t
        steps.update()

        # 3. iterative traversal next to the linear one -------------------------------------------------------
        t = time.perf_counter()
        rows_iter = []
        step = A / cfg.iter_steps
        picks = torch.linspace(0, 2 * cfg.iter_steps, cfg.frames).round().long()
        for i in range(cfg.k):
            tr = traverse_iterative(f, z[0], i, num_steps=cfg.iter_steps, step=step, k=cfg.k, method=method)
            rows_iter.append(tr.outputs[picks])
        with torch.no_grad():
            it_imgs = G.synthesize(torch.cat(rows_iter))
        it_panel = viz.image_grid(it_imgs, cfg.k, cfg.frames, scale=2, title="Local Basis, iterative curve",
                                  row_labels=[f"{i}" for i in range(cfg.k)], label_width=14)
        viz.save_png(viz.hstack([panels[0], it_panel]), tmp / "traversal_iterative.png")
        report["timings_s"]["traversal_iterative"] = time.perf_counter() - t
        steps.update()

        # 4. warpage ------------------------------------------------------------------------------------------
        t = time.perf_counter()
        zw = G.sample_z(cfg.warpage_latents, gen(4))
        ks = [kk for kk in cfg.warpage_k if kk <= cfg.k]
        wp = warpage(f, zw, ks, eps=cfg.warpage_eps, global_basis=gs.components.T, generator=gen(5),
                     method=basis_method(max(ks), zw.shape[1]))
        viz.save_png(warpage_chart(wp, ks, cfg.warpage_eps, "Grassmannian warpage of W (geodesic)"),
                     tmp / "warpage.png")
        report["warpage"] = wp.to_dict()
        report["timings_s"]["warpage"] = time.perf_counter() - t
        steps.update()

        # 5. SFVQ ---------------------------------------------------------------------------------------------
        t = time.perf_counter()
        w_fit = sample_w(G, cfg.sfvq_latents, gen(6))
        curve = SFVQ(cfg.sfvq_vertices, w_fit.shape[1])
        log = curve.fit(w_fit, epochs_per_stage=cfg.sfvq_epochs, progress=False, generator=gen(7))
        curve.save(tmp / "sfvq_curve.pt")
        with torch.no_grad():
            imgs = G.synthesize(curve.vertices.detach())
        viz.save_png(viz.vertex_grid(imgs, "SFVQ curve: one image per vertex, in order"), tmp / "sfvq_curve.png")
        seg_len = curve.directions(normalize=False).norm(dim=1)
        top_segments = seg_len.argsort(descending=True)[: cfg.k]
        dirs = curve.directions()[top_segments]
        save_directions(tmp / "directions", "sfvq_segments", dirs, w_mean)
        viz.save_png(traversal_panel(G, w0, dirs, alphas, "SFVQ segment directions (longest segments)"),
                     tmp / "sfvq_edits.png")
        assign = curve.assign(w_fit)
        report["sfvq"] = {"num_vertices": cfg.sfvq_vertices, "final_loss": log.final_loss,
                          "final_perplexity": log.final_perplexity,
                          "mean_distance_sq": float(assign.distance_sq.mean()),
                          "segments_shown": [int(j) for j in top_segments]}
        report["timings_s"]["sfvq"] = time.perf_counter() - t
        steps.update()

        # 6. factor benchmark --------------------------------------------------------------------------------
        t = time.perf_counter()
        if generator is None:  # ground-truth factors exist only for the embedded default generator
            from ..factor_bench import factor_benchmark

            methods = {"Local Basis": None, "GANSpace": gs.components, "SFVQ segments": dirs}
            if sefa is not None:
                methods["SeFa"] = sefa.directions
            report["factor_benchmark"] = factor_benchmark(G, f, methods, k=cfg.k, edit_size=A,
                                                          num_latents=cfg.factor_latents, seed=cfg.seed + 1,
                                                          method=method)
        report["timings_s"]["factor_benchmark"] = time.perf_counter() - t
        steps.update()

        # 7. report ------------------------------------------------------------------------------------------
        report["timings_s"]["total"] = time.perf_counter() - t_start
        write_json(tmp / "report.json", report)
        (tmp / "report.md").write_text(render_markdown(report))
        steps.update()
    return report


def render_markdown(report: dict) -> str:
    lines = ["# latentfast demo report", "",
             f"latentfast {report['latentfast']}, torch {report['torch']}, python {report['python']}; "
             f"total {report['timings_s']['total']:.1f} s", "",
             "![linear traversals](traversal_linear.png)", "", "![iterative traversal](traversal_iterative.png)", "",
             "![warpage](warpage.png)", "", "![SFVQ curve](sfvq_curve.png)", "", "![SFVQ edits](sfvq_edits.png)", "",
             "## Local Basis", "", f"singular values at z0: {report['local_basis']['singular_values_z0']}", "",
             "## Warpage (geodesic distance, mean)", "", "| k | " + " | ".join(
                 [f"local eps={e}" for e in report["warpage"]["eps"]] + ["random points", "random subspaces", "global"]) + " |",
             "|---" * (4 + len(report["warpage"]["eps"])) + "|"]
    wp = report["warpage"]
    for k in wp["k"]:
        cells = [f"{wp['local'][str(k)][str(e)]['mean']:.3f}" for e in wp["eps"]]
        cells += [f"{wp['random_points'][str(k)]['mean']:.3f}", f"{wp['random_subspaces'][str(k)]['mean']:.3f}",
                  f"{wp['global'][str(k)]['mean']:.3f}" if str(k) in wp["global"] else "-"]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    s = report["sfvq"]
    lines += ["", "## SFVQ", "", f"{s['num_vertices']} vertices, final training loss {s['final_loss']:.4f}, "
              f"perplexity {s['final_perplexity']:.2f}, mean squared distance to the curve {s['mean_distance_sq']:.4f}"]
    fb = report.get("factor_benchmark")
    if fb:
        lines += ["", "## Factor benchmark", "", fb.get("description", ""), "",
                  f"Edit size {fb['edit_size']:.3f} in W for every method, both signs, {fb['num_latents']} held-out "
                  "latents.  Purity = share of the (continuous) factor change in the dominant factor.", "",
                  "| method | mean purity | direction -> dominant factor (purity) | mean shape change |",
                  "|---|---|---|---|"]
        for name, res in fb["methods"].items():
            dom = ", ".join(f"{i}:{d} ({p:.2f})" for i, (d, p) in enumerate(zip(res["dominant_factor"], res["purity"])))
            shape = sum(res["shape_change"]) / len(res["shape_change"])
            lines.append(f"| {name} | {res['mean_purity']:.3f} | {dom} | {shape:.3f} |")
    lines += ["", "## Timings (s)", ""] + [f"- {k}: {v:.1f}" for k, v in report["timings_s"].items()]
    return "\n".join(lines) + "\n"
