"""Special files (FIFOs, devices, sockets): recognised by their mode, never opened.

Opening a FIFO blocks until something writes to it, reading a device can block or never end, and a socket
cannot be opened at all; a dataset or a predict folder holding one named like an image (`a.jpg`) must not
hang a command. Readers ask `special_kind` before they open a file they found by name.

Top-level package: the stages import it, it imports none of them.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def special_kind(path: str | Path) -> str | None:
    """What `path` is when it is a FIFO, device or socket (after following symlinks), else None.

    A missing path, a regular file, a folder or a broken symlink all give None: the caller's own checks
    report those. Only the file's metadata is read (`os.stat`), never its content.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return next((kind for test, kind in _KINDS if test(mode)), None)


def special_problem(path: str | Path) -> str | None:
    """Why `path` is not opened when it is a FIFO, device or socket (the one wording every reader uses), else None."""
    kind = special_kind(path)
    return None if kind is None else f"{kind}, not a regular file: not opened (reading it could block forever)"
