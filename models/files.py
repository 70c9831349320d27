"""Writing files so that a kill, a full disk or an error never leaves half a file under the final name.

Every file the project writes goes through `atomic_write`: the writer fills a temporary file in the same
folder (same file system, so the final `os.replace` is atomic), and only a complete file takes the final
name. On failure the temporary file is removed and the previous file, if any, is left as it was.

File modes: a new file gets what a plain `open()` would give, 0666 less the umask (0644 under the
usual 022), not mkstemp's private 0600, so a service or a colleague running as another user can read it; a
replaced file keeps its previous mode; a read-only destination is refused unless the caller asks
(`replace_read_only=True`, or the CLIs' `--force`, which runs the command inside `replacing_read_only()`).

Clean failure: temporary files and staging folders are named `.NAME.scratchdet-tmp-PID-*` (and
`-staging-`, `-old-`); the next write into the same folder removes those of dead processes that are older
than its own start (`remove_stale`), and a write that fails removes the folders it created. Commands prove
every destination writable with `check_destination` before their first step, changing nothing on disk.

No other module writes files: tests/test_writes.py walks the source and fails on a write outside this module.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import hashlib
import logging
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)
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
        OSError: `path` cannot be replaced whatever the flags say: its file system is mounted read-only,
            or its folder is not writable (the message names the mount or the folder).
    """
    path = Path(path)
    try:
        previous = path.stat()
    except FileNotFoundError:
        return 0o666 & ~_umask()
    except OSError as error:
        raise OSError(f"{path}: cannot write the file there ({error.strerror or error})") from None
    mode = stat.S_IMODE(previous.st_mode)
    blocked = _folder_problem(path.parent)
    if blocked:
        raise OSError(f"{path}: {blocked}")
    allowed = _REPLACE_READ_ONLY.get() if replace_read_only is None else replace_read_only
    # root passes os.access whatever the bits say, so the bits are checked as well
    if stat.S_ISREG(previous.st_mode) and not allowed and (not mode & 0o222 or not os.access(path, os.W_OK)):
        raise ReadOnlyError(f"{path}: the file is read-only (mode {mode:04o}); not replacing it (pass "
                            "--force, or replace_read_only=True, to replace it)")
    return mode


def check_destination(path: str | Path, folder: bool = False) -> Path:
    """Prove that the file (or with `folder`, the folder) `path` can be written, changing nothing on disk.

    Every command calls this for each of its outputs before its first step, so a bad destination is refused
    before any work and before anything is created or removed.

    Raises:
        ReadOnlyError: `path` is a read-only file (see `final_mode`).
        OSError: `path` names a folder where a file is wanted (or the reverse), something other than a
            regular file, or a place under a file, a read-only mount or a folder this user cannot write.
    """
    path = Path(path)
    if path.name in ("", ".", ".."):
        raise OSError(f"{path}: names a folder by '{path.name or path}' alone; give the output a name, "
                      f"such as {path / ('out' if folder else 'out.json')}")
    if folder:
        if path.exists() and not path.is_dir():
            raise OSError(f"{path}: is a file, not a folder")
    elif path.is_dir():
        raise OSError(f"{path}: is a folder; give a file name")
    elif path.exists() and not path.is_file():
        raise OSError(f"{path}: is not a regular file (a device, FIFO or socket); not replacing it")
    final_mode(path)
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():
            raise OSError(f"{path}: {existing} is a broken symbolic link")
        existing = existing.parent
    if not existing.is_dir():
        raise OSError(f"{path}: cannot write the file there ({existing} is a file, not a folder)")
    blocked = _folder_problem(existing)
    if blocked:
        raise OSError(f"{path}: {blocked}")
    return path


def _folder_problem(folder: Path) -> str | None:
    """Why nothing can be created in the existing `folder` (a read-only mount, no write permission), or None."""
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        read_only = False
    if read_only:
        return (f"cannot write in {folder}: {describe_device(folder)} is mounted read-only (--force cannot "
                "help: remount it read-write or choose another folder)")
    if not os.access(folder, os.W_OK | os.X_OK):
        return (f"cannot write in the folder {folder} (Permission denied: the folder is not writable by this "
                "user; --force cannot help)")
    return None


def describe_device(folder: str | Path) -> str:
    """'the file system DEVICE mounted at MOUNT' holding `folder` (from /proc/self/mounts where there is one)."""
    target = Path(os.path.abspath(folder))
    best: tuple[str, str] = ("", "")
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        fields = line.split()
        if len(fields) < 2:
            continue
        mount = fields[1].replace("\\040", " ")
        if (target == Path(mount) or Path(mount) in target.parents) and len(mount) > len(best[1]):
            best = (fields[0], mount)
    return f"the file system {best[0]} mounted at {best[1]}" if best[1] else f"the file system holding {folder}"


