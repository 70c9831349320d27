"""Writing files so that a kill, a full disk or an error never leaves half a file under the final name.

Every file the project writes goes through `atomic_write`: the writer fills a temporary file in the same
folder (same file system, so the final `os.replace` is atomic), and only a complete file takes the final
name. On failure the temporary file is removed and the previous file, if any, is left as it was.

File modes: a new file gets what a plain `open()` would give, 0666 less the umask (0644 under the
usual 022), not mkstemp's private 0600, so a service or a colleague running as another user can read it; a
replaced file keeps its previous mode; a read-only destination is refused unless the caller asks
(`replace_read_only=True`, or the CLIs' `--force`, which runs the command inside `replacing_read_only()`).

No other module writes files: tests/test_writes.py walks the source and fails on a write outside this module.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

_REPLACE_READ_ONLY = contextvars.ContextVar("replace_read_only", default=False)


class ReadOnlyError(PermissionError):
    """The destination is read-only and the caller did not ask to replace it."""


@contextlib.contextmanager
def replacing_read_only(allowed: bool = True) -> Iterator[None]:
    """Inside this block, `atomic_write` replaces read-only destinations (what `--force` asks for)."""
    token = _REPLACE_READ_ONLY.set(allowed)
    try:
        yield
    finally:
        _REPLACE_READ_ONLY.reset(token)


def _umask() -> int:
    # /proc/self/status has "Umask:" since Linux 4.7; elsewhere os.umask has to set it to read it
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def final_mode(path: str | Path, replace_read_only: bool | None = None) -> int:
    """The mode a write to `path` leaves: the previous file's, else 0666 less the umask.

    Raises:
        ReadOnlyError: `path` is read-only (no write bit, or not writable by this user) and
            `replace_read_only` (default: inside `replacing_read_only()`) is false.
    """
    path = Path(path)
    try:
        previous = path.stat()
    except FileNotFoundError:
        return 0o666 & ~_umask()
    except OSError as error:
        raise OSError(f"{path}: cannot write the file there ({error.strerror or error})") from None
    mode = stat.S_IMODE(previous.st_mode)
    allowed = _REPLACE_READ_ONLY.get() if replace_read_only is None else replace_read_only
    # root passes os.access whatever the bits say, so the bits are checked as well
    if stat.S_ISREG(previous.st_mode) and not allowed and (not mode & 0o222 or not os.access(path, os.W_OK)):
        raise ReadOnlyError(f"{path}: the file is read-only (mode {mode:04o}); not replacing it (pass "
                            "--force, or replace_read_only=True, to replace it)")
    return mode


@contextlib.contextmanager
def atomic_write(path: str | Path, replace_read_only: bool | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write to; on success it replaces `path` in one rename.

    The temporary name keeps `path`'s suffix, so writers that choose a format by suffix (OpenCV,
    onnxruntime's quantiser) work unchanged. The result's mode is `final_mode(path)`.

    Raises:
        ReadOnlyError: `path` is read-only and `replace_read_only` is false (see `final_mode`).
        OSError: the folder cannot be created or written, or the disk is full (naming `path`).
    """
    path = Path(path)
    mode = final_mode(path, replace_read_only)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
        os.close(handle)
    except OSError as error:
        raise OSError(f"{path}: cannot write the file there ({error.strerror or error})") from None
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, mode)  # after the writer: some writers recreate the file
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


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` atomically; returns the path."""
    path = Path(path)
    with atomic_write(path) as temporary:
        temporary.write_bytes(data)
    return path


def append_line(path: str | Path, line: str) -> None:
    """Append one line (a log such as metrics.jsonl) in one write; a new file gets the umask's mode.

    An append cannot be atomic as a replace is; one `write` of the whole line under O_APPEND is the most a
    log can do (a kill can at worst cut the last line).
    """
    with open(path, "a") as handle:
        handle.write(line.rstrip("\n") + "\n")


@contextlib.contextmanager
def atomic_folder(out: str | Path) -> Iterator[Path]:
    """Yield a staging folder beside `out` to fill; on success it takes `out`'s place.

    An existing `out` is set aside first and removed only once the new folder is in place; on failure the
    staging folder is removed and `out` is left as it was. The folder gets 0777 less the umask (mkdtemp's
    0700 would hide a bundle from every other user).
    """
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.staging-"))
    except OSError as error:
        raise OSError(f"{out}: cannot write the folder there ({error.strerror or error})") from None
    try:
        stage.chmod(0o777 & ~_umask())
        yield stage
        _replace_folder(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _replace_folder(stage: Path, out: Path) -> None:
    if not out.exists():
        os.replace(stage, out)
        return
    holder = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
    os.replace(out, holder / out.name)
    try:
        os.replace(stage, out)
    except OSError:
        os.replace(holder / out.name, out)
        raise
    shutil.rmtree(holder, ignore_errors=True)


def ensure_writable(out: str | Path) -> None:
    """Create the folder of `out` and prove a file can be written there, before any long work.

    Raises:
        ReadOnlyError: `out` is a read-only file (see `final_mode`).
        OSError: the folder cannot be created or written (naming `out`).
    """
    out = Path(out)
    final_mode(out)
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
