import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from scratchdet.cli import main
from scratchdet.train.data.convert import convert_dataset
from scratchdet.train.data.load import dataset_layout, load_dataset
from scratchdet.train.data.records import DatasetError
from scratchdet.train.data.synth import make_synthetic_dataset
from tests.conftest import train_tiny
from tests.train.data.test_coco import make_dataset


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def boxes_by_name(data, split):
    return {r.path.name: (r.boxes, r.labels, r.width, r.height) for r in load_dataset(data, split).records}


def assert_same_boxes(a, b, split):
    first, second = boxes_by_name(a, split), boxes_by_name(b, split)
    assert first.keys() == second.keys()
    for name, (boxes, labels, width, height) in first.items():
        np.testing.assert_array_equal(labels, second[name][1])
        error = np.abs(boxes - second[name][0]).reshape(-1, 2) / np.array([width, height])
        assert error.size == 0 or error.max() <= 1e-6, (name, error.max())


def test_coco_to_yolo_to_coco_keeps_every_box_within_1e6_of_the_image_size(tmp_path, synth_data):
    # Fractional boxes (the synthetic set's are whole pixels) and a background image.
    fractional = make_dataset(tmp_path / "frac", [
        {"image_id": 1, "category_id": 1, "bbox": [0.123456, 7.654321, 20.5, 11.111111]},
        {"image_id": 1, "category_id": 7, "bbox": [33.333333, 0.000001, 16.666666, 39.99999]},
        {"image_id": 2, "category_id": 7, "bbox": [1e-3, 2.5, 49.998, 30.25]},
    ], splits={"train": ["a.png", "b.png"], "val": ["c.png"]})
    for source in (synth_data, fractional):
        before = tree_digest(source)
        yolo, back = tmp_path / f"{source.name}_out" / "yolo", tmp_path / f"{source.name}_out" / "coco"
        convert_dataset(source, "yolo", yolo)
        convert_dataset(yolo, "coco", back)
        assert dataset_layout(yolo) == "yolo" and dataset_layout(back) == "coco"
        for split in ("train", "val"):
            assert_same_boxes(source, yolo, split)
            assert_same_boxes(source, back, split)
        assert tree_digest(source) == before  # the source is only read
    assert json.loads((tmp_path / "frac_out" / "coco" / "splits.json").read_text())["val"] == ["val/c.png"]


def test_convert_refuses_an_output_inside_the_source_or_not_empty(tmp_path, synth_data):
    with pytest.raises(DatasetError, match="must lie outside the dataset"):
        convert_dataset(synth_data, "yolo", synth_data / "yolo")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(DatasetError, match="exists and is not an empty folder"):
        convert_dataset(synth_data, "yolo", tmp_path / "full")


def test_symlinked_images_point_at_the_source(tmp_path, synth_data):
    convert_dataset(synth_data, "yolo", tmp_path / "y", symlink=True)
    image = tmp_path / "y" / "images" / "val" / "synth_00048.png"
    assert image.is_symlink() and image.resolve() == (synth_data / "images" / "synth_00048.png").resolve()


def run_numbers(run: Path) -> tuple[list[float], dict, dict]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r["loss"] for r in records if r["type"] == "step"]
    last = [r for r in records if r["type"] == "epoch"][-1]
    weights = torch.load(run / "last.pt", weights_only=True)["model"]
    return steps, {k: last[k] for k in ("train_loss", "map50", "map50_11point", "coco_ap")}, weights


def test_training_on_the_yolo_copy_gives_the_coco_originals_metrics(tmp_path):
    # 19 train images, 5 val: 2 steps of 8 (the last batch is dropped)
    coco = make_synthetic_dataset(tmp_path / "coco", images=24, seed=3)
    convert_dataset(coco, "yolo", tmp_path / "yolo")
    train_tiny(coco, tmp_path / "run_coco", epochs=1)
    train_tiny(tmp_path / "yolo" / "data.yaml", tmp_path / "run_yolo", epochs=1)  # validated on the YOLO val split
    coco_steps, coco_epoch, coco_weights = run_numbers(tmp_path / "run_coco")
    yolo_steps, yolo_epoch, yolo_weights = run_numbers(tmp_path / "run_yolo")
    # Same images in the same order, the same boxes to the float32 bit, the same seed: the same numbers, exactly.
    assert len(coco_steps) == 2 and yolo_steps == coco_steps
    assert yolo_epoch == coco_epoch
    assert all(torch.equal(coco_weights[k], yolo_weights[k]) for k in coco_weights)
    # `scratchdet val` on the YOLO data.yaml scores the YOLO-trained weights as on the COCO original.
    scores = {}
    for name, data in (("coco", coco), ("yolo", tmp_path / "yolo" / "data.yaml")):
        assert main(["val", "--model", str(tmp_path / f"run_{name}" / "last.pt"), "--data", str(data),
                     "--save-dir", str(tmp_path / f"val_{name}"), "--json", str(tmp_path / f"{name}.json")]) == 0
        scores[name] = json.loads((tmp_path / f"{name}.json").read_text())
        scores[name].pop("model")
    assert scores["yolo"] == scores["coco"] and scores["coco"]["map50"] == coco_epoch["map50"]
