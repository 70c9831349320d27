import json

import cv2
import numpy as np
import pytest

from scratchdet.train.data.coco import load_coco
from scratchdet.train.data.load import load_dataset
from scratchdet.train.data.records import DatasetError


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


def test_missing_image_file_fails_the_load_naming_it(tmp_path):
    root = make_dataset(tmp_path / "d", [{"image_id": 2, "category_id": 1, "bbox": [1, 2, 10, 10]}])
    (root / "images" / "b.png").unlink()
    with pytest.raises(DatasetError, match=r"b\.png: image file not found \(the annotations list it"):
        load_coco(root, "all")


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


def test_image_of_another_size_than_annotated_is_an_error_at_load(tmp_path):
    root = make_dataset(tmp_path / "d", [])
    cv2.imwrite(str(root / "images" / "a.png"), np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(DatasetError, match="a.png: image is 10x10 but the annotations say 50x40"):
        load_coco(root, "all")


def test_not_a_dataset_folder(tmp_path):
    with pytest.raises(DatasetError, match="not a dataset folder"):
        load_dataset(tmp_path, "train")


def _coco(root):
    return json.loads((root / "annotations.json").read_text())


def _rewrite(root, change):
    coco = _coco(root)
    change(coco)
    (root / "annotations.json").write_text(json.dumps(coco))
    return root


def test_duplicate_image_ids_are_refused_not_merged(tmp_path):
    # Before: b.png silently took a.png's boxes and lost its own (ground truth and AP changed, exit 0).
    root = make_dataset(tmp_path / "d", [
        {"image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10]},
        {"image_id": 2, "category_id": 7, "bbox": [5, 5, 20, 20]},
    ])
    _rewrite(root, lambda coco: coco["images"][1].update(id=1))
    with pytest.raises(DatasetError, match=r"annotations.json: image id 1 is used by both a.png and b.png"):
        load_coco(root, "all")


def test_every_problem_is_reported_at_once(tmp_path):
    root = make_dataset(tmp_path / "d", [
        {"image_id": 1, "category_id": 1, "bbox": [1, 1, float("nan"), 5]},
        {"category_id": 1, "bbox": [1, 1, 5, 5]},
        {"image_id": 2, "category_id": 3, "bbox": [1, 1, 5, 5]},
    ], splits={"train": ["a.png", "b.png"], "val": ["b.png", "c.png"]})
    (root / "images" / "c.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError) as caught:
        load_coco(root, "val")
    lines = str(caught.value).splitlines()
    assert lines[0].endswith("5 problem(s) in the dataset:")
    expected = ["annotation 1 has a malformed bbox", "annotation 2 has no image_id",
                "annotation 3 has unknown category_id 3", "splits 'train' and 'val' share 1 image(s), e.g. b.png",
                "c.png: cannot read the image header"]
    for line, text in zip(lines[1:], expected):
        assert text in line
    assert all(": " in line for line in lines[1:])  # file: problem


BAD_ANNOTATIONS = {
    "nan box": (lambda c: c["annotations"][0].update(bbox=[1, 1, float("nan"), 5]), "malformed bbox"),
    "inf box": (lambda c: c["annotations"][0].update(bbox=[1, 1, float("inf"), 5]), "malformed bbox"),
    "boolean box": (lambda c: c["annotations"][0].update(bbox=[True, 1, 5, 5]), "malformed bbox"),
    "string box": (lambda c: c["annotations"][0].update(bbox=["1", 1, 5, 5]), "malformed bbox"),
    "negative size": (lambda c: c["annotations"][0].update(bbox=[1, 1, -5, 5]), "negative size"),
    "no image_id": (lambda c: c["annotations"][0].pop("image_id"), "annotation 1 has no image_id"),
    "unknown image_id": (lambda c: c["annotations"][0].update(image_id=99), "image_id 99, which names no image"),
    "no category": (lambda c: c["annotations"][0].pop("category_id"), "unknown category_id None"),
    "annotation not an object": (lambda c: c["annotations"].append([1, 2]), "annotation [1] is not an object"),
    "no file_name": (lambda c: c["images"][0].pop("file_name"), "invalid file_name"),
    "string width": (lambda c: c["images"][0].update(width="50"), "invalid width"),
    "zero height": (lambda c: c["images"][0].update(height=0), "height 0 <= 0"),
    "duplicate file_name": (lambda c: c["images"][1].update(file_name="a.png"), "file_name a.png is listed twice"),
    "category without id": (lambda c: c["categories"][0].pop("id"), "categories[0] needs an integer 'id'"),
    "duplicate category": (lambda c: c["categories"][1].update(id=1), "category id 1 appears more than once"),
}


@pytest.mark.parametrize("change, message", BAD_ANNOTATIONS.values(), ids=BAD_ANNOTATIONS.keys())
def test_bad_annotation_fields_are_named_errors(tmp_path, change, message):
    root = make_dataset(tmp_path / "d", [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}])
    _rewrite(root, change)
    with pytest.raises(DatasetError, match=r"annotations.json: .*" + message.replace("[", r"\[")):
        load_coco(root, "all")


BAD_FILES = {
    "a list": ("[]", "expected a COCO object .* found a JSON list"),
    "no images": ('{"categories": [{"id": 1, "name": "a"}]}', "'images' missing"),
    "images not a list": ('{"images": {}, "categories": [{"id": 1, "name": "a"}]}', "'images' is not a list"),
    "no categories": ('{"images": []}', "'categories' missing"),
    "not JSON": ("{", "cannot read JSON"),
}


@pytest.mark.parametrize("text, message", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_malformed_annotation_files_are_named_errors(tmp_path, text, message):
    root = make_dataset(tmp_path / "d", [])
    (root / "annotations.json").write_text(text)
    with pytest.raises(DatasetError, match=r"annotations.json: " + message):
        load_coco(root, "all")


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (gray, 8 bit) with no pixel data: cheap to make."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def test_oversized_image_is_refused_at_load_and_by_read(tmp_path):
    from scratchdet.train.data.images import ImageReadError, read_rgb

    root = make_dataset(tmp_path / "d", [])
    _rewrite(root, lambda c: c["images"][0].update(width=40000, height=30000))
    (root / "images" / "a.png").write_bytes(_png_header(40000, 30000))
    with pytest.raises(DatasetError, match=r"a.png: image is 40000x30000 = 1200000000 pixels, more than OpenCV"):
        load_coco(root, "all")
    with pytest.raises(ImageReadError, match="a.png: OpenCV cannot decode the image"):
        read_rgb(root / "images" / "a.png")


def test_corrupt_image_is_found_at_load_not_at_first_read(tmp_path):
    root = make_dataset(tmp_path / "d", [])
    (root / "images" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DatasetError, match="b.png: cannot read the image header"):
        load_coco(root, "all")


def test_missing_images_list_is_not_blamed_on_splits(tmp_path):
    root = make_dataset(tmp_path / "d", [], splits={"train": ["a.png"], "val": ["b.png"]})
    _rewrite(root, lambda c: c.pop("images"))
    with pytest.raises(DatasetError, match=r"annotations.json: 'images' missing"):
        load_coco(root, "val")
