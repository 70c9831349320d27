"""kill -9 at random points of `scratchdet train`, `bundle` and `predict`, then the next run: what is left.

    python -m scratchdet.benchmarks.kill_table --out runs/kill_table --kills 10 --seed 0

For each command it first runs it once to the end (the previous state, and the duration kill points are drawn
from: uniform over [0, duration]), then `--kills` times: start the command, SIGKILL it at the drawn time, and
record the debris (this project's marked temporaries, `.*.scratchdet-{tmp,staging,old,previous}-*`) and whether
every file under a final name is complete (checkpoints load, the bundle has every file and its tarball opens,
no annotated image in predict's save dirs lacks its detections.json document); then run the next command
(train: --resume when last.pt is there, else --exist-ok; bundle and predict: the same command) and record the
same again.
`train-set-aside` kills `train --exist-ok` the moment it has set the previous run aside and records whether that
run is still there (in place or set aside); its next run is --resume, which puts it back and continues it.
Prints the markdown table and writes it with the raw rows as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scratchdet.models.files import file_sha256, write_text

DEBRIS = re.compile(r"^\..+\.scratchdet-(tmp|staging|old|previous)-\d+-")
SET_ASIDE = re.compile(r"^\..+\.scratchdet-previous-\d+-")
BUNDLE_FILES = ("metadata.json", "model.onnx", "README.md", "contract.json")
COMMANDS = ("train", "train-set-aside", "bundle", "predict")


def _scratchdet(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "scratchdet.cli", *arguments]


def debris(root: Path) -> list[str]:
    """The marked temporaries anywhere under `root`."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if DEBRIS.match(p.name))


def _checkpoint_ok(path: Path) -> bool:
    from scratchdet.models.checkpoint import CheckpointError, read_checkpoint

    try:
        read_checkpoint(path)
    except (CheckpointError, FileNotFoundError):
        return False
    return True


def run_intact(run: Path) -> tuple[bool, str]:
    """Every final file of a run folder complete: last.pt and best.pt load, metrics.jsonl lines parse."""
    problems = [name for name in ("last.pt", "best.pt") if (run / name).exists() and not _checkpoint_ok(run / name)]
    metrics = run / "metrics.jsonl"
    if metrics.exists():
        for number, line in enumerate(metrics.read_text().splitlines(), 1):
            try:
                json.loads(line)
            except json.JSONDecodeError:
                problems.append(f"metrics.jsonl line {number}")
    return not problems, ", ".join(problems) or "complete"


def bundle_intact(bundle: Path) -> tuple[bool, str]:
    """The bundle folder holds every file and its tarball opens."""
    missing = [name for name in BUNDLE_FILES if not (bundle / name).is_file()]
    try:
        with tarfile.open(bundle.with_suffix(".tar.gz")) as archive:
            archive.getmembers()
    except (OSError, tarfile.TarError) as error:
        missing.append(f"tarball ({error})")
    return not missing, ", ".join(missing) or "complete"


def predictions_intact(save_dir: Path) -> tuple[bool, str]:
    """No annotated image without its document in detections.json, in each of save_dir, save_dir2, ..."""
    problems = []
    for folder in sorted(save_dir.parent.glob(f"{save_dir.name}*")):
        try:
            listed = {Path(doc["image"]).name for doc in json.loads((folder / "detections.json").read_text())}
        except (OSError, ValueError, KeyError, TypeError) as error:
            problems.append(f"{folder.name}: detections.json unreadable ({type(error).__name__})")
            continue
        unlisted = [p.name for p in folder.glob("*.png") if p.name not in listed]
        if unlisted:
            problems.append(f"{folder.name}: {len(unlisted)} image(s) without detections")
    return not problems, ", ".join(problems) or "complete"


def _killed(command: list[str], after: float, cwd: Path, when: Path | None = None) -> float:
    """Start `command`, SIGKILL it `after` seconds later (if still running), or as soon as an entry of the folder
    `when` is set-aside (`train --exist-ok` has moved the previous run away); returns when it died."""
    # its own process group: the data-loading workers die with it, as under a kill of the whole job
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    started = time.monotonic()
    deadline = started + after
    while process.poll() is None and time.monotonic() < deadline:
        if when is not None and any(SET_ASIDE.match(p.name) for p in when.iterdir()):
            break
        time.sleep(0.005 if when is not None else 0.05)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    return time.monotonic() - started


def _timed(command: list[str], cwd: Path) -> tuple[int, float, str]:
    started = time.monotonic()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    return result.returncode, time.monotonic() - started, (result.stderr.strip().splitlines() or [""])[-1]


