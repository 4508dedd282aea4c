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

The balancer heals too: when the stats socket stops answering, ``--ensure`` (the haproxy role's
supervise script, run with ``--restart``) is run at once - at most once every
``--ensure-interval`` seconds, backing off (doubling, up to a minute) while it fails - and
starts a dead HAProxy again (a dead master, or a master without a worker) from its current,
validated configuration. A restart is appended to ``--events`` as a ``balancer_restart`` event
(``balancer_restart_failed`` when it could not, once per outage), in the format of
``plugins/module_utils/hapool/events.py``, and a heal tick follows.

The fast path (``--fast-path FILE --module-utils DIR``): on a failing transition, before the
tick, the watcher calls the project's ``hapool.fastheal.fast_heal`` (imported from ``DIR``, the
project's ``plugins/module_utils``): for each pool of ``FILE`` (written by heal.yml) with a baked
launch template it makes heal.yml's decisions and launches and registers the replacements at
once, under the pool lock; the tick's heal run then adopts them. While another run holds the
lock, it tries again at each poll (for ``--fast-retry`` seconds). Its errors are logged, never
fatal: the tick runs all the same.

The scale-out fast path (``--fast-scale``, with ``--fast-path``; the heal timer passes it when its
ticks run ``reconcile.yml``): every ``--scale-interval`` seconds the watcher plans each template
pool as scale.yml does (``hapool.fastscale.fast_scale``, read only) and, when a plan scales out,
takes the pool lock, promotes warm hosts and launches the new hosts from the template, adds them
at runtime and runs a tick, whose scale.yml adopts them (re-render, ``scale_launch`` events).

``--once`` polls once, runs ``--ensure`` when the socket does not answer and, with
``--fast-path``, the fast path once when a server is DOWN or failing its checks (and with
``--fast-scale`` the scale-out fast path once), and exits (0:
the balancer answers or was started again; 1: it is down): the timer's tick runs it before its
playbook, so a 10 s timer brings a dead balancer back within a tick and replaces a template
host before its playbook starts. No command is needed then.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import fcntl
import io
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

# The keys every event starts with (plugins/module_utils/hapool/events.py).
REQUIRED_KEYS = ("time", "pool", "action", "instance", "reason", "duration")
ENSURE_BACKOFF_MAX = 60.0


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


def unhealthy(status: str) -> bool:
    """A server the fast path should look at: DOWN, or failing checks (``UP 1/3``); a host that
    died before its first failed check is the provider's to tell (the fast path asks it)."""
    return status.startswith("DOWN") or (status.startswith("UP ") and "/" in status)


def make_event(
    action: str, instance: str, reason: str, duration: float | None, now: float, **extra: Any
) -> dict[str, Any]:
    """An event as events.py writes it: the required keys first (pool "" - the balancer is no
    pool's), then ``extra`` without its None values."""
    event: dict[str, Any] = {
        "time": round(now, 3),
        "pool": "",
        "action": action,
        "instance": instance,
        "reason": reason,
        "duration": None if duration is None else round(float(duration), 3),
    }
    event.update({k: v for k, v in extra.items() if v is not None and k not in REQUIRED_KEYS})
    return event


