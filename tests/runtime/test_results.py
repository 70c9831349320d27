import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from scratchdet.runtime.results import Results, colour, default_line_width, draw, tighten

README = Path(__file__).resolve().parents[2] / "README.md"


def test_labels_are_drawn_after_every_box_and_stay_inside_the_image():
    image = np.full((480, 640, 3), 40, dtype=np.uint8)
    # box 1's bottom edge (y = 95) crosses the label above box 0 (which ends at y = 100)
    boxes = np.array([[100, 100, 300, 300], [90, 60, 400, 95], [560, 0, 640, 40]], dtype=np.float32)
    canvas = draw(image, boxes, np.array([0, 1, 2]), ["RBC 0.91", "WBC 0.80", "Platelets 0.55"])
    assert tuple(canvas[95, 100]) == colour(0)  # the label's background, not box 1's line
    # the label of the box touching the top-right corner is moved inside the image, right-aligned
    assert tuple(canvas[1, 638]) == colour(2) and tuple(canvas[1, 400]) == (40, 40, 40)


def test_line_width_scales_with_the_image():
    assert default_line_width((480, 640)) == 2 and default_line_width((1080, 1920)) == 4
    assert default_line_width((2000, 2000)) == 6


def test_tighten_removes_overlaps_per_class_and_caps_count():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60]], dtype=np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], dtype=np.float32)
    classes = np.array([0, 0, 1, 0])
    assert tighten(boxes, scores, classes).tolist() == [0, 1, 2, 3]
    assert tighten(boxes, scores, classes, iou=0.5).tolist() == [0, 2, 3]  # IoU(0, 1) = 0.68; 2 is another class
    assert tighten(boxes, scores, classes, iou=0.5, max_det=2).tolist() == [0, 2]


def test_results_serialise_and_save(tmp_path):
    image = np.zeros((100, 200), dtype=np.uint16)  # gray 16-bit: plotted as 8-bit BGR
    result = Results("a.png", image, np.array([[10, 10, 50, 60]], dtype=np.float32), np.array([0.5]),
                     np.array([1]), ["cat", "dog"], {"inference": 1.0})
    assert result.to_dict() == {"image": "a.png", "width": 200, "height": 100, "detections": [
        {"class_id": 1, "class_name": "dog", "score": 0.5, "box": [10.0, 10.0, 50.0, 60.0]}]}
    assert result.to_txt() == "1 10.00 10.00 50.00 60.00 0.50000\n"
    assert result.save(tmp_path / "x" / "a.png").is_file() and list((tmp_path / "x").iterdir()) == [
        tmp_path / "x" / "a.png"]
    with pytest.raises(OSError, match=r"a\.nope: OpenCV could not encode the image \(unknown suffix .\.nope.\)"):
        result.save(tmp_path / "a.nope")


def test_the_readme_python_api_lines_run_as_written(trained_models, trained_data, tmp_path, monkeypatch, capsys):
    block = re.search(r"<!-- python-api -->\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    assert len(block.strip().splitlines()) == 3
    model = tmp_path / "runs" / "bccd_cpu" / "export" / "model-int8-ort.onnx"
    model.parent.mkdir(parents=True)
    shutil.copyfile(trained_models["int8"], model)
    images = sorted((trained_data / "images").iterdir())[:3]
    shutil.copyfile(images[0], tmp_path / "cells.jpg")
    (tmp_path / "more_cells").mkdir()
    for path in images[1:]:
        shutil.copyfile(path, tmp_path / "more_cells" / path.name)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 3 and sorted(p.name for p in (tmp_path / "detected").iterdir()) == sorted(
        ["cells.jpg"] + [p.name for p in images[1:]])
    assert all('"detections": [' in line and "'inference':" in line for line in printed)
