"""Backend selection with reasons.

Each op owns an :class:`Op` with an ordered list of :class:`Backend` s (fast first, the pure-PyTorch reference
last).  A backend answers ``why_not(*args, **kwargs) -> list[str]``: empty when it can serve these inputs,
otherwise the reasons it cannot (device, dtype, shape, extension not built, triton missing ...).

* ``backend="auto"`` takes the first backend with no reasons (falling back quietly);
* ``backend="<name>"`` raises :class:`BackendUnavailable` with that backend's reasons when it cannot serve;
* the environment variable ``LATENTFAST_BACKEND`` forces a backend for a whole run, either for every op
  (``LATENTFAST_BACKEND=reference``) or per op (``LATENTFAST_BACKEND=segment_assign=native,mlp_jvp=reference``).
  An explicit ``backend=`` argument other than ``"auto"`` wins over the environment.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

ENV_VAR = "LATENTFAST_BACKEND"


class BackendUnavailable(RuntimeError):
    """Raised when an explicitly requested backend cannot serve the given inputs."""


@dataclass(frozen=True)
class Backend:
    """``why_not`` gives the reasons this backend cannot serve the inputs at all; ``auto_why_not`` (optional)
    adds reasons to pass it over only when choosing automatically — e.g. the Triton interpreter can run on CPU
    tensors in tests, but ``backend="auto"`` must never pick it for real work."""

    name: str
    why_not: Callable[..., List[str]]
    run: Callable[..., Any]
    doc: str = ""
    auto_why_not: Optional[Callable[..., List[str]]] = None

    def auto_reasons(self, *args, **kwargs) -> List[str]:
        reasons = self.why_not(*args, **kwargs)
        if not reasons and self.auto_why_not is not None:
            reasons = self.auto_why_not(*args, **kwargs)
        return reasons


def _env_choice(op_name: str) -> str | None:
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        return None
    if "=" not in raw:
        return raw
    for part in raw.split(","):
        key, _, value = part.partition("=")
        if key.strip() == op_name:
            return value.strip()
    return None


class Op:
    """An op's ordered backends; see the module docstring for the selection rules."""

    def __init__(self, name: str, backends: Sequence[Backend]):
        self.name = name
        self.backends: Dict[str, Backend] = {b.name: b for b in backends}

    def names(self) -> List[str]:
        return list(self.backends)

    def select(self, backend: str = "auto", *args, **kwargs) -> Backend:
        requested = backend
        if requested == "auto":
            requested = _env_choice(self.name) or "auto"
        if requested == "auto":
            for b in self.backends.values():
                if not b.auto_reasons(*args, **kwargs):
                    return b
            raise BackendUnavailable(self._report(*args, **kwargs))  # the reference should always serve
        if requested not in self.backends:
            raise ValueError(f"backend: expected one of {['auto'] + self.names()} for {self.name}, got {requested!r}")
        chosen = self.backends[requested]
        reasons = chosen.why_not(*args, **kwargs)
        if reasons:
            raise BackendUnavailable(
                f"{self.name}: backend {requested!r} cannot serve these inputs: " + "; ".join(reasons)
            )
        return chosen

    def __call__(self, *args, backend: str = "auto", **kwargs):
        return self.select(backend, *args, **kwargs).run(*args, **kwargs)

    def _report(self, *args, **kwargs) -> str:
        lines = [f"{self.name}: no backend can serve these inputs:"]
        for b in self.backends.values():
            lines.append(f"  {b.name}: " + "; ".join(b.auto_reasons(*args, **kwargs) or ["available"]))
        return "\n".join(lines)


#: every op registers itself here so that ``python -m latentfast.info`` can list it
REGISTRY: Dict[str, Op] = {}


def register(op: Op) -> Op:
    REGISTRY[op.name] = op
    return op


# --- environment-level availability shared by the backends of every op ------------------------------------------

def triton_why_not(*tensors) -> List[str]:
    """Reasons the Triton backends cannot run on these tensors (empty when they can).

    Triton needs CUDA tensors, except under its interpreter (``TRITON_INTERPRET=1`` set before triton is
    imported), which runs kernels on CPU tensors one program at a time — used by the tests on machines
    without a GPU.
    """
    reasons: List[str] = []
    try:
        import triton  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install
        return [f"triton is not importable ({type(exc).__name__}: {exc}); pip install triton"]
    interpret = os.environ.get("TRITON_INTERPRET", "0") == "1"
    for t in tensors:
        if t.device.type != "cuda" and not interpret:
            reasons.append(f"tensor on {t.device}; triton kernels need CUDA tensors (or TRITON_INTERPRET=1)")
            break
    return reasons


def triton_auto_why_not(*tensors) -> List[str]:
    """Automatic selection never runs Triton's CPU interpreter (a test tool, far slower than the alternatives)."""
    if any(t.device.type != "cuda" for t in tensors):
        return ["CPU tensors reach Triton only through its interpreter; ask for backend='triton' explicitly"]
    return []


def native_module():
    """The compiled extension ``latentfast._C``, or ``None`` when it was not built."""
    try:
        from latentfast import _C  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _C


def native_why_not() -> List[str]:
    if native_module() is None:
        return [
            "the native extension latentfast._C is not built; reinstall with "
            "`pip install --no-build-isolation -e .` (and LATENTFAST_NO_EXTENSION unset)"
        ]
    return []
