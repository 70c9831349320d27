"""Run folders: refuse one holding another run (unless resuming or replacing it), and the resolved config."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import yaml

from scratchdet.models.config import ModelConfig, to_dict
from scratchdet.models.files import check_destination, write_text
from scratchdet.train.config import TrainConfig

log = logging.getLogger(__name__)


class RunFolderError(ValueError):
    """A run folder that holds another run, used without --resume or --exist-ok."""


# What a run writes into its folder, and what later stages derive from it there: a new run in the same
# folder (--exist-ok) removes them, so old plots, exports or bundles never sit beside new weights.
RUN_FILES = ("last.pt", "best.pt", "metrics.jsonl", "config.yaml", "results.csv", "loss.png", "lr.png", "grad_norm.png",
             "grad_fluctuation.png", "map.png")
DERIVED = ("export", "engines", "bench", "bundle", "bundle.tar.gz")


def check_run_folder(out: str | Path, resume: bool = False, exist_ok: bool = False) -> list[str]:
    """Check that `out` may take this run, changing nothing; returns the previous run's entries that
    `exist_ok` will replace (remove them with `clear_previous_run` once every other input is checked).

    Raises:
        RunFolderError: `out` holds another run (files named) and neither flag is given, or `resume`
            without out/last.pt.
        OSError: `out` is a file, or a place this user cannot write (see `check_destination`).
    """
    out = Path(out)
    check_destination(out, folder=True)
    found = [name for name in (*RUN_FILES, *DERIVED) if (out / name).exists()]
    if resume:
        if not (out / "last.pt").is_file():
            raise RunFolderError(f"{out}: nothing to resume (no last.pt); drop --resume to start a new run")
        for name in ("last.pt", "best.pt", "config.yaml"):  # what a resumed run replaces
            check_destination(out / name)
        return []
    if found and not exist_ok:
        raise RunFolderError(f"{out}: holds another run ({', '.join(found)}); use --resume to continue it, "
                             "--exist-ok to replace it, or another --out")
    for name in found:
        check_destination(out / name, folder=(out / name).is_dir())
    return found


def clear_previous_run(out: str | Path, found: list[str]) -> None:
    """Remove the previous run's entries `check_run_folder` found (--exist-ok), after every check passed."""
    out = Path(out)
    if found:
        log.warning("%s: --exist-ok: removing the previous run's %s", out, ", ".join(found))
    for name in found:
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def write_run_config(path: Path, model_config: ModelConfig, config: TrainConfig, data: str, world: int) -> None:
    """The resolved config of a run: every default filled in, command-line overrides applied."""
    values = {"model": to_dict(model_config), "train": to_dict(config), "data": data, "world_size": world}
    write_text(path, yaml.safe_dump(values, sort_keys=False))
