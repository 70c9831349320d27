import json
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from scratchdet.benchmarks.studies.from_scratch import main, timed_child
from scratchdet.train.data.load import load_dataset

BURN = "import time\nwhile time.process_time() < {}: pass"  # CPU seconds of a child

# A stand-in for ultralytics: "trains" by writing a weights file and "predicts" every val image's ground truth
# (read from the YOLO labels the study wrote), so the study's plumbing must yield AP 1.0 through our evaluator.
FAKE_ULTRALYTICS = '''
import os
from pathlib import Path

import cv2


class _Boxes:
    def __init__(self, rows):
        import torch
        self.xyxy = torch.tensor([r[1:] for r in rows], dtype=torch.float32).reshape(-1, 4)
        self.conf = torch.ones(len(rows))
        self.cls = torch.tensor([r[0] for r in rows], dtype=torch.float32)


class _Result:
    def __init__(self, boxes):
        self.boxes = boxes


class YOLO:
    def __init__(self, model):
        self.model = model

    def train(self, data, epochs, imgsz, seed, pretrained, device, project, name, exist_ok, plots):
        assert pretrained is False and os.environ["OMP_NUM_THREADS"] == "1"
        weights = Path(project) / name / "weights"
        weights.mkdir(parents=True, exist_ok=True)
        (weights / "last.pt").write_text(str(Path(data).parent))

    def predict(self, image, imgsz, conf, max_det, device, verbose):
        root = Path(Path(self.model).read_text())
        label = next((root / "labels" / "val").rglob(Path(image).stem + ".txt"))
        height, width = cv2.imread(image).shape[:2]
        rows = []
        for line in label.read_text().split("\\n"):
            if line.strip():
                c, x, y, w, h = map(float, line.split())
                rows.append([c, (x - w / 2) * width, (y - h / 2) * height, (x + w / 2) * width, (y + h / 2) * height])
        return [_Result(_Boxes(rows))]
'''


def test_timed_child_counts_the_childs_cpu_time(tmp_path):
    user, system, wall = timed_child([sys.executable, "-c", BURN.format(0.3)], 1, tmp_path / "burn.log")
    assert user + system >= 0.3 and wall > 0
    with pytest.raises(RuntimeError, match="exited with 3; see .*fail.log"):
        timed_child([sys.executable, "-c", "raise SystemExit(3)"], 1, tmp_path / "fail.log")


def test_timed_child_counts_only_its_own_child_beside_another(tmp_path):
    with ThreadPoolExecutor(2) as pool:
        futures = {need: pool.submit(timed_child, [sys.executable, "-c", BURN.format(need)], 1,
                                     tmp_path / f"{need}.log") for need in (0.5, 1.0)}
    short_user, short_sys, _ = futures[0.5].result()
    long_user, long_sys, _ = futures[1.0].result()
    assert 0.5 <= short_user + short_sys < 0.8
    assert 1.0 <= long_user + long_sys < 1.3  # not also the 0.5 s child that ran and ended beside it


def test_study_trains_ours_and_scores_yolo_with_our_evaluator(synth_data, tmp_path, monkeypatch):
    fake = tmp_path / "fake" / "ultralytics"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(textwrap.dedent(FAKE_ULTRALYTICS))
    monkeypatch.setenv("PYTHONPATH", str(fake.parent))
    out = tmp_path / "study"
    assert main(["--data", str(synth_data), "--out", str(out), "--config", "tiny", "--seeds", "0", "--epochs", "1",
                 "--yolo-python", sys.executable]) == 0
    runs = {r["arm"]: r for r in json.loads((out / "study.json").read_text())}
    assert set(runs) == {"ours-tiny", "yolo-yolo11n"}
    assert runs["yolo-yolo11n"]["coco_ap"] == pytest.approx(1.0)  # the ground truth, scored by pycocotools
    assert 0 <= runs["ours-tiny"]["coco_ap"] < 1 and runs["ours-tiny"]["user_s"] > 0
    assert len(load_dataset(out / "yolo-data" / "data.yaml", "val").records) == len(load_dataset(synth_data,
                                                                                              "val").records)
    table = (out / "study.md").read_text()
    assert "| yolo-yolo11n | 0 |" in table and "ours-tiny: COCO AP mean" in table
    (out / "ours-tiny" / "seed0" / "last.pt").unlink()  # a finished (arm, seed) is reused, not trained again
    assert main(["--data", str(synth_data), "--out", str(out), "--config", "tiny", "--seeds", "0",
                 "--epochs", "1"]) == 0
    assert Path(out / "study.md").read_text().count("| ours-tiny | 0 |") == 1
