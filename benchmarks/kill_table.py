"""kill -9 at random points of `scratchdet train` and `scratchdet bundle`, then the next run: what is left.

    python -m scratchdet.benchmarks.kill_table --out runs/kill_table --kills 10 --seed 0

For each command it first runs it once to the end (the previous state, and the duration kill points are drawn
from: uniform over [0, duration]), then `--kills` times: start the command, SIGKILL it at the drawn time, and
record the debris (this project's marked temporaries, `.*.scratchdet-{tmp,staging,old}-*`) and whether every
file under a final name is complete (checkpoints load, the bundle has every file and its tarball opens);
then run the next command (train: --resume when last.pt is there, else --exist-ok; bundle: the same
command) and record the same again. Prints the markdown table and writes it with the raw rows as JSON.
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
from pathlib import Path
from typing import Any

from scratchdet.models.files import write_text

DEBRIS = re.compile(r"^\..+\.scratchdet-(tmp|staging|old)-\d+-")
BUNDLE_FILES = ("metadata.json", "model.onnx", "README.md", "contract.json")


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


def _killed(command: list[str], after: float, cwd: Path) -> float:
    """Start `command`, SIGKILL it `after` seconds later (if still running); returns when it died."""
    # its own process group: the data-loading workers die with it, as under a kill of the whole job
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    started = time.monotonic()
    try:
        process.wait(timeout=after)
    except subprocess.TimeoutExpired:
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
    code, bundle_seconds, last = _timed(make_bundle, work)
    if code:
        raise RuntimeError(f"the first bundle failed: {last}")
    draw = random.Random(seed)
    rows = []
    for command, seconds in (("train", train_seconds), ("bundle", bundle_seconds)):
        for number in range(kills):
            after = round(draw.uniform(0, seconds), 2)
            if command == "train":
                died = _killed([*train, "--exist-ok"], after, work)
                intact, state = run_intact(run)
                left = debris(work)
                follow = [*train, "--resume"] if (run / "last.pt").is_file() else [*train, "--exist-ok"]
            else:
                died = _killed(make_bundle, after, work)
                intact, state = bundle_intact(bundle)
                left = debris(work)
                follow = make_bundle
            code, _, last = _timed(follow, work)
            after_intact, after_state = run_intact(run) if command == "train" else bundle_intact(bundle)
            rows.append({"command": command, "kill": number + 1, "killed_at_s": after, "ran_s": round(died, 2),
                         "debris_after_kill": left, "final_files_after_kill": state, "intact_after_kill": intact,
                         "next_run": "resume" if "--resume" in follow else ("exist-ok" if command == "train" else
                                                                           "same command"),
                         "next_exit": code, "next_error": last if code else "",
                         "debris_after_next": debris(work), "final_files_after_next": after_state,
                         "intact_after_next": after_intact})
            print(markdown_row(rows[-1]), flush=True)
    return rows


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
