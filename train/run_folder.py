"""Run folders: refuse one holding another run (unless resuming or replacing it), and the resolved config."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import yaml

from scratchdet.models.config import ModelConfig, to_dict
from scratchdet.models.files import (
    SET_ASIDE_COMPLETE,
    check_destination,
    put_back,
    set_aside,
    stopped_set_asides,
    write_text,
)
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


def clear_previous_run(out: str | Path, found: list[str]) -> Path | None:
    """Set the previous run's entries `check_run_folder` found aside (--exist-ok), after every check passed.

    They stay in a hidden holder in `out` until the new run has written its first checkpoint
    (`drop_previous_run`); a run stopped before that gets them back at the next `train` (`recover_previous_run`).
    Returns the holder, or None when there was nothing to set aside.
    """
    out = Path(out)
    if not found:
        return None
    log.warning("%s: --exist-ok: setting the previous run's %s aside; they are removed once this run has its "
                "first checkpoint", out, ", ".join(found))
    return set_aside(out, found)


def drop_previous_run(holder: Path) -> None:
    """Remove the previous run set aside by `clear_previous_run`: the new run has a checkpoint now."""
    shutil.rmtree(holder)
    log.info("%s: the previous run's files are removed (this run has a checkpoint)", holder.parent)


def restore_previous_run(out: str | Path, holder: Path) -> None:
    """Put the previous run in `holder` back in `out` (removing the replacing run's files) and say so."""
    out = Path(out)
    complete = (holder / SET_ASIDE_COMPLETE).exists()
    if complete:  # the replacing run may have started: its files go (the run it replaced comes back)
        for name in (*RUN_FILES, *DERIVED):
            path = out / name
            if path.exists():
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    names = put_back(holder, out)
    log.warning("%s: restored the previous run (%s): `train --exist-ok` had set it aside and stopped before its "
                "first checkpoint", out, ", ".join(names))


def recover_previous_run(out: str | Path) -> None:
    """Settle what a `train --exist-ok` that was stopped left set aside in `out`, before anything else runs there.

    Its previous run is put back when the stopped run had no checkpoint yet (or stopped while setting it
    aside), and removed when it had one (the replacement was asked for and happened).
    """
    out = Path(out)
    for holder in stopped_set_asides(out):
        # complete: every old entry is in the holder, so a last.pt in `out` is the stopped run's own checkpoint
        if (holder / SET_ASIDE_COMPLETE).exists() and (out / "last.pt").is_file():
            drop_previous_run(holder)
        else:
            restore_previous_run(out, holder)


def write_run_config(path: Path, model_config: ModelConfig, config: TrainConfig, data: str, world: int) -> None:
    """The resolved config of a run: every default filled in, command-line overrides applied."""
    values = {"model": to_dict(model_config), "train": to_dict(config), "data": data, "world_size": world}
    write_text(path, yaml.safe_dump(values, sort_keys=False))
