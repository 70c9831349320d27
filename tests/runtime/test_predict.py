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
