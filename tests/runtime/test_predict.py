import functools
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from scratchdet.cli import main
from scratchdet.runtime import board_runner
from scratchdet.runtime.detector import Detector
from scratchdet.runtime.predict import Source, classify, predict


@pytest.fixture(scope="module")
def detector(trained_models):
    return Detector(trained_models["fp32"], conf=0.05)


def _write_clip(trained_data: Path, out: Path, size: tuple[int, int]) -> Path:
    """A 7-frame video of the trained data's images."""
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), 10, size)
    for path in sorted((trained_data / "images").iterdir())[:7]:
        writer.write(cv2.resize(cv2.imread(str(path)), size))
    writer.release()
    return out


@pytest.fixture(scope="module")
def clip(trained_data, tmp_path_factory) -> Path:
    return _write_clip(trained_data, tmp_path_factory.mktemp("video") / "clip.mp4", (320, 240))


def test_sources_are_classified_as_ultralytics_does(tmp_path):
    assert classify("0") == [Source("camera", "0")]
    for url in ("rtsp://cam.local:554/live", "http://host/clip.mp4", "https://host/live", "file:///tmp/a.mp4"):
        assert classify(url) == [Source("stream", url)]
    assert classify("https://host/cells.jpg") == [Source("image_url", "https://host/cells.jpg")]
    for name in ("b.png", "a.jpg", "c.mp4", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [s.kind for s in classify(str(tmp_path))] == ["image", "image", "video"]  # sorted: a, b, c
    assert [Path(s.value).name for s in classify(str(tmp_path / "*.jpg"))] == ["a.jpg"]
    with pytest.raises(FileNotFoundError, match=r"\*.gif: the pattern matches no image or video"):
        classify(str(tmp_path / "*.gif"))
    with pytest.raises(ValueError, match="notes.txt: unknown suffix '.txt'"):
        classify(str(tmp_path / "notes.txt"))
    with pytest.raises(FileNotFoundError, match="missing.png: no such image, folder, video, glob or camera"):
        classify(str(tmp_path / "missing.png"))
    assert Source("stream", "rtsp://cam/live/stream1").name == "stream1" and Source("camera", "0").name == "camera0"


def test_video_gives_annotated_video_jsonl_and_labels_per_frame(detector, clip, tmp_path):
    summary = predict(detector, str(clip), tmp_path / "out", save_txt=True)
    assert summary.images == 7 and summary.save_dir == tmp_path / "out"
    lines = [json.loads(line) for line in (tmp_path / "out" / "clip.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(7))
    assert all((line["width"], line["height"]) == (320, 240) for line in lines)
    capture = cv2.VideoCapture(str(tmp_path / "out" / "clip.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 7
    assert (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (320, 240)
    assert sorted(p.name for p in (tmp_path / "out" / "labels").iterdir()) == sorted(f"clip_{i}.txt" for i in range(7))


def test_a_stream_url_is_read_through_opencv(detector, trained_data, tmp_path):
    # Small frames: http.server ignores Range requests, and FFmpeg reads no frame of an mp4 larger than its first
    # read ("Stream ends prematurely"): the 320x240 clip of the noisier synthetic images is 90 kB, of BCCD's 48 kB.
    (tmp_path / "video").mkdir()
    clip = _write_clip(trained_data, tmp_path / "video" / "clip.mp4", (160, 120))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(clip.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{clip.name}"
        summary = predict(detector, [url, clip.as_uri()], tmp_path / "out", max_frames=5)
    finally:
        server.shutdown()
    assert summary.images == 10  # 5 frames from each: the HTTP URL and the file:// URL
    assert sorted(p.name for p in summary.save_dir.glob("*.jsonl")) == ["clip.jsonl", "clip_2.jsonl"]


def test_folders_globs_and_paths_give_images_json_and_txt(detector, trained_data, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    images = sorted((trained_data / "images").iterdir())[:3]
    for path in images:
        (folder / path.name).write_bytes(path.read_bytes())
    suffix = images[0].suffix  # BCCD's .jpg, the synthetic set's .png
    summary = predict(detector, [str(folder / f"*{suffix}"), str(images[0])], tmp_path / "out", save_txt=True,
                      max_det=5, line_width=4)
    documents = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert summary.images == 4
    names = [d["image"] for d in documents]
    assert names == [p.name for p in images] + [images[0].name]
    annotated = sorted(p.name for p in (tmp_path / "out").glob(f"*{suffix}"))
    assert annotated == sorted([p.name for p in images] + [f"{images[0].stem}_2{suffix}"])  # same name kept apart
    for document, image in zip(documents[:3], images):
        height, width = cv2.imread(str(image)).shape[:2]
        assert (document["width"], document["height"]) == (width, height)
        assert 0 < len(document["detections"]) <= 5
        rows = np.loadtxt(tmp_path / "out" / "labels" / f"{Path(document['image']).stem}.txt", ndmin=2)
        np.testing.assert_allclose(rows[:, 0], [d["class_id"] for d in document["detections"]])
        np.testing.assert_allclose(rows[:, 1:5], [d["box"] for d in document["detections"]], atol=0.01)
        np.testing.assert_allclose(rows[:, 5], [d["score"] for d in document["detections"]], atol=1e-5)


def test_iou_and_max_det_only_tighten(detector, trained_data):
    image = cv2.imread(str(sorted((trained_data / "images").iterdir())[0]))
    (full,) = detector(image)
    (same,) = detector(image, iou=0.99)
    (tight,) = detector(image, iou=0.1, max_det=3)
    assert len(full) > 3 and len(same) == len(full) and len(tight) <= 3
    np.testing.assert_array_equal(tight.scores, np.sort(tight.scores)[::-1])


def test_predict_writes_board_runners_schema(trained_models, trained_data, tmp_path):
    image = sorted((trained_data / "images").iterdir())[0]
    assert board_runner.main([str(trained_models["fp32"]), str(image), str(tmp_path / "board.json")]) == 0
    board = json.loads((tmp_path / "board.json").read_text())
    detector = Detector(trained_models["fp32"], conf=0.0)
    assert predict(detector, str(image), tmp_path / "out").save_dir == tmp_path / "out"
    assert predict(detector, str(image), tmp_path / "out").save_dir == tmp_path / "out2"  # never overwritten
    assert predict(detector, str(image), tmp_path / "out", exist_ok=True).save_dir == tmp_path / "out"
    (ours,) = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert list(board) == list(ours) == list(board_runner.DOCUMENT_KEYS)
    assert [board[k] for k in ("image", "width", "height")] == [ours[k] for k in ("image", "width", "height")]
    assert len(board["detections"]) == len(ours["detections"]) > 0
    for theirs, mine in zip(board["detections"], ours["detections"]):
        assert list(theirs) == list(mine) == list(board_runner.DETECTION_KEYS)
        assert (theirs["class_id"], theirs["class_name"]) == (mine["class_id"], mine["class_name"])
        assert theirs["score"] == pytest.approx(mine["score"], abs=1e-5)
        np.testing.assert_allclose(theirs["box"], mine["box"], atol=0.02)


class NeverCalled:
    """A detector for runs that must stop or skip before any detection."""

    class_names = ("a",)

    def detect(self, images, color="bgr"):
        raise AssertionError("the detector ran")


def test_unreadable_image_and_unopenable_video_are_skipped_and_leave_no_folder(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    for name, message in (("bad.jpg", "bad.jpg: cannot read the image"),
                          ("bad.mp4", "bad.mp4: cannot open the video file")):
        summary = predict(NeverCalled(), str(tmp_path / name), tmp_path / "out")
        assert summary.images == 0 and summary.save_dir is None
        assert len(summary.skipped) == 1 and message in summary.skipped[0]
        assert not (tmp_path / "out").exists() and not (tmp_path / "out2").exists()  # the next run is not out2


class _NoFrames:
    """A capture that opens and yields nothing, as OpenCV does for a video whose frames cannot be decoded."""

    def get(self, prop: int) -> float:
        return 0.0

    def read(self) -> tuple[bool, None]:
        return False, None

    def release(self) -> None:
        pass


def test_a_video_that_opens_but_yields_no_frame_is_unreadable(tmp_path, monkeypatch):
    from scratchdet.runtime import predict as predict_module

    (tmp_path / "empty.mp4").write_bytes(b"\x00" * 64)
    monkeypatch.setattr(predict_module, "open_capture", lambda source: _NoFrames())
    summary = predict(NeverCalled(), str(tmp_path / "empty.mp4"), tmp_path / "out")
    assert summary.images == 0 and summary.save_dir is None and not (tmp_path / "out").exists()
    assert len(summary.skipped) == 1 and "empty.mp4: opens but yields no frame" in summary.skipped[0]


def test_a_404_names_the_url(tmp_path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/x.jpg"
        summary = predict(NeverCalled(), url, tmp_path / "out")
    finally:
        server.shutdown()
        server.server_close()
    assert summary.skipped == [f"{url}: download failed (HTTP Error 404: File not found)"]
    assert summary.save_dir is None and not (tmp_path / "out").exists()


def test_save_txt_into_a_folder_where_labels_is_a_file_is_refused_before_any_write(tmp_path, synth_data):
    out = tmp_path / "out"
    out.mkdir()
    (out / "labels").write_text("a file")
    image = sorted((synth_data / "images").iterdir())[0]
    with pytest.raises(NotADirectoryError, match=r"out/labels: labels is a file, not a folder"):
        predict(NeverCalled(), str(image), out, exist_ok=True, save_txt=True)
    assert sorted(p.name for p in out.iterdir()) == ["labels"]  # no detections.json, no drawing


@pytest.mark.parametrize("kind", ["folder", "image", "video"])
def test_a_save_dir_holding_the_source_is_refused(detector, trained_data, tmp_path, kind):
    # Before: the inputs were overwritten by annotated copies (a video while it was read: 30 frames became 4).
    folder = tmp_path / "in"
    folder.mkdir()
    image = sorted((trained_data / "images").iterdir())[0]
    (folder / image.name).write_bytes(image.read_bytes())
    (folder / "clip.mp4").write_bytes(b"stands for a video")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    source = {"folder": folder, "image": folder / image.name, "video": folder / "clip.mp4"}[kind]
    with pytest.raises(ValueError, match=r"in: the save dir holds a source; the annotated outputs would overwrite"):
        predict(detector, str(source), folder, exist_ok=True)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    if kind == "image":  # without --exist-ok the outputs go to a fresh folder beside it
        assert predict(detector, str(source), folder).save_dir == tmp_path / "in2"
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_bad_files_in_a_folder_are_skipped_and_the_others_processed(tiny_checkpoint, synth_data, tmp_path,
                                                                      capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    good = sorted((synth_data / "images").iterdir())[:2]
    for path in good:
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "aa-empty.png").write_bytes(b"")  # before the good ones: the run goes on after it
    (folder / "zz-broken.png").write_bytes(b"not an image")
    assert main(["predict", str(folder), "--model", str(tiny_checkpoint), "--save-dir", str(tmp_path / "out")]) == 1
    out = capsys.readouterr().out
    assert "2 source(s) skipped, unreadable:" in out and "aa-empty.png: " in out and "zz-broken.png: " in out
    records = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert sorted(d["image"] for d in records) == [p.name for p in good]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([p.name for p in good] + ["detections.json"])


def test_a_fifo_named_like_an_image_is_skipped_with_a_warning_never_opened(tmp_path, caplog):
    folder = tmp_path / "in"
    folder.mkdir()
    os.mkfifo(folder / "a.jpg")  # opening it blocks until a writer comes: the old predict hung here
    (folder / "b.jpg").write_bytes(b"not an image")
    assert [Path(s.value).name for s in classify(str(folder))] == ["b.jpg"]
    assert "in: 1 special file(s) named like images or videos skipped, e.g. " in caplog.text
    with pytest.raises(ValueError, match=r"a.jpg: a FIFO \(named pipe\), not a regular file: not opened"):
        classify(str(folder / "a.jpg"))
    done: list = []
    worker = threading.Thread(target=lambda: done.append(predict(NeverCalled(), str(folder), tmp_path / "out")),
                              daemon=True)
    worker.start()
    worker.join(timeout=120)
    assert done, "predict blocked on the FIFO"
    assert len(done[0].skipped) == 1 and "b.jpg" in done[0].skipped[0]


KILLED_AT_THE_SECOND_IMAGE = """
import os, signal, sys
from scratchdet.cli import main
from scratchdet.runtime import predict

detect, calls = predict.detect_results, []


def dies_at_the_second_image(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:  # the first image is annotated and written by now
        os.kill(os.getpid(), signal.SIGKILL)
    return detect(*args, **kwargs)


predict.detect_results = dies_at_the_second_image
main(sys.argv[1:])
"""


def test_a_killed_run_leaves_no_image_without_its_detections_and_the_next_run_cleans_up(
        tmp_path, tiny_checkpoint, synth_data):
    images = [str(p) for p in sorted((synth_data / "images").iterdir())[:3]]
    arguments = ["predict", *images, "--model", str(tiny_checkpoint), "--save-dir", str(tmp_path / "predict")]
    killed = subprocess.run([sys.executable, "-c", KILLED_AT_THE_SECOND_IMAGE, *arguments], cwd=tmp_path,
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (tmp_path / "predict").exists()  # before: predict/ held synth_00000.png and no detections.json
    assert [p.name.split("-staging-")[0] for p in tmp_path.iterdir()] == [".predict.scratchdet"]
    # the next run is a new process (the sweep removes only what is older than its start)
    subprocess.run([sys.executable, "-m", "scratchdet", *arguments], cwd=tmp_path, check=True, timeout=600)
    assert [p.name for p in tmp_path.iterdir()] == ["predict"]  # the staging folder of the killed run is gone
    documents = json.loads((tmp_path / "predict" / "detections.json").read_text())
    assert len(documents) == 3 and len(list((tmp_path / "predict").glob("*.png"))) == 3


def test_into_an_existing_save_dir_detections_json_moves_last(tmp_path, monkeypatch):
    from scratchdet.models import files

    (tmp_path / "stage" / "labels").mkdir(parents=True)
    for name in ("a.png", "detections.json", "labels/a.txt", "z.png"):
        (tmp_path / "stage" / name).write_text(name)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "detections.json").write_text("the previous run's")
    moved, replace = [], os.replace
    monkeypatch.setattr(files.os, "replace", lambda a, b: moved.append(Path(b).name) or replace(a, b))
    files.publish_folder(tmp_path / "stage", tmp_path / "out", last="detections.json")
    assert moved[-1] == "detections.json" and sorted(moved) == ["a.png", "detections.json", "labels", "z.png"]
    assert (tmp_path / "out" / "labels" / "a.txt").read_text() == "labels/a.txt"
