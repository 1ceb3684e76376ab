"""Files written whole or not at all.

:func:`atomic_file` is the one way lrlab writes a file a reader or a crash could otherwise see
half of (records, checkpoints, reports, plots): it writes a temporary file in the same
directory, flushes and fsyncs it, then renames it over the target (``os.replace``, atomic on
POSIX). On any exception (a full disk, a second Ctrl-C) the temporary file is removed and the
target is left as it was.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_file"]


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary twin of ``path`` for writing; it replaces ``path`` when the block ends.

    Args:
        path: the file to (re)write.
        mode: ``"w"`` (text, UTF-8) or ``"wb"`` (bytes).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_file writes with mode 'w' or 'wb', not {mode!r}")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
