"""The heal schedule for real: cron (started here when it is not running) fires the wrapper,
which heals a killed host; the watcher heals at once on a transition to DOWN. The schedule,
the watcher and cron (when this test started it) are removed afterwards, also on failure, and
a heal run a tick had started is waited for. Both tests use the shared local deployment
(``local_pool``, conftest.py).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import pytest
from helpers.heal import instances, kill_hard
from helpers.load import Load
from helpers.procs import CRON_DIR, cron_daemon, wait_until
from helpers.schedule import scheduled, wait_for_replace
from helpers.site import Deployment

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def cron() -> Iterator[None]:
    """A running cron daemon (started for the test when none runs)."""
    with cron_daemon():
        yield


def test_cron_schedule_fires_and_heals(local_pool: Deployment, cron: None) -> None:
    dep = local_pool
    settings = {"heal_timer_scheduler": "cron", "heal_timer_period": 10, "heal_timer_watch": False}
    with scheduled(dep, **settings) as schedule:
        entry = (CRON_DIR / schedule.name).read_text()
        assert schedule.name in entry and "root" in entry
        wrapper = (dep.root / "heal" / f"{schedule.name}-tick.sh").read_text()
        assert "flock -n" in wrapper and 'while [ "$i" -lt 6 ]' in wrapper
        victim, survivor = instances(dep, "local")
        kill_hard(victim)
        event = wait_for_replace(dep, victim.name, timeout=150)
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
            event = wait_for_replace(dep, victim.name, timeout=80)
            load.wait_for(f"Hello {event['replacement']}!", timeout=20)
            serving = time.monotonic() - killed
        finally:
            outcomes = load.stop()
        failed = [o for o in outcomes if o.status != 200]
        print(
            f"\nwatcher: kill -> replacement serving {serving:.1f} s; "
            f"{len(outcomes)} requests, {len(failed)} failed"
        )
        assert not failed, failed[:10]
        assert "running a heal tick" in schedule.log.read_text()