def measure(work: Path, kills: int, seed: int, epochs: int) -> list[dict[str, Any]]:
    work.mkdir(parents=True, exist_ok=True)
    data, run, bundle = work / "data", work / "run", work / "run" / "bundle"
    subprocess.run(_scratchdet("data", "synth", "--out", str(data), "--images", "40"), check=True, cwd=work)
    train = _scratchdet("train", "--config", "tiny", "--data", str(data), "--out", str(run), "--epochs", str(epochs),
                        "--batch", "8")
    code, train_seconds, last = _timed([*train, "--exist-ok"], work)
    if code:
        raise RuntimeError(f"the first training run failed: {last}")
    subprocess.run(_scratchdet("export", "--model", str(run / "best.pt"), "--out", str(work / "model.onnx")),
                   check=True, cwd=work, capture_output=True)
    make_bundle = _scratchdet("bundle", "--model", str(work / "model.onnx"), "--data", str(data), "--out",
                              str(bundle), "--calib-images", "16")
    predictions = work / "predictions"
    images = sorted(str(p) for p in (data / "images").iterdir())[:24]
    # a new numbered folder per run (predictions, predictions2, ...): a kill there left images without detections
    predict = _scratchdet("predict", *images, "--model", str(work / "model.onnx"), "--save-dir", str(predictions))
    commands = {"train": [*train, "--exist-ok"], "train-set-aside": [*train, "--exist-ok"], "bundle": make_bundle,
                "predict": predict}
    # each check gets the SHA-256 of the run's last.pt before the kill
    checks: dict[str, Callable[[str], tuple[bool, str]]] = {
        "train": lambda _: run_intact(run), "train-set-aside": lambda old_last: _previous_kept(run, old_last),
        "bundle": lambda _: bundle_intact(bundle), "predict": lambda _: predictions_intact(predictions)}
    draw = random.Random(seed)
    rows: list[dict[str, Any]] = []
    durations = {"train": train_seconds, "train-set-aside": train_seconds}
    for command in COMMANDS:
        if command not in durations:  # its previous state, made after train --exist-ok removed the bundle
            code, durations[command], last = _timed(commands[command], work)
            if code:
                raise RuntimeError(f"the first {command} failed: {last}")
        while sum(row["command"] == command for row in rows) < kills:
            rows.append(_kill_and_rerun(command, commands[command], train, checks[command], work, draw, durations))
            rows[-1]["kill"] = sum(row["command"] == command for row in rows)
            print(markdown_row(rows[-1]), flush=True)
    return rows


def _previous_kept(run: Path, old_last: str) -> tuple[bool, str]:
    """The previous run's last.pt (SHA-256 `old_last`) in the run folder or in its set-aside holder."""
    if not old_last:
        return True, "no previous run"
    where = [p for p in (run / "last.pt", *run.glob(".*/last.pt")) if p.is_file() and file_sha256(p) == old_last]
    if not where:
        return False, "previous run LOST"
    intact, state = run_intact(where[0].parent)
    return intact, f"previous run kept{' set aside' if where[0].parent != run else ''} ({state})"


def _kill_and_rerun(command: str, argv: list[str], train: list[str], check: Callable[[str], tuple[bool, str]],
                    work: Path, draw: random.Random, durations: dict[str, float]) -> dict[str, Any]:
    """One kill point of `command`, drawn over its latest complete run's duration (the load on the machine
    changes it), or for train-set-aside the moment the previous run is set aside; then the next run (train:
    --resume when last.pt is there, else --exist-ok; train-set-aside: --resume, which continues the previous
    run put back; others: the same command). A draw the command outlived is drawn again."""
    run = Path(train[train.index("--out") + 1])
    old_last = file_sha256(run / "last.pt") if (run / "last.pt").is_file() else ""
    for _ in range(5):
        after = round(draw.uniform(0, durations[command]), 2)
        when = run if command == "train-set-aside" else None
        died = _killed(argv, durations[command] * 2 if when else after, work, when)
        if when:
            after = round(died, 2)
            break
        if died >= after:
            break
        durations[command] = died  # it finished before the kill: a faster machine now
    intact, state = check(old_last)
    left = debris(work)
    follow = argv
    if command.startswith("train"):
        resume = command == "train-set-aside" or (run / "last.pt").is_file()
        follow = [*train, "--resume" if resume else "--exist-ok"]
    code, seconds, last = _timed(follow, work)
    if code == 0 and follow == argv:
        durations[command] = seconds
    after_intact, after_state = run_intact(run) if command.startswith("train") else check(old_last)
    next_run = "resume" if "--resume" in follow else "exist-ok" if command.startswith("train") else "same command"
    return {"command": command, "killed_at_s": after, "ran_s": round(died, 2),
            "debris_after_kill": left, "final_files_after_kill": state, "intact_after_kill": intact,
            "next_run": next_run,
            "next_exit": code, "next_error": last if code else "", "debris_after_next": debris(work),
            "final_files_after_next": after_state, "intact_after_next": after_intact}


HEADER = ("| # | command | killed at (s) | debris after the kill | final files after the kill | next run | "
          "next run's exit | debris after the next run | final files after the next run |\n"
          "|---|---|---|---|---|---|---|---|---|")


def markdown_row(row: dict[str, Any]) -> str:
    left = ", ".join(row["debris_after_kill"]) or "none"
    return (f"| {row['kill']} | {row['command']} | {row['killed_at_s']:.2f} | {left} | "
            f"{row['final_files_after_kill']} | {row['next_run']} | {row['next_exit']}"
            f"{' (' + row['next_error'] + ')' if row['next_error'] else ''} | "
            f"{', '.join(row['debris_after_next']) or 'none'} | {row['final_files_after_next']} |")


def markdown(rows: list[dict[str, Any]]) -> str:
    return "\n".join([HEADER, *(markdown_row(row) for row in rows)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scratchdet.benchmarks.kill_table", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/kill_table"), help="work folder; table.md and "
                        "table.json are written there")
    parser.add_argument("--kills", type=int, default=10, help="kill points per command")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill points")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of each training run")
    args = parser.parse_args(argv)
    rows = measure(args.out.resolve(), args.kills, args.seed, args.epochs)
    table = markdown(rows)
    write_text(args.out / "table.md", table + "\n")
    write_text(args.out / "table.json", json.dumps(rows, indent=2))
    print(table)
    clean = all(not row["debris_after_next"] and row["intact_after_kill"] and row["intact_after_next"]
                and row["next_exit"] == 0 for row in rows)
    print(f"{len(rows)} kills: " + ("no debris after the next run and nothing lost" if clean else "PROBLEMS above"))
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
