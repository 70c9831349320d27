"""Writing files so that a kill, a full disk or an error never leaves half a file under the final name.

Every file the project writes goes through `atomic_write`: the writer fills a temporary file in the same
folder (same file system, so the final `os.replace` is atomic), and only a complete file takes the final
name. On failure the temporary file is removed and the previous file, if any, is left as it was.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write to; on success it replaces `path` in one rename.

    The temporary name keeps `path`'s suffix, so writers that choose a format by suffix (OpenCV,
    onnxruntime's quantiser) work unchanged.

    Raises:
        OSError: the folder cannot be created or written, or the disk is full (naming `path`).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
        os.close(handle)
    except OSError as error:
        raise OSError(f"{path}: cannot write the file there ({error.strerror or error})") from None
    temporary = Path(name)
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        if _disk_full(error, path.parent):
            raise OSError(f"{path}: no space left on the device; the previous file, if any, "
                                        "is unchanged") from error
        raise


def _disk_full(error: BaseException, folder: Path) -> bool:
    """True for a write that failed because the disk is full, whatever library raised it (torch, for one,
    reports ENOSPC as a RuntimeError about its stream writer)."""
    if isinstance(error, OSError):
        return error.errno == errno.ENOSPC
    if isinstance(error, RuntimeError) and "write" in str(error).lower():
        try:
            return os.statvfs(folder).f_bavail == 0
        except OSError:
            return False
    return False


def write_text(path: str | Path, text: str) -> Path:
    """Write `text` atomically; returns the path."""
    path = Path(path)
    with atomic_write(path) as temporary:
        temporary.write_text(text)
    return path


def ensure_writable(out: str | Path) -> None:
    """Create the folder of `out` and prove a file can be written there, before any long work.

    Raises:
        OSError: the folder cannot be created or written (naming `out`).
    """
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=".write-test", dir=out.parent)
        os.close(handle)
        os.unlink(name)
    except OSError as error:
        raise OSError(f"{out}: cannot write the file there ({error.strerror or error})") from None


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
