"""``python -m latentfast.info``: versions, and every backend of every op with available / why not."""
from __future__ import annotations

import platform
import sys

import torch


def _probe_inputs(op_name: str):
    """Small representative inputs per op, on CPU and (when present) CUDA, to ask the backends about."""
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    probes = []
    for dev in devices:
        maker = PROBES.get(op_name)
        if maker is not None:
            probes.append((dev, maker(dev)))
    return probes


def _segment_probe(dev):
    x = torch.zeros(4, 3, device=dev)
    c = torch.zeros(5, 3, device=dev)
    return (x, c, True, None), {}


def _mlp_probe(dev):
    from .ops.mlp_jvp.reference import MLPSpec

    spec = MLPSpec([torch.zeros(4, 4, device=dev)], [torch.zeros(4, device=dev)])
    return (spec, torch.zeros(2, 4, device=dev)), {}


PROBES = {"segment_assign": _segment_probe, "mlp_jvp": _mlp_probe}


def report() -> str:
    from . import _dispatch
    import latentfast  # noqa: F401  (registers every op)

    lines = [
        f"latentfast {latentfast.__version__}",
        f"python     {platform.python_version()} ({sys.executable})",
        f"torch      {torch.__version__} (cuda: {torch.version.cuda}, gpu available: {torch.cuda.is_available()})",
    ]
    try:
        import triton

        lines.append(f"triton     {triton.__version__}")
    except Exception as exc:
        lines.append(f"triton     not importable ({type(exc).__name__})")
    native = _dispatch.native_module()
    lines.append(f"native     {'built: ' + native.__file__ if native else 'not built'}")
    if torch.cuda.is_available():
        lines.append(f"device     {torch.cuda.get_device_name()}")
    lines.append("")
    lines.append("backends (first available is used by backend='auto'):")
    for name, op in sorted(_dispatch.REGISTRY.items()):
        lines.append(f"  {name}")
        probes = _probe_inputs(name)
        for bname, backend in op.backends.items():
            if not probes:
                lines.append(f"    {bname:<10} (no probe inputs)")
                continue
            for dev, (args, kwargs) in probes:
                reasons = backend.auto_reasons(*args, **kwargs)
                auto = backend.auto_reasons(*args, **kwargs)
                if reasons:
                    state = "unavailable: " + "; ".join(reasons)
                elif auto:  # e.g. the Triton interpreter on CPU: serves explicit requests only
                    state = "available on request only (auto skips it): " + "; ".join(auto)
                else:
                    state = "available"
                lines.append(f"    {bname:<10} [{dev}] {state}")
    return "\n".join(lines)


def main() -> None:
    print(report())


if __name__ == "__main__":
    main()
