"""Output files and directories that are never half-written, and never clobber a user's data by surprise.

One rule for every output, file or directory: :func:`check_output` refuses an existing target (a file, or a
directory that is not empty) unless ``overwrite``, refuses a directory where a file is expected and the
reverse, and needs a writable parent.  Results are written beside the target under a temporary name and renamed
over it in one step, so readers see the old target or the complete new one, never a half-written one; on an
error or an interrupt the temporary is removed.  New files get mode 0666 and directories 0777, less the umask,
as ``open()``/``np.save``/``mkdir`` give (``tempfile`` alone would make them owner-only).  Errors name the
argument (``name``, e.g. ``--out``) and the user's path, never the temporary's.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


def _umask() -> int:
    """The process umask (read without changing it where /proc allows; else set and restored at once)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_writable_parent(name: str, path) -> Path:
    """``path``'s parent exists, is a directory and is writable; returns ``Path(path)``."""
    path = Path(path)
    parent = path.resolve().parent
    if parent.exists() and not parent.is_dir():
        raise ValueError(f"{name}: {parent} is not a directory (for {path})")
    if not parent.exists():
        raise ValueError(f"{name}: parent directory {parent} does not exist (for {path})")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{name}: directory {parent} is not writable (for {path})")
    return path


def check_output(name: str, path, *, kind: str = "file", overwrite: bool = False) -> Path:
    """The one rule for outputs: ``path`` may be written as a ``kind`` ("file" or "dir") output.

    Raises ValueError naming ``name`` and ``path`` when the parent is missing or not writable, when the target
    is a directory but a file is expected (or the reverse), or when it exists (a file, or a non-empty
    directory) and ``overwrite`` is False.  Returns ``Path(path)``.
    """
    if kind not in ("file", "dir"):
        raise ValueError(f"kind: expected 'file' or 'dir', got {kind!r}")
    path = check_writable_parent(name, path)
    if kind == "file":
        if path.is_dir():
            raise ValueError(f"{name}: {path} is a directory; expected the path of a file to write")
        if path.exists() and not overwrite:
            raise ValueError(f"{name}: {path} exists; choose another name or pass --overwrite")
    else:
        if path.exists() and not path.is_dir():
            raise ValueError(f"{name}: {path} exists and is not a directory")
        if path.is_dir() and any(path.iterdir()) and not overwrite:
            raise ValueError(f"{name}: {path} exists and is not empty; choose another directory or pass --overwrite")
    return path


def _write_error(name: str, path: Path, exc: OSError) -> ValueError:
    # exc's own text names the temporary; the user only knows ``path``
    return ValueError(f"{name}: could not write {path}: {exc.strerror or type(exc).__name__}")


@contextlib.contextmanager
def atomic_output_dir(path, *, overwrite: bool = False, name: str = "out"):
    """Yield a fresh temporary directory beside ``path``; on success it replaces ``path`` in one rename.

    On an exception the temporary directory is removed and ``path`` is left exactly as it was.  ``path`` must
    pass :func:`check_output` (kind "dir"); with ``overwrite`` an old directory is moved aside first and deleted
    only after the new one is in place.  An OSError while writing becomes a ValueError naming ``name``/``path``.
    """
    path = check_output(name, path, kind="dir", overwrite=overwrite)
    parent = path.resolve().parent
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=parent))
        os.chmod(tmp, 0o777 & ~_umask())
    except OSError as exc:
        raise _write_error(name, path, exc) from exc
    try:
        yield tmp
        old = None
        if path.exists():
            old = parent / f".{path.name}.old-{os.getpid()}"
            os.replace(path, old)
        os.replace(tmp, path)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _write_error(name, path, exc) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_output_file(path, *, overwrite: bool = False, name: str = "out"):
    """Yield a temporary file path beside ``path`` to write to; on success it is flushed and renamed over ``path``.

    ``path`` must pass :func:`check_output` (kind "file").  On an exception the temporary is removed and
    ``path`` is untouched; an OSError becomes a ValueError naming ``name`` and ``path``.
    """
    path = check_output(name, path, kind="file", overwrite=overwrite)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.resolve().parent)
        os.close(fd)
    except OSError as exc:
        raise _write_error(name, path, exc) from exc
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:  # the bytes reach the disk before the rename makes them visible
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise _write_error(name, path, exc) from exc
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path, data: bytes, *, overwrite: bool = False, name: str = "out") -> Path:
    """Write ``data`` to ``path`` through :func:`atomic_output_file` (readers never see a partial file)."""
    with atomic_output_file(path, overwrite=overwrite, name=name) as tmp:
        tmp.write_bytes(data)
    return Path(path)
