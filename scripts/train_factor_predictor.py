#!/usr/bin/env python
"""Train the factor predictor shipped with the default model (latentfast/models/default/factors.py).

    PYTHONPATH=. python scripts/train_factor_predictor.py [--config scripts/train_factor_predictor.json]
        [--out-dir latentfast/models/default] [--steps N]

Trains on freshly rendered scenes (data seed from the config), evaluates on ``eval_n`` scenes from the held-out
``eval_seed``, and writes factor_predictor.pt (float16 state dict + width, loadable with weights_only=True) and
factor_predictor_log.json (config, loss curve, held-out R^2 per factor and shape accuracy).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from latentfast.models.default.factors import evaluate_factor_predictor, train_factor_predictor  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--config", type=Path, default=ROOT / "scripts" / "train_factor_predictor.json")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "latentfast" / "models" / "default")
    ap.add_argument("--steps", type=int, default=None, help="override the config's number of steps")
    args = ap.parse_args(argv)
    if not args.config.is_file():
        raise SystemExit(f"--config: expected a JSON file, got {args.config} (not found)")
    cfg = json.loads(args.config.read_text())
    if args.steps is not None:
        cfg["steps"] = args.steps
    torch.set_num_threads(int(cfg["threads"]))
    t0 = time.time()
    model, log = train_factor_predictor(steps=cfg["steps"], batch=cfg["batch"], lr=cfg["lr"], width=cfg["width"],
                                        seed=cfg["seed"], noise=cfg["noise"], blur_prob=cfg["blur_prob"],
                                        log_every=cfg["log_every"], verbose=True)
    train_s = time.time() - t0
    metrics = evaluate_factor_predictor(model, n=cfg["eval_n"], seed=cfg["eval_seed"])
    print(json.dumps(metrics, indent=1))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    sd = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    tmp = args.out_dir / "factor_predictor.pt.tmp"
    torch.save({"state_dict": sd, "width": cfg["width"]}, tmp)
    os.replace(tmp, args.out_dir / "factor_predictor.pt")
    (args.out_dir / "factor_predictor_log.json").write_text(json.dumps(
        {"config": cfg, "train_seconds": round(train_s, 1),
         "parameters": sum(p.numel() for p in model.parameters()), "held_out": metrics, "loss": log}, indent=1))


if __name__ == "__main__":
    main()
