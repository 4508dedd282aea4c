"""The heal schedule for real: cron (started here when it is not running) fires the wrapper,
which heals a killed host; the watcher heals at once on a transition to DOWN. The schedule,
the watcher and cron (when this test started it) are removed afterwards, also on failure, and
a heal run a tick had started is waited for. Both tests use the shared local deployment
(``local_pool``, conftest.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.heal import events, instances, kill_hard
from helpers.load import Load
from helpers.procs import CRON_DIR, cron_daemon, wait_until
from helpers.site import Deployment

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

@pytest.fixture
def cron() -> Iterator[None]:
    """A running cron daemon (started for the test when none runs)."""
    with cron_daemon():
        yield


class Schedule:
    def __init__(self, dep: Deployment, **settings: object) -> None:
        self.dep = dep
        self.name = f"hapool-heal-t{secrets.token_hex(4)}"
        self.settings = {
            "heal_timer_name": self.name,
            "heal_timer_playbook_args": ["-e", json.dumps(dep.extra_vars)],
            **settings,
        }
        self.log = dep.root / "heal" / f"{self.name}.log"

    def apply(self, state: str) -> subprocess.CompletedProcess[str]:
        return self.dep.play("heal_timer.yml", **self.settings, heal_timer_state=state)

    def watcher_pid(self) -> int | None:
        try:
            return int((self.dep.root / "heal" / f"{self.name}-watch.pid").read_text())
        except (OSError, ValueError):
            return None


@contextlib.contextmanager
def scheduled(dep: Deployment, **settings: object) -> Iterator[Schedule]:
    schedule = Schedule(dep, **settings)
    try:
        run = schedule.apply("present")
        assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
        yield schedule
    finally:
        pid = schedule.watcher_pid()
        removed = schedule.apply("absent")
        # never leave a cron entry or a watcher behind, whatever the role did
        (CRON_DIR / schedule.name).unlink(missing_ok=True)
        if pid is not None and _is_watcher(pid):
            os.kill(pid, signal.SIGTERM)
        # A tick started before the removal finishes its heal run: wait for it (the deployment
        # is shared with the next tests), then stop whatever is left of the wrapper.
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: not _wrapper_pids(schedule), 120, "the schedule's runs to end", interval=0.5)
        for left in _wrapper_pids(schedule):
            with contextlib.suppress(ProcessLookupError):
                os.kill(left, signal.SIGTERM)
        assert removed.returncode == 0, removed.stdout[-5000:]
        assert not (CRON_DIR / schedule.name).exists()
        assert pid is None or not _is_watcher(pid)


def _wrapper_pids(schedule: Schedule) -> list[int]:
    """Live processes running the schedule's wrapper (a tick and its heal run)."""
    wrapper = f"{schedule.name}-tick.sh".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if wrapper in (proc / "cmdline").read_bytes() and not _zombie(int(proc.name)):
                    pids.append(int(proc.name))
    return pids


def _is_watcher(pid: int) -> bool:
    try:
        return "-watch.py" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace") and not _zombie(pid)
    except OSError:
        return False


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _wait_for_replace(dep: Deployment, victim: str, timeout: float) -> dict[str, object]:
    found: list[dict[str, object]] = []

    def replaced() -> bool:
        found[:] = [e for e in events(dep) if e["action"] == "replace" and e["instance"] == victim]
        return bool(found)

    wait_until(replaced, timeout, f"a replace event of {victim}", interval=0.5)
    return found[0]


def test_cron_schedule_fires_and_heals(local_pool: Deployment, cron: None) -> None:
    dep = local_pool
    settings = {"heal_timer_scheduler": "cron", "heal_timer_period": 10, "heal_timer_watch": False}
    with scheduled(dep, **settings) as schedule:
        entry = (CRON_DIR / schedule.name).read_text()
        assert schedule.name in entry and "root" in entry
        wrapper = (dep.root / "heal" / f"{schedule.name}-tick.sh").read_text()
        assert "flock -n" in wrapper and "while [ \"$i\" -lt 6 ]" in wrapper
        victim, survivor = instances(dep, "local")
        kill_hard(victim)
        event = _wait_for_replace(dep, victim.name, timeout=150)
        assert event["replacement"] in {i.name for i in instances(dep, "local")}
        assert dep.hosts_answering(2) == {f"Hello {survivor.name}!", f"Hello {event['replacement']}!"}
        wait_until(lambda: "heal run exited 0" in schedule.log.read_text(), 60, "the run's end in the log")
        log = schedule.log.read_text()
        assert "=== " in log and "heal run (tick" in log


def test_watcher_heals_at_once_on_down(local_pool: Deployment) -> None:
    if shutil.which("start-stop-daemon") is None:
        pytest.fail("start-stop-daemon (Debian's dpkg) is missing: the watcher is started with it")
    dep = local_pool
    with scheduled(dep, heal_timer_scheduler="none", heal_timer_watch=True) as schedule:
        pid = schedule.watcher_pid()
        assert pid is not None
        wait_until(lambda: schedule.log.exists() and "polling" in schedule.log.read_text(), 20, "the watcher")
        victim, _ = instances(dep, "local")
        load = Load("127.0.0.1", dep.frontend, clients=2, max_requests=50_000, max_seconds=85, pause=0.02)
        load.start()
        try:
            load.wait_for(f"Hello {victim.name}!")
            killed = time.monotonic()
            kill_hard(victim)
            event = _wait_for_replace(dep, victim.name, timeout=80)
            load.wait_for(f"Hello {event['replacement']}!", timeout=20)
            serving = time.monotonic() - killed
        finally:
            outcomes = load.stop()
        failed = [o for o in outcomes if o.status != 200]
        print(f"\nwatcher: kill -> replacement serving {serving:.1f} s; "
              f"{len(outcomes)} requests, {len(failed)} failed")
        assert not failed, failed[:10]
        assert "running a heal tick" in schedule.log.read_text()
