import os
import socket

from scratchdet.special_files import special_kind, special_problem


def test_fifos_and_sockets_are_recognised_without_being_opened(tmp_path):
    fifo = tmp_path / "a.jpg"
    os.mkfifo(fifo)  # opening it for reading would block: the test would hang, not fail
    assert special_kind(fifo) == "a FIFO (named pipe)"
    assert special_problem(fifo) == ("a FIFO (named pipe), not a regular file: not opened (reading it could block "
                                     "forever)")
    (tmp_path / "link.jpg").symlink_to(fifo)
    assert special_kind(tmp_path / "link.jpg") == "a FIFO (named pipe)"  # what opening the link would reach
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "s.png"))
        assert special_kind(tmp_path / "s.png") == "a socket"
    assert special_kind("/dev/null") == "a character device"


def test_regular_files_folders_and_missing_paths_are_not_special(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "broken.png").symlink_to(tmp_path / "nowhere")
    for path in (tmp_path / "a.png", tmp_path, tmp_path / "missing.png", tmp_path / "broken.png"):
        assert special_kind(path) is None and special_problem(path) is None
