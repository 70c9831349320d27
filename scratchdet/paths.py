"""Output folders that never overwrite an earlier run: runs/val, runs/val2, runs/val3, ...

Top-level package: the stages import it, it imports none of them.
"""

from __future__ import annotations

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
