"""The heal watcher's scale-out fast path end to end, local and docker (real nginx, HAProxy,
Docker engine, Ansible; the watcher started by heal_timer.yml with reconcile.yml ticks).

A template pool of 1 host whose file policy then asks for 3, under load: the watcher plans as
scale.yml does, launches the 2 new hosts from the current template and adds them at runtime
(``hapool.fastscale``), and runs a tick; the tick's scale.yml adopts them (re-renders the
balancer, logs ``scale_launch`` with ``adopted``). No request fails, both hosts serve, the
configuration lists them, every host is on the current version. The times are printed, not
asserted (figures are the bench's: docs/benchmarks.md).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers.chaos import config_servers
from helpers.heal import deployments, events, instances
from helpers.load import Load
from helpers.procs import wait_until
from helpers.schedule import scheduled
from helpers.site import Deployment

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def deploy(tmp_path: Path) -> Iterator[Callable[..., Deployment]]:
    yield from deployments(tmp_path)


def ok(run: object) -> None:
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]  # type: ignore[attr-defined]


@pytest.mark.parametrize("provider", ["local", "docker"])
def test_the_watcher_scales_a_template_pool_out_itself_and_scale_yml_adopts_the_hosts(
    deploy: Callable[..., Deployment], provider: str
) -> None:
    if shutil.which("start-stop-daemon") is None:
        pytest.fail("start-stop-daemon (Debian's dpkg) is missing: the watcher is started with it")
    dep = deploy(provider, desired=1, min=1, max=4, template={"enabled": True})
    metric = dep.root / "scale" / "web.desired"
    metric.parent.mkdir(parents=True, exist_ok=True)
    dep.extra_vars["hapool_pools"][0]["scale"] = {
        "policies": [{"type": "file", "path": str(metric)}],
        "scale_out_cooldown": 0, "scale_in_cooldown": 0, "scale_in_stabilization": 0, "warmup": 0,
    }  # fmt: skip
    ok(dep.play("heal.yml"))  # writes the fast-path file with the scale settings
    current = json.loads((dep.root / "templates" / "web" / "index.json").read_text())["current"]
    [first] = [i.name for i in instances(dep, provider) if i.alive]

    with scheduled(
        dep, heal_timer_scheduler="none", heal_timer_watch=True, heal_timer_playbook="reconcile.yml"
    ) as schedule:
        wait_until(lambda: schedule.log.exists() and "polling" in schedule.log.read_text(), 20, "the watcher")
        load = Load("127.0.0.1", dep.frontend, clients=2, max_requests=60_000, max_seconds=150, pause=0.02)
        load.start()
        try:
            load.wait_for(f"Hello {first}!")
            metric.write_text("3\n")
            asked = time.monotonic()
            said = re.compile(r"fast scale-out: web 1 -> 3: (.*) \(")

            def launched() -> bool:
                return bool(said.search(schedule.log.read_text()))

            wait_until(launched, 30, "the watcher's scale-out", interval=0.1)
            new = sorted(set(re.findall(r"(web-[0-9a-f]+) launched from template", schedule.log.read_text())))
            assert len(new) == 2, schedule.log.read_text()[-3000:]
            for name in new:
                load.wait_for(f"Hello {name}!", timeout=30)
            serving = time.monotonic() - asked

            def adopted() -> list[dict[str, object]]:
                return [e for e in events(dep) if e["action"] == "scale_launch" and e["instance"] in new]

            wait_until(lambda: len(adopted()) == 2, 150, "scale.yml's scale_launch events", interval=0.5)
        finally:
            outcomes = load.stop()
        log = schedule.log.read_text()

    failed = [o for o in outcomes if o.status != 200]
    launches = adopted()
    print(
        f"\n{provider} scale-out fast path: metric 1 -> 3, both new hosts serving after {serving:.1f} s "
        f"(client's view); scale_launch serving_seconds {[e['serving_seconds'] for e in launches]}, "
        f"durations {[e['duration'] for e in launches]}; "
        f"{len(outcomes)} requests, {len(failed)} failed"
    )
    assert not failed, failed[:10]
    assert "running a heal tick" in log
    out = [e for e in events(dep) if e["action"] == "scale_out"]
    assert len(out) == 1 and out[0]["by"] == "watcher" and sorted(out[0]["hosts"]) == new, out  # type: ignore[call-overload]
    registered = [e for e in events(dep) if e["action"] == "scale_register"]
    assert sorted(str(e["instance"]) for e in registered) == new, registered
    assert all(e["registered"] is True and e["template"] == current for e in registered), registered
    for event in launches:
        assert event["adopted"] is True and event["template"] == current, event
        assert event["serving_seconds"] is not None, event
    alive = {i.name: i.extra.get("template") for i in instances(dep, provider) if i.alive}
    assert sorted(alive) == sorted([first, *new]) and set(alive.values()) == {current}, alive
    if provider == "local":
        assert config_servers(dep) == set(alive)  # the re-render lists them
    assert {f"Hello {name}!" for name in alive} == dep.hosts_answering(3)
