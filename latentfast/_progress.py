"""Progress bars: one helper so every long step reports the same way (tqdm, on stderr).

A bar is shown only when it is asked for (``enabled=True``, the default of the library's ``progress=`` arguments),
stderr is a terminal, and progress has not been silenced for the whole process (the command's ``--quiet`` calls
:func:`set_quiet`; the environment variable ``LATENTFAST_QUIET=1`` does the same).  Bars are closed on the way out
of a ``with`` block, also when it raises, so an error line is never glued onto a half-drawn bar.

Usage::

    with progress(total=len(chunks), desc="local basis", unit="chunk", enabled=progress_arg) as bar:
        for chunk in chunks:
            ...
            bar.update()

    for epoch in progress(range(epochs), desc="epochs"):
        ...
"""
from __future__ import annotations

import os
import sys
from typing import Iterable, Optional

from tqdm.auto import tqdm

_quiet = False


def set_quiet(quiet: bool = True) -> None:
    """Silence (or re-enable) every progress bar of this process."""
    global _quiet
    _quiet = bool(quiet)


def is_quiet() -> bool:
    """True when progress is silenced for the whole process (``set_quiet`` or ``LATENTFAST_QUIET=1``)."""
    return _quiet or os.environ.get("LATENTFAST_QUIET", "0").lower() in ("1", "true", "yes", "on")


def progress(iterable: Optional[Iterable] = None, *, desc: str, total: Optional[int] = None,
             unit: str = "it", enabled: bool = True, leave: bool = False, **kwargs) -> tqdm:
    """A tqdm bar on stderr that is silent unless ``enabled``, stderr is a terminal and progress is not quiet.

    ``leave=False`` by default: a finished bar is erased, so the next line (or an error) starts clean.  Extra
    keyword arguments go to tqdm unchanged (``position``, ``postfix``, ...)."""
    disable = not enabled or is_quiet() or not _stderr_is_terminal()
    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave, disable=disable, file=sys.stderr,
                dynamic_ncols=True, **kwargs)


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False
