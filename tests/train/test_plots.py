import csv
import json

import numpy as np
import pytest
import yaml

from scratchdet.models.checkpoint import read_checkpoint
from scratchdet.models.config import ModelConfig, from_dict
from scratchdet.train.config import TrainConfig
from scratchdet.train.plots import write_plots


def test_run_folder_has_config_csv_and_plots_with_one_epoch_numbering(tiny_checkpoint):
    run = tiny_checkpoint.parent
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert from_dict(ModelConfig, config["model"], "config.yaml").name == "tiny"
    assert from_dict(TrainConfig, config["train"], "config.yaml").epochs == 2  # the override, resolved
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert sorted({r["epoch"] for r in records}) == [1, 2]  # counted from 1, as everywhere
    assert read_checkpoint(tiny_checkpoint)["epoch"] == 2
    with open(run / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for row in rows:
        steps = [r for r in records if r["type"] == "step" and r["epoch"] == int(row["epoch"])]
        assert float(row["box_loss"]) == pytest.approx(np.mean([s["box_loss"] for s in steps]), rel=1e-5)
        assert float(row["cls_loss"]) == pytest.approx(np.mean([s["cls_loss"] for s in steps]), rel=1e-5)
        assert float(row["lr"]) == pytest.approx(steps[-1]["lr"], rel=1e-5)
    assert row["map50"] != "" and 0 <= float(row["map50"]) <= 1  # the last epoch is always evaluated
    for name in ("loss.png", "lr.png", "grad_norm.png", "grad_fluctuation.png", "map.png"):
        assert (run / name).stat().st_size > 10_000, name


def test_plots_are_titled_with_run_config_and_window(tmp_path, monkeypatch):
    import matplotlib.axes

    run = tmp_path / "myrun"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"model": {"name": "bccd_cpu"}, "train": {"grad_window": 50}}))
    steps = [{"type": "step", "epoch": 1, "iteration": i + 1, "lr": 0.01, "loss": 3.0, "box_loss": 1.0,
              "cls_loss": 2.0, "grad_norm": 10.0 ** (i % 3), "fluctuation": 0.1} for i in range(6)]
    epoch = {"type": "epoch", "epoch": 1, "train_loss": 3.0, "map50": 0.5, "coco_ap": 0.2}
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [*steps, epoch]))
    titles, scales = [], []
    original_set_title = matplotlib.axes.Axes.set_title

    def spy(axis, title, *args, **kwargs):
        titles.append(title)
        scales.append(axis.get_yscale())
        return original_set_title(axis, title, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "set_title", spy)
    written = write_plots(run)
    assert [p.name for p in written] == ["results.csv", "loss.png", "lr.png", "grad_norm.png",
                                         "grad_fluctuation.png", "map.png"]
    assert all(t.startswith("myrun (bccd_cpu): ") for t in titles)
    assert "over the last 50 steps" in titles[3] and scales[2] == "log"
