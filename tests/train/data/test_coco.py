import json

import cv2
import numpy as np
import pytest
from scratchdet.train.data.coco import load_coco
from scratchdet.train.data.load import load_dataset
from scratchdet.train.data.records import DatasetError
from scratchdet.train.dataset import DetectionDataset


def make_dataset(root, annotations, images=("a.png", "b.png", "c.png"), splits=None):
    (root / "images").mkdir(parents=True)
    for name in images:
        cv2.imwrite(str(root / "images" / name), np.zeros((40, 50, 3), np.uint8))
    coco = {
        "images": [{"id": i + 1, "file_name": n, "width": 50, "height": 40} for i, n in enumerate(images)],
        "annotations": [{"id": i + 1, "iscrowd": 0, **a} for i, a in enumerate(annotations)],
        "categories": [{"id": 1, "name": "cat"}, {"id": 7, "name": "dog"}],
    }
    (root / "annotations.json").write_text(json.dumps(coco))
    if splits:
        (root / "splits.json").write_text(json.dumps(splits))
    return root


def test_boxes_clipped_dropped_and_empty_images_are_counted(tmp_path):
    root = make_dataset(tmp_path / "d", [
        {"image_id": 1, "category_id": 1, "bbox": [40, 30, 20, 20]},  # leaves the image: clipped
        {"image_id": 1, "category_id": 7, "bbox": [5, 5, 0, 10]},  # zero width: dropped
        {"image_id": 2, "category_id": 7, "bbox": [1, 2, 10, 10]},
    ])
    data = load_coco(root, "all")
    assert data.class_names == ["cat", "dog"]
    first, second, third = data.records
    np.testing.assert_allclose(first.boxes, [[40, 30, 50, 40]])
    assert first.labels.tolist() == [0]
    assert second.labels.tolist() == [1]  # category id 7 -> contiguous 0-based id 1
    assert len(third.boxes) == 0  # kept as a background image
    assert data.issues["boxes clipped to the image"] == 1
    assert data.issues["boxes dropped (less than 1 px wide or high)"] == 1
    assert data.issues["images without boxes (background only)"] == 1


def test_unknown_category_names_file_and_annotation(tmp_path):
    root = make_dataset(tmp_path / "d", [{"image_id": 1, "category_id": 3, "bbox": [1, 1, 5, 5]}])
    with pytest.raises(DatasetError, match=r"annotations.json: annotation 1 has unknown category_id 3"):
        load_coco(root, "all")


def test_malformed_bbox_is_an_error(tmp_path):
    root = make_dataset(tmp_path / "d", [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 5]}])
    with pytest.raises(DatasetError, match="malformed bbox"):
        load_coco(root, "all")


def test_missing_image_file_is_skipped_and_counted(tmp_path):
    root = make_dataset(tmp_path / "d", [])
    (root / "images" / "b.png").unlink()
    data = load_coco(root, "all")
    assert [r.path.name for r in data.records] == ["a.png", "c.png"]
    assert data.issues["images missing, skipped"] == 1


def test_splits_file_selects_images_and_unknown_split_is_named(tmp_path):
    root = make_dataset(tmp_path / "d", [], splits={"train": ["a.png", "b.png"], "val": ["c.png"]})
    assert [r.path.name for r in load_dataset(root, "val").records] == ["c.png"]
    with pytest.raises(DatasetError, match="no split 'test'"):
        load_dataset(root, "test")


def test_without_splits_file_every_fifth_image_is_val(tmp_path):
    names = [f"{i}.png" for i in range(10)]
    root = make_dataset(tmp_path / "d", [], images=names)
    val = {r.path.name for r in load_coco(root, "val").records}
    train = {r.path.name for r in load_coco(root, "train").records}
    assert val == {"0.png", "5.png"} and not val & train and len(train) == 8


def test_image_of_another_size_than_annotated_is_an_error(tmp_path):
    root = make_dataset(tmp_path / "d", [])
    cv2.imwrite(str(root / "images" / "a.png"), np.zeros((10, 10, 3), np.uint8))
    dataset = DetectionDataset(load_coco(root, "all"), 32, augment=False)
    with pytest.raises(DatasetError, match="a.png: image is 10x10 but the annotations say 50x40"):
        dataset[0]


def test_not_a_dataset_folder(tmp_path):
    with pytest.raises(DatasetError, match="not a dataset folder"):
        load_dataset(tmp_path, "train")