def _make_parents(folder: Path) -> list[Path]:
    """mkdir -p `folder`; returns the folders it created, deepest first (to remove them again on failure)."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for created in reversed(missing):
        created.mkdir(exist_ok=True)
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:  # deepest first; a folder something else wrote into meanwhile stays
        try:
            folder.rmdir()
        except OSError:
            return


# Temporary files and folders carry this mark and their writer's process id, so the next run can tell its
# own debris (a kill -9, a power cut) from another live process's work: .NAME.scratchdet-tmp-PID-RANDOM.SUFFIX
MARK = "scratchdet"
_DEBRIS = re.compile(rf"^\.(?P<name>.+)\.{MARK}-(?P<kind>tmp|staging|old)-(?P<pid>\d+)-")
_STARTED = time.time()  # this process's start, as near as an import gets: older debris is not its own
_SWEPT: set[Path] = set()


def _temporary_prefix(name: str, kind: str) -> str:
    return f".{name}.{MARK}-{kind}-{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale(folder: str | Path, started: float | None = None) -> list[Path]:
    """Remove the temporary files and staging folders a killed run left in `folder`; returns what was removed.

    Only names with this module's mark are touched, and only those older than `started` (default: this
    process's start) whose writer is no longer running. A folder set aside while it was being replaced
    (`.NAME.scratchdet-old-*`) is moved back to NAME when NAME is missing, so a kill loses nothing.
    """
    folder = Path(folder)
    started = _STARTED if started is None else started
    removed: list[Path] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _DEBRIS.match(entry.name)
        if not match or (_alive(int(match["pid"])) and int(match["pid"]) != os.getpid()):
            continue
        try:
            if entry.lstat().st_mtime >= started:
                continue
            original = folder / match["name"]
            if match["kind"] == "old" and (entry / match["name"]).exists() and not original.exists():
                os.replace(entry / match["name"], original)
                log.warning("%s: restored from %s, set aside by a run that was stopped", original, entry.name)
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        except OSError as error:
            log.warning("%s: cannot remove this stale temporary (%s)", entry, error.strerror or error)
            continue
        removed.append(entry)
    if removed:
        log.info("%s: removed %d stale temporary file(s)/folder(s) of a run that was stopped: %s", folder,
                 len(removed), ", ".join(p.name for p in removed))
    return removed


# A folder's entries set aside until their replacement is proven (train --exist-ok keeps the previous run until
# the new one has a checkpoint): .FOLDER.scratchdet-previous-PID-RANDOM/, with the marker once every entry is in.
# The sweep leaves these alone; only their owner's recovery (train/run_folder.py) decides their fate.
_SET_ASIDE = re.compile(rf"^\..+\.{MARK}-previous-(?P<pid>\d+)-")
SET_ASIDE_COMPLETE = ".complete"


def set_aside(folder: str | Path, names: list[str]) -> Path:
    """Move the entries `names` of `folder` into a new holder folder inside it (one rename each), then mark the
    holder complete; returns the holder."""
    folder = Path(folder)
    holder = Path(tempfile.mkdtemp(dir=folder, prefix=_temporary_prefix(folder.name, "previous")))
    for name in names:
        os.replace(folder / name, holder / name)
    (holder / SET_ASIDE_COMPLETE).touch()
    return holder


def stopped_set_asides(folder: str | Path) -> list[Path]:
    """The holders `set_aside` made in `folder` whose process is gone (a run that was stopped), oldest first."""
    found = []
    with contextlib.suppress(OSError):
        for entry in Path(folder).iterdir():
            match = _SET_ASIDE.match(entry.name)
            if match and entry.is_dir() and (not _alive(int(match["pid"])) or int(match["pid"]) == os.getpid()):
                found.append(entry)
    return sorted(found, key=lambda path: path.stat().st_mtime)


def put_back(holder: Path, folder: Path) -> list[str]:
    """Move every entry of `holder` back into `folder` (replacing what took its name), remove the holder;
    returns the names put back."""
    names = sorted(entry.name for entry in holder.iterdir() if entry.name != SET_ASIDE_COMPLETE)
    for name in names:
        target = folder / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(holder / name, target)
    shutil.rmtree(holder)
    return names


def _sweep_once(folder: Path) -> None:
    key = Path(os.path.abspath(folder))
    if key not in _SWEPT:
        _SWEPT.add(key)
        remove_stale(folder)


@contextlib.contextmanager
def atomic_write(path: str | Path, replace_read_only: bool | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write to; on success it replaces `path` in one rename.

    The temporary name keeps `path`'s suffix, so writers that choose a format by suffix (OpenCV,
    onnxruntime's quantiser) work unchanged. The result's mode is `final_mode(path)`. Stale temporaries of
    killed runs in the same folder are removed first (`remove_stale`); folders created for `path` are
    removed again when the write fails.

    Raises:
        ReadOnlyError: `path` is read-only and `replace_read_only` is false (see `final_mode`).
        OSError: the folder cannot be created or written, or the disk is full (naming `path` and the device).
    """
    path = Path(path)
    mode = final_mode(path, replace_read_only)
    try:
        created = _make_parents(path.parent)
        blocked = _folder_problem(path.parent)
        if blocked:
            raise OSError(f"{path}: {blocked}")
        _sweep_once(path.parent)
        handle, name = tempfile.mkstemp(prefix=_temporary_prefix(path.stem, "tmp"), suffix=path.suffix,
                                        dir=path.parent)
        os.close(handle)
    except OSError as error:
        if str(error).startswith(f"{path}: "):
            raise
        raise OSError(f"{path}: cannot write the file there ({error.strerror or error})") from None
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, mode)  # after the writer: some writers recreate the file
        os.replace(temporary, path)
    except BaseException as error:
        full = _disk_full(error, path.parent)
        temporary.unlink(missing_ok=True)
        _remove_empty(created)
        if full:
            raise OSError(f"no space left on {describe_device(path.parent)} while writing {path}; the previous "
                          "file, if any, is unchanged") from error
        raise


