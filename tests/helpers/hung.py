"""Shared by the hung-host tests (tests/e2e/test_hung_host.py, tests/chaos/test_chaos_hung.py):
hanging a host - its nginx master and workers stopped with SIGSTOP (local provider) or its
container paused (docker) - and a watch of one server in the balancer (when HAProxy held it
DOWN, when it left the pool)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field

from ansible.module_utils.hapool.providers import Instance

from helpers.heal import nginx_pids, server_status
from helpers.load import Outcome
from helpers.site import Deployment


def hang(inst: Instance) -> list[int]:
    """Stop the host without killing it: it keeps its connections and its listening socket
    (the kernel still accepts connections), and answers nothing. Returns what :func:`resume`
    needs (the stopped pids; none for a container)."""
    if inst.provider == "docker":
        subprocess.run(["docker", "pause", inst.extra["container"]], check=True, capture_output=True)
        return []
    pids = nginx_pids(inst)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    return pids


def resume(inst: Instance, pids: list[int]) -> None:
    """Undo :func:`hang` (nothing when the host is gone meanwhile)."""
    if inst.provider == "docker":
        subprocess.run(["docker", "unpause", inst.extra["container"]], check=False, capture_output=True)
        return
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def alive_pids(pids: list[int]) -> list[int]:
    """Those of ``pids`` that are still processes (zombies count as gone)."""
    left = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
                state = fh.read().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X"):
            left.append(pid)
    return left


def failures(outcomes: list[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if o.status != 200]


def kinds(failed: list[Outcome]) -> dict[str, int]:
    """Failed requests by kind (HTTP status, or the client's exception)."""
    out: dict[str, int] = {}
    for o in failed:
        key = str(o.status) if o.status is not None else (o.error or "?").split(":", 1)[0]
        out[key] = out.get(key, 0) + 1
    return out


@dataclass
class ServerWatch:
    """Samples the pool's servers in HAProxy every ``interval`` seconds in a thread until
    :meth:`stop`: when ``name`` was first seen DOWN and when it left the balancer, in seconds
    after :meth:`start` (None if never), and the most servers seen at once."""

    dep: Deployment
    provider: str
    name: str
    interval: float = 0.1
    down_s: float | None = None
    gone_s: float | None = None
    statuses: set[str] = field(default_factory=set)
    most: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = 0.0

    def start(self) -> ServerWatch:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            # A reload hands the socket over: refused, or an empty answer; the next look counts.
            with contextlib.suppress(OSError, IndexError):
                servers = server_status(self.dep, self.provider)
                now = time.monotonic() - self._started
                self.most = max(self.most, len(servers))
                status = servers.get(self.name)
                if status is not None:
                    self.statuses.add(status.split(" ")[0])
                if self.down_s is None and status is not None and status.startswith("DOWN"):
                    self.down_s = now
                if self.gone_s is None and status is None:
                    self.gone_s = now
            self._stop.wait(self.interval)

    def wait_down(self, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while self.down_s is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} not DOWN within {timeout} s (seen {self.statuses})")
            time.sleep(0.05)
        return self.down_s

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
