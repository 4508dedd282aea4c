"""Drain end latency: from the moment the last session on a draining server closes to the moment
our tooling is done with it.

Each measurement starts a real HAProxy (``tests/helpers/procs.py``) whose backend ``pool`` has
one server, ``s1``: a small Python HTTP/1.1 server on loopback (keep-alive, like nginx) whose
``/hold`` handler blocks on a ``threading.Event``. A client sends ``GET /hold`` through HAProxy,
so one session stays open on ``s1`` until the scenario releases it. Then the real
``haproxy_server`` module (``library/haproxy_server.py``, run as Ansible runs it by
``tests/helpers/modules.py``) is started in a thread:

* ``state: absent``: MAINT, wait until no session is left, ``del server``;
* ``state: drain, wait: true``: DRAIN, return when HAProxy reports no session (``scur`` 0).

Once HAProxy shows the new admin state (the module is polling), the scenario waits a random
fraction of the poll interval (so that the release falls anywhere in a poll cycle), releases
the session at T, and records (monotonic clock, all in this process):

* when the client has the whole answer, and when HAProxy first reports ``scur`` 0 for ``s1``,
  from an observer reading ``show stat`` every 10 ms;
* when the module returns;
* when HAProxy stops listing ``s1`` (``state: absent``).

Latencies are those moments minus T, for the module's default ``poll_interval`` (0.2 s) and for
1 s side by side; median of ``max(3, ctx.repeat)`` measurements each.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from helpers.modules import run_module
from helpers.procs import HAProxy, running, start_haproxy, unix_cli, wait_until

from bench.lib import BenchError, Context, fmt_summary, summary

NAME = "drain"
TITLE = "Drain end latency after the last session closes"

POLL_INTERVALS = (0.2, 1.0)  # the module's default, and a slower one
MODES = ("absent", "drain")
OBSERVE_EVERY = 0.01
SETTLE = 0.3  # after the admin state changed, before the random phase


class _Quiet(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """HAProxy resets its health-check connections once it has the status: not an error."""


class HoldServer:
    """HTTP/1.1 on loopback: ``/hold`` answers only once :attr:`release` is set; anything else
    (the health checks) answers at once."""

    def __init__(self) -> None:
        self.held = threading.Event()
        self.release = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 60

            def do_GET(self) -> None:
                if self.path == "/hold":
                    held, release = owner.held, owner.release
                    held.set()
                    release.wait(60)
                    body = b"released\n"
                else:
                    body = b"ok\n"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = _Quiet(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def reset(self) -> None:
        self.release.set()  # whatever still waits on the previous one
        self.held = threading.Event()
        self.release = threading.Event()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def server_row(lb: HAProxy, backend: str = "pool", name: str = "s1") -> dict[str, str] | None:
    """The server's row of ``show stat`` (None: HAProxy does not list it)."""
    text = unix_cli(lb.admin_socket, f"show stat {backend} 4 -1")
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# "):
        raise BenchError(f"show stat answered {text[:200]!r}")
    header = lines[0][2:].split(",")
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        if row.get("svname") == name:
            return row
    return None


