"""Output folders that never overwrite an earlier run: runs/val, runs/val2, runs/val3, ...

Top-level package: the stages import it, it imports none of them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


def increment_path(path: str | Path, exist_ok: bool = False) -> Path:
    """`path` if free (or exist_ok), else the first free path2, path3, ... (created, so two runs never share)."""
    path = Path(path)
    if exist_ok:
        path.mkdir(parents=True, exist_ok=True)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    for number in range(1, 10_000):
        candidate = path if number == 1 else path.with_name(f"{path.name}{number}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise OSError(f"{path}: 9999 numbered folders exist already; pass --exist-ok or another folder")


@contextlib.contextmanager
def output_folder(path: str | Path, exist_ok: bool = False) -> Iterator[Path]:
    """`increment_path`'s folder for the block to fill; a folder this created is removed again when the block
    fails with nothing written into it, so a failed run leaves no empty runs/val2 behind."""
    existed = exist_ok and Path(path).is_dir()
    out = increment_path(path, exist_ok)
    try:
        yield out
    except BaseException:
        if not existed and not any(out.iterdir()):
            out.rmdir()
        raise
