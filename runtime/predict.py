"""`scratchdet predict`: detections on images, folders, globs, videos, cameras and streams.

Sources, as ultralytics accepts them: an image or video file, a folder (its images and videos), a glob
("data/*.jpg", quoted), several of these at once, a camera index (0), or a URL: an image URL is
downloaded, a video or stream URL (rtsp://, rtmp://, http(s)://, file://) is read by OpenCV's
VideoCapture (FFmpeg). Outputs go to a fresh folder (runs/predict, runs/predict2, ...):
annotated images and videos, detections.json (one document per image, board_runner's schema) or
NAME.jsonl per video (one document per frame, plus "frame"), and with --save-txt one labels/STEM.txt
per image or frame (see results.TXT_FORMAT).

A source that cannot be read (a corrupt or empty image, a failed download, a video that does not open) is
logged and skipped, and the others are processed, as ultralytics does; the summary lists the skipped ones so
the CLI can exit non-zero. Destinations are checked before the first detection. The outputs are written into
a staging folder beside the save dir and published when the run ends (Ctrl-C on a stream ends it too): a new
save dir appears whole in one rename; into an existing one (--exist-ok) detections.json moves last. So a
killed run leaves no annotated image without its detections.json, only a marked staging folder that the next
run removes, and a run that wrote nothing leaves no save folder behind.
"""

from __future__ import annotations

import glob
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import cv2
import numpy as np

from scratchdet.models.files import check_destination, publish_folder, staging_folder, write_text
from scratchdet.paths import increment_path
from scratchdet.progress import progress
from scratchdet.runtime.results import Results, detect_results, read_image
from scratchdet.special_files import special_problem

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".gif"}
STREAM_SCHEMES = {"rtsp", "rtsps", "rtmp", "http", "https", "tcp", "udp", "srt", "file"}


@dataclass(frozen=True)
class Source:
    """One input: kind "image" (a file), "image_url", "video" (a file), "camera" (an index) or "stream" (a URL)."""

    kind: str
    value: str

    @property
    def name(self) -> str:
        """File name for its outputs: the file's name, camera0, or the URL path's last part."""
        if self.kind == "camera":
            return f"camera{self.value}"
        path = urlparse(self.value).path if "://" in self.value else self.value
        return Path(path).name or "stream"


def _by_suffix(path: Path) -> Source | None:
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return Source("image", str(path))
    return Source("video", str(path)) if suffix in VIDEO_SUFFIXES else None


def _found(where: str, paths: list[Path]) -> list[Source]:
    """The images and videos among the files a folder or glob gave; special files left out with one warning."""
    named = [(p, s) for p in paths if (s := _by_suffix(p))]
    special = [(p, problem) for p, _ in named if (problem := special_problem(p)) is not None]
    if special:
        log.warning("%s: %d special file(s) named like images or videos skipped, e.g. %s: %s", where, len(special),
                    *special[0])
    skip = {p for p, _ in special}
    return [s for p, s in named if p not in skip]


def classify(source: str) -> list[Source]:
    """The inputs one command-line source names (a folder or glob: its images and videos, sorted; special files
    such as FIFOs are skipped with a warning, never opened)."""
    if source.isdigit():
        return [Source("camera", source)]
    scheme = urlparse(source).scheme.lower()
    if scheme in STREAM_SCHEMES:
        image_url = Path(urlparse(source).path).suffix.lower() in IMAGE_SUFFIXES and scheme != "file"
        return [Source("image_url" if image_url else "stream", source)]
    path = Path(source)
    if path.is_dir():
        found = _found(str(path), sorted(path.iterdir()))
        if not found:
            raise ValueError(f"{path}: no images or videos in this folder "
                             f"({', '.join(sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES))})")
        return found
    if any(c in source for c in "*?[") and not path.exists():
        found = _found(source, [Path(p) for p in sorted(glob.glob(source, recursive=True))])
        if not found:
            raise FileNotFoundError(f"{source}: the pattern matches no image or video")
        return found
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such image, folder, video, glob or camera index")
    special = special_problem(path)
    if special is not None:
        raise ValueError(f"{path}: {special}")
    single = _by_suffix(path)
    if single is None:
        raise ValueError(f"{path}: unknown suffix '{path.suffix}'; images: {', '.join(sorted(IMAGE_SUFFIXES))}; "
                         f"videos: {', '.join(sorted(VIDEO_SUFFIXES))}")
    return [single]


