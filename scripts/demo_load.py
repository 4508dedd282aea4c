#!/usr/bin/env python3
"""A bounded background load for `make demo` (standard library only).

Keep-alive HTTP clients send GET requests to a URL at a fixed total rate and count every
answer. Bounded twice: it stops after --max-seconds whatever happens, and at once on SIGTERM
or SIGINT. On exit it writes a summary (JSON) to --out: requests sent, failed (an exception
or a status other than 200), the errors seen, and how many answers each body got.

    python3 scripts/demo_load.py http://127.0.0.1:8080/ --rate 20 --max-seconds 300 --out load.json
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import signal
import threading
import time
import urllib.parse
from types import FrameType


class Load:
    """Clients share one schedule: request n of the whole load is due at start + n / rate."""

    def __init__(self, url: str, rate: float, max_seconds: float, timeout: float) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.path = parts.path or "/"
        self.interval = 1.0 / rate
        self.timeout = timeout
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.deadline = self.started + max_seconds
        self.due = self.started
        self.sent = 0
        self.failed = 0
        self.errors: collections.Counter[str] = collections.Counter()
        self.answers: collections.Counter[str] = collections.Counter()

    def _next_due(self) -> float:
        with self.lock:
            when = self.due
            self.due += self.interval
            return when

    def _count(self, body: str | None, error: str | None) -> None:
        with self.lock:
            self.sent += 1
            if error is None:
                self.answers[body or ""] += 1
            else:
                self.failed += 1
                self.errors[error] += 1

    def client(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            while not self.stop.is_set():
                when = self._next_due()
                if when >= self.deadline or self.stop.wait(max(0.0, when - time.monotonic())):
                    return
                try:
                    conn.request("GET", self.path)
                    response = conn.getresponse()
                    body = response.read().decode(errors="replace").strip()
                    self._count(body, None if response.status == 200 else f"HTTP {response.status}")
                except (OSError, http.client.HTTPException) as exc:
                    self._count(None, type(exc).__name__)
                    conn.close()
        finally:
            conn.close()

    def summary(self) -> dict[str, object]:
        with self.lock:
            return {
                "seconds": round(time.monotonic() - self.started, 1),
                "sent": self.sent,
                "failed": self.failed,
                "errors": dict(self.errors),
                "answers": dict(sorted(self.answers.items())),
            }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second in all (default 20)")
    parser.add_argument("--clients", type=int, default=2, help="keep-alive connections (default 2)")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="stop after this long (default 300)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per request (default 5)")
    parser.add_argument("--out", required=True, help="where to write the summary (JSON)")
    args = parser.parse_args()
    if args.rate <= 0 or args.clients < 1 or args.max_seconds <= 0:
        parser.error("--rate and --max-seconds must be > 0, --clients >= 1")

    load = Load(args.url, args.rate, args.max_seconds, args.timeout)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        load.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threads = [threading.Thread(target=load.client, daemon=True) for _ in range(args.clients)]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads) and not load.stop.is_set():
        load.stop.wait(0.2)
    load.stop.set()
    for thread in threads:
        thread.join(args.timeout + 1)
    summary = load.summary()
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=1)
        handle.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
