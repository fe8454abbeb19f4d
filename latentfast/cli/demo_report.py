"""The demo's report, one content list rendered twice: report.md (images beside it) and report.html (one
self-contained file, the images embedded as base64).  Each figure has one caption: what it shows, what to look for."""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import List, Tuple

Block = Tuple  # ("h", level, text) | ("p", text) | ("fig", file, alt, caption) | ("table", header, rows)


def _captions(r: dict) -> dict:
    c = r["config"]
    A = r["edit_size"]
    wp = r["warpage"]
    it = r.get("iterative", {})
    purity = (" Under each label ('bench:'), the factor that direction changes most on the factor benchmark's "
              "held-out latents, with its purity." if r.get("factor_benchmark") else "")
    lb_note = (" For Local Basis that is direction #i averaged over those latents, so it need not match the edit "
               "shown at this one." if r.get("factor_benchmark") else "")
    return {
        "traversal_linear.png":
            f"Linear edits w + α·d along the top {c['k']} directions of each method — Local Basis (each latent's "
            "own directions), GANSpace (global PCA of W) and SeFa (global, from the generator's weights) — at "
            f"{min(c['num_base'], c['num_latents'])} base latents, the same edit sizes α for all (±{A:.2f} in W, "
            "half the RMS spread of W). The framed centre column is the unedited image; under every row of edits, "
            "|edited − original| ×2 (black: unchanged, yellow: changed by half the range or more). Row "
            "labels: index and singular value σ (LB, at that latent), standard deviation (GANSpace) or eigenvalue "
            f"(SeFa).{purity}{lb_note} Look for rows that change one thing (position, size, colour) and whose difference "
            "map stays on the object or on the background.",
        "traversal_iterative.png":
            "Left: the linear Local Basis edits of the first figure. Middle: the paper's iterative curve traversal "
            f"from the same latents ({c['iter_steps']} steps per side of {it.get('step', 0):.3f} in W; each step "
            "recomputes the local basis and follows the direction that best matches the previous one), α = distance "
            "travelled. Right, for base latent 0: the cosine between each step and the starting direction (top) and "
            "the local index followed into each step (bottom; lines slightly offset so overlapping ones stay "
            "visible). Where the cosine stays near 1 and the index is flat, the curve is the straight line and the "
            "two grids agree; where the cosine drops or the index switches, the curve bends away and the middle "
            "grid departs from the left one.",
        "warpage.png":
            f"Grassmannian ({wp['metric']}) distance between top-k local subspaces of W, mean ± std over "
            f"{c['warpage_latents']} latents, for k = {', '.join(map(str, wp['k']))}: a latent against a nearby one "
            "(z + ε·e, e a random unit vector), random pairs of latents, each latent against the global GANSpace "
            "subspace, and Haar-random subspaces (dashed, grey band ± std: the level with no shared structure). "
            "Look for small distances at small ε (the local basis varies smoothly) and random pairs close to the "
            "random level (W is warped: no single global basis stands in for the local ones). Past half the width of W "
            "every distance falls: two k-dimensional subspaces of a d-dimensional space share at least 2k − d "
            "dimensions.",
        "sfvq_curve.png":
            f"The fitted SFVQ curve: the image of each of its {c['sfvq_vertices']} vertices, in curve order. Look "
            "for neighbours that look alike and change gradually: the curve orders the latents it was fitted to.",
        "sfvq_pca.png":
            f"The {c['sfvq_latents']} W latents the curve was fitted to (dots) and the curve (vertices numbered), "
            "projected on the latents' first two principal axes; the segments used for the edits below in red. "
            "Look for the curve running through the dense part of the cloud. A 2-D projection: apparent crossings "
            "and short segments may be foreshortened.",
        "sfvq_training.png":
            "Left: the perplexity of the segment usage (exp of the entropy of which segment each latent picks) at "
            "the last epoch of each stage of the curve's growth, against its ceiling M − 1 (every segment used "
            "equally). Well below the ceiling means some segments are rarely used. Right: the training loss.",
        "sfvq_edits.png":
            "Edits along the unit directions of the curve's longest segments, the same α and base latents as the "
            "first figure. Row labels: segment j (vertex j → j + 1) and its length in W." + purity +
            " Look for a direction that changes one factor, as along the curve itself.",
        "factor_benchmark.png":
            "Factor benchmark: mean purity per method (bars) and each direction's purity (dots); dashed, the "
            "chance level 1/6. Higher is a cleaner, more interpretable direction.",
    }


