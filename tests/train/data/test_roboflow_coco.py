import json

import cv2
import numpy as np
import pytest

from scratchdet.train.data.load import dataset_layout, dataset_splits, load_dataset
from scratchdet.train.data.records import DatasetError


def roboflow_split(folder, images, boxes, categories=None):
    """A Roboflow COCO export split: images beside _annotations.coco.json, ids from 0, a root category 0."""
    folder.mkdir(parents=True)
    for name in images:
        cv2.imwrite(str(folder / name), np.zeros((40, 50, 3), np.uint8))
    coco = {
        "info": {"description": "Exported from roboflow.com"},
        "categories": categories or [{"id": 0, "name": "pets", "supercategory": "none"},
                                     {"id": 1, "name": "cat", "supercategory": "pets"},
                                     {"id": 2, "name": "dog", "supercategory": "pets"}],
        "images": [{"id": i, "license": 1, "file_name": n, "height": 40, "width": 50,
                    "date_captured": "2026-01-01T00:00:00+00:00"} for i, n in enumerate(images)],
        "annotations": [{"id": i, "image_id": image, "category_id": category, "bbox": bbox, "area": bbox[2] * bbox[3],
                         "segmentation": [], "iscrowd": 0} for i, (image, category, bbox) in enumerate(boxes)],
    }
    (folder / "_annotations.coco.json").write_text(json.dumps(coco))


def make_export(root):
    roboflow_split(root / "train", ["a_jpg.rf.1.jpg", "b_jpg.rf.2.jpg"],
                   [(0, 1, [1, 2, 10, 10]), (1, 2, [5, 5, 20, 8])])
    roboflow_split(root / "valid", ["c_jpg.rf.3.jpg"], [(0, 2, [0.5, 1.5, 30, 20])])
    roboflow_split(root / "test", ["d_jpg.rf.4.jpg"], [])
    return root


def test_roboflow_coco_export_loads_per_split_without_its_root_category(tmp_path):
    root = make_export(tmp_path)
    assert dataset_layout(root) == "roboflow-coco" and dataset_splits(root) == ["train", "val", "test"]
    train = load_dataset(root, "train")
    assert train.class_names == ["cat", "dog"]  # not 'pets': the supercategory with no boxes
    assert [r.labels.tolist() for r in train.records] == [[0], [1]]
    np.testing.assert_allclose(train.records[1].boxes, [[5, 5, 25, 13]])
    val = load_dataset(root, "val")  # from valid/
    assert [r.path for r in val.records] == [root / "valid" / "c_jpg.rf.3.jpg"]
    np.testing.assert_allclose(val.records[0].boxes, [[0.5, 1.5, 30.5, 21.5]])
    assert len(load_dataset(root, "test").records[0].boxes) == 0
    everything = load_dataset(root, "all")
    assert [r.image_id for r in everything.records] == [1, 2, 3, 4]


def test_roboflow_problems_name_the_split_file(tmp_path):
    root = make_export(tmp_path)
    (root / "valid" / "_annotations.coco.json").write_text(
        (root / "valid" / "_annotations.coco.json").read_text().replace('"category_id": 2', '"category_id": 9'))
    with pytest.raises(DatasetError, match=r"valid/_annotations\.coco\.json: annotation 0 has unknown category_id 9"):
        load_dataset(root, "val")
    (root / "test" / "_annotations.coco.json").unlink()
    with pytest.raises(DatasetError, match=r"no split 'test' \(expected test/_annotations\.coco\.json; found: tr"):
        load_dataset(root, "test")


def test_roboflow_splits_must_share_their_classes(tmp_path):
    root = make_export(tmp_path)
    (root / "valid" / "_annotations.coco.json").unlink()
    roboflow_split(root / "valid2", ["c.jpg"], [], categories=[{"id": 1, "name": "cow", "supercategory": "none"}])
    (root / "valid2" / "_annotations.coco.json").rename(root / "valid" / "_annotations.coco.json")
    (root / "valid2" / "c.jpg").rename(root / "valid" / "c.jpg")
    with pytest.raises(DatasetError, match=r"classes \['cow'\] differ from .*train/_annotations\.coco\.json's"):
        load_dataset(root, "val")


def test_a_coco_category_named_as_its_own_supercategory_stays_a_class(tmp_path):
    # COCO's own files: {"name": "person", "supercategory": "person"}; without boxes it is still a class.
    roboflow_split(tmp_path / "train", ["a.jpg"], [(0, 2, [1, 1, 5, 5])],
                   categories=[{"id": 1, "name": "person", "supercategory": "person"},
                               {"id": 2, "name": "bicycle", "supercategory": "vehicle"}])
    assert load_dataset(tmp_path, "train").class_names == ["person", "bicycle"]
