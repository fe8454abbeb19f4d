"""Argument validation shared by every public function.

Every check raises ``ValueError`` or ``TypeError`` whose message names the argument, what was expected and what
was seen, e.g. ``z: expected a floating tensor of shape (B, d_in), got shape (3, 4, 5) of dtype torch.int64``.
Checks are cheap (one reduction at most) so they stay on in hot paths; nothing here uses ``assert``.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

Tensor = torch.Tensor


def _describe(x) -> str:
    if isinstance(x, Tensor):
        return f"shape {tuple(x.shape)} of dtype {x.dtype} on {x.device}"
    if isinstance(x, np.ndarray):
        return f"numpy array of shape {x.shape} and dtype {x.dtype}"
    return f"an object of type {type(x).__name__}"


def as_tensor(name: str, x, *, dtype: Optional[torch.dtype] = None, device=None) -> Tensor:
    """Accept a tensor or numpy array; anything else is a TypeError naming ``name``."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor or numpy.ndarray, got {_describe(x)}")
    if dtype is not None or device is not None:
        x = x.to(dtype=dtype or x.dtype, device=device or x.device)
    return x


def check_floating(name: str, x: Tensor, what: str = "") -> Tensor:
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor{what}, got {_describe(x)}")
    return x


def check_ndim(name: str, x: Tensor, ndim: int | Sequence[int], shape_doc: str) -> Tensor:
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if x.dim() not in allowed:
        raise ValueError(f"{name}: expected shape {shape_doc}, got {_describe(x)}")
    return x


def check_finite(name: str, x: Tensor) -> Tensor:
    """One reduction; raises naming how many entries are NaN/Inf.

    The reduction is ``aminmax`` (min and max propagate NaN, and an infinity is the min or the max): 10 ms on
    33 M float32 values on a 2-core CPU, where ``isfinite(x).all()`` takes ~180 ms (it writes a bool tensor).
    """
    if x.numel() and not _all_finite(x):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name}: expected finite values, got {bad} NaN/Inf entries in {_describe(x)}")
    return x


def _all_finite(x: Tensor) -> bool:
    if not x.is_floating_point():
        return bool(torch.isfinite(x).all())
    lo, hi = torch.aminmax(x)
    return bool(torch.isfinite(lo) & torch.isfinite(hi))


def check_nonempty(name: str, x: Tensor, dim: int = 0, what: str = "batch") -> Tensor:
    if x.shape[dim] == 0:
        raise ValueError(f"{name}: expected a non-empty {what} (size > 0 in dim {dim}), got {_describe(x)}")
    return x


def check_same_device(**tensors: Tensor) -> None:
    devices = {n: t.device for n, t in tensors.items()}
    if len(set(devices.values())) > 1:
        seen = ", ".join(f"{n} on {d}" for n, d in devices.items())
        raise ValueError(f"expected all tensors on one device, got {seen}")


def _is_int_scalar(value) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    if isinstance(value, (Tensor, np.ndarray)) and value.ndim == 0:
        dt = value.dtype
        return (not dt.is_floating_point and not dt.is_complex and dt != torch.bool) if isinstance(value, Tensor) \
            else np.issubdtype(dt, np.integer)
    return False


def check_int(name: str, value, *, low: Optional[int] = None, high: Optional[int] = None) -> int:
    """A Python/numpy integer or a 0-d integer tensor/array (never a bool or a float) in [low, high]."""
    if not _is_int_scalar(value):
        raise TypeError(f"{name}: expected an int, got {value!r} of type {type(value).__name__}")
    value = int(value)
    if low is not None and value < low or high is not None and value > high:
        rng = f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
        raise ValueError(f"{name}: expected an int in {rng}, got {value}")
    return value


def as_positive_int(name: str, value) -> int:
    """A count: an integer >= 1 (numpy integers and 0-d integer tensors accepted)."""
    return check_int(name, value, low=1)


def as_int_sequence(name: str, value, *, low: Optional[int] = None, high: Optional[int] = None) -> list:
    """One integer or a non-empty 1-D collection of them (list/tuple/range, numpy array, tensor) -> list[int].

    Bools and floats are refused (``True`` is not a layer index, ``2.0`` is not a count).
    """
    if _is_int_scalar(value):
        return [check_int(name, value, low=low, high=high)]
    if isinstance(value, (Tensor, np.ndarray)):
        if value.ndim != 1:
            raise ValueError(f"{name}: expected an int or a 1-D sequence of ints, got {_describe(value)}")
        value = list(value)  # 0-d elements, checked one by one below
    elif isinstance(value, (list, tuple, range)):
        value = list(value)
    else:
        raise TypeError(f"{name}: expected an int or a sequence of ints, got {value!r} of type {type(value).__name__}")
    if not value:
        raise ValueError(f"{name}: expected at least one int, got an empty sequence")
    bad = [v for v in value if not _is_int_scalar(v)]
    if bad:
        raise TypeError(f"{name}: expected ints, got {bad[0]!r} of type {type(bad[0]).__name__} in {value!r}")
    return [check_int(name, v, low=low, high=high) for v in value]


