"""Warm pools end to end, local and docker (real nginx, HAProxy, Docker engine, Ansible, the
watcher started by heal_timer.yml).

A pool with a baked template and ``warm: {size: 1}``: a heal run fills the warm pool (a host
launched from the template, in the balancer with weight 0: UP, checked, never answering a
client); when a member is killed under load, the watcher promotes the warm host (a runtime
weight change), the heal run adopts it and refills the warm pool - no failed request. Faults: a
warm host killed at the moment it would be promoted (the member is replaced by a launch, the
dead warm host recycled), and a run that died after it logged a promotion but before it made
it (the next run promotes again): both converge to 2 members and 1 warm host.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers.heal import balancer_dir, deployments, events, instances, kill_hard, server_status
from helpers.load import Load
from helpers.procs import wait_until
from helpers.schedule import scheduled, wait_for_replace
from helpers.site import Deployment

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SETTINGS = {"template": {"enabled": True}, "warm": {"size": 1}, "max": 3, "flap_window": 0}


@pytest.fixture
def deploy(tmp_path: Path) -> Iterator[Callable[..., Deployment]]:
    yield from deployments(tmp_path)


def ok(run: object) -> None:
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]  # type: ignore[attr-defined]


def warm_hosts(dep: Deployment) -> list[str]:
    path = dep.root / "warm" / "web.json"
    return sorted(json.loads(path.read_text())["hosts"]) if path.exists() else []


def members(dep: Deployment, provider: str) -> list[str]:
    warm = set(warm_hosts(dep))
    return sorted(i.name for i in instances(dep, provider) if i.alive and i.name not in warm)


def weight(dep: Deployment, provider: str, name: str) -> str:
    stat = Deployment.runtime(dep.admin_socket(balancer_dir(provider)), "show stat")
    header = stat.splitlines()[0].lstrip("# ").split(",")
    for line in stat.splitlines()[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        if row.get("pxname") == "web" and row.get("svname") == name:
            return row["weight"]
    return "absent"


def converged(dep: Deployment, provider: str) -> None:
    def check() -> bool:
        status = server_status(dep, provider)
        warm, live = warm_hosts(dep), members(dep, provider)
        return len(live) == 2 and len(warm) == 1 and all(status.get(n) == "UP" for n in live + warm)

    wait_until(check, 60, "2 members and 1 warm host, all UP", interval=0.5)


def filled(dep: Deployment, provider: str) -> str:
    """The warm pool site.yml filled (it refills the warm pools once the balancer runs): its host,
    weight 0 in the balancer, never answering."""
    converged(dep, provider)
    (warm,) = warm_hosts(dep)
    assert weight(dep, provider, warm) == "0"
    pages = {dep.get("/")[1].strip() for _ in range(30)}
    assert f"Hello {warm}!" not in pages, f"a warm host answered a client: {pages}"
    assert [e for e in events(dep) if e["action"] == "warm_launch" and e["instance"] == warm]
    return warm


@pytest.mark.parametrize("provider", ["local", "docker"])
def test_the_watcher_promotes_a_warm_host_under_load_and_the_heal_run_refills(
    deploy: Callable[..., Deployment], provider: str
) -> None:
    if shutil.which("start-stop-daemon") is None:
        pytest.fail("start-stop-daemon (Debian's dpkg) is missing: the watcher is started with it")
    dep = deploy(provider, **SETTINGS)
    warm = filled(dep, provider)
    with scheduled(dep, heal_timer_scheduler="none", heal_timer_watch=True) as schedule:
        wait_until(lambda: schedule.log.exists() and "polling" in schedule.log.read_text(), 20, "the watcher")
        victim = members(dep, provider)[0]
        load = Load("127.0.0.1", dep.frontend, clients=2, max_requests=60_000, max_seconds=110, pause=0.02)
        load.start()
        try:
            load.wait_for(f"Hello {victim}!")
            killed = time.monotonic()
            kill_hard(next(i for i in instances(dep, provider) if i.name == victim))
            load.wait_for(f"Hello {warm}!", timeout=30)
            serving = time.monotonic() - killed
            event = wait_for_replace(dep, victim, timeout=120)
            wait_until(lambda: len(warm_hosts(dep)) == 1 and warm not in warm_hosts(dep), 60, "the refill")
        finally:
            outcomes = load.stop()
        log = schedule.log.read_text()
    failed = [o for o in outcomes if o.status != 200]
    print(f"\n{provider} warm pool: kill -> the warm host serving {serving:.2f} s; {len(outcomes)} requests")
    assert not failed, failed[:10]
    assert re.search(
        rf"fast path: web/{re.escape(victim)} .* -> {re.escape(warm)} promoted from the warm pool", log
    )
    assert event["replacement"] == warm and event["adopted"] is True and event["promoted"] is True, event
    promote = [e for e in events(dep) if e["action"] == "warm_promote"]
    assert [e["instance"] for e in promote] == [warm], promote
    converged(dep, provider)
    assert warm in members(dep, provider) and weight(dep, provider, warm) != "0"
    (new_warm,) = warm_hosts(dep)
    assert weight(dep, provider, new_warm) == "0"


@pytest.mark.parametrize("provider", ["local"])
def test_faults_during_a_promotion_converge(deploy: Callable[..., Deployment], provider: str) -> None:
    dep = deploy(provider, **SETTINGS)
    warm = filled(dep, provider)

    # the warm host dies at the moment it would be promoted: the member is replaced by a launch,
    # the dead warm host is recycled by the refill
    victim = members(dep, provider)[0]
    for name in (warm, victim):
        kill_hard(next(i for i in instances(dep, provider) if i.name == name))
    ok(dep.play("heal.yml"))
    converged(dep, provider)
    assert victim not in members(dep, provider) and warm not in warm_hosts(dep) + members(dep, provider)
    replaced = [e for e in events(dep) if e["action"] == "replace" and e["instance"] == victim]
    assert replaced and not replaced[-1].get("promoted"), replaced
    assert [e for e in events(dep) if e["action"] == "warm_remove" and e["instance"] == warm]

    # a run logged the promotion (replace_launch naming the warm host) and died before it made it:
    # the host is still warm, so the next run plans again and promotes it
    (warm,) = warm_hosts(dep)
    victim = members(dep, provider)[0]
    kill_hard(next(i for i in instances(dep, provider) if i.name == victim))
    with (dep.root / "heal" / "events.jsonl").open("a") as log:
        line = {
            "time": time.time(),
            "pool": "web",
            "action": "replace_launch",
            "instance": victim,
            "reason": "killed test run",
            "duration": None,
            "replacement": warm,
            "promote": True,
        }
        log.write(json.dumps(line) + "\n")
    ok(dep.play("heal.yml"))
    converged(dep, provider)
    assert warm in members(dep, provider) and victim not in members(dep, provider)
    assert len([e for e in events(dep) if e["action"] == "warm_promote" and e["instance"] == warm]) == 1
