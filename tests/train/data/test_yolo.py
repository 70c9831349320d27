import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from scratchdet.train.data.load import dataset_layout, dataset_splits, load_dataset
from scratchdet.train.data.records import DatasetError
from scratchdet.train.data.yolo import load_yolo
from scratchdet.train.data.yolo_yaml import label_path

# Images 50 wide, 40 high, so a normalised coordinate maps to an exact pixel.
WIDTH, HEIGHT = 50, 40


def make_yolo(root: Path, labels: dict[str, str | None], split: str = "train", names=("cat", "dog"),
              extra: dict | None = None) -> Path:
    """images/<split>/<stem>.png and labels/<split>/<stem>.txt (None: no label file), plus data.yaml."""
    for stem, text in labels.items():
        image = root / "images" / split / f"{stem}.png"
        image.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(image), np.zeros((HEIGHT, WIDTH, 3), np.uint8))
        if text is not None:
            label_path(image).parent.mkdir(parents=True, exist_ok=True)
            label_path(image).write_text(text)
    if not (root / "data.yaml").exists():
        layout = {"train": "images/train", "val": "images/val", "names": list(names), **(extra or {})}
        (root / "data.yaml").write_text(yaml.safe_dump(layout))
    return root


def with_val(root: Path) -> Path:
    return make_yolo(root, {"v": "0 0.5 0.5 0.2 0.2\n"}, split="val")


def test_label_path_follows_ultralytics_img2label_paths():
    assert label_path(Path("/d/images/train/x.jpg")) == Path("/d/labels/train/x.txt")
    assert label_path(Path("/d/images/a/images/x.v2.jpg")) == Path("/d/images/a/labels/x.v2.txt")  # the last only
    assert label_path(Path("/d/pictures/x.png")) == Path("/d/pictures/x.txt")  # no images/: beside the image


def test_boxes_are_read_as_pixels_and_background_images_kept(tmp_path):
    root = with_val(make_yolo(tmp_path, {
        "a": "1 0.5 0.5 0.2 0.25\n0 0.1 0.1 0.2 0.2\n",
        "b": "",  # empty file: a background image
        "c": None,  # no label file: a background image
    }))
    data = load_dataset(root / "data.yaml", "train")
    assert data.class_names == ["cat", "dog"]
    a, b, c = data.records
    np.testing.assert_allclose(a.boxes, [[20, 15, 30, 25], [0, 0, 10, 8]], atol=1e-5)
    assert a.labels.tolist() == [1, 0] and (a.width, a.height) == (WIDTH, HEIGHT)
    assert len(b.boxes) == 0 and len(c.boxes) == 0
    assert data.issues["images without boxes (background only)"] == 2
    assert data.issues["images without a label file (background)"] == 1
    (root / "images" / "train" / "d.heic").write_bytes(b"")
    assert load_dataset(root, "train").issues["images OpenCV cannot decode (.dng, .heic, .mpo), skipped"] == 1


@pytest.mark.parametrize(("text", "expected"), [
    ("2 0.5 0.5 0.2 0.2", r"a\.txt:2: class id 2 out of range 0\.\.1 \(data\.yaml names 2 classes\)"),
    ("-1 0.5 0.5 0.2 0.2", r"a\.txt:2: class id -1 out of range"),
    ("0.5 0.5 0.5 0.2 0.2", r"a\.txt:2: class id 0\.5 out of range"),
    ("0 12 20 5 5", r"a\.txt:2: coordinate\(s\) 12, 20, 5, 5 outside 0\.\.1 .*pixel coordinates\?"),
    ("0 0.5 1.02 0.2 0.2", r"a\.txt:2: coordinate\(s\) 1\.02 outside 0\.\.1"),
    ("0 0.5 0.5 0.2", r"a\.txt:2: 4 columns; expected 5 \(class cx cy w h\) or a polygon"),
    ("0 0.5 0.5 0.2 0.2 0.9", r"a\.txt:2: 6 columns.*predictions file"),
    ("0 0.1 0.1 0.9 0.1 0.9 0.9 0.1", r"a\.txt:2: 8 columns"),
    ("0 0.5 zero 0.2 0.2", r"a\.txt:2: not a number in '0 0\.5 zero 0\.2 0\.2'"),
    ("0 0.5 nan 0.2 0.2", r"a\.txt:2: non-finite value"),
])
def test_each_bad_label_gives_one_line_naming_file_and_line(tmp_path, text, expected):
    root = with_val(make_yolo(tmp_path, {"a": f"0 0.5 0.5 0.1 0.1\n{text}\n"}))  # line 2 is the bad one
    with pytest.raises(DatasetError) as error:
        load_yolo(root, "train")
    message = str(error.value)
    assert "\n" not in message, message
    assert message.startswith(f"{root / 'labels' / 'train' / 'a.txt'}:2: "), message
    assert re.search(expected, message), message


