"""SFVQ files (curves and training checkpoints): safe torch files with a format version and a sha256 checksum.

A file is ``torch.save`` of a dict holding only tensors, numbers, strings, None, lists and dicts (so
``torch.load(weights_only=True)`` reads it without running pickled code).  ``checksum`` is the sha256 of every
other entry, walked in sorted key order, each tensor fed as its dtype, shape and raw bytes and each number
exactly (``float.hex``): one flipped bit anywhere in the data changes it.  Writes go through
:func:`latentfast._io.atomic_write_bytes` (a temporary file beside the target, then one rename).
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import warnings

import torch

from .. import _io

Tensor = torch.Tensor


def _feed(h, obj) -> None:
    if isinstance(obj, Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}".encode())
        for k in sorted(obj, key=str):
            _feed(h, k)
            _feed(h, obj[k])
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{len(obj)}".encode())
        for v in obj:
            _feed(h, v)
    elif isinstance(obj, str):
        b = obj.encode()
        h.update(f"S{len(b)}:".encode() + b)
    elif isinstance(obj, bool) or obj is None:
        h.update(f"B{obj}".encode())
    elif isinstance(obj, int):
        h.update(f"I{obj}".encode())
    elif isinstance(obj, float):
        h.update(f"F{obj.hex()}".encode())
    else:
        raise TypeError(f"cannot checksum an object of type {type(obj).__name__}")


def checksum(payload: dict) -> str:
    """sha256 (hex) of every entry of ``payload`` except ``"checksum"`` itself."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in payload.items() if k != "checksum"})
    return h.hexdigest()


def write(path, payload: dict, *, name: str = "path") -> None:
    """Add the checksum to ``payload`` and write it atomically to ``path`` (errors name ``name`` and ``path``)."""
    payload = dict(payload, checksum=checksum(payload))
    buf = io.BytesIO()
    torch.save(payload, buf)
    # a library save replaces its target (as torch.save does; checkpoints are rewritten every few steps); the
    # command refuses an existing --out before it trains.  A directory is refused by _io's one output rule.
    _io.atomic_write_bytes(path, buf.getvalue(), overwrite=True, name=name)


def read(path, fmt: str, *, name: str = "path") -> dict:
    """Read a file written by :func:`write` (or an older file of ``fmt``), verified: a dict with ``format == fmt``.

    Raises ValueError naming ``name`` and ``path`` for an empty, truncated or corrupt file, a file holding
    pickled objects other than tensors and plain containers (refused, never run), another kind of file, or a
    checksum that does not match (the file was changed after it was written).  A missing file raises
    FileNotFoundError as ``open`` does.  Files without a checksum (format version 1) are returned unverified;
    the caller decides by ``payload["version"]``.
    """
    path = os.fspath(path)
    where = f"{name}: {path!r}"
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise ValueError(f"{where} is empty (0 bytes), not a {fmt} file")
    try:
        with warnings.catch_warnings():  # torch warns about the protocol of foreign pickles; we refuse them anyway
            warnings.simplefilter("ignore", UserWarning)
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        what = f" (it needs {found.group(1)})" if found else ""
        raise ValueError(f"{where} is not a {fmt} file: it holds pickled objects other than tensors and plain "
                         f"containers{what}; refused without running them") from None
    except (RuntimeError, EOFError, ValueError, KeyError, IndexError, UnicodeDecodeError, OSError) as e:
        if isinstance(e, (FileNotFoundError, IsADirectoryError, PermissionError)):
            raise
        # torch's own text here is long and names its internals (miniz, [Errno 22]); the class is what matters
        raise ValueError(f"{where} is not a readable {fmt} file (truncated, corrupt or not a torch file)") from None
    if not (isinstance(payload, dict) and payload.get("format") == fmt):
        got = type(payload).__name__ + (f" with format {payload.get('format')!r}" if isinstance(payload, dict) else "")
        raise ValueError(f"{where} is not a {fmt} file (expected a dict with format {fmt!r}, got a {got})")
    if "checksum" in payload:
        if not isinstance(payload["checksum"], str) or payload["checksum"] != _safe_checksum(payload):
            raise ValueError(f"{where} is corrupt: its checksum does not match its contents (the file changed "
                             f"after it was written)")
    return payload


def _safe_checksum(payload: dict):
    try:
        return checksum(payload)
    except TypeError:
        return None