def _is_real_scalar(value) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, float, np.integer, np.floating)):
        return True
    if isinstance(value, (Tensor, np.ndarray)) and value.ndim == 0:
        return (value.dtype != torch.bool and not value.dtype.is_complex) if isinstance(value, Tensor) \
            else (np.issubdtype(value.dtype, np.integer) or np.issubdtype(value.dtype, np.floating))
    return False


def as_float(name: str, value, *, low: Optional[float] = None, positive: bool = False) -> float:
    """A finite real number (Python/numpy scalar or 0-d tensor) -> float; ``positive``: > 0; ``low``: >= low."""
    if not _is_real_scalar(value):
        raise TypeError(f"{name}: expected a real number, got {value!r} of type {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    if positive and not value > 0:
        raise ValueError(f"{name}: expected a positive number, got {value!r}")
    if low is not None and value < low:
        raise ValueError(f"{name}: expected a number >= {low:g}, got {value!r}")
    return value


def as_float_sequence(name: str, value, *, low: Optional[float] = None, positive: bool = False) -> list:
    """One finite number or a non-empty 1-D collection of them -> list[float] (each checked as by as_float)."""
    if _is_real_scalar(value):
        return [as_float(name, value, low=low, positive=positive)]
    if isinstance(value, (Tensor, np.ndarray)):
        if value.ndim != 1:
            raise ValueError(f"{name}: expected a number or a 1-D sequence of numbers, got {_describe(value)}")
        value = list(value)
    elif isinstance(value, (list, tuple)):
        value = list(value)
    else:
        raise TypeError(f"{name}: expected a number or a sequence of numbers, got {value!r} of type "
                        f"{type(value).__name__}")
    if not value:
        raise ValueError(f"{name}: expected at least one number, got an empty sequence")
    return [as_float(name, v, low=low, positive=positive) for v in value]


def float_compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype to do linear algebra in for inputs of ``dtype``: float32 for float16/bfloat16 (LAPACK has no
    half-precision kernels and their 8-11 bit mantissas cannot hold an SVD), else ``dtype`` itself."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def check_choice(name: str, value, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")
    return value


def orthonormal_tolerance(dtype: torch.dtype) -> float:
    """Default tolerance on |Q^T Q - I| for bases in ``dtype``: max(1e-5, 4 eps).

    1e-5 in float32 and float64 alike, so that a float32 basis (latentfast's own, deviation ~1e-7 at 512 x 50)
    cast to float64 is accepted, while the angles computed from an accepted basis stay within ~1e-5 rad; 4 eps
    in float16 (3.9e-3) and bfloat16 (3.1e-2), where rounding an exactly orthonormal basis to the dtype already
    moves Q^T Q by up to eps (such bases are re-orthonormalised in float32 before any angle is computed).
    """
    return max(1e-5, 4 * torch.finfo(dtype).eps)


def check_orthonormal(name: str, Q: Tensor, tol: Optional[float] = None) -> Tensor:
    """Cheap test that the columns of ``Q`` (..., n, k) are orthonormal: ||Q^T Q - I||_max <= tol
    (default :func:`orthonormal_tolerance` of Q's dtype; the Gram matrix is formed in float32 for half types)."""
    if tol is None:
        tol = orthonormal_tolerance(Q.dtype)
    k = Q.shape[-1]
    Qc = Q.to(float_compute_dtype(Q.dtype))
    gram = Qc.transpose(-1, -2) @ Qc
    err = (gram - torch.eye(k, dtype=Qc.dtype, device=Q.device)).abs()
    worst = float(err.max()) if err.numel() else 0.0
    if not worst <= tol:  # also catches NaN
        raise ValueError(
            f"{name}: expected orthonormal columns (|Q^T Q - I| <= {tol:g}), got a deviation of {worst:.3g} "
            f"for {_describe(Q)}; orthonormalise it first (e.g. torch.linalg.qr)"
        )
    return Q