def _factor_table(fb: dict) -> List[Block]:
    n = len(fb["factors"]) - 1
    blocks: List[Block] = [
        ("h", 2, "Factor benchmark"),
        ("p", f"{fb['description']} {fb['num_latents']} held-out latents (seed {fb['seed']}, seen by no method), "
              f"edit size {fb['edit_size']:.3f} in W for every method and direction, both signs; the factors of "
              "both images are estimated by the shipped factor predictor."),
        ("p", f"Purity of a direction = the change of its dominant factor / the summed change of the {n} continuous "
              f"factors ({', '.join(fb['factors'][1:])}), each change averaged over the latents first: 1 means it "
              f"changes one factor only; the chance level 1/{n} ≈ {1 / n:.2f} is its floor (the change spread "
              "evenly over the factors). The shape is reported beside it, not "
              "in it (the generator draws shapes poorly, so the predicted class flickers under any edit)."),
    ]
    rows = []
    for name, res in fb["methods"].items():
        dom = ", ".join(f"{i}: {d} ({p:.2f})" for i, (d, p) in enumerate(zip(res["dominant_factor"], res["purity"])))
        rows.append([name, f"{res['mean_purity']:.3f}", f"{sum(res['effect']) / len(res['effect']):.3f}",
                     f"{sum(res['shape_change']) / len(res['shape_change']):.3f}", dom])
    blocks.append(("table", ["method", "mean purity", "mean effect (sum of factor changes)", "mean shape change",
                             "direction: dominant factor (purity)"], rows))
    return blocks


def report_blocks(r: dict) -> List[Block]:
    cap = _captions(r)
    figs = r.get("figures", {})
    fig = lambda name: [("fig", name, figs[name]["alt"], cap.get(name, ""))] if name in figs else []  # noqa: E731
    t = r["timings_s"]
    load = r.get("load_average")
    B: List[Block] = [("h", 1, "latentfast demo report"),
                      ("p", f"latentfast {r['latentfast']}, torch {r['torch']} (torch threads "
                            f"{r.get('torch_threads', '?')}), python {r['python']}; total {t['total']:.1f} s"
                            + (f" (load average {load[0]:.1f} at the start, {r.get('cpu_count')} CPUs: the "
                               "machine was shared, times are wall clock)" if load else "") + ".")]
    B += [("h", 2, "Traversals")] + fig("traversal_linear.png") + fig("traversal_iterative.png")
    lbr = r["local_basis"]
    B.append(("p", f"Local Basis ({lbr['method']}, k = {lbr['k']}): singular values at base latent 0: "
                   + ", ".join(f"{s:.3f}" for s in lbr["singular_values_z0"]) + "."))
    B += [("h", 2, "Warpage")] + fig("warpage.png")
    wp = r["warpage"]
    head = ["k"] + [f"local ε={e:g}" for e in wp["eps"]] + ["random pairs", "global (GANSpace)", "random subspaces"]
    ms = lambda s: f"{s['mean']:.3f} ± {s['std']:.3f}"  # noqa: E731
    rows = [[str(k)] + [ms(wp["local"][str(k)][str(e)]) for e in wp["eps"]]
            + [ms(wp["random_points"][str(k)]), ms(wp["global"][str(k)]) if str(k) in wp["global"] else "-",
               ms(wp["random_subspaces"][str(k)])] for k in wp["k"]]
    B.append(("table", head, rows))
    s = r["sfvq"]
    B += [("h", 2, "SFVQ"),
          ("p", f"{s['num_vertices']} vertices; final training loss {s['final_loss']:.4f}, perplexity "
                f"{s['final_perplexity']:.2f} (ceiling {s['num_vertices'] - 1}); mean squared distance of the "
                f"latents to the curve {s['mean_distance_sq']:.3f}.")]
    B += fig("sfvq_curve.png") + fig("sfvq_pca.png") + fig("sfvq_training.png") + fig("sfvq_edits.png")
    if r.get("factor_benchmark"):
        B += _factor_table(r["factor_benchmark"]) + fig("factor_benchmark.png")
    B += [("h", 2, "Timings (s)"), ("table", ["stage", "seconds"], [[k, f"{v:.1f}"] for k, v in t.items()])]
    return B


def render_markdown(r: dict) -> str:
    out = []
    for b in report_blocks(r):
        if b[0] == "h":
            out += ["#" * b[1] + " " + b[2], ""]
        elif b[0] == "p":
            out += [b[1], ""]
        elif b[0] == "fig":
            out += [f"![{b[2]}]({b[1]})", "", f"*{b[3]}*", ""]
        else:
            out += ["| " + " | ".join(b[1]) + " |", "|" + "---|" * len(b[1])]
            out += ["| " + " | ".join(row) + " |" for row in b[2]] + [""]
    return "\n".join(out)


def render_html(r: dict, folder: Path) -> str:
    """One HTML file with every figure of ``folder`` embedded (base64 PNG)."""
    e = html.escape
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>latentfast demo report</title><style>",
           "body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}",
           "img{max-width:100%;border:1px solid #ddd}figure{margin:1.5em 0}figcaption{font-size:.92em;color:#444}",
           "table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ccc;padding:3px 7px}",
           "</style></head><body>"]
    for b in report_blocks(r):
        if b[0] == "h":
            out.append(f"<h{b[1]}>{e(b[2])}</h{b[1]}>")
        elif b[0] == "p":
            out.append(f"<p>{e(b[1])}</p>")
        elif b[0] == "fig":
            data = base64.b64encode((Path(folder) / b[1]).read_bytes()).decode()
            out.append(f"<figure><img src='data:image/png;base64,{data}' alt='{e(b[2])}'>"
                       f"<figcaption>{e(b[3])}</figcaption></figure>")
        else:
            out.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in b[1]) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in b[2]]
            out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
