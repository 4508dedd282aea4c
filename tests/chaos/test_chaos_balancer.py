"""Chaos on the balancer itself: HAProxy killed again and again (``kill -9`` of its worker, or
of its master and worker) under a steady load, with the heal watcher installed for real by
``heal_timer.yml`` (no timer: only the watcher). The watcher starts the balancer again at once
(the haproxy role's supervise script) and runs a heal tick after each restart.

Checked: the frontend answers again after every kill, every kill is logged as one
``balancer_restart`` (by the watcher, or by the heal tick it started when the kill fell on one),
the pool converges (provider, HAProxy and its configuration agree on ``desired`` hosts, all UP
and answering) and never holds more than ``max`` hosts or servers. Printed (run with ``-s``):
the failed requests (those sent while nothing listened) and the seconds from each kill until
the frontend answered - figures, not assertions.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.chaos import answering, config_servers, view
from helpers.heal import deployments, events, instances
from helpers.load import Load
from helpers.procs import unix_cli, wait_until
from helpers.site import Deployment

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

DESIRED = 3
MAX = 4
KILLS = 8  # alternately the worker, and the master with its worker
KILL_EVERY_S = 8
RATE = 200.0  # requests per second of the steady load


@pytest.fixture(scope="module")
def dep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    made = deployments(tmp_path_factory.mktemp("chaos-balancer"))
    make = next(made)
    try:
        yield make("local", desired=DESIRED, max=MAX, flap_window=0)
    finally:
        for _ in made:  # teardown.yml, then destroy whatever it left
            pass


@contextlib.contextmanager
def watcher(dep: Deployment) -> Iterator[Path]:
    """heal_timer.yml with the watcher only; removed afterwards (and its process stopped)."""
    name = f"hapool-chaos-{secrets.token_hex(3)}"
    settings = {
        "heal_timer_name": name,
        "heal_timer_scheduler": "none",
        "heal_timer_watch": True,
        "heal_timer_playbook_args": ["-e", json.dumps(dep.extra_vars)],
    }
    pid_file = dep.root / "heal" / f"{name}-watch.pid"
    log = dep.root / "heal" / f"{name}.log"
    try:
        run = dep.play("heal_timer.yml", **settings, heal_timer_state="present")
        assert run.returncode == 0, run.stdout[-5000:]
        wait_until(
            lambda: log.exists() and "keeps the balancer running" in log.read_text(),
            20,
            "the watcher to poll",
        )
        yield log
    finally:
        pid = pid_file.read_text().strip() if pid_file.exists() else ""
        removed = dep.play("heal_timer.yml", **settings, heal_timer_state="absent")
        if pid.isdigit() and "-watch.py" in _cmdline(int(pid)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGTERM)
        # a heal tick the watcher started finishes its run (the deployment is torn down next)
        wrapper = f"{name}-tick.sh"
        with contextlib.suppress(TimeoutError):
            wait_until(
                lambda: not _pids_running(wrapper), 120, "the watcher's heal ticks to end", interval=0.5
            )
        assert removed.returncode == 0, removed.stdout[-3000:]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    except OSError:
        return ""


def _pids_running(needle: str) -> list[int]:
    return [
        int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and needle in _cmdline(int(p.name))
    ]


def _answers(dep: Deployment) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{dep.frontend}/", timeout=1) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _balancer_pids(dep: Deployment, *, master_too: bool) -> list[int]:
    run = dep.root / "local" / "haproxy" / "run"
    master = int((run / "haproxy.pid").read_text().split()[0])
    section, workers = "", []
    for line in unix_cli(run / "master.sock", "show proc").splitlines():
        if line.startswith("#"):
            section = line
        elif section.startswith("# workers") and line.split()[1:2] == ["worker"]:
            workers.append(int(line.split()[0]))
    return ([master] if master_too else []) + workers


class Sizes:
    """The largest pool seen (provider hosts, HAProxy servers), sampled every 0.5 s in a thread."""

    def __init__(self, dep: Deployment) -> None:
        self.dep = dep
        self.hosts = 0
        self.servers = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sizes:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            with contextlib.suppress(Exception):  # the balancer is dead for a moment, on purpose
                self.hosts = max(self.hosts, len(instances(self.dep, "local")))
            with contextlib.suppress(Exception):
                self.servers = max(self.servers, len(view(self.dep).servers))


def test_the_balancer_killed_under_load_comes_back_with_the_watcher(dep: Deployment) -> None:
    wait_until(lambda: view(dep).converged_to == DESIRED, 60, "the pool", interval=0.5)
    (dep.root / "heal" / "events.jsonl").unlink(missing_ok=True)
    seconds: list[tuple[str, float]] = []
    with watcher(dep) as log, Sizes(dep) as sizes:
        load = Load(
            "127.0.0.1",
            dep.frontend,
            clients=4,
            max_requests=400_000,
            max_seconds=KILLS * KILL_EVERY_S + 240,
            rate=RATE,  # each request due at its time: the failed ones are those of the outages
            timeout=5,
        ).start()
        try:
            wait_until(lambda: len(load.outcomes) > 50, 20, "the load")
            for n in range(KILLS):
                what = "master + worker" if n % 2 else "worker"
                pids = _balancer_pids(dep, master_too=bool(n % 2))
                killed = time.monotonic()
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                wait_until(
                    lambda: _answers(dep), 60, f"the frontend after kill {n + 1} ({what})", interval=0.02
                )
                seconds.append((what, time.monotonic() - killed))
                time.sleep(KILL_EVERY_S)
            wait_until(
                lambda: view(dep).converged_to == DESIRED and config_servers(dep) == set(view(dep).provider),
                180,
                f"{DESIRED} hosts alive and UP, provider == HAProxy == config",
                interval=0.5,
            )
            final = set(view(dep).provider)
            served = answering(dep, final)
        finally:
            outcomes = load.stop()
        watch_log = log.read_text()
    failed = [o for o in outcomes if o.status != 200]
    restarts = [e for e in events(dep) if e["action"] == "balancer_restart"]
    errors = sorted({str(o.error).split(":")[0] for o in failed})
    answered = ", ".join(f"{s:.2f} s ({w})" for w, s in seconds)
    starts = [e["duration"] for e in restarts]
    ticks = watch_log.count("running a heal tick")
    by = {who: sum(e["by"] == who for e in restarts) for who in sorted({str(e["by"]) for e in restarts})}
    print(
        f"\nbalancer chaos: {KILLS} kills ({KILL_EVERY_S} s apart) under load; the frontend answered again "
        f"after {answered}; {len(outcomes)} requests at {RATE:g}/s, {len(failed)} failed ({errors}); "
        f"{len(restarts)} balancer_restart event(s) {by}, starts {starts} s; {ticks} heal tick(s); "
        f"largest pool seen: {sizes.hosts} hosts, {sizes.servers} servers (max {MAX})"
    )
    assert len(seconds) == KILLS
    # one restart per kill: by the watcher, or by a heal tick it had started (the tick's --once check
    # or heal.yml's first play) when the kill fell on one; the supervise script's lock never doubles one
    assert len(restarts) == KILLS, restarts
    assert {e["by"] for e in restarts} <= {"watcher", "timer", "heal.yml"}, restarts
    assert served == final and len(final) == DESIRED
    assert 0 < sizes.hosts <= MAX and 0 < sizes.servers <= MAX
    assert all(o.status == 200 for o in outcomes[-50:])  # answering at the end