def append_event(path: str, event: dict[str, Any]) -> None:
    """One JSON line appended under an exclusive ``flock`` (like events.py); after a torn last
    line (a writer killed mid-line) the event starts a line of its own."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "ab") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        line = json.dumps(event, default=str).encode() + b"\n"
        size = handle.seek(0, os.SEEK_END)
        if size:
            with open(path, "rb") as reader:
                reader.seek(size - 1)
                if reader.read(1) != b"\n":
                    line = b"\n" + line
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


@dataclass
class EnsureResult:
    returncode: int
    report: dict[str, Any]
    error: str
    seconds: float


def run_ensure(command: list[str], timeout: float) -> EnsureResult:
    """Run the supervise script; its one JSON line, or the reason it failed."""
    started = time.monotonic()
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return EnsureResult(-1, {}, f"{' '.join(command)}: {exc}", time.monotonic() - started)
    report: dict[str, Any] = {}
    lines = done.stdout.strip().splitlines()
    with contextlib.suppress(ValueError, IndexError):
        value = json.loads(lines[-1])
        if isinstance(value, dict):
            report = value
    error = " ".join(done.stderr.split())[:2000]
    if done.returncode == 0 and not report:
        return EnsureResult(
            1, {}, f"no report on stdout: {done.stdout[-200:]!r} {error}", time.monotonic() - started
        )
    return EnsureResult(done.returncode, report, error, time.monotonic() - started)


@dataclass
class Supervisor:
    """When to run the supervise script: at once when the socket stops answering, then at most
    once every ``interval`` seconds, doubling the wait after each failure (up to ``maximum``)."""

    interval: float = 1.0
    maximum: float = ENSURE_BACKOFF_MAX
    last: float | None = None
    failures: int = 0

    def due(self, now: float) -> bool:
        if self.last is None:
            return True
        wait = min(self.maximum, self.interval * float(2 ** min(self.failures, 16)))
        return now - self.last >= wait

    def attempted(self, now: float, ok: bool) -> None:
        self.last = now
        self.failures = 0 if ok else self.failures + 1

    def recovered(self) -> None:
        """The socket answers again: the next outage is handled at once."""
        self.last = None
        self.failures = 0


class Watcher:
    """The poll loop: heal ticks on failing servers, the supervise script when the socket is dead."""

    def __init__(self, args: argparse.Namespace, log: TextIO) -> None:
        self.args = args
        self.log = log
        self.ensure = shlex.split(args.ensure) if args.ensure else []
        self.supervisor = Supervisor(interval=args.ensure_interval)
        self.stop = False
        self.seen: dict[tuple[str, str], str] = {}
        self.running: subprocess.Popen[bytes] | None = None
        self.pending = False
        self.socket_ok = True
        self.down_since = 0.0
        self.outage_logged = False  # a balancer_restart_failed event for this outage
        self.ensure_failed = False  # the last run of the supervise script failed
        self.said: set[str] = set()
        self.fast_since: float | None = None  # a failure the fast path has not acted on yet
        self.fast_module: Any = None  # hapool.fastheal, imported at first use
        self.scale_module: Any = None  # hapool.fastscale, imported at first use
        self.events_module: Any = None  # hapool.events
        self.scale_next = 0.0  # monotonic time of the next scale-out check
        self.tail: Any = None  # hapool.events.EventTail of the fast-path file's event log
        self.fast_broken = ""  # why the fast path cannot run (said once)
        self.polled = False  # a first poll saw the servers: a server new after it was just added

    def say(self, message: str) -> None:
        self.log.write(f"=== {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} watcher: {message}\n")

    def event(self, action: str, reason: str, duration: float | None, **extra: Any) -> None:
        if not self.args.events:
            return
        event = make_event(
            action, self.args.instance, reason, duration, time.time(), by=self.args.by, **extra
        )
        try:
            append_event(self.args.events, event)
        except OSError as exc:
            self.say(f"cannot append to the event log {self.args.events}: {exc}")

    def supervise(self, why: str) -> bool:
        """Run the supervise script (rate-limited); whether it started the balancer again."""
        if not self.ensure or not self.supervisor.due(time.monotonic()):
            return False
        result = run_ensure(self.ensure, self.args.ensure_timeout)
        self.ensure_failed = result.returncode != 0
        self.supervisor.attempted(time.monotonic(), ok=result.returncode == 0)
        down_seconds = round(time.monotonic() - self.down_since, 3)
        report = result.report
        action = str(report.get("action", ""))
        if result.returncode != 0:
            self.say(
                f"the balancer is down and could not be started (exit {result.returncode}): {result.error}"
            )
            if not self.outage_logged:
                reason = result.error or f"exit {result.returncode}"
                self.event("balancer_restart_failed", reason, None, down_seconds=down_seconds)
                self.outage_logged = True
            return False
        if action in ("start", "reload"):
            what = "started the master again" if action == "start" else "reloaded the master for a new worker"
            self.say(
                f"balancer {report.get('reason')}: {what} in {report.get('seconds')} s "
                f"(master {report.get('master')}, worker {report.get('worker')}; socket: {why})"
            )
            self.event(
                "balancer_restart",
                str(report.get("reason", "")),
                report.get("seconds"),
                restart=action,
                master=report.get("master"),
                worker=report.get("worker"),
                down_seconds=down_seconds,
            )
            self.outage_logged = False
            self.said.clear()
            return True
        if action not in self.said:  # none (a reload in progress), stopped: said once per outage
            self.said.add(action)
            self.say(f"the stats socket does not answer; the balancer: {action} ({report.get('reason')})")
        return False

    def poll(self) -> None:
        args = self.args
        try:
            current = show_stat(args.socket, args.timeout)
            if not self.socket_ok:
                self.say("stats socket answers again")
            self.socket_ok = True
            self.supervisor.recovered()
            self.outage_logged = False
            self.said.clear()
        except (OSError, ValueError) as exc:
            if self.socket_ok:
                self.say(f"cannot read the stats socket: {exc}")
                self.down_since = time.monotonic()
            self.socket_ok = False
            current = self.seen
            if self.supervise(str(exc)):
                self.pending = True  # a heal tick after the restart: the pool may need one too
                with contextlib.suppress(OSError, ValueError):
                    current = show_stat(args.socket, args.timeout)
        for key, status in current.items():
            if key not in self.seen and self.polled:
                # a server added since the last poll: runtime-added ones start DOWN until their
                # first good checks (health-gated) - no failure; its later transitions count
                continue
            if failing(self.seen.get(key), status):
                self.say(f"{key[0]}/{key[1]}: {self.seen.get(key)} -> {status}")
                self.pending = True
                if self.fast_since is None:
                    self.fast_since = time.monotonic()
        self.seen = current
        self.polled = self.polled or self.socket_ok
        if self.fast_since is not None and self.socket_ok:
            self.fast()
        self.scale_check()
        if self.running is not None and self.running.poll() is not None:
            self.say(f"heal tick exited {self.running.returncode}")
            self.running = None
        if self.pending and self.running is None:
            self.say("running a heal tick")
            self.running = subprocess.Popen(args.command, stdin=subprocess.DEVNULL)
            self.pending = False

    def load_fast(self) -> Any:
        """hapool.fastheal from --module-utils (None, said once, when it cannot be imported)."""
        if self.fast_module is None and not self.fast_broken:
            if self.args.module_utils not in sys.path:
                sys.path.insert(0, self.args.module_utils)
            try:
                from hapool import events, fastheal, fastscale  # noqa: PLC0415 - from the project, at first use
            except Exception as exc:
                self.fast_broken = f"cannot import hapool.fastheal from {self.args.module_utils}: {exc}"
                self.say(f"fast path off: {self.fast_broken}")
                return None
            self.fast_module = fastheal
            self.scale_module = fastscale
            self.events_module = events
        return self.fast_module

    def fast_config(self, fastheal: Any) -> Any:
        """The fast-path file (None, said once per message, when it cannot be read)."""
        try:
            return fastheal.FastConfig.load(self.args.fast_path)
        except Exception as exc:
            message = f"fast path skipped: {exc}"
            if message not in self.said:
                self.said.add(message)
                self.say(message)
            return None

    def scale_check(self) -> None:
        """The scale-out fast path when it is due (every --scale-interval seconds)."""
        if self.args.fast_scale and self.socket_ok and time.monotonic() >= self.scale_next:
            self.scale_next = time.monotonic() + self.args.scale_interval
            if self.fast_scale():
                self.pending = True  # the tick's scale.yml adopts the new hosts

    def fast_scale(self) -> bool:
        """The scale-out fast path (hapool.fastscale): whether it took hosts into a pool."""
        fastheal = self.load_fast()
        config = None if fastheal is None else self.fast_config(fastheal)
        if config is None:
            return False
        started = time.monotonic()
        if self.tail is None or self.tail.path != config.event_log:
            self.tail = self.events_module.EventTail(config.event_log)  # read once, then what is appended
        try:
            result = self.scale_module.fast_scale(config, by=self.args.by, tail=self.tail)
        except Exception as exc:
            self.say(f"fast scale-out failed: {type(exc).__name__}: {exc}")
            return False
        for pool, error in result.errors.items():
            message = f"fast scale-out: {pool}: {error}"
            if message not in self.said:
                self.said.add(message)
                self.say(message)
        if result.locked:
            return False  # the run that holds the lock plans too; the next check tries again
        for pool, change in result.plans.items():
            hosts = [item for item in result.launched if item.pool == pool]
            said = []
            for item in hosts:
                if item.error:
                    said.append(f"{item.name}: {item.error}")
                elif item.promoted:
                    said.append(f"{item.name} promoted from the warm pool")
                else:
                    said.append(
                        f"{item.name} launched from template {item.template} in "
                        f"{(item.launched or item.started) - item.started:.2f} s"
                    )
            took = time.monotonic() - started
            self.say(f"fast scale-out: {pool} {change}: {'; '.join(said)} ({took:.2f} s)")
        return result.acted

    def fast(self) -> None:
        """The fast path for the failures seen (a no-op without --fast-path)."""
        args = self.args
        since, self.fast_since = self.fast_since, None
        if not args.fast_path or since is None:
            return
        fastheal = self.load_fast()
        if fastheal is None:
            return
        started = time.monotonic()
        config = self.fast_config(fastheal)
        if config is None:
            return
        try:
            result = fastheal.fast_heal(config, by=args.by)
        except Exception as exc:
            self.say(f"fast path failed: {type(exc).__name__}: {exc}")
            return
        if result.locked:
            if time.monotonic() - since < args.fast_retry:
                self.fast_since = since  # try again at the next poll
            else:
                self.say(f"fast path gave up: the pool lock stayed held by {result.locked}")
            return
        self.report_fast(result, time.monotonic() - started)

    def report_fast(self, result: Any, took: float) -> None:
        """Log what the fast path did (hapool.fastheal.FastResult)."""
        for item in result.replaced:
            if item.error:
                self.say(f"fast path: {item.pool}/{item.name} -> {item.replacement}: {item.error}")
            elif getattr(item, "promoted", False):
                took_ms = ((item.launched or item.started) - item.started) * 1000
                self.say(
                    f"fast path: {item.pool}/{item.name} ({item.reason}) -> {item.replacement} "
                    f"promoted from the warm pool in {took_ms:.0f} ms"
                )
            else:
                launch = (item.launched or item.started) - item.started
                self.say(
                    f"fast path: {item.pool}/{item.name} ({item.reason}) -> {item.replacement} "
                    f"launched from template {item.template} in {launch:.2f} s and added to the balancer"
                )
        for pool, error in result.errors.items():
            self.say(f"fast path: {pool}: {error}")
        if result.replaced or result.errors:
            self.say(f"fast path done in {took:.2f} s (run {result.run})")

    def once(self) -> int:
        """One poll; the supervise script when the socket does not answer, the fast path when a
        server is not healthy. 0: the balancer answers (or was started again), 1: it is down."""
        try:
            current = show_stat(self.args.socket, self.args.timeout)
        except (OSError, ValueError) as exc:
            self.down_since = time.monotonic()
            if not self.ensure:
                self.say(f"cannot read the stats socket: {exc}")
                return 1
            self.supervise(str(exc))
            return 1 if self.ensure_failed else 0
        if self.args.fast_path and any(unhealthy(status) for status in current.values()):
            # a run that holds the pool lock (a heal run of an earlier tick) usually ends or gives
            # it back within seconds: try again for --once-fast-wait seconds, then leave it to the
            # tick's own run
            started = time.monotonic()
            self.fast_since = started - self.args.fast_retry + self.args.once_fast_wait
            while True:
                self.fast()
                if self.fast_since is None:
                    break
                time.sleep(0.25)
        if self.args.fast_scale:
            self.fast_scale()
        return 0

    def run(self) -> None:
        args = self.args
        self.say(
            f"polling {args.socket} every {args.interval:g} s; runs {' '.join(args.command)}"
            + (f"; keeps the balancer running with {' '.join(self.ensure)}" if self.ensure else "")
        )
        while not self.stop:
            started = time.monotonic()
            self.poll()
            time.sleep(max(0.0, args.interval - (time.monotonic() - started)))
        self.say("stopped")
        if self.running is not None:
            self.running.wait()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--socket", required=True)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--log")
    parser.add_argument(
        "--ensure",
        help="the balancer's supervise script with its arguments (one string), run when the stats socket "
        "stops answering",
    )
    parser.add_argument(
        "--ensure-interval",
        type=float,
        default=1.0,
        help="at most one run of --ensure every this many seconds (doubled after each failure)",
    )
    parser.add_argument("--ensure-timeout", type=float, default=60.0)
    parser.add_argument("--events", help="the event log (JSON lines) where balancer restarts are appended")
    parser.add_argument("--instance", default=socket.gethostname(), help="the balancer's name in events")
    parser.add_argument("--by", default="watcher", help="who restarted the balancer, in its events")
    parser.add_argument("--once", action="store_true", help="poll once, start a dead balancer again, exit")
    parser.add_argument(
        "--fast-path", help="the pools of the fast path (heal.yml writes it); without it, only ticks"
    )
    parser.add_argument("--module-utils", help="the project's plugins/module_utils (hapool.fastheal)")
    parser.add_argument(
        "--once-fast-wait",
        type=float,
        default=5.0,
        help="with --once: seconds the fast path tries again while another run holds the pool lock",
    )
    parser.add_argument(
        "--fast-retry",
        type=float,
        default=60.0,
        help="seconds the fast path tries again while another run holds the pool lock",
    )
    parser.add_argument(
        "--fast-scale",
        action="store_true",
        help="with --fast-path: scale template pools out at once (the ticks run reconcile.yml)",
    )
    parser.add_argument(
        "--scale-interval",
        type=float,
        default=2.0,
        help="seconds between two plans of the scale-out fast path",
    )
    parser.add_argument("command", nargs="*", help="the heal tick to run (required without --once)")
    args = parser.parse_args(argv)
    if not args.once and not args.command:
        parser.error("the heal tick command is required (unless --once)")
    if args.fast_scale and not args.fast_path:
        parser.error("--fast-scale needs --fast-path (the pools it scales)")
    if args.fast_path and not args.module_utils:
        parser.error("--fast-path needs --module-utils (the project's plugins/module_utils)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log: TextIO = open(args.log, "a", buffering=1, encoding="utf-8") if args.log else sys.stderr  # noqa: SIM115
    watcher = Watcher(args, log)
    if args.once:
        return watcher.once()

    def on_term(*_: object) -> None:
        watcher.stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    watcher.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