def test_label_without_image_is_one_named_line(tmp_path):
    root = with_val(make_yolo(tmp_path, {"a": "0 0.5 0.5 0.2 0.2\n"}))
    (root / "labels" / "train" / "ghost.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "labels" / "train" / "classes.txt").write_text("cat\ndog\n")  # LabelImg's class list: not a label
    with pytest.raises(DatasetError) as error:
        load_yolo(root, "train")
    assert str(error.value) == (f"{root / 'labels' / 'train' / 'ghost.txt'}: label file without an image "
                                f"(no ghost.* in {root / 'images' / 'train'})")


def test_every_problem_of_every_file_is_reported_at_once(tmp_path):
    root = with_val(make_yolo(tmp_path, {"a": "5 0.5 0.5 0.2 0.2\n0 0.5 0.5\n", "b": "0 2 0.5 0.2 0.2\n"}))
    with pytest.raises(DatasetError) as error:
        load_yolo(root, "train")
    lines = str(error.value).splitlines()
    assert "3 problem(s)" in lines[0]
    assert [line.split(": ")[0].strip().rsplit("/", 1)[-1] for line in lines[1:]] == ["a.txt:1", "a.txt:2", "b.txt:1"]


def test_within_ultralytics_tolerance_is_clipped_and_counted(tmp_path):
    # 1.005 and -0.005 pass ultralytics' 1 % tolerance; the box is clipped to the image.
    root = with_val(make_yolo(tmp_path, {"a": "0 0.9 0.5 0.21 1.005\n1 -0.005 0.5 0.2 0.2\n"}))
    data = load_yolo(root, "train")
    np.testing.assert_allclose(data.records[0].boxes, [[39.75, 0, 50, 40], [0, 16, 4.75, 24]], atol=1e-4)
    assert data.issues["boxes clipped to the image"] == 2


def test_duplicates_dropped_and_polygons_become_boxes(tmp_path, caplog):
    root = with_val(make_yolo(tmp_path, {
        "a": "0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n1 0.1 0.25 0.3 0.25 0.2 0.75\n",
    }))
    data = load_yolo(root, "train")
    record = data.records[0]
    np.testing.assert_allclose(record.boxes, [[20, 16, 30, 24], [5, 10, 15, 30]], atol=1e-5)
    assert record.labels.tolist() == [0, 1]
    assert data.issues["duplicate label lines dropped"] == 1
    assert data.issues["polygons converted to their enclosing box"] == 1
    assert "a.txt: 1 duplicate line(s) dropped (e.g. line 2 repeats line 1)" in caplog.text


def test_names_as_dict_nc_and_yaml_pitfalls(tmp_path):
    root = with_val(make_yolo(tmp_path / "d", {"a": "1 0.5 0.5 0.2 0.2\n"}, extra={"names": {0: "cat", 1: "dog"}}))
    assert load_yolo(root, "train").class_names == ["cat", "dog"]
    cases = {
        "names: {0: cat, 2: dog}": r"'names' has class indices \[0, 2\]; a dict needs the integers 0\.\.1",
        "names: [cat, dog]\nnc: 3": r"nc is 3 but 'names' lists 2 classes",
        "names: [yes, no]": r"names\[0\] is True; names\[1\] is False \(a class name is a non-empty string; YAML "
                            r"reads unquoted yes/no",
        "names: [cat, cat]": r"class name\(s\) \['cat'\] appear more than once",
        "nc: 2": None,
    }
    for text, expected in cases.items():
        (root / "data.yaml").write_text(f"train: images/train\nval: images/val\n{text}\n")
        if expected is None:
            assert load_yolo(root, "train").class_names == ["class_0", "class_1"]
        else:
            with pytest.raises(DatasetError, match=expected):
                load_yolo(root, "train")


def test_path_key_lists_of_folders_and_txt_lists(tmp_path):
    data_root = tmp_path / "data"
    make_yolo(data_root, {"a": "0 0.5 0.5 0.2 0.2\n"}, split="part1")
    make_yolo(data_root, {"b": "1 0.5 0.5 0.2 0.2\n"}, split="part2")
    make_yolo(data_root, {"v": "1 0.5 0.5 0.2 0.2\n", "w": "", "x": ""}, split="val")
    (data_root / "val.txt").write_text("./images/val/v.png\nimages/val/w.png\n\n")
    config = tmp_path / "configs" / "mine.yaml"
    config.parent.mkdir()
    config.write_text(yaml.safe_dump({"path": "../data", "train": ["images/part1", "images/part2"],
                                      "validation": "val.txt", "names": ["cat", "dog"]}))
    assert dataset_layout(config) == "yolo"
    train = load_dataset(config, "train")
    assert [r.path.name for r in train.records] == ["a.png", "b.png"] and train.root == config.parent / "../data"
    assert [r.path.name for r in load_dataset(config, "val").records] == ["v.png", "w.png"]
    with pytest.raises(DatasetError, match=r"mine\.yaml: no split 'test' \(splits: train, val, all\)"):
        load_dataset(config, "test")
    (data_root / "val.txt").write_text("./images/val/v.png\n./images/val/gone.png\n")
    with pytest.raises(DatasetError, match=r"val\.txt:2: lists \./images/val/gone\.png, which does not exist"):
        load_dataset(config, "val")


def test_roboflow_yolo_export_paths_and_overlapping_splits(tmp_path):
    # Roboflow writes `train: ../train/images` into a data.yaml in the dataset root (ultralytics' "../" rule).
    for split in ("train", "valid"):
        make_yolo(tmp_path / split, {f"{split}_a": "0 0.5 0.5 0.2 0.2\n"}, split="")
        (tmp_path / split / "data.yaml").unlink()
    (tmp_path / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\ntest: ../test/images\n"
                                        "nc: 2\nnames: ['cat', 'dog']\n")
    assert [r.path.name for r in load_dataset(tmp_path, "val").records] == ["valid_a.png"]  # no test/: not needed
    with pytest.raises(DatasetError, match=r"'test' entry '\.\./test/images' is neither a folder nor a list file"):
        load_dataset(tmp_path, "test")
    assert dataset_splits(tmp_path) == ["train", "val"]  # what `data check` and `data convert` go through
    (tmp_path / "data.yaml").write_text("train: ../train/images\nval: ../train/images\nnames: ['cat', 'dog']\n")
    with pytest.raises(DatasetError, match=r"data\.yaml: splits 'train' and 'val' share 1 image\(s\)"):
        load_dataset(tmp_path, "val")


def test_a_folder_with_images_but_no_yaml_says_what_is_missing(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetError, match="not a dataset folder .*or a YOLO data.yaml"):
        load_dataset(tmp_path, "train")


def test_an_image_with_an_exif_rotation_is_named(tmp_path):
    from PIL import Image

    root = with_val(make_yolo(tmp_path, {"a": "0 0.5 0.5 0.2 0.2\n"}))
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise
    Image.new("RGB", (WIDTH, HEIGHT)).save(root / "images" / "train" / "b.jpg", exif=exif)
    with pytest.raises(DatasetError, match=r"b\.jpg: EXIF orientation 6: its labels refer to the image as shown"):
        load_yolo(root, "train")


def test_an_alias_bomb_in_names_is_refused_quickly(tmp_path):
    from tests.scratchdet.test_bounded_yaml import ALIAS_BOMB

    root = with_val(make_yolo(tmp_path, {"a": ""}))
    (root / "data.yaml").write_text(f"train: images/train\nval: images/val\n{ALIAS_BOMB}names: *i\n")
    with pytest.raises(DatasetError, match=r"data.yaml: the document expands to more than \d+ nodes"):
        load_yolo(root, "train")


def test_names_must_be_strings_not_lists_mappings_or_numbers(tmp_path):
    root = with_val(make_yolo(tmp_path, {"a": ""}))
    (root / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [[circ, le], {sq: uare}, 3]\n")
    with pytest.raises(DatasetError, match=r"names\[0\] is a list of 2 item\(s\); names\[1\] is a mapping of 1 "
                                           r"item\(s\); names\[2\] is 3 \(a class name is a non-empty string"):
        load_yolo(root, "train")


@pytest.mark.parametrize("entry", ["/", "../../elsewhere"])
def test_a_split_outside_the_dataset_root_is_refused_naming_data_yaml_before_any_scan(tmp_path, monkeypatch, entry):
    root = make_yolo(tmp_path / "d", {"a": ""})
    (tmp_path / "elsewhere").mkdir()
    (root / "data.yaml").write_text(f"train: images/train\nval: {entry}\nnames: [cat]\n")

    def no_scan(*args, **kwargs):
        raise AssertionError("a folder was scanned")

    monkeypatch.setattr(Path, "rglob", no_scan)
    with pytest.raises(DatasetError, match=rf"{root / 'data.yaml'}: 'val' entry '{re.escape(entry)}': "
                                           rf"'{re.escape(entry)}' points outside the dataset root"):
        load_yolo(root, "val")


def test_a_path_key_at_the_file_system_root_is_refused(tmp_path):
    root = make_yolo(tmp_path, {"a": ""})
    (root / "data.yaml").write_text("path: /\ntrain: images/train\nnames: [cat]\n")
    with pytest.raises(DatasetError, match=r"data.yaml: 'path' '/' makes the file-system root the dataset root"):
        load_yolo(root, "train")


def test_list_file_lines_outside_the_root_are_refused(tmp_path):
    root = with_val(make_yolo(tmp_path / "d", {"a": ""}))
    make_yolo(tmp_path / "other", {"x": ""})
    (root / "train.txt").write_text(f"images/train/a.png\n{tmp_path / 'other' / 'images' / 'train' / 'x.png'}\n")
    (root / "data.yaml").write_text("train: train.txt\nval: images/val\nnames: [cat, dog]\n")
    with pytest.raises(DatasetError, match=r"train.txt:2: '.*x.png' points outside the dataset root"):
        load_yolo(root, "train")


def test_many_duplicate_or_bad_lines_give_one_line_per_file(tmp_path, caplog):
    root = with_val(make_yolo(tmp_path, {"a": "0 0.5 0.5 0.2 0.2\n" * 20_000, "b": "9 0.5 0.5 0.2 0.2\n" * 5_000}))
    with pytest.raises(DatasetError) as raised:
        load_yolo(root, "train")
    lines = str(raised.value).splitlines()
    assert len(lines) == 1 + 20 + 1  # the header, 20 listed lines of b.txt, one counting the rest
    assert lines[-1].endswith("b.txt: and 4980 more bad line(s) in this file (5000 in all)")
    assert caplog.text.count("duplicate line(s) dropped") == 1
    assert "a.txt: 19999 duplicate line(s) dropped (e.g. line 2 repeats line 1)" in caplog.text
