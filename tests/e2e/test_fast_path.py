"""The heal watcher's fast path end to end, local, docker and vagrant's docker backend (real nginx,
HAProxy, Docker engine, Vagrant, Ansible, the watcher started by heal_timer.yml).

A pool with a baked launch template: when a host is killed under load, the watcher itself
launches its replacement from the current template and adds it to the balancer at runtime
(``hapool.fastheal``: heal.yml's decisions, under the pool lock), then runs the tick; the heal
run adopts that replacement (takes the killed host out, re-renders, logs ``replace`` with
``adopted``). No request fails, the pool ends with its size and every host on the current
version. The times are printed, not asserted (figures are the bench's: docs/benchmarks.md).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers.heal import deployments, events, instances, kill_hard
from helpers.load import Load
from helpers.procs import wait_until
from helpers.schedule import scheduled, wait_for_replace
from helpers.site import Deployment

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def deploy(tmp_path: Path) -> Iterator[Callable[..., Deployment]]:
    yield from deployments(tmp_path)


def ok(run: object) -> None:
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "provider",
    # vagrant (docker backend): the watcher makes the vagrant provider from the pool's entry and
    # launches a machine from the baked image (the project's Vagrantfile, found from its directory)
    ["local", "docker", pytest.param("vagrant", marks=pytest.mark.vagrant)],
)
def test_the_watcher_launches_a_template_replacement_itself_and_heal_adopts_it(
    deploy: Callable[..., Deployment], provider: str
) -> None:
    if shutil.which("start-stop-daemon") is None:
        pytest.fail("start-stop-daemon (Debian's dpkg) is missing: the watcher is started with it")
    dep = deploy(provider, template={"enabled": True})
    # site.yml wrote the fast-path file (as every heal run does)
    fast = json.loads((dep.root / "heal" / "fastpath.json").read_text())
    assert [p["name"] for p in fast["pools"]] == ["web"] and fast["check_defaults"], fast
    current = json.loads((dep.root / "templates" / "web" / "index.json").read_text())["current"]

    with scheduled(dep, heal_timer_scheduler="none", heal_timer_watch=True) as schedule:
        wait_until(lambda: schedule.log.exists() and "polling" in schedule.log.read_text(), 20, "the watcher")
        victim = next(i for i in instances(dep, provider) if i.alive)
        load = Load("127.0.0.1", dep.frontend, clients=2, max_requests=60_000, max_seconds=110, pause=0.02)
        load.start()
        try:
            load.wait_for(f"Hello {victim.name}!")
            killed = time.monotonic()
            kill_hard(victim)
            name = re.escape(victim.name)
            said = re.compile(rf"fast path: web/{name} \(.*\) -> (\S+) launched from template")
            found: list[str] = []

            def launched() -> bool:
                found[:] = said.findall(schedule.log.read_text())
                return bool(found)

            wait_until(launched, 30, "the fast path's launch", interval=0.1)
            replacement = found[0]
            load.wait_for(f"Hello {replacement}!", timeout=30)
            serving = time.monotonic() - killed
            event = wait_for_replace(dep, victim.name, timeout=120)
        finally:
            outcomes = load.stop()
        log = schedule.log.read_text()

    failed = [o for o in outcomes if o.status != 200]
    print(
        f"\n{provider} fast path: kill -> replacement serving {serving:.1f} s (client's view); "
        f"replace event: serving_seconds {event.get('serving_seconds')}, duration {event['duration']}; "
        f"{len(outcomes)} requests, {len(failed)} failed"
    )
    assert not failed, failed[:10]
    assert "running a heal tick" in log
    # the watcher logged the launch (by, and its run), the heal run adopted and finished it
    launch = [e for e in events(dep) if e["action"] == "replace_launch" and e["instance"] == victim.name]
    assert len(launch) == 1 and launch[0]["by"] == "watcher", launch
    assert str(launch[0]["run"]).startswith("fast-"), launch
    assert event["replacement"] == replacement and event["adopted"] is True, event
    assert event["serving"] is True, event
    assert event["template"] == current, event
    # 0 when UP within the second of its start (HAProxy's lastchg has whole seconds)
    assert event["serving_seconds"] is not None and 0 <= event["serving_seconds"] <= event["duration"], event
    # the pool has its size, every host on the current version, the killed host gone
    alive = {i.name: i.extra.get("template") for i in instances(dep, provider) if i.alive}
    assert len(alive) == 2 and victim.name not in alive and set(alive.values()) == {current}, alive
    assert replacement in alive
    assert {f"Hello {name}!" for name in alive} == dep.hosts_answering(2)