def results_for(detector, source, iou: float | None = None, max_det: int | None = None,
                color: str = "bgr") -> list[Results]:
    """Results for an image path, a folder or glob of images, an image array, or a list of these
    (one image per call; arrays are named image0, image1, ... by position)."""
    items = source if isinstance(source, (list, tuple)) else [source]
    results = []
    for position, item in enumerate(items):
        if isinstance(item, np.ndarray):
            results += detect_results(detector, [item], [f"image{position}"], iou, max_det, color)
            continue
        for found in classify(str(item)):
            if found.kind != "image":
                raise ValueError(f"{found.value}: a {found.kind}; the Python API takes images (use "
                                 "`scratchdet predict` or runtime.predict.predict for videos and streams)")
            image = read_image(found.value)
            results += detect_results(detector, [image], [Path(found.value).name], iou, max_det, "bgr")
    return results


def _download_image(url: str) -> np.ndarray:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            data = np.frombuffer(response.read(), dtype=np.uint8)
    except (urllib.error.URLError, OSError) as error:  # HTTPError is a URLError; a timeout an OSError
        reason = getattr(error, "reason", None) if not isinstance(error, urllib.error.HTTPError) else None
        raise OSError(f"{url}: download failed ({reason or error})") from None
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"{url}: the download is not an image")
    return image


def open_capture(source: Source) -> cv2.VideoCapture:
    """An opened VideoCapture for a video file, camera index or stream URL; ValueError naming it otherwise."""
    capture = cv2.VideoCapture(int(source.value) if source.kind == "camera" else source.value)
    if not capture.isOpened():
        what = {"camera": "camera", "video": "video file", "stream": "stream"}[source.kind]
        raise ValueError(f"{source.value}: cannot open the {what}")
    return capture


@dataclass
class PredictSummary:
    images: int  # images and frames
    seconds: float
    save_dir: Path | None  # None: nothing was written, and no folder was made
    skipped: list[str]  # "SOURCE: why" for each source that could not be read


class _Outputs:
    """Everything predict writes into one save dir."""

    def __init__(self, save_dir: Path, save_txt: bool, line_width: int | None) -> None:
        self.save_dir, self.save_txt, self.line_width = save_dir, save_txt, line_width
        self.documents: list[dict] = []
        self.names: set[str] = set()

    def unique(self, name: str) -> str:
        """Images of the same name from two folders get distinct output names (a.jpg, a_2.jpg)."""
        stem, suffix, number = Path(name).stem, Path(name).suffix, 2
        while name in self.names:
            name, number = f"{stem}_{number}{suffix}", number + 1
        self.names.add(name)
        return name

    def image(self, result: Results, name: str) -> None:
        result.save(self.save_dir / name, self.line_width)
        self.documents.append(result.to_dict())
        self.labels(result, Path(name).stem)

    def labels(self, result: Results, stem: str) -> None:
        if self.save_txt:
            write_text(self.save_dir / "labels" / f"{stem}.txt", result.to_txt())

    def close(self) -> None:
        if self.documents:
            write_text(self.save_dir / "detections.json", json.dumps(self.documents, indent=1))


def _video(detector, source: Source, outputs: _Outputs, iou: float | None, max_det: int | None,
           max_frames: int | None) -> int:
    """Annotated NAME.mp4 and NAME.jsonl (one document per frame) for a video, camera or stream."""
    capture = open_capture(source)
    stem = Path(outputs.unique(Path(source.name).stem + ".mp4")).stem
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    writer, frames = None, 0
    try:
        with open(outputs.save_dir / f"{stem}.jsonl", "w") as lines, \
                progress(desc=f"predict {source.name}", total=total) as bar:
            while max_frames is None or frames < max_frames:
                ok, frame = capture.read()
                if not ok:
                    break
                (result,) = detect_results(detector, [frame], [f"{stem}_{frames}"], iou, max_det)
                if writer is None:
                    writer = cv2.VideoWriter(str(outputs.save_dir / f"{stem}.mp4"), cv2.VideoWriter.fourcc(*"mp4v"),
                                             fps, frame.shape[1::-1])
                writer.write(result.plot(outputs.line_width))
                lines.write(json.dumps({"frame": frames, **result.to_dict()}) + "\n")
                outputs.labels(result, f"{stem}_{frames}")
                frames += 1
                bar.update(1)
    except KeyboardInterrupt:  # a live stream ends when the user says so; keep what was written
        log.info("%s: stopped after %d frames", source.value, frames)
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    if frames == 0:  # it opened, but nothing can be read from it: as unreadable as a corrupt image
        (outputs.save_dir / f"{stem}.jsonl").unlink(missing_ok=True)
        raise ValueError(f"{source.value}: opens but yields no frame (empty, truncated or an unsupported codec)")
    return frames


