"""`scratchdet predict`: images, folders, videos or a camera through a Detector; annotated output + JSON."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from scratchdet.models.detections import Detections
from scratchdet.models.files import write_text
from scratchdet.runtime.detector import Detector
from tqdm import tqdm

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm"}


def colour(class_id: int) -> tuple[int, int, int]:
    """A stable, distinct BGR colour per class."""
    hue = (class_id * 47) % 180
    return tuple(int(c) for c in cv2.cvtColor(np.uint8([[[hue, 220, 255]]]), cv2.COLOR_HSV2BGR)[0, 0])


def draw(image: np.ndarray, result: Detections, class_names: list[str]) -> np.ndarray:
    """A copy of a BGR image with boxes, class names and scores drawn."""
    canvas = image.copy()
    for box, score, class_id in zip(result.boxes, result.scores, result.class_ids):
        name = class_names[class_id]
        x1, y1, x2, y2 = np.round(box).astype(int).tolist()
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour(int(class_id)), 2)
        label = f"{name} {score:.2f}"
        (w, h), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        cv2.rectangle(canvas, (x1, max(y1 - h - 4, 0)), (x1 + w + 2, max(y1, h + 4)), colour(int(class_id)), -1)
        cv2.putText(canvas, label, (x1 + 1, max(y1 - 3, h + 1)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    return canvas


def as_json(result: Detections, class_names: list[str]) -> list[dict]:
    return [{"box": [round(float(v), 2) for v in box], "score": round(float(score), 5), "class_id": int(cid),
             "class_name": class_names[cid]}
            for box, score, cid in zip(result.boxes, result.scores, result.class_ids)]


def _read_image(path: Path) -> np.ndarray:
    try:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    except cv2.error as error:  # e.g. beyond OpenCV's pixel limit
        raise ValueError(f"{path}: OpenCV cannot read the image ({str(error).strip().splitlines()[-1]})") from None
    if image is None:
        raise ValueError(f"{path}: cannot read the image (corrupt or not an image)")
    return image


def _images(paths: list[Path]) -> Iterator[tuple[str, np.ndarray]]:
    for path in paths:
        yield path.name, _read_image(path)


def _open_video(source: str) -> cv2.VideoCapture:
    capture = cv2.VideoCapture(int(source) if source.isdigit() else source)
    if not capture.isOpened():
        raise ValueError(f"{source}: cannot open the video {'camera' if source.isdigit() else 'file'}")
    return capture


def predict_images(detector: Detector, paths: list[Path], save_dir: Path) -> tuple[int, float]:
    """Annotated copies and detections.json in save_dir; returns (images, seconds)."""
    records, started = {}, time.perf_counter()
    try:
        for name, image in tqdm(_images(paths), total=len(paths), desc="predict"):
            (result,) = detector.detect(image)
            bgr = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
            cv2.imwrite(str(save_dir / name), draw(bgr, result, detector.class_names))
            records[name] = as_json(result, detector.class_names)
    finally:  # a bad file stops the run, but the detections made so far are kept
        write_text(save_dir / "detections.json", json.dumps(records, indent=1))
    return len(paths), time.perf_counter() - started


def predict_video(detector: Detector, source: str, save_dir: Path, max_frames: int | None = None) -> tuple[int, float]:
    """An annotated video and one JSON line per frame in save_dir; returns (frames, seconds)."""
    capture = _open_video(source)
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    stem = "camera" + source if source.isdigit() else Path(source).stem
    writer, frames, started = None, 0, time.perf_counter()
    with open(save_dir / f"{stem}.jsonl", "w") as lines, tqdm(total=total, desc="predict") as bar:
        while max_frames is None or frames < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            (result,) = detector.detect(frame)
            if writer is None:
                fourcc = cv2.VideoWriter_fourcc(*"mp4v")
                writer = cv2.VideoWriter(str(save_dir / f"{stem}.mp4"), fourcc, fps, frame.shape[1::-1])
            writer.write(draw(frame, result, detector.class_names))
            lines.write(json.dumps({"frame": frames, "detections": as_json(result, detector.class_names)}) + "\n")
            frames += 1
            bar.update(1)
    capture.release()
    if writer is not None:
        writer.release()
    return frames, time.perf_counter() - started


def predict(detector: Detector, source: str, save_dir: str | Path) -> tuple[int, float]:
    """Dispatch on SOURCE: an image, a folder of images, a video file or a camera index."""
    save_dir = Path(save_dir)
    path = Path(source)
    inputs_folder = path if path.is_dir() else path.parent
    if not source.isdigit() and path.exists() and inputs_folder.resolve() == save_dir.resolve():
        raise ValueError(f"{save_dir}: the save dir holds the source {source}; the annotated outputs would "
                         "overwrite the inputs (a video while it is read). Choose another --save-dir")
    save_dir.mkdir(parents=True, exist_ok=True)
    if source.isdigit() or path.suffix.lower() in VIDEO_SUFFIXES:
        return predict_video(detector, source, save_dir)
    if path.is_dir():
        paths = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise ValueError(f"{path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
        return predict_images(detector, paths, save_dir)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such image, folder or video")
    return predict_images(detector, [path], save_dir)
