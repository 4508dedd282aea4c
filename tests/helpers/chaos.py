"""Shared by the chaos suite (tests/chaos): heal.yml run in a loop in a thread, heal.yml run
in its own process group (to be killed in the middle), the convergence check of a pool
(provider == HAProxy, every host alive, UP and answering), and a unix socket that answers
garbage.

Everything here is bounded: every loop and wait has a deadline, every thread and process is
stopped by the caller's ``finally`` (or the context manager's exit).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from helpers.heal import instances, server_status
from helpers.site import BIN, ROOT, Deployment


def heal_command(dep: Deployment, *args: str) -> list[str]:
    return [str(BIN / "ansible-playbook"), "-i", str(dep.inventory), str(ROOT / "playbooks" / "heal.yml"),
            "-e", json.dumps(dep.extra_vars), *args]


def start_heal(dep: Deployment) -> subprocess.Popen[str]:
    """heal.yml in a new session (its own process group: ``os.killpg`` reaches every fork)."""
    return subprocess.Popen(heal_command(dep), cwd=ROOT, env=dep.env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGKILL to the process group of ``proc`` (started with ``start_heal``); reaps it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.communicate(timeout=30)


@dataclass
class HealRun:
    started: float  # monotonic
    seconds: float
    returncode: int
    tail: str


@dataclass
class HealLoop:
    """heal.yml run again and again (one run at a time, like the timer) in a thread until
    :meth:`stop` or ``max_seconds``; each run is a process group that :meth:`stop` kills if it
    is still going after ``stop_grace`` seconds."""

    dep: Deployment
    max_seconds: float = 180.0
    pause: float = 0.5
    runs: list[HealRun] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

    def start(self) -> HealLoop:
        self._deadline = time.monotonic() + self.max_seconds
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            started = time.monotonic()
            with self._lock:
                if self._stop.is_set():
                    return
                self._proc = start_heal(self.dep)
            proc = self._proc
            try:
                out, _ = proc.communicate(timeout=max(1.0, self._deadline - time.monotonic() + 60))
            except subprocess.TimeoutExpired:
                kill_group(proc)
                out = "(killed: over the loop's deadline)"
            self.runs.append(HealRun(started, time.monotonic() - started, proc.returncode, out[-6000:]))
            self._stop.wait(self.pause)

    def stop(self, stop_grace: float = 90.0) -> list[HealRun]:
        """Let the current run finish (at most ``stop_grace`` s), start no other one."""
        self._stop.set()
        self._thread.join(stop_grace)
        if self._thread.is_alive():
            with self._lock:
                if self._proc is not None:
                    kill_group(self._proc)
            self._thread.join(30)
        return list(self.runs)


@dataclass(frozen=True)
class PoolView:
    provider: dict[str, bool]  # instance name -> alive
    servers: dict[str, str]  # HAProxy server name -> status

    @property
    def converged_to(self) -> int | None:
        """The pool size when provider and balancer agree, every host alive and UP; else None."""
        if set(self.provider) != set(self.servers):
            return None
        if not all(self.provider.values()) or any(s != "UP" for s in self.servers.values()):
            return None
        return len(self.provider)


def view(dep: Deployment, provider: str = "local") -> PoolView:
    """The pool as the provider and HAProxy see it (retried while a reload hands the stats
    socket over to the new worker)."""
    for attempt in range(20):
        try:
            return PoolView({i.name: i.alive for i in instances(dep, provider)}, server_status(dep, provider))
        except OSError:
            if attempt == 19:
                raise
            time.sleep(0.25)
    raise AssertionError("unreachable")


def config_servers(dep: Deployment, backend: str = "web") -> set[str]:
    """The servers of ``backend`` in the balancer's generated configuration (local inventory)."""
    servers: set[str] = set()
    section = None
    for line in (dep.root / "local" / "haproxy" / "haproxy.cfg").read_text().splitlines():
        words = line.split()
        if line[:1].strip() and words:
            section = words[1] if words[0] == "backend" and len(words) > 1 else None
        elif section == backend and words[:1] == ["server"]:
            servers.add(words[1])
    return servers


def answering(dep: Deployment, names: set[str], deadline_s: float = 20) -> set[str]:
    """The names among ``names`` that answered ``Hello <name>!`` through the balancer."""
    bodies = dep.hosts_answering(len(names), deadline_s=deadline_s, tries=10 * len(names))
    return {n for n in names if f"Hello {n}!" in bodies}


@contextlib.contextmanager
def garbage_socket(path: Path, answer: bytes) -> Iterator[list[bytes]]:
    """A unix stream socket at ``path`` that reads each request line and answers ``answer``
    then closes, like a broken stats socket; yields the list of requests it received."""
    received: list[bytes] = []
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(8)
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                data = b""
                with contextlib.suppress(OSError):
                    while b"\n" not in data and (chunk := conn.recv(4096)):
                        data += chunk
                received.append(data)
                with contextlib.suppress(OSError):
                    conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        stop.set()
        thread.join(5)
        server.close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@dataclass
class PeakWatch:
    """Samples the pool's live hosts (the provider's view) every ``interval`` seconds in a thread
    until :meth:`stop`; ``peak`` is the most seen at once (the size invariant: never above max)."""

    dep: Deployment
    provider: str = "local"
    interval: float = 0.2
    peak: int = 0
    samples: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> PeakWatch:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):  # a listing that races a destroy: the next one counts
                live = sum(1 for i in instances(self.dep, self.provider) if i.alive)
                self.peak = max(self.peak, live)
                self.samples += 1
            self._stop.wait(self.interval)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(10)
        return self.peak
