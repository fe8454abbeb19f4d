"""init="data" vs init="randn" (the published train.py start) on W latents of the embedded generator.

    python -m benchmarks.sfvq_init      # ~10 min on one shared CPU thread; prints one JSON line per fit pair

16,384 W latents (z from seed 100), M = 16 and 32, the fit's defaults (5 epochs per stage, batch 64, lr 1e-3),
generator seeds 0-2; reports both mean squared distances and their ratio (randn / data).
"""
import json
import os

import torch

from latentfast import SFVQ
from latentfast.models.default import load_default_generator


def main() -> None:
    torch.set_num_threads(1)
    G = load_default_generator()
    with torch.no_grad():
        w = G.f(torch.randn(16384, 64, generator=torch.Generator().manual_seed(100)))
    for m in (16, 32):
        for seed in (0, 1, 2):
            r = {"M": m, "seed": seed}
            for init in ("data", "randn"):
                log = SFVQ(m, w.shape[1]).fit(w, init=init, progress=False,
                                              generator=torch.Generator().manual_seed(seed))
                r[init] = log.mean_distance_sq
            r["ratio"] = r["randn"] / r["data"]
            print(json.dumps(r), flush=True)
    print(json.dumps({"load": os.getloadavg()}))


if __name__ == "__main__":
    main()
