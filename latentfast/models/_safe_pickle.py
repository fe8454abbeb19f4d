"""A restricted unpickler for NVIDIA network pickles (stylegan2-ada-pytorch, stylegan3) that never runs their code.

NVIDIA pickles every network class through ``torch_utils.persistence``: an instance is stored as
``_reconstruct_persistent_obj(meta)`` with ``meta = dict(type='class', version=6, module_src=<the whole source
file>, class_name=..., state=<the module's __dict__>)``; unpickling normally ``exec``s ``module_src``.  Here that
global resolves to :func:`_persistent_stub`, which keeps ``class_name`` and ``state`` in a :class:`PersistentStub`
and throws the source away.  The state holds the ``_parameters`` / ``_buffers`` / ``_modules`` OrderedDicts of an
``nn.Module`` and plain attributes (floats, numpy scalars, strings, ``dnnlib.EasyDict`` kwargs).

Tensors arrive as ``torch._utils._rebuild_tensor_v2(storage, ...)`` whose storage is
``torch.storage._load_from_bytes(<torch.save bytes>)``; that inner archive is read with
``torch.load(weights_only=True)``.  Every other global — ``os.system``, ``builtins.eval``, any class — raises
:class:`UnsafePickleError` naming the file and the global, before anything is called.
"""
from __future__ import annotations

import io
import pickle
from collections import OrderedDict
from typing import Any, Dict, Iterator, Tuple

import numpy as np
import torch

__all__ = ["UnsafePickleError", "PersistentStub", "EasyDict", "safe_load_pickle", "TORCH_LEGACY_MAGIC"]

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
                                f"{str(e)[:300]}") from e


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


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UnsafePickleError(f"numpy scalar: expected a plain numeric dtype, got {dtype!r}")
    if not isinstance(data, (bytes, bytearray)) or len(data) != dtype.itemsize:
        raise UnsafePickleError(f"numpy scalar: expected {dtype.itemsize} bytes of {dtype}")
    return np.frombuffer(bytes(data), dtype=dtype)[0]


def _numpy_dtype(spec, align=False, copy=True):
    if not isinstance(spec, str):
        raise UnsafePickleError(f"numpy dtype: expected a type code string, got {type(spec).__name__}")
    dt = np.dtype(spec, align=bool(align), copy=True)  # a fresh dtype: BUILD must not touch numpy's singletons
    if dt.hasobject:
        raise UnsafePickleError(f"numpy dtype: object dtypes are not allowed, got {spec!r}")
    return dt


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
                         f"({type(e).__name__}: {e})") from e
