"""A bounded HTTP load for tests: keep-alive clients on loopback that record every answer.

Bounded twice: at most ``max_requests`` requests in all and at most ``max_seconds`` seconds,
whatever the test does; :meth:`Load.stop` ends it earlier. Every request's outcome is kept:
the status and body, or the exception, with a sequence number, so a test can tell which
server answered before and after a given moment.
"""

from __future__ import annotations

import http.client
import itertools
import threading
import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Outcome:
    seq: int
    status: int | None
    body: str
    error: str | None = None


@dataclass
class Load:
    host: str
    port: int
    path: str = "/"
    clients: int = 4
    max_requests: int = 40_000
    max_seconds: float = 30.0
    timeout: float = 5.0
    pause: float = 0.0  # seconds each client waits after each request (0: as fast as it can)
    rate: float | None = None  # requests per second in all (request n is due at start + n / rate)
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(self.clients)]
        self._deadline = 0.0
        self._started = 0.0

    def start(self) -> Load:
        self._started = time.monotonic()
        self._deadline = self._started + self.max_seconds
        for thread in self._threads:
            thread.start()
        return self

    def mark(self) -> int:
        """A sequence number: requests numbered above it were sent after this call."""
        with self._lock:
            return next(self._seq)

    def stop(self) -> list[Outcome]:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        return sorted(self.outcomes, key=lambda o: o.seq)

    def count(self, body: str) -> int:
        return sum(1 for o in list(self.outcomes) if o.body == body)

    def wait_for(self, body: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.count(body) == 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer {body!r} within {timeout} s")
            time.sleep(0.02)

    def _run(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            while not self._stop.is_set() and time.monotonic() < self._deadline:
                with self._lock:
                    seq = next(self._seq)
                if seq >= self.max_requests:
                    return
                if self.rate:
                    due = self._started + seq / self.rate
                    if self._stop.wait(max(0.0, due - time.monotonic())):
                        return
                try:
                    conn.request("GET", self.path)
                    response = conn.getresponse()
                    body = response.read().decode(errors="replace").strip()
                    self.outcomes.append(Outcome(seq, response.status, body))
                except (OSError, http.client.HTTPException) as exc:
                    self.outcomes.append(Outcome(seq, None, "", f"{type(exc).__name__}: {exc}"))
                    conn.close()
                if self.pause:
                    self._stop.wait(self.pause)
        finally:
            conn.close()
