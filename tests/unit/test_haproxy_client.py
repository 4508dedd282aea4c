"""RuntimeClient without HAProxy: transport errors, timeouts and the waiting logic.

What HAProxy answers is tested against the real HAProxy in
tests/integration/test_haproxy_runtime.py; here are the cases a real HAProxy cannot produce
on demand (a socket file without a listener, a peer that never answers, over a unix socket and
over TCP), each refusal HAProxy answers turned into its own exception without HAProxy, and
the drain loop driven by an injected clock.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from ansible.module_utils.hapool.errors import (
    CommandError,
    ConnectError,
    DrainTimeoutError,
    InvalidArgumentError,
    NotAdminError,
    RuntimeTimeoutError,
    SocketNotFoundError,
    UnknownBackendError,
    UnknownServerError,
)
from ansible.module_utils.hapool.haproxy import RuntimeClient


def test_missing_socket(tmp_path):
    with pytest.raises(SocketNotFoundError, match="no HAProxy runtime socket"):
        RuntimeClient(str(tmp_path / "nope.sock")).show_stat()


def test_stale_socket_file_is_refused(tmp_path):
    path = tmp_path / "stale.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()  # the file stays, nothing listens
    with pytest.raises(ConnectError, match="refused"):
        RuntimeClient(str(path)).show_stat()


def test_closed_tcp_port_is_refused():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConnectError):
        RuntimeClient(f"127.0.0.1:{port}", timeout=1).show_stat()


@contextlib.contextmanager
def listener(address: Path | None = None, reply: str | None = None) -> Iterator[str]:
    """A unix socket at ``address`` (a TCP port on 127.0.0.1 when None) that reads a command
    line and answers ``reply`` then closes, like HAProxy's CLI; ``None``: never answers.
    Yields the address for :class:`RuntimeClient`."""
    server = socket.socket(socket.AF_UNIX) if address is not None else socket.socket()
    server.bind(str(address) if address is not None else ("127.0.0.1", 0))
    server.listen(4)
    stop = threading.Event()
    held: list[socket.socket] = []

    def loop() -> None:
        server.settimeout(0.05)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                conn, _ = server.accept()
                held.append(conn)
                if reply is not None:
                    conn.settimeout(2)
                    data = b""
                    while not data.endswith(b"\n"):
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    conn.sendall(reply.encode())
                    conn.close()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield str(address) if address is not None else f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


@pytest.mark.parametrize("over_tcp", [False, True], ids=["unix", "tcp"])
def test_timeout_when_nothing_answers(tmp_path, over_tcp):
    with listener(None if over_tcp else tmp_path / "silent.sock") as address:
        client = RuntimeClient(address, timeout=0.3)
        with pytest.raises(RuntimeTimeoutError, match=r"did not answer 'show stat' within 0\.3 s"):
            client.show_stat()


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ("Permission denied\n\n", NotAdminError),
        ("No such backend.\n\n", UnknownBackendError),
        ("Can't find backend.\n\n", UnknownBackendError),
        ("No such proxy.\n\n", UnknownBackendError),
        ("No such server.\n\n", UnknownServerError),
        ("Unknown command: 'set server', but maybe one of the following ones ...\n\n", CommandError),
    ],
)
@pytest.mark.parametrize("over_tcp", [False, True], ids=["unix", "tcp"])
def test_haproxy_refusals_become_their_own_errors(tmp_path, answer, error, over_tcp):
    """What HAProxy 2.6 answers when it refuses a command (tests/integration checks that the
    real one answers these), each turned into an exception a module can name."""
    with (
        listener(None if over_tcp else tmp_path / "cli.sock", reply=answer) as address,
        pytest.raises(error) as info,
    ):
        RuntimeClient(address, timeout=2).set_weight("app", "web1", 10)
    assert answer.split("\n")[0].split(":")[0] in str(info.value)


def test_client_refuses_bad_input_before_connecting(tmp_path):
    client = RuntimeClient(str(tmp_path / "nope.sock"))
    with pytest.raises(InvalidArgumentError):
        client.raw("show stat; show info")
    with pytest.raises(InvalidArgumentError):
        client.raw("show stat\nshow info")
    with pytest.raises(InvalidArgumentError):
        client.raw("show st\u00e4t")
    with pytest.raises(InvalidArgumentError):
        client.set_weight("app", "web1;x", 3)
    with pytest.raises(InvalidArgumentError):
        RuntimeClient(str(tmp_path / "x.sock"), timeout=0)


class ScriptedSessions(RuntimeClient):
    """The drain loop's only input is ``sessions()``: script it, and drive the clock."""

    def __init__(self, counts):
        super().__init__("/nonexistent.sock")
        self.counts = list(counts)
        self.now = 0.0
        self.sleeps: list[float] = []

    def sessions(self, backend, server):
        if not self.counts:
            raise UnknownServerError("gone")
        return self.counts.pop(0) if len(self.counts) > 1 else self.counts[0]

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def test_wait_drained_returns_as_soon_as_sessions_reach_zero():
    client = ScriptedSessions([(3, 0), (2, 0), (1, 1), (0, 0)])
    waited = client.wait_drained("app", "web1", 10, interval=0.5, clock=client.clock, sleep=client.sleep)
    assert waited == pytest.approx(1.5)
    assert client.sleeps == [0.5, 0.5, 0.5]


def test_wait_drained_already_drained_does_not_sleep():
    client = ScriptedSessions([(0, 0)])
    assert client.wait_drained("app", "web1", 10, clock=client.clock, sleep=client.sleep) == 0
    assert client.sleeps == []


def test_wait_drained_times_out_with_the_open_count():
    client = ScriptedSessions([(5, 0), (4, 2)])
    with pytest.raises(DrainTimeoutError) as info:
        client.wait_drained("app", "web1", 2.0, interval=0.3, clock=client.clock, sleep=client.sleep)
    assert (info.value.sessions, info.value.queued, info.value.timeout) == (4, 2, 2.0)
    assert "app/web1 still has 4 current session(s) and 2 queued" in str(info.value)
    assert client.now == pytest.approx(2.0)  # the last sleep is cut to the deadline
    assert max(client.sleeps) <= 0.3