def _still_images(sources: list[Source], skipped: list[str]) -> Iterator[tuple[Source, np.ndarray]]:
    """Each readable image; an unreadable one is logged, added to `skipped` and passed over."""
    for source in sources:
        try:
            yield source, read_image(source.value) if source.kind == "image" else _download_image(source.value)
        except (ValueError, OSError) as error:
            log.error("skipped: %s", error)
            skipped.append(str(error))


def check_save_dir(save_dir: Path, exist_ok: bool, save_txt: bool) -> None:
    """Refuse, before anything is written, a save dir whose outputs would fail after the first images."""
    check_destination(save_dir, folder=True)
    if not exist_ok:  # a new folder: save_dir itself, or the next free save_dir2, ... beside it
        return
    labels = save_dir / "labels"
    if save_txt and labels.exists() and not labels.is_dir():
        raise NotADirectoryError(f"{labels}: labels is a file, not a folder; --save-txt writes "
                                 "labels/STEM.txt in it (move the file or choose another --save-dir)")
    check_destination(save_dir / "detections.json")  # a read-only one is refused now, not after the run


def _publish(stage: Path, save_dir: Path, exist_ok: bool) -> Path | None:
    """Move the run's outputs from `stage` into their save dir (detections.json last); None when it wrote nothing."""
    if not any(stage.iterdir()):
        log.info("%s: nothing was written; no results folder", save_dir)
        return None
    out = increment_path(save_dir, exist_ok)
    publish_folder(stage, out, last="detections.json")
    return out


def predict(detector, sources: str | list[str], save_dir: str | Path = "runs/predict", exist_ok: bool = False,
            iou: float | None = None, max_det: int | None = None, save_txt: bool = False,
            line_width: int | None = None, max_frames: int | None = None) -> PredictSummary:
    """Detect on every source (see the module docstring); returns counts, time and the save dir used."""
    named = [s for source in ([sources] if isinstance(sources, str) else sources) for s in classify(str(source))]
    files = [Path(s.value) for s in named if s.kind in ("image", "video")]
    if exist_ok and any(f.resolve().parent == Path(save_dir).resolve() for f in files):
        raise ValueError(f"{save_dir}: the save dir holds a source; the annotated outputs would overwrite or mix "
                         "with the inputs (drop --exist-ok or choose another --save-dir)")
    save_dir = Path(save_dir)
    check_save_dir(save_dir, exist_ok, save_txt)
    existed = save_dir.is_dir()
    skipped: list[str] = []
    count, started = 0, time.perf_counter()
    stills = [s for s in named if s.kind in ("image", "image_url")]
    with staging_folder(save_dir) as stage:
        outputs = _Outputs(stage, save_txt, line_width)
        for source, image in progress(_still_images(stills, skipped), desc="predict", total=len(stills)):
            (result,) = detect_results(detector, [image], [source.name], iou, max_det)
            outputs.image(result, outputs.unique(source.name))
            count += 1
        for source in (s for s in named if s.kind not in ("image", "image_url")):
            try:
                count += _video(detector, source, outputs, iou, max_det, max_frames)
            except ValueError as error:  # open_capture: the video, camera or stream does not open
                log.error("skipped: %s", error)
                skipped.append(str(error))
        outputs.close()
        out = _publish(stage, save_dir, exist_ok)
    kept = out or (save_dir if exist_ok and existed else None)
    return PredictSummary(count, time.perf_counter() - started, kept, skipped)
