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
    check_destination,
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


@pytest.mark.parametrize("torch_error", [
    "PytorchStreamWriter failed writing file data/0: file write failed",
    "[enforce fail at inline_container.cc:672] . unexpected pos 4325376 vs 4325264"])
def test_a_full_disk_is_named_as_such(tmp_path, monkeypatch, torch_error):
    monkeypatch.setattr(os, "statvfs", lambda path: SimpleNamespace(f_bavail=0, f_frsize=4096, f_flag=0))
    with pytest.raises(OSError, match=r"no space left on the file system \S+ mounted at /\S* while writing "
                                      r"\S+/last.pt; the previous file, if any, is unchanged"), \
            atomic_write(tmp_path / "last.pt"):
        raise RuntimeError(torch_error)
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_larger_than_the_free_space_is_refused_before_writing(tmp_path, monkeypatch):
    import torch

    from scratchdet.models.checkpoint import save_checkpoint

    write_text(tmp_path / "last.pt", "previous")
    monkeypatch.setattr(os, "statvfs", lambda path: SimpleNamespace(f_bavail=100, f_frsize=4096, f_flag=0))
    with pytest.raises(OSError, match=r"no space left on .* while writing \S+last.pt: 5.0 MB needed, 0.4 MB free"):
        save_checkpoint(tmp_path / "last.pt", {"model": {"weight": torch.zeros(1_000_000)}})
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"] and (tmp_path / "last.pt").read_text() == "previous"


def test_unwritable_folder_is_named(tmp_path):
    (tmp_path / "file").write_text("")
    blocked = tmp_path / "file"
    for call in (lambda: check_destination(blocked / "x.onnx"), lambda: write_text(blocked / "x", "")):
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
        check_destination(out)  # before any long work
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


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _age(path: Path, seconds: float = 3600) -> Path:
    old = os.stat(path).st_mtime - seconds
    os.utime(path, (old, old), follow_symlinks=False)
    return path


def test_the_next_write_removes_stale_temporaries_of_dead_runs_only(tmp_path):
    from scratchdet.models.files import MARK

    dead, alive = _dead_pid(), os.getppid()
    def make(name: str, text: str) -> Path:  # written directly: a write through the helper sweeps the folder
        (tmp_path / name).write_text(text)
        return tmp_path / name

    stale_file = _age(make(f".last.{MARK}-tmp-{dead}-ab12.pt", "half"))
    (tmp_path / f".bundle.{MARK}-staging-{dead}-cd34").mkdir()
    (tmp_path / f".bundle.{MARK}-staging-{dead}-cd34" / "model.onnx").write_text("half")
    stale_folder = _age(tmp_path / f".bundle.{MARK}-staging-{dead}-cd34")
    live = _age(make(f".best.{MARK}-tmp-{alive}-ef56.pt", "in use"))
    fresh = make(f".other.{MARK}-tmp-{dead}-gh78.pt", "newer than this run")
    unmarked = _age(make(".last.x1y2.tmp.pt", "not ours"))
    write_text(tmp_path / "last.pt", "complete")
    assert not stale_file.exists() and not stale_folder.exists()
    assert live.exists() and fresh.exists() and unmarked.exists()
    assert (tmp_path / "last.pt").read_text() == "complete"


def test_a_folder_set_aside_by_a_killed_replacement_is_moved_back(tmp_path):
    from scratchdet.models.files import MARK, remove_stale

    holder = tmp_path / f".bundle.{MARK}-old-{_dead_pid()}-ab12"
    (holder / "bundle").mkdir(parents=True)
    (holder / "bundle" / "model.onnx").write_text("the previous bundle")
    _age(holder)
    assert remove_stale(tmp_path) == [holder]
    assert (tmp_path / "bundle" / "model.onnx").read_text() == "the previous bundle" and not holder.exists()


def test_temporaries_carry_the_mark_and_a_failed_write_removes_the_folders_it_created(tmp_path):
    from scratchdet.models.files import MARK

    with pytest.raises(ValueError), atomic_write(tmp_path / "new" / "deeper" / "model.onnx") as temporary:
        assert temporary.name.startswith(f".model.{MARK}-tmp-{os.getpid()}-") and temporary.suffix == ".onnx"
        temporary.write_text("half")
        raise ValueError("the exporter failed")
    assert list(tmp_path.iterdir()) == []


def test_check_destination_changes_nothing_and_names_the_problem(tmp_path, monkeypatch):
    from scratchdet.models.files import check_destination

    (tmp_path / "a_file").write_text("")
    check_destination(tmp_path / "new" / "deeper" / "report.json")
    assert [p.name for p in tmp_path.iterdir()] == ["a_file"]
    with pytest.raises(OSError, match="is a folder; give a file name"):
        check_destination(tmp_path)
    with pytest.raises(OSError, match=r"names a folder by '\.' alone; give the output a name, such as out"):
        check_destination(Path("."), folder=True)
    with pytest.raises(OSError, match="is a file, not a folder"):
        check_destination(tmp_path / "a_file", folder=True)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(OSError, match="fifo: is not a regular file"):
        check_destination(tmp_path / "fifo")


def test_a_read_only_mount_is_named_and_force_cannot_help(tmp_path, monkeypatch):
    real = os.statvfs
    monkeypatch.setattr(os, "statvfs", lambda path: SimpleNamespace(f_bavail=real(path).f_bavail, f_frsize=4096,
                                                                    f_flag=os.ST_RDONLY))
    (tmp_path / "last.pt").write_text("checkpoint")
    for call in (lambda: write_text(tmp_path / "last.pt", "new"), lambda: write_text(tmp_path / "new.json", "")):
        with replacing_read_only(), pytest.raises(OSError, match=r"cannot write in \S+: the file system \S+ "
                                                                 r"mounted at /\S* is mounted read-only \(--force "
                                                                 "cannot help"):
            call()
    assert (tmp_path / "last.pt").read_text() == "checkpoint"


def test_a_writable_file_in_a_read_only_folder_names_the_folder(tmp_path, monkeypatch):
    (tmp_path / "metrics.json").write_text("{}")
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == tmp_path else real(path, mode))
    with pytest.raises(OSError, match=rf"metrics.json: cannot write in the folder {tmp_path} \(Permission denied"):
        write_text(tmp_path / "metrics.json", "{}")
