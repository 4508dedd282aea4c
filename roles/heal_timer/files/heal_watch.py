#!/usr/bin/env python3
# Copyright: hapool contributors
# Apache License 2.0 (see pyproject.toml)
"""hapool heal watcher: the fast path of the heal timer.

Polls HAProxy's stats socket (``show stat``) every ``--interval`` seconds and runs
``--command`` (the heal timer's wrapper, ``... once``) at once when a server of a backend goes
DOWN, or fails its first check (``UP`` -> ``UP 1/3``, going down). A run that is still going
is never doubled: a transition seen meanwhile runs the command once more after it. The timer
stays the safety net (this script may be stopped or miss a poll). Stdlib only; logs to stderr
or ``--log``.
"""

from __future__ import annotations

import argparse
import csv
import io
import signal
import socket
import subprocess
import sys
import time
from typing import TextIO


def show_stat(path: str, timeout: float) -> dict[tuple[str, str], str]:
    """(backend, server) -> status, for server rows."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(b"show stat\n")
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    text = b"".join(chunks).decode("utf-8", "replace").lstrip()
    if not text.startswith("# "):
        raise ValueError(f"not show stat output: {text[:80]!r}")
    rows = csv.reader(io.StringIO(text[2:]))
    header = next(rows)
    out: dict[tuple[str, str], str] = {}
    for values in rows:
        row = dict(zip(header, values, strict=False))
        if row.get("type") == "2":
            out[(row["pxname"], row["svname"])] = row.get("status", "")
    return out


def failing(previous: str | None, current: str) -> bool:
    """A transition the healer should look at now."""
    if previous is None:
        return current.startswith("DOWN") and "/" not in current
    was_up = previous == "UP" or previous.startswith("UP ")
    if current == "DOWN" or (current.startswith("DOWN") and "/" not in current):
        return not previous.startswith("DOWN")
    return was_up and previous == "UP" and current.startswith("UP ")  # first failed check


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--socket", required=True)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--log")
    parser.add_argument("command", nargs="+")
    args = parser.parse_args(argv)
    log: TextIO = open(args.log, "a", buffering=1, encoding="utf-8") if args.log else sys.stderr  # noqa: SIM115

    def say(message: str) -> None:
        log.write(f"=== {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} watcher: {message}\n")

    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    say(f"polling {args.socket} every {args.interval:g} s; runs {' '.join(args.command)}")
    seen: dict[tuple[str, str], str] = {}
    running: subprocess.Popen[bytes] | None = None
    pending = False
    socket_ok = True
    while not stop:
        started = time.monotonic()
        try:
            current = show_stat(args.socket, args.timeout)
            if not socket_ok:
                say("stats socket answers again")
            socket_ok = True
        except (OSError, ValueError) as exc:
            if socket_ok:
                say(f"cannot read the stats socket: {exc}")
            socket_ok = False
            current = seen
        for key, status in current.items():
            if failing(seen.get(key), status):
                say(f"{key[0]}/{key[1]}: {seen.get(key)} -> {status}")
                pending = True
        seen = current
        if running is not None and running.poll() is not None:
            say(f"heal tick exited {running.returncode}")
            running = None
        if pending and running is None:
            say("running a heal tick")
            running = subprocess.Popen(args.command, stdin=subprocess.DEVNULL)
            pending = False
        time.sleep(max(0.0, args.interval - (time.monotonic() - started)))
    say("stopped")
    if running is not None:
        running.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
