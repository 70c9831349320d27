"""The part the acceptance runners share (gpu_check, gpu_train_check): a stage runs on its own and any exception
becomes its FAIL row, a stage whose input an earlier one did not make FAILs saying so, the report (report.json and
report.md) is rewritten after every stage, each file atomically, and the verdict.

Standard library only at import: gpu_train_check runs with a GPU host's own Python and imports this before it has
checked that host.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PASS, FAIL, SKIP, NOT_RUN = "PASS", "FAIL", "SKIP", "NOT RUN"
DETAIL_CHARACTERS = 400  # of an exception's first line: a report row stays one readable line


class StageError(RuntimeError):
    """A stage's check did not hold (the message says what was found)."""


class Skip(Exception):  # noqa: N818 (a stage outcome, not an error)
    """The stage cannot run on this host; the message says why."""


@dataclass
class Outcome:
    """What a stage that ran returns: whether its check held, one line for the report, its numbers."""

    detail: str
    data: dict[str, Any] = field(default_factory=dict)
    passed: bool = True


@dataclass(frozen=True)
class StageResult:
    status: str  # PASS, FAIL or SKIP
    detail: str
    data: dict[str, Any]
    seconds: float


def run_stage(stage: Callable[[], Outcome]) -> StageResult:
    """Run one stage: PASS or FAIL as its outcome says, SKIP with the reason it raised, FAIL with the first line of
    any other exception (so one stage's failure never stops the others)."""
    started = time.perf_counter()
    try:
        outcome = stage()
        status, detail, data = PASS if outcome.passed else FAIL, outcome.detail, outcome.data
    except Skip as reason:
        status, detail, data = SKIP, str(reason), {}
    except Exception as error:  # every stage reports; one failure must not hide the others
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        status, detail, data = FAIL, f"{type(error).__name__}: {first}"[:DETAIL_CHARACTERS], {}
    return StageResult(status, detail, data, round(time.perf_counter() - started, 2))


def require(context: Any, *names: str) -> None:
    """Fail a stage whose input an earlier stage did not produce, naming it.

    Raises:
        StageError: an attribute of `context` named in `names` is missing or empty.
    """
    missing = [name for name in names if not getattr(context, name, None)]
    if missing:
        raise StageError(f"needs {', '.join(missing)} from an earlier stage, which failed")


def verdict(rows: Sequence[Mapping[str, Any]], dry_run: bool, allowed: Collection[str] = (PASS,)) -> str:
    """PASS when there were stages and every row's status is `allowed`, else FAIL. A dry run is never PASS: DRY RUN
    OK when no stage it ran failed, else DRY RUN FAILED."""
    statuses = [row["status"] for row in rows]
    if dry_run:
        return "DRY RUN FAILED" if FAIL in statuses else "DRY RUN OK"
    return PASS if statuses and all(status in allowed for status in statuses) else FAIL


def write_report(out: Path, report: dict[str, Any], markdown: Callable[[dict[str, Any]], str]) -> None:
    """OUT/report.json and OUT/report.md (`markdown(report)`), each replaced atomically: a reader, or a run killed
    mid-write, finds the previous stage's report or this one, never half of one. Both texts are made before either
    file is touched, so a report that cannot be rendered leaves the previous pair as it was."""
    from scratchdet.models.files import write_text

    texts = {"report.json": json.dumps(report, indent=2, default=str), "report.md": markdown(report)}
    for name, text in texts.items():
        write_text(out / name, text)
