"""`train --exist-ok` keeps the previous run until the new one has a checkpoint: each kill point, simulated."""

import os
import shutil

from scratchdet.cli import main
from scratchdet.models.files import SET_ASIDE_COMPLETE
from scratchdet.train.run_folder import check_run_folder, clear_previous_run, recover_previous_run
from scratchdet.train.trainer import Trainer

OLD = {"last.pt": b"old last", "best.pt": b"old best", "metrics.jsonl": b'{"epoch": 1}\n',
       "export/model.onnx": b"old model"}


def _old_run(run):
    for name, data in OLD.items():
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_bytes(data)
    return run


def _files(run):
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def _set_aside(run):
    """What `train --exist-ok` does before its first epoch; the process is then 'killed' (it just stops)."""
    return clear_previous_run(run, check_run_folder(run, exist_ok=True))


def test_killed_before_the_first_checkpoint_the_next_run_restores_the_previous_run(tmp_path, caplog):
    run = _old_run(tmp_path / "run")
    holder = _set_aside(run)
    assert holder is not None and (holder / SET_ASIDE_COMPLETE).exists() and not (run / "last.pt").exists()
    (run / "config.yaml").write_text("the stopped run's config\n")  # written when its fit() started
    recover_previous_run(run)
    assert _files(run) == OLD  # byte-identical, the stopped run's config.yaml gone, no holder left
    assert not any(run.glob(".*"))
    assert "restored the previous run (best.pt, export, last.pt, metrics.jsonl)" in caplog.text


def test_killed_while_setting_the_previous_run_aside_the_next_run_restores_it(tmp_path):
    run = _old_run(tmp_path / "run")
    holder = _set_aside(run)
    (holder / SET_ASIDE_COMPLETE).unlink()  # cut short: last.pt and best.pt were not moved yet
    for name in ("last.pt", "best.pt"):
        os.replace(holder / name, run / name)
    recover_previous_run(run)
    assert _files(run) == OLD and not any(run.glob(".*"))


def test_killed_after_the_first_checkpoint_the_replacement_stands(tmp_path, caplog):
    run = _old_run(tmp_path / "run")
    _set_aside(run)
    (run / "last.pt").write_bytes(b"new last")  # the new run's first checkpoint, then the kill
    recover_previous_run(run)
    assert _files(run) == {"last.pt": b"new last"} and not any(run.glob(".*"))


def test_a_run_that_fails_before_its_first_checkpoint_puts_the_previous_run_back(tmp_path, synth_data,
                                                                                  monkeypatch, caplog):
    def fails(self, epoch):
        raise RuntimeError("out of memory in the first epoch")

    run = _old_run(tmp_path / "run")
    monkeypatch.setattr(Trainer, "train_epoch", fails)
    assert main(["train", "--config", "tiny", "--data", str(synth_data), "--out", str(run), "--epochs", "1",
                 "--exist-ok"]) == 1
    assert "out of memory in the first epoch" in caplog.text
    assert _files(run) == OLD and not any(run.glob(".*"))


def test_the_sweep_of_temporaries_leaves_a_set_aside_run_alone(tmp_path):
    from scratchdet.models.files import remove_stale

    run = _old_run(tmp_path / "run")
    holder = _set_aside(run)
    shutil.copystat(run, holder)  # as old as the folder: older than any later process's start
    remove_stale(run, started=float("inf"))
    assert holder.is_dir() and (holder / "last.pt").read_bytes() == OLD["last.pt"]