class Observer:
    """Reads the server's row every :data:`OBSERVE_EVERY` seconds in a thread."""

    def __init__(self, lb: HAProxy) -> None:
        self.lb = lb
        self.samples: list[tuple[float, dict[str, str] | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + 120
        while not self._stop.is_set() and time.monotonic() < deadline:
            with contextlib.suppress(OSError, BenchError):
                row = server_row(self.lb)
                self.samples.append((time.monotonic(), row))
            self._stop.wait(OBSERVE_EVERY)

    def last(self) -> dict[str, str] | None:
        return self.samples[-1][1] if self.samples else {}

    def first_after(self, t: float, predicate: Any) -> float | None:
        return next((at for at, row in self.samples if at >= t and predicate(row)), None)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def _client(port: int, out: dict[str, Any]) -> None:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=90)
        conn.request("GET", "/hold", headers={"Connection": "close"})
        resp = conn.getresponse()
        out["body"] = resp.read().decode()
        out["status"] = resp.status
        conn.close()
    except Exception as exc:
        out["error"] = repr(exc)
    out["at"] = time.monotonic()


def _module(args: dict[str, Any], out: dict[str, Any]) -> None:
    try:
        out["result"] = run_module("haproxy_server", args, timeout=120)
    except Exception as exc:
        out["error"] = repr(exc)
    out["at"] = time.monotonic()


def measure_one(hold: HoldServer, directory: Path, mode: str, interval: float,
                phase: float) -> dict[str, Any]:
    # timeout server: the held request outlives the helpers' 10 s default on a loaded machine
    lb = start_haproxy(directory, {"pool": ["timeout server 120s",
                                            f"server s1 127.0.0.1:{hold.port} check"]})
    client: dict[str, Any] = {}
    module: dict[str, Any] = {}
    threads: list[threading.Thread] = []
    observer: Observer | None = None
    with running(lb):
        try:
            wait_until(lambda: (server_row(lb) or {}).get("status") == "UP", 10, "s1 UP")
            hold.reset()
            threads.append(threading.Thread(target=_client, args=(lb.frontend_port, client), daemon=True))
            threads[-1].start()
            if not hold.held.wait(10):
                raise BenchError(f"the held request did not reach s1: {client}")
            wait_until(lambda: (server_row(lb) or {}).get("scur") == "1", 5, "s1 scur 1")
            observer = Observer(lb)
            args = {"socket": str(lb.admin_socket), "backend": "pool", "name": "s1", "state": mode,
                    "poll_interval": interval, "drain_timeout": 60.0}
            if mode == "drain":
                args["wait"] = True
            threads.append(threading.Thread(target=_module, args=(args, module), daemon=True))
            threads[-1].start()
            want = "MAINT" if mode == "absent" else "DRAIN"
            wait_until(lambda: (observer.last() or {}).get("status", "").startswith(want)
                       or "at" in module, 60, f"s1 in {want}")
            if "at" in module:
                raise BenchError(f"haproxy_server returned before the session was released: {module}")
            time.sleep(SETTLE + phase)
            released = time.monotonic()
            hold.release.set()
            threads[-1].join(90)
            threads[0].join(30)
            if mode == "absent":
                wait_until(lambda: observer.last() is None, 10, "s1 gone from show stat")
            else:
                wait_until(lambda: (observer.last() or {}).get("scur") == "0", 10, "s1 scur 0")
            observer.stop()
        finally:
            hold.release.set()
            if observer is not None:
                observer.stop()
            for thread in threads:
                thread.join(30)
    result = module.get("result") or {}
    if module.get("error") or result.get("failed"):
        raise BenchError(f"haproxy_server state={mode} failed: {module.get('error') or result}")
    if client.get("status") != 200:
        raise BenchError(f"the held request did not end with a 200: {client}")
    assert observer is not None

    def since(at: float | None) -> float | None:
        return None if at is None else round(at - released, 4)

    scur0 = observer.first_after(released, lambda row: row is None or row["scur"] == "0")
    gone = observer.first_after(released, lambda row: row is None)

    return {
        "mode": mode, "poll_interval": interval, "phase": round(phase, 4),
        "client_done_s": since(client["at"]),
        "haproxy_scur0_s": since(scur0),
        "module_s": since(module["at"]),
        "gone_s": since(gone) if mode == "absent" else None,
        "module_waited_s": result.get("waited"),
        "module_state": result.get("state"),
        "observer_samples": len(observer.samples),
    }


def run(ctx: Context) -> dict[str, Any]:
    reps = max(3, ctx.repeat)
    rng = random.Random(8)  # noqa: S311 (a reproducible phase, not a secret)
    hold = HoldServer()
    work = ctx.workdir / "drain"
    runs: list[dict[str, Any]] = []
    try:
        for rep in range(reps):
            for interval in POLL_INTERVALS if rep % 2 == 0 else reversed(POLL_INTERVALS):
                for mode in MODES:
                    one = measure_one(hold, work / f"{len(runs)}", mode, interval, rng.uniform(0, interval))
                    runs.append(one)
                    gone = f", gone {one['gone_s']:.3f} s" if one["gone_s"] is not None else ""
                    ctx.log(f"drain: rep {rep + 1}/{reps} {mode} poll {interval:g} s: module "
                            f"{one['module_s']:.3f} s, scur 0 {one['haproxy_scur0_s']:.3f} s{gone} "
                            "after the release")
    finally:
        hold.close()
    figures: dict[str, Any] = {}
    for interval in POLL_INTERVALS:
        for mode in MODES:
            mine = [r for r in runs if r["mode"] == mode and r["poll_interval"] == interval]
            figures[f"{mode}@{interval:g}"] = {
                key: summary([r[key] for r in mine])
                for key in ("client_done_s", "haproxy_scur0_s", "module_s", "gone_s")
            }
    return {"repetitions": reps, "poll_intervals": list(POLL_INTERVALS), "modes": list(MODES),
            "observe_every_s": OBSERVE_EVERY,
            "figures": figures, "runs": runs}


def markdown(r: dict[str, Any]) -> str:
    f = r["figures"]
    ms = 1000.0

    def cell(key: str, what: str) -> str:
        s = f[key][what]
        if s["median"] is None:
            return "—"
        scaled = {**s, **{k: s[k] * ms for k in ("median", "min", "max")}}
        return fmt_summary(scaled, "ms", 0)

    intervals = r["poll_intervals"]
    head = " | ".join(f"`poll_interval: {i:g}`" for i in intervals)
    lines = [
        "One session held open on the only server of a real HAProxy's backend (a Python HTTP/1.1 "
        "server whose handler waits for a signal), the real `haproxy_server` module started on it, "
        "then the session released at T at a random point of the module's poll cycle. Times after T, "
        f"median of {r['repetitions']} measurements (range in brackets); HAProxy's own view comes "
        f"from `show stat` read every {r['observe_every_s'] * ms:.0f} ms.",
        "",
        f"| after the last session closes (T) | {head} |",
        "|---|" + "---|" * len(intervals),
    ]
    rows = [
        ("the client has the whole answer", "absent", "client_done_s"),
        ("HAProxy reports `scur` 0 for the server", "absent", "haproxy_scur0_s"),
        ("**`state: absent` returns** (MAINT, wait, `del server`)", "absent", "module_s"),
        ("HAProxy no longer lists the server", "absent", "gone_s"),
        ("HAProxy reports `scur` 0 (DRAIN run)", "drain", "haproxy_scur0_s"),
        ("**`state: drain`, `wait: true` returns**", "drain", "module_s"),
    ]
    for label, mode, key in rows:
        lines.append(f"| {label} | " + " | ".join(cell(f"{mode}@{i:g}", key) for i in intervals) + " |")
    scur0 = [f[f"{mode}@{i:g}"]["haproxy_scur0_s"]["median"] for mode in r["modes"] for i in intervals]
    scur0_ms = max(v for v in scur0 if v is not None) * ms if any(v is not None for v in scur0) else None
    lines += [
        "",
        "What bounds it: the module looks at the session count (`show stat`) every `poll_interval` "
        "seconds (a module parameter, default 0.2 s), so a session that ends just after a look waits "
        "for the next one: the latency is spread between 0 and one `poll_interval`, plus what follows "
        "(for `absent`: `del server`, retried with a MAINT re-entry while HAProxy still holds an idle "
        "connection to the server; then one more read of the server's state and the module's exit, "
        "which is why the module returns after HAProxy stopped listing the server). "
        + (f"HAProxy itself reports `scur` 0 within {scur0_ms:.0f} ms of the release (the slowest "
           "median above), so " if scur0_ms is not None else "So ")
        + "nearly all of the module's latency is its poll interval; a shorter interval costs one "
        "more `show stat` per interval while the drain lasts. `state: drain` with `wait: true` ends on "
        "the same `scur` 0 poll and leaves the server in DRAIN; `state: absent` is the one that "
        "finishes the job (the server is deleted).",
    ]
    return "\n".join(lines)
