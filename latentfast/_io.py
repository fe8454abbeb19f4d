"""Output files and directories that are never half-written, and never clobber a user's data by surprise."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


def check_writable_parent(name: str, path: Path) -> Path:
    path = Path(path)
    parent = path.resolve().parent
    if parent.exists() and not parent.is_dir():
        raise ValueError(f"{name}: {parent} is not a directory (for {path})")
    if not parent.exists():
        raise ValueError(f"{name}: parent directory {parent} does not exist (for {path})")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{name}: directory {parent} is not writable (for {path})")
    return path


@contextlib.contextmanager
def atomic_output_dir(path, *, overwrite: bool = False, name: str = "out"):
    """Yield a fresh temporary directory beside ``path``; on success it replaces ``path`` in one rename.

    On an exception the temporary directory is removed and ``path`` is left exactly as it was.  An existing,
    non-empty ``path`` is an error unless ``overwrite``; then the old one is moved aside first and deleted only
    after the new one is in place.
    """
    path = check_writable_parent(name, Path(path))
    if path.exists() and not path.is_dir():
        raise ValueError(f"{name}: {path} exists and is not a directory")
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise ValueError(f"{name}: {path} exists and is not empty; choose another directory or pass --overwrite")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.resolve().parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists():
        old = path.resolve().parent / f".{path.name}.old-{os.getpid()}"
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def atomic_write_bytes(path, data: bytes, *, name: str = "out") -> Path:
    """Write ``data`` to ``path`` through a temporary file and os.replace (readers never see a partial file)."""
    path = check_writable_parent(name, Path(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.resolve().parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path
