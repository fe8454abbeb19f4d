#!/usr/bin/env python
"""Train latentfast's shipped default generator: a small StyleGAN2 (32x32) on procedurally rendered scenes.

    PYTHONPATH=. python scripts/train_default_generator.py [--config scripts/train_default_generator.json]
        [--out-dir latentfast/models/default] [--workdir runs/default_generator] [--steps N] [--resume]

Every hyper-parameter and the seed are in the config JSON.  Data are fresh scenes every step
(:mod:`latentfast.models.default.scenes`, an infinite data set); losses: non-saturating logistic for G, logistic
for D plus lazy R1 (every ``r1_interval`` steps, weight ``r1_gamma``); style mixing; Adam; an EMA copy of G
(``g_ema``, half-life ``ema_kimg`` thousand images with StyleGAN2-ADA's ramp-up) is what ships.  No path-length
regularisation (too costly on a CPU for a 32x32 model).  ``train_noise`` "none" trains without StyleGAN's per-pixel
noise inputs (the scenes are flat colour; with "random" noise a first run grew speckle textures while D took over),
so the shipped model's noise strengths stay 0 and its output is a deterministic function of the latent.

Writes to ``--out-dir`` (periodically, atomically): default_generator.pt (g_ema state dict, float32, with w_avg),
default_config.json (constructor arguments + training summary) and training_log.json; sample grids and a resumable
checkpoint go to ``--workdir``.  Reproducible from the seed on the same machine and thread count.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from latentfast.models.default.scenes import SHAPES, render_scenes  # noqa: E402
from latentfast.models.default.training import Discriminator, mapping_ws, synthesis_fast  # noqa: E402
from latentfast.models.stylegan2 import StyleGAN2Generator  # noqa: E402


def save_grid(images: torch.Tensor, path: Path, nrow: int = 8, scale: int = 2) -> None:
    from PIL import Image
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    B, C, H, W = x.shape
    ncol = math.ceil(B / nrow)
    canvas = torch.full((3, ncol * (H + 1) + 1, nrow * (W + 1) + 1), 255, dtype=torch.uint8)
    for i in range(B):
        r, c = divmod(i, nrow)
        canvas[:, 1 + r * (H + 1):1 + r * (H + 1) + H, 1 + c * (W + 1):1 + c * (W + 1) + W] = x[i]
    img = Image.fromarray(canvas.permute(1, 2, 0).numpy())
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def atomic_save(obj, path: Path, *, as_json: bool = False) -> None:
    tmp = path.with_name(path.name + ".tmp")
    if as_json:
        tmp.write_text(json.dumps(obj, indent=1))
    else:
        torch.save(obj, tmp)
    os.replace(tmp, path)


def generator_kwargs(cfg: dict) -> dict:
    return dict(size=cfg["size"], style_dim=cfg["w_dim"], n_mlp=cfg["n_mlp"], z_dim=cfg["z_dim"],
                lr_mlp=cfg["lr_mlp"], channels={int(k): int(v) for k, v in cfg["g_channels"].items()})


def write_docs(out: Path) -> None:
    from latentfast.models.default import load_default_generator
    G = load_default_generator()
    with torch.no_grad():
        img = G.synthesize(G.f(G.sample_z(64, torch.Generator().manual_seed(0))))
    save_grid(img, out / "default_samples.png", scale=3)
    save_grid(render_scenes(64, seed=0)[0], out / "real_scenes.png", scale=3)
    print(f"wrote {out / 'default_samples.png'} and {out / 'real_scenes.png'}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--config", type=Path, default=ROOT / "scripts" / "train_default_generator.json")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "latentfast" / "models" / "default")
    ap.add_argument("--workdir", type=Path, default=ROOT / "runs" / "default_generator")
    ap.add_argument("--steps", type=int, default=None, help="override the config's number of steps")
    ap.add_argument("--resume", action="store_true", help="continue from --workdir/checkpoint.pt")
    ap.add_argument("--docs", type=Path, default=None, metavar="DIR",
                    help="instead of training: write DIR/default_samples.png (8x8 samples of the shipped model, "
                         "truncation 1) and DIR/real_scenes.png (8x8 rendered scenes)")
    args = ap.parse_args(argv)
    if args.docs is not None:
        write_docs(args.docs)
        return
    if not args.config.is_file():
        raise SystemExit(f"--config: expected a JSON file, got {args.config} (not found)")
    cfg = json.loads(args.config.read_text())
    if args.steps is not None:
        cfg["steps"] = args.steps
    torch.set_num_threads(int(cfg["threads"]))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    args.workdir.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(cfg["seed"])
    G = StyleGAN2Generator(**generator_kwargs(cfg))
    D = Discriminator(cfg["size"], {int(k): int(v) for k, v in cfg["d_channels"].items()},
                      mbstd_group=cfg["mbstd_group"])
    g_ema = copy.deepcopy(G).eval().requires_grad_(False)
    B = int(cfg["batch"])
    ratio = cfg["r1_interval"] / (cfg["r1_interval"] + 1)  # lazy regularisation: StyleGAN2's Adam adjustment
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg["lr_g"], betas=tuple(cfg["betas"]))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg["lr_d"] * ratio, betas=tuple(b**ratio for b in cfg["betas"]))
    data_gen = torch.Generator().manual_seed(cfg["seed"] + 1)
    z_fixed = torch.randn(64, cfg["z_dim"], generator=torch.Generator().manual_seed(cfg["seed"] + 2))
    log = {"config": cfg, "entries": [], "checkpoints": []}
    step, elapsed = 0, 0.0
    ckpt_path = args.workdir / "checkpoint.pt"
    if args.resume:
        st = torch.load(ckpt_path, weights_only=False)  # our own file
        G.load_state_dict(st["G"]), D.load_state_dict(st["D"]), g_ema.load_state_dict(st["g_ema"])
        opt_g.load_state_dict(st["opt_g"]), opt_d.load_state_dict(st["opt_d"])
        data_gen.set_state(st["data_gen"]), torch.set_rng_state(st["rng"])
        step, elapsed, log = st["step"], st["elapsed"], st["log"]
        log["config"]["steps"] = cfg["steps"]
    save_grid(render_scenes(64, seed=cfg["seed"] + 3, supersample=cfg["render_supersample"])[0],
              args.workdir / "real.png")

    def export(final: bool) -> None:
        ema = copy.deepcopy(g_ema)
        ema.w_avg.copy_(ema.mean_w(cfg["n_w_avg"], torch.Generator().manual_seed(cfg["seed"] + 4)))
        atomic_save({k: v.detach().float().clone() for k, v in ema.state_dict().items()},
                    args.out_dir / "default_generator.pt")
        kw = generator_kwargs(cfg)
        atomic_save({"format": "latentfast-default-generator-v1", "generator": kw,
                     "scenes": {"size": cfg["size"], "shapes": list(SHAPES)},
                     "training": {"steps": step, "images_seen": step * B, "batch": B, "seed": cfg["seed"],
                                  "wall_seconds": round(elapsed, 1), "final": final,
                                  "script": "scripts/train_default_generator.py",
                                  "config": "scripts/train_default_generator.json"},
                     "parameters": sum(p.numel() for p in ema.parameters())},
                    args.out_dir / "default_config.json", as_json=True)
        atomic_save(log, args.out_dir / "training_log.json", as_json=True)
        with torch.no_grad():
            save_grid(ema.synthesize(ema.mapping(z_fixed)), args.workdir / f"samples_{step:06d}.png")
        atomic_save({"G": G.state_dict(), "D": D.state_dict(), "g_ema": g_ema.state_dict(),
                     "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "data_gen": data_gen.get_state(),
                     "rng": torch.get_rng_state(), "step": step, "elapsed": elapsed, "log": log}, ckpt_path)
        log["checkpoints"].append({"step": step, "wall_seconds": round(elapsed, 1)})

    acc = {"loss_g": 0.0, "loss_d": 0.0, "d_real": 0.0, "d_fake": 0.0, "r1": 0.0, "n": 0, "n_r1": 0}
    t_last = time.time()
    max_sec = float(cfg.get("max_minutes") or 0) * 60
    while step < cfg["steps"]:
        real, _ = render_scenes(B, generator=data_gen, supersample=cfg["render_supersample"])
        # ---- D step (+ lazy R1)
        G.requires_grad_(False), D.requires_grad_(True)
        with torch.no_grad():
            fake = synthesis_fast(G, mapping_ws(G, torch.randn(B, cfg["z_dim"]), cfg["mixing_prob"]),
                                  cfg.get("train_noise", "random"))
        do_r1 = cfg["r1_gamma"] > 0 and step % cfg["r1_interval"] == 0
        real_in = real.detach().requires_grad_(do_r1)
        d_real, d_fake = D(real_in), D(fake)
        loss_d = F.softplus(d_fake).mean() + F.softplus(-d_real).mean()
        total = loss_d
        if do_r1:
            (grad,) = torch.autograd.grad(d_real.sum(), real_in, create_graph=True)
            r1 = grad.square().sum(dim=[1, 2, 3]).mean()
            total = total + r1 * (cfg["r1_gamma"] / 2 * cfg["r1_interval"])
            acc["r1"] += float(r1.detach())
            acc["n_r1"] += 1
        opt_d.zero_grad(set_to_none=True)
        total.backward()
        opt_d.step()
        # ---- G step
        G.requires_grad_(True), D.requires_grad_(False)
        fake = synthesis_fast(G, mapping_ws(G, torch.randn(B, cfg["z_dim"]), cfg["mixing_prob"]),
                                  cfg.get("train_noise", "random"))
        loss_g = F.softplus(-D(fake)).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        # ---- EMA
        step += 1
        ema_nimg = cfg["ema_kimg"] * 1000
        if cfg["ema_rampup"]:
            ema_nimg = min(ema_nimg, step * B * cfg["ema_rampup"])
        beta = 0.5 ** (B / max(ema_nimg, 1e-8))
        with torch.no_grad():
            for pe, p in zip(g_ema.parameters(), G.parameters()):
                pe.lerp_(p, 1 - beta)
            for be, b in zip(g_ema.buffers(), G.buffers()):
                be.copy_(b)
        acc["loss_g"] += float(loss_g)
        acc["loss_d"] += float(loss_d)
        acc["d_real"] += float(d_real.mean())
        acc["d_fake"] += float(d_fake.mean())
        acc["n"] += 1
        now = time.time()
        elapsed += now - t_last
        t_last = now
        if step % cfg["log_every"] == 0 or step == cfg["steps"]:
            n = acc["n"]
            entry = {"step": step, "kimg": round(step * B / 1000, 3), "wall_seconds": round(elapsed, 1),
                     "loss_g": round(acc["loss_g"] / n, 4), "loss_d": round(acc["loss_d"] / n, 4),
                     "d_real": round(acc["d_real"] / n, 4), "d_fake": round(acc["d_fake"] / n, 4),
                     "r1": round(acc["r1"] / max(acc["n_r1"], 1), 5)}
            log["entries"].append(entry)
            print(json.dumps(entry), flush=True)
            acc = dict.fromkeys(acc, 0.0)
            acc["n"] = acc["n_r1"] = 0
        stop = max_sec > 0 and elapsed >= max_sec
        if stop:
            log["stopped_early"] = f"max_minutes={cfg['max_minutes']} reached at step {step}"
            cfg["steps"] = step
        if step % cfg["ckpt_every"] == 0 or step >= cfg["steps"]:
            export(final=step >= cfg["steps"])
            t_last = time.time()  # export time is not training time
    print(f"done: {step} steps, {elapsed / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
