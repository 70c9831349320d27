import json

import cv2
import numpy as np
import pytest
from scratchdet.runtime.detector import Detector
from scratchdet.runtime.predict import predict


@pytest.fixture(scope="module")
def detector(bccd_models):
    return Detector(bccd_models["fp32"], conf=0.05)


def test_video_gives_annotated_video_with_same_frame_count_and_jsonl(detector, bccd, tmp_path):
    source = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(source), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    frames = [cv2.resize(cv2.imread(str(p)), (320, 240)) for p in sorted((bccd / "images").iterdir())[:7]]
    for frame in frames:
        writer.write(frame)
    writer.release()
    count, _ = predict(detector, str(source), tmp_path / "out")
    assert count == 7
    lines = (tmp_path / "out" / "clip.jsonl").read_text().splitlines()
    assert [json.loads(line)["frame"] for line in lines] == list(range(7))
    capture = cv2.VideoCapture(str(tmp_path / "out" / "clip.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 7
    assert (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (320, 240)


def test_folder_gives_annotated_images_and_json(detector, bccd, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for path in sorted((bccd / "images").iterdir())[:3]:
        (folder / path.name).write_bytes(path.read_bytes())
    count, _ = predict(detector, str(folder), tmp_path / "out")
    records = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert count == 3 and sorted(records) == sorted(p.name for p in folder.iterdir())
    for name, detections in records.items():
        annotated = cv2.imread(str(tmp_path / "out" / name))
        assert annotated.shape == cv2.imread(str(folder / name)).shape
        assert all(set(d) == {"box", "score", "class_id", "class_name"} for d in detections)
        assert all(d["score"] >= 0.05 for d in detections)


def test_unreadable_image_and_unopenable_video_are_named(detector, tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="bad.jpg: cannot read the image"):
        predict(detector, str(tmp_path / "bad.jpg"), tmp_path / "out")
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    with pytest.raises(ValueError, match="bad.mp4: cannot open the video file"):
        predict(detector, str(tmp_path / "bad.mp4"), tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="missing.png: no such image"):
        predict(detector, str(tmp_path / "missing.png"), tmp_path / "out")
    np.testing.assert_equal(detector.class_names, ["Platelets", "RBC", "WBC"])


@pytest.mark.parametrize("kind", ["folder", "image", "video"])
def test_a_save_dir_holding_the_source_is_refused(detector, bccd, tmp_path, kind):
    # Before: the inputs were overwritten by annotated copies (a video while it was read: 30 frames became 4).
    folder = tmp_path / "in"
    folder.mkdir()
    image = sorted((bccd / "images").iterdir())[0]
    (folder / image.name).write_bytes(image.read_bytes())
    (folder / "clip.mp4").write_bytes(b"stands for a video")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    source = {"folder": folder, "image": folder / image.name, "video": folder / "clip.mp4"}[kind]
    with pytest.raises(ValueError, match=r"in: the save dir holds the source .* would overwrite the inputs"):
        predict(detector, str(source), folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_a_bad_file_in_a_folder_keeps_the_detections_made_before_it(detector, bccd, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for path in sorted((bccd / "images").iterdir())[:2]:
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "zz-broken.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="zz-broken.jpg: cannot read the image"):
        predict(detector, str(folder), tmp_path / "out")
    records = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert sorted(records) == sorted(p.name for p in folder.iterdir() if p.name != "zz-broken.jpg")
