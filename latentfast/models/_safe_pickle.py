"""A restricted unpickler for NVIDIA network pickles (stylegan2-ada-pytorch, stylegan3) that never runs their code.

NVIDIA pickles every network class through ``torch_utils.persistence``: an instance is stored as
``_reconstruct_persistent_obj(meta)`` with ``meta = dict(type='class', version=6, module_src=<the whole source
file>, class_name=..., state=<the module's __dict__>)``; unpickling normally ``exec``s ``module_src``.  Here that
global resolves to :func:`_persistent_stub`, which keeps ``class_name`` and ``state`` in a :class:`PersistentStub`
and throws the source away.  The state holds the ``_parameters`` / ``_buffers`` / ``_modules`` OrderedDicts of an
``nn.Module`` and plain attributes (floats, numpy scalars and arrays, strings, ``dnnlib.EasyDict`` kwargs).

Tensors arrive as ``torch._utils._rebuild_tensor_v2(storage, ...)`` whose storage is
``torch.storage._load_from_bytes(<torch.save bytes>)``; that inner archive is read with
``torch.load(weights_only=True)``.  numpy values (StyleGAN3 layers hold ndarrays such as ``in_size``; gains are
numpy float64 scalars) are rebuilt from raw bytes of a plain numeric dtype only: ``_reconstruct`` (either module
spelling: ``numpy.core`` from numpy 1.x, ``numpy._core`` from 2.x), ``numpy.ndarray``, ``numpy.dtype`` and protocol
5's ``_frombuffer`` resolve to checked stand-ins.  Every other global — ``os.system``, ``builtins.eval``, any
class — raises :class:`UnsafePickleError` naming the file and the global, before anything is called.
"""
from __future__ import annotations

import io
import math
import pickle
from collections import OrderedDict
from typing import Any, Dict, Iterator, Tuple

import numpy as np
import torch

__all__ = ["UnsafePickleError", "PersistentStub", "EasyDict", "safe_load_pickle", "TORCH_LEGACY_MAGIC", "one_line",
           "torch_refusal"]

TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # first object of a legacy (non-zip) torch.save file


class UnsafePickleError(ValueError):
    """The pickle references a global outside the allow-list; nothing from it was executed."""


class EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict``: a dict with attribute access."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class PersistentStub:
    """What a ``torch_utils.persistence`` object becomes: its class name and pickled ``__dict__``.

    For an ``nn.Module`` the state has ``_parameters``, ``_buffers`` and ``_modules``; :meth:`tensors` walks them.
    """

    def __init__(self, class_name: str, state: Dict[str, Any], version):
        self.class_name, self.state, self.version = class_name, state, version

    def __repr__(self):
        return f"PersistentStub({self.class_name})"

    def __getattr__(self, name):
        state = self.__dict__.get("state", {})
        for group in ("_parameters", "_buffers", "_modules"):
            d = state.get(group) or {}
            if name in d:
                return d[name]
        if name in state:
            return state[name]
        raise AttributeError(f"{self.__dict__.get('class_name', '?')} has no attribute {name!r}")

    def has(self, name: str) -> bool:
        try:
            getattr(self, name)
            return True
        except AttributeError:
            return False

    @property
    def children(self) -> Dict[str, Any]:
        return dict(self.state.get("_modules") or {})

    def tensors(self, prefix: str = "") -> Iterator[Tuple[str, torch.Tensor]]:
        """(dotted name, tensor) for every parameter and buffer, like ``nn.Module.state_dict``."""
        for group in ("_parameters", "_buffers"):
            for k, v in (self.state.get(group) or {}).items():
                if isinstance(v, torch.Tensor):
                    yield prefix + k, v
        for k, m in self.children.items():
            if isinstance(m, PersistentStub):
                yield from m.tensors(prefix + k + ".")


def one_line(e) -> str:
    """The first non-empty line of an exception's message (at most 200 characters), for one-line errors."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0][:200] if lines else type(e).__name__


def torch_refusal(e) -> str:
    """torch.load(weights_only=True)'s refusal as one line: what it refused, never its advice to retry with
    weights_only=False (that would run the file's code)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    keep = [ln for ln in lines if "weights_only" not in ln and "torch.load" not in ln]
    return keep[0][:200] if keep else "it holds objects other than tensors"


def _persistent_stub(meta):
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("class_name"), str):
        raise UnsafePickleError("persistence record: expected dict(type='class', class_name=..., state=...)")
    state = meta.get("state")
    if not isinstance(state, dict):
        raise UnsafePickleError(f"persistence record for {meta['class_name']}: expected a state dict, "
                                f"got {type(state).__name__}")
    return PersistentStub(meta["class_name"], state, meta.get("version"))


def _load_storage_bytes(b):
    if not isinstance(b, (bytes, bytearray)):
        raise UnsafePickleError(f"tensor storage: expected bytes, got {type(b).__name__}")
    try:
        return torch.load(io.BytesIO(b), weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        raise UnsafePickleError(f"tensor storage: torch.load(weights_only=True) refused the embedded data: "
                                f"{torch_refusal(e)}") from e


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    if backward_hooks:
        raise UnsafePickleError("tensor: backward hooks in a checkpoint are not allowed")
    return torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, OrderedDict())


