"""The watcher's transition rule and its show stat reader (roles/heal_timer/files/heal_watch.py)."""

from __future__ import annotations

import importlib.util
import pathlib
import socket
import threading

import pytest

PATH = pathlib.Path(__file__).resolve().parents[2] / "roles" / "heal_timer" / "files" / "heal_watch.py"
spec = importlib.util.spec_from_file_location("heal_watch", PATH)
assert spec and spec.loader
heal_watch = importlib.util.module_from_spec(spec)
spec.loader.exec_module(heal_watch)


@pytest.mark.parametrize(
    ("previous", "current", "fires"),
    [
        ("UP", "DOWN", True),
        ("UP", "UP 1/2", True),  # first failed check of a server going down
        ("UP 1/2", "DOWN", True),
        ("UP 1/2", "UP 1/2", False),
        ("DOWN", "DOWN", False),
        ("DOWN 1/2", "DOWN", False),  # was already down, failed its way back
        ("DOWN", "DOWN 1/2", False),  # coming up
        ("UP", "MAINT", False),
        ("UP", "DRAIN", False),
        ("MAINT", "DOWN", True),
        (None, "DOWN", True),  # a new server that is down
        (None, "UP", False),
        ("UP", "UP", False),
    ],
)
def test_transitions(previous: str | None, current: str, fires: bool) -> None:
    assert heal_watch.failing(previous, current) is fires


def test_show_stat_over_a_unix_socket(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "s.sock")
    answer = (
        "# pxname,svname,qcur,status,type\n"
        "fe,FRONTEND,,OPEN,0\nweb,web-a,0,UP,2\nweb,web-b,0,DOWN,2\nweb,BACKEND,0,UP,1\n\n"
    )
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            assert conn.recv(100) == b"show stat\n"
            conn.sendall(answer.encode())

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        assert heal_watch.show_stat(path, 2) == {("web", "web-a"): "UP", ("web", "web-b"): "DOWN"}
    finally:
        thread.join(5)
        server.close()
