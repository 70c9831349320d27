"""`scratchdet data check` is the loader's own verdict: it passes exactly what training accepts."""

import json
import os

import cv2
import numpy as np
import pytest

from scratchdet.cli import main
from scratchdet.train.data.images import ImageReadError, read_record_image
from scratchdet.train.data.load import load_dataset
from scratchdet.train.data.records import OUTSIDE_ROOT_VARIABLE, DatasetError
from scratchdet.train.data.verdict import decoded_split, missing_training_splits
from tests.train.data.test_coco import make_dataset
from tests.train.data.test_roboflow_coco import make_export
from tests.train.data.test_yolo import make_yolo, with_val


def _truncate(path, keep=0.6):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _noise_png(path):
    # noise: a PNG whose pixel data is most of the file, so cutting it leaves a valid header and lost pixels
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8))


def test_a_truncated_png_fails_the_check_as_it_fails_training(tmp_path, capsys):
    root = make_dataset(tmp_path / "d", [{"image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 10]}],
                        splits={"train": ["a.png", "b.png"], "val": ["c.png"]})
    _noise_png(root / "images" / "b.png")
    assert main(["data", "check", str(root)]) == 0
    capsys.readouterr()
    _truncate(root / "images" / "b.png")
    record = next(r for r in load_dataset(root, "train").records if r.path.name == "b.png")  # the header still reads
    with pytest.raises(ImageReadError, match="b.png: cannot decode the image"):
        read_record_image(record)  # what the training loader does with it in epoch 1
    assert main(["data", "check", str(root)]) == 1
    out = capsys.readouterr().out
    assert f"[train] {root / 'images' / 'b.png'}: cannot decode the image (corrupt or not an image)" in out
    assert "problems in split(s) train" in out


def test_an_image_of_another_size_than_annotated_fails_the_check(tmp_path):
    root = make_dataset(tmp_path / "d", [])
    # a header that says 50x40 over pixels that decode otherwise cannot be written by OpenCV; the rule is the
    # loader's, so the check runs the loader's read on a record whose annotated size differs
    record = load_dataset(root, "all").records[0]
    record.height = 41
    with pytest.raises(DatasetError, match=r"a.png: image is 50x40 but the annotations say 50x41"):
        read_record_image(record)


def test_a_coco_set_with_a_missing_image_fails_the_check(tmp_path, capsys):
    root = make_dataset(tmp_path / "d", [{"image_id": 3, "category_id": 1, "bbox": [1, 2, 10, 10]}])
    (root / "images" / "c.png").unlink()
    assert main(["data", "check", str(root)]) == 1
    assert f"{root / 'images' / 'c.png'}: image file not found (the annotations list it" in capsys.readouterr().out


def test_a_dataset_without_the_val_split_training_loads_fails_the_check(tmp_path, capsys):
    root = make_yolo(tmp_path, {"a": "0 0.5 0.5 0.2 0.2\n"})
    assert main(["data", "check", str(root)]) == 1
    assert "no 'val' split: training loads train and val" in capsys.readouterr().out
    assert missing_training_splits(["train", "val", "test"]) == [] and missing_training_splits(["val"]) == ["train"]


def test_decoded_split_lists_every_undecodable_image(tmp_path):
    root = with_val(make_yolo(tmp_path, {"a": "", "b": "", "c": ""}))
    for stem in ("a", "c"):
        _noise_png(root / "images" / "train" / f"{stem}.png")
        _truncate(root / "images" / "train" / f"{stem}.png")
    with pytest.raises(DatasetError, match=r"2 problem\(s\)(.|\n)*a.png: cannot decode(.|\n)*c.png: cannot decode"):
        decoded_split(root, "train")
    assert len(decoded_split(root, "val").records) == 1


@pytest.mark.parametrize("file_name", ["../../elsewhere/x.png", "ABSOLUTE"])
def test_a_roboflow_file_name_outside_the_export_is_refused_unless_allowed(tmp_path, monkeypatch, file_name):
    root = make_export(tmp_path / "export")
    outside = tmp_path / "elsewhere" / "x.png"
    outside.parent.mkdir()
    cv2.imwrite(str(outside), np.zeros((40, 50, 3), np.uint8))
    file_name = str(outside) if file_name == "ABSOLUTE" else file_name
    annotations = root / "train" / "_annotations.coco.json"
    coco = json.loads(annotations.read_text())
    coco["images"][0]["file_name"] = file_name
    annotations.write_text(json.dumps(coco))
    with pytest.raises(DatasetError, match=rf"image 0: '{file_name}' points outside the dataset root {root} \(to "
                                           rf"{outside}\); a dataset is read only under its root \(set "
                                           rf"{OUTSIDE_ROOT_VARIABLE}=1"):
        load_dataset(root, "train")
    monkeypatch.setenv(OUTSIDE_ROOT_VARIABLE, "1")
    train = load_dataset(root, "train")
    assert outside in [r.path.resolve() for r in train.records]
    assert train.issues[f"paths outside the dataset root read ({OUTSIDE_ROOT_VARIABLE}=1)"] == 1


def test_special_files_are_refused_or_skipped_never_opened(tmp_path, caplog):
    # COCO names the file: its boxes would be lost, so it is a problem; a YOLO folder scan skips it with a warning
    root = make_dataset(tmp_path / "coco", [], splits={"train": ["a.png", "b.png"], "val": ["c.png"]})
    (root / "images" / "b.png").unlink()
    os.mkfifo(root / "images" / "b.png")
    with pytest.raises(DatasetError, match=r"b.png: a FIFO \(named pipe\), not a regular file: not opened"):
        load_dataset(root, "train")
    yolo = with_val(make_yolo(tmp_path / "yolo", {"a": "0 0.5 0.5 0.2 0.2\n"}))
    os.mkfifo(yolo / "images" / "train" / "z.jpg")
    os.mkfifo(yolo / "images" / "train" / "y.png")
    train = load_dataset(yolo, "train")
    assert [r.path.name for r in train.records] == ["a.png"]
    assert train.issues["special files (FIFOs, devices, sockets) named like images, skipped unopened"] == 2
    assert caplog.text.count("named like images, skipped unopened") == 1  # one line for the folder
    os.mkfifo(yolo / "labels" / "val" / "w.txt")
    cv2.imwrite(str(yolo / "images" / "val" / "w.png"), np.zeros((40, 50, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"w.txt: label file is a FIFO \(named pipe\)"):
        load_dataset(yolo, "val")