# torch reports a full disk as a RuntimeError from its zip writer: "PytorchStreamWriter failed writing file
# data/0: file write failed" or "[enforce fail at inline_container.cc:672] . unexpected pos 128 vs 64"
_TORCH_WRITE_FAILURES = ("file write failed", "unexpected pos", "failed writing")


def _disk_full(error: BaseException, folder: Path) -> bool:
    """True for a write that failed because the disk is full, whatever library raised it."""
    if isinstance(error, OSError):
        return error.errno == errno.ENOSPC
    if isinstance(error, RuntimeError) and any(text in str(error) for text in _TORCH_WRITE_FAILURES):
        try:
            return os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize < 1 << 20
        except OSError:
            return False
    return False


def require_free_space(path: str | Path, needed: int) -> None:
    """Refuse a write of about `needed` bytes to `path` that the disk cannot hold, before writing anything.

    Raises:
        OSError: fewer than `needed` bytes are free (naming the device, `path` and both sizes).
    """
    folder = Path(path).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        stats = os.statvfs(folder)
    except OSError:
        return
    free = stats.f_bavail * stats.f_frsize
    if free < needed:
        raise OSError(f"no space left on {describe_device(folder)} while writing {path}: {needed / 1e6:.1f} MB "
                      f"needed, {free / 1e6:.1f} MB free; the previous file, if any, is unchanged")


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
    staging folder is removed and `out` is left as it was (see `staging_folder`).
    """
    out = Path(out)
    check_destination(out, folder=True)
    with staging_folder(out) as stage:
        yield stage
        _replace_folder(stage, out)


@contextlib.contextmanager
def staging_folder(out: str | Path) -> Iterator[Path]:
    """Yield a new, empty staging folder beside `out` (`.NAME.scratchdet-staging-PID-*`) to fill and publish
    (`atomic_folder`, `publish_folder`); whatever is left of it when the block ends is removed.

    The folder gets 0777 less the umask (mkdtemp's 0700 would hide a bundle from every other user). Stale
    staging folders of killed runs beside `out` are removed first, and a previous `out` a kill left set aside
    is moved back (`remove_stale`); the parent folders created for it are removed again on failure.
    """
    out = Path(out)
    try:
        created = _make_parents(out.parent)
        _sweep_once(out.parent)
        stage = Path(tempfile.mkdtemp(dir=out.parent, prefix=_temporary_prefix(out.name, "staging")))
    except OSError as error:
        raise OSError(f"{out}: cannot write the folder there ({error.strerror or error})") from None
    try:
        stage.chmod(0o777 & ~_umask())
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        _remove_empty(created)
        raise
    shutil.rmtree(stage, ignore_errors=True)


def publish_folder(stage: Path, out: Path, last: str) -> None:
    """Move what `stage` holds into the folder `out`: in one rename when `out` is missing or empty, else entry by
    entry (replacing files of the same name) with the entry named `last` after every other, so that its
    presence means the rest is in place."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        os.replace(stage, out)
        return
    for entry in sorted(stage.iterdir(), key=lambda path: path.name == last):
        target = out / entry.name
        if entry.is_dir() and not entry.is_symlink() and target.is_dir():
            publish_folder(entry, target, last)
        else:
            os.replace(entry, target)


def _replace_folder(stage: Path, out: Path) -> None:
    if not out.exists():
        os.replace(stage, out)
        return
    holder = Path(tempfile.mkdtemp(dir=out.parent, prefix=_temporary_prefix(out.name, "old")))
    os.replace(out, holder / out.name)
    try:
        os.replace(stage, out)
    except OSError:
        os.replace(holder / out.name, out)
        raise
    shutil.rmtree(holder, ignore_errors=True)


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