def _rebuild_parameter(data, requires_grad, backward_hooks, state=None):
    if backward_hooks:
        raise UnsafePickleError("parameter: backward hooks in a checkpoint are not allowed")
    if not isinstance(data, torch.Tensor):
        raise UnsafePickleError(f"parameter: expected tensor data, got {type(data).__name__}")
    return torch.nn.Parameter(data, requires_grad=False)


def _plain_dtype(dtype, what: str) -> np.dtype:
    """dtype must be a numpy bool/int/uint/float/complex dtype without fields (nothing that holds objects)."""
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biufc" or dtype.fields is not None or dtype.subdtype:
        raise UnsafePickleError(f"{what}: expected a plain numeric dtype, got {dtype!r}")
    return dtype


def _numpy_scalar(dtype, data=None):
    _plain_dtype(dtype, "numpy scalar")
    if not isinstance(data, (bytes, bytearray)) or len(data) != dtype.itemsize:
        raise UnsafePickleError(f"numpy scalar: expected {dtype.itemsize} bytes of {dtype}")
    return np.frombuffer(bytes(data), dtype=dtype)[0]


def _numpy_dtype(spec, align=False, copy=True):
    if not isinstance(spec, str):
        raise UnsafePickleError(f"numpy dtype: expected a type code string, got {type(spec).__name__}")
    dt = np.dtype(spec, align=bool(align), copy=True)  # a fresh dtype: BUILD must not touch numpy's singletons
    if dt.kind not in "biufc":
        raise UnsafePickleError(f"numpy dtype: expected a plain numeric type code, got {spec!r}")
    return dt


class _NDArrayClass:
    """What the global ``numpy.ndarray`` resolves to: only a marker for :func:`_numpy_reconstruct`."""


class _PickledArray(np.ndarray):
    """The empty array :func:`_numpy_reconstruct` returns; pickle's BUILD then calls :meth:`__setstate__`, which
    accepts only (version, shape, plain numeric dtype, is_fortran, raw bytes of exactly that size)."""

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) != 5:
            raise UnsafePickleError("numpy array: expected state (version, shape, dtype, is_fortran, bytes)")
        version, shape, dtype, fortran, raw = state
        _plain_dtype(dtype, "numpy array")
        if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
            raise UnsafePickleError(f"numpy array: expected a shape tuple of non-negative ints, got {shape!r}")
        if type(version) is not int or type(fortran) is not bool or not isinstance(raw, (bytes, bytearray)) \
                or len(raw) != math.prod(shape) * dtype.itemsize:
            raise UnsafePickleError(f"numpy array: expected {math.prod(shape) * dtype.itemsize} bytes of {dtype} "
                                    f"for shape {shape}")
        super().__setstate__((version, shape, dtype, fortran, bytes(raw)))


def _numpy_reconstruct(cls, shape, typecode):
    if cls is not _NDArrayClass or shape != (0,) or typecode != b"b":
        raise UnsafePickleError("numpy array: expected _reconstruct(numpy.ndarray, (0,), b'b')")
    return np.ndarray.__new__(_PickledArray, (0,), np.uint8)


def _numpy_frombuffer(buf, dtype, shape, order):  # protocol 5 pickles of contiguous arrays
    _plain_dtype(dtype, "numpy array")
    if not isinstance(buf, (bytes, bytearray)) or not (isinstance(shape, tuple) and all(
            type(n) is int and n >= 0 for n in shape)) or order not in ("C", "F") \
            or len(buf) != math.prod(shape) * dtype.itemsize:
        raise UnsafePickleError(f"numpy array: expected raw bytes of {dtype} for shape {shape!r}")
    return np.frombuffer(bytes(buf), dtype=dtype).reshape(shape, order=order).copy()


_ALLOWED = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent_stub,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("dnnlib", "EasyDict"): EasyDict,
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage_bytes,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy", "ndarray"): _NDArrayClass,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _numpy_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _numpy_frombuffer,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, name: str):
        super().__init__(file)
        self._name = name

    def find_class(self, module, name):
        fn = _ALLOWED.get((module, name))
        if fn is None:
            raise UnsafePickleError(
                f"{self._name}: refusing to load global '{module}.{name}' — only tensors, parameters and "
                f"NVIDIA persistence records are allowed in a network pickle; nothing from the file was executed")
        return fn

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self._name}: unexpected persistent id {str(pid)[:80]!r} in a network pickle")


def safe_load_pickle(f, name: str):
    """Unpickle ``f`` (a binary file object) with the allow-list above; ``name`` is used in error messages.

    Raises UnsafePickleError for a disallowed global, ValueError for a truncated/corrupt stream."""
    try:
        return _RestrictedUnpickler(f, name).load()
    except UnsafePickleError as e:
        if str(e).startswith(name):
            raise
        raise UnsafePickleError(f"{name}: {e}") from e
    except (EOFError, pickle.UnpicklingError, IndexError, ValueError, TypeError, AttributeError, KeyError,
            RuntimeError) as e:
        raise ValueError(f"{name}: expected a network pickle, but it is truncated or corrupt "
                         f"({type(e).__name__}: {one_line(e)})") from e
