import os
from types import SimpleNamespace

import pytest

from scratchdet.models.files import atomic_write, ensure_writable, write_text


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
