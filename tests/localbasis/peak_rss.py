"""Run as a script: the peak resident-set increase of 24 JVPs + 24 VJPs of a conv net through latentfast's
torch.func operator, with max_memory = argv[1] bytes ("none": the automatic budget).  Prints one JSON line.

Linux only (/proc/self/status VmHWM, reset through /proc/self/clear_refs).  The chunks run once untimed first
so that the measured round sees a warm allocator (oneDNN caches per-shape buffers on first use)."""
import json
import sys

import torch
from torch import nn

from latentfast.localbasis.jacobian import FuncOperator


def status(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key):
                return int(line.split()[1]) * 1024


class Net(nn.Module):
    """8 -> (3, 128, 128): linear, 8x nearest upsampling, two 3x3 convs (16 channels at 128x128, 1 MB each)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 16 * 16 * 16)
        self.c1 = nn.Conv2d(16, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 3, 3, padding=1)

    def forward(self, z):
        x = nn.functional.interpolate(self.lin(z).reshape(-1, 16, 16, 16), scale_factor=8)
        return self.c2(torch.tanh(self.c1(x)))


def main():
    torch.manual_seed(0)
    net = Net().requires_grad_(False)
    op = FuncOperator(net, torch.randn(1, 8), max_memory=None if sys.argv[1] == "none" else int(sys.argv[1]))
    V, U = torch.randn(1, 8, 24), torch.randn(1, op.d_out, 24)
    op.jvp(V), op.vjp(U)  # probes, warm-up
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    base = status("VmRSS:")
    y = op.jvp(V)
    x = op.vjp(U)
    peak = status("VmHWM:")
    print(json.dumps(dict(increase=peak - base, result_bytes=y.nbytes + x.nbytes, max_memory=op.max_memory,
                          widths=[p[1] for p in op.passes[-(len(op.passes) // 2):]])))


if __name__ == "__main__":
    main()
