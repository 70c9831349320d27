import os
import shlex
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from scratchdet.models.files import (
    ReadOnlyError,
    atomic_write,
    ensure_writable,
    replacing_read_only,
    write_bytes,
    write_text,
)


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    write_text(tmp_path / "report.json", "old")
    with pytest.raises(ValueError, match="the writer failed"), atomic_write(tmp_path / "report.json") as temporary:
        assert temporary.parent == tmp_path and temporary.suffix == ".json"  # same folder, same suffix
        temporary.write_text("half")
        raise ValueError("the writer failed")
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]
    assert (tmp_path / "report.json").read_text() == "old"


def test_a_full_disk_is_named_as_such(tmp_path, monkeypatch):
    # torch reports ENOSPC as "PytorchStreamWriter failed writing file data/0: file write failed".
    monkeypatch.setattr(os, "statvfs", lambda path: SimpleNamespace(f_bavail=0))
    with pytest.raises(OSError, match=r"last.pt: no space left on the device; the previous file, if any, is "
                                      "unchanged"), atomic_write(tmp_path / "last.pt"):
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_folder_is_named(tmp_path):
    (tmp_path / "file").write_text("")
    blocked = tmp_path / "file"
    for call in (lambda: ensure_writable(blocked / "x.onnx"), lambda: write_text(blocked / "x", "")):
        with pytest.raises(OSError, match=r"file/x(.onnx)?: cannot write the file there"):
            call()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_a_new_file_gets_the_umask_mode_and_a_replaced_one_keeps_its_mode(tmp_path):
    mask = os.umask(0o027)
    try:
        assert stat.S_IMODE(write_text(tmp_path / "new.json", "{}").stat().st_mode) == 0o640  # as open() gives
    finally:
        os.umask(mask)
    plain = tmp_path / "plain.txt"
    with open(plain, "w"):
        pass
    assert stat.S_IMODE(write_bytes(tmp_path / "model.onnx", b"x").stat().st_mode) == stat.S_IMODE(
        plain.stat().st_mode) == 0o666 & ~_umask()
    (tmp_path / "model.onnx").chmod(0o664)
    write_bytes(tmp_path / "model.onnx", b"y")
    assert stat.S_IMODE((tmp_path / "model.onnx").stat().st_mode) == 0o664


def test_a_read_only_destination_is_refused_unless_asked(tmp_path):
    out = write_text(tmp_path / "detections.json", "old")
    out.chmod(0o444)
    with pytest.raises(ReadOnlyError, match=r"detections.json: the file is read-only \(mode 0444\); not replacing "
                                            "it \\(pass --force"):
        write_text(out, "new")
    with pytest.raises(ReadOnlyError, match="detections.json: the file is read-only"):
        ensure_writable(out)  # before any long work
    assert out.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["detections.json"]
    with replacing_read_only():
        write_text(out, "new")
    assert out.read_text() == "new" and stat.S_IMODE(out.stat().st_mode) == 0o444  # its mode is kept
    with atomic_write(out, replace_read_only=True) as temporary:
        temporary.write_text("newer")
    assert out.read_text() == "newer"


def test_the_cli_refuses_a_read_only_output_and_force_replaces_it(tmp_path, caplog):
    from scratchdet.cli import main

    arguments = ["data", "synth", "--out", str(tmp_path / "synth"), "--images", "4"]
    assert main(arguments) == 0
    annotations = tmp_path / "synth" / "annotations.json"
    assert {stat.S_IMODE(p.stat().st_mode) for p in (annotations, *(tmp_path / "synth" / "images").iterdir())} == {
        0o666 & ~_umask()}
    annotations.chmod(0o444)
    assert main(arguments) == 1
    assert "annotations.json: the file is read-only (mode 0444)" in caplog.text
    assert main([*arguments, "--force"]) == 0
    assert stat.S_IMODE(annotations.stat().st_mode) == 0o444


def _as_nobody(path) -> subprocess.CompletedProcess | None:
    """`cat path` run as the user nobody (None when this process cannot switch users)."""
    if os.geteuid() != 0:
        return None
    for command in (["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "cat", str(path)],
                    ["su", "nobody", "-s", "/bin/sh", "-c", f"cat {shlex.quote(str(path))}"]):
        if shutil.which(command[0]):
            result = subprocess.run(command, capture_output=True, text=True, timeout=30)
            if "cat:" in result.stderr or result.returncode == 0:
                return result
    return None


def test_an_artefact_is_readable_by_another_user():
    # /tmp, not pytest's tmp_path: pytest makes its base folder private (0700), which no file mode can open
    folder = Path(tempfile.mkdtemp(prefix="scratchdet-modes-", dir="/tmp"))
    try:
        folder.chmod(0o755)
        out = write_text(folder / "detections.json", '{"detections": []}')
        result = _as_nobody(out)
        if result is None:
            pytest.skip("not root, or neither setpriv nor su can run a command as nobody")
        assert result.returncode == 0 and result.stdout == '{"detections": []}', result.stderr
    finally:
        shutil.rmtree(folder)
