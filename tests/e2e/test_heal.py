"""heal.yml end to end: a backend killed hard under load is replaced with no failed request;
two runs at once; the backoff of a host that dies right after launch.

Every deployment is private (a short $HAPOOL_STATE_DIR, free ports) and torn down, with
whatever teardown.yml leaves destroyed through the provider. The local-provider tests share
one deployment (the ``local_pool`` fixture of conftest.py): each one starts from 2 hosts alive
and UP and an empty event log, as after site.yml. The circuit breaker (every server DOWN, the
hosts alive: nothing replaced, nothing destroyed) is tested through reconcile.yml, whose first
step is heal.yml (tests/e2e/test_reconcile.py).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.heal import (
    Deploy,
    balancer_dir,
    deployments,
    events,
    instances,
    kill_hard,
    server_status,
)
from helpers.load import Load
from helpers.procs import wait_until
from helpers.site import Deployment


@pytest.fixture
def deploy(tmp_path: Path) -> Iterator[Deploy]:
    yield from deployments(tmp_path)

def _assert_config_retries(dep: Deployment, provider: str) -> None:
    cfg = (dep.root / balancer_dir(provider) / "haproxy" / "haproxy.cfg").read_text()
    assert "retries 3" in cfg and "option redispatch 1" in cfg and "retry-on conn-failure" in cfg
    assert "option httpchk" in cfg and re.search(r"^\s*default-server .*\bcheck\b", cfg, re.MULTILINE), cfg


def _kill_under_load_and_heal(dep: Deployment, provider: str) -> None:
    _assert_config_retries(dep, provider)
    before = instances(dep, provider)
    assert len(before) == 2 and all(i.alive for i in before)
    victim, survivor = before
    load = Load("127.0.0.1", dep.frontend, clients=4, max_requests=100_000, max_seconds=85,
                pause=0.01).start()
    try:
        load.wait_for(f"Hello {victim.name}!")
        killed_at = time.monotonic()
        kill_hard(victim)
        heal = dep.play("heal.yml")
        assert heal.returncode == 0, heal.stdout[-6000:] + heal.stderr[-2000:]
        after = instances(dep, provider)
        names = {i.name for i in after}
        assert victim.name not in names and survivor.name in names and len(after) == 2, names
        (replacement,) = names - {survivor.name}
        load.wait_for(f"Hello {replacement}!", timeout=20)
        serving_s = time.monotonic() - killed_at
    finally:
        outcomes = load.stop()
    failed = [o for o in outcomes if o.status != 200]
    served = {o.body for o in outcomes}
    print(f"\n{provider}: kill -> replacement serving {serving_s:.1f} s; {len(outcomes)} requests, "
          f"{len(failed)} failed")
    assert not failed, failed[:10]
    assert f"Hello {replacement}!" in served and f"Hello {survivor.name}!" in served
    replaced = [e for e in events(dep) if e["action"] == "replace"]
    assert len(replaced) == 1, events(dep)
    event = replaced[0]
    assert event["instance"] == victim.name and event["replacement"] == replacement
    assert event["pool"] == "web" and event["reason"] and float(event["duration"]) > 0  # type: ignore[arg-type]
    assert server_status(dep, provider) == {survivor.name: "UP", replacement: "UP"}


@pytest.mark.e2e
@pytest.mark.slow
def test_local_host_killed_hard_under_load_is_replaced_with_no_failed_request(local_pool: Deployment) -> None:
    _kill_under_load_and_heal(local_pool, "local")


@pytest.mark.docker
@pytest.mark.slow
def test_docker_host_killed_under_load_is_replaced_with_no_failed_request(deploy: Deploy) -> None:
    _kill_under_load_and_heal(deploy("docker"), "docker")


@pytest.mark.e2e
@pytest.mark.slow
def test_a_live_host_held_down_past_its_grace_period_is_replaced(local_pool: Deployment) -> None:
    """The main rule, without a dead process: the host's health endpoint answers 503 (its
    health file is gone), so HAProxy holds it DOWN while the provider still reports it alive;
    past its grace period heal.yml replaces it, with no failed request meanwhile."""
    dep = local_pool
    victim, survivor = instances(dep, "local")
    (health,) = [p for p in dep.root.rglob("hapool-health.txt") if victim.name in p.parts]
    load = Load("127.0.0.1", dep.frontend, clients=2, max_requests=50_000, max_seconds=85, pause=0.02).start()
    try:
        health.unlink()
        wait_until(lambda: server_status(dep, "local").get(victim.name, "").startswith("DOWN"), 20, "DOWN")
        assert all(i.alive for i in instances(dep, "local"))  # sick, not dead
        heal = dep.play("heal.yml")
        assert heal.returncode == 0, heal.stdout[-6000:] + heal.stderr[-2000:]
    finally:
        outcomes = load.stop()
    (event,) = [e for e in events(dep) if e["action"] == "replace"]
    assert event["instance"] == victim.name and "HAProxy holds it DOWN" in str(event["reason"]), event
    assert event["serving"] is True, event
    replacement = str(event["replacement"])
    assert {i.name for i in instances(dep, "local")} == {survivor.name, replacement}
    assert server_status(dep, "local") == {survivor.name: "UP", replacement: "UP"}
    failed = [o for o in outcomes if o.status != 200]
    assert outcomes and not failed, failed[:5]


@pytest.mark.e2e
@pytest.mark.slow
def test_check_mode_prints_the_plan_and_two_runs_at_once_only_one_acts(local_pool: Deployment) -> None:
    dep = local_pool
    victim, survivor = instances(dep, "local")
    kill_hard(victim)
    wait_until(lambda: server_status(dep, "local").get(victim.name, "").startswith("DOWN"), 20, "DOWN")

    check = subprocess.run(
        [*_cmd(dep, "heal.yml"), "--check"], cwd=dep.inventory.parents[1], env=dep.env, capture_output=True,
        text=True, timeout=300, check=False,
    )
    assert check.returncode == 0, check.stdout[-4000:]
    assert re.search(rf"web: replace \[\W*{victim.name}\W*\]", check.stdout), check.stdout[-4000:]
    assert {i.name for i in instances(dep, "local")} == {victim.name, survivor.name}
    assert events(dep) == []

    procs = [subprocess.Popen(_cmd(dep, "heal.yml"), cwd=dep.inventory.parents[1], env=dep.env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    locked = [out for out in outs if "locked: heal run" in out]
    assert len(locked) == 1, [o[-3000:] for o in outs]
    replaced = [e for e in events(dep) if e["action"] == "replace"]
    assert len(replaced) == 1 and replaced[0]["instance"] == victim.name, events(dep)
    assert len(instances(dep, "local")) == 2


def _cmd(dep: Deployment, playbook: str) -> list[str]:
    from helpers.site import BIN, ROOT  # noqa: PLC0415

    return [str(BIN / "ansible-playbook"), "-i", str(dep.inventory), str(ROOT / "playbooks" / playbook),
            "-e", json.dumps(dep.extra_vars)]


@pytest.mark.e2e
@pytest.mark.slow
def test_a_replacement_that_dies_right_after_launch_is_backed_off(local_pool: Deployment) -> None:
    dep = local_pool
    dep.extra_vars["hapool_pools"][0]["backoff"] = 600  # restored by the fixture
    victim, _ = instances(dep, "local")
    kill_hard(victim)
    first = dep.play("heal.yml")
    assert first.returncode == 0, first.stdout[-5000:]
    (replacement,) = [e["replacement"] for e in events(dep) if e["action"] == "replace"]
    crashed = next(i for i in instances(dep, "local") if i.name == replacement)
    kill_hard(crashed)  # the replacement dies at once, like a crash-looping image
    second = dep.play("heal.yml")
    assert second.returncode == 0, second.stdout[-5000:]
    skips = [e for e in events(dep) if e["action"] == "backoff_skip"]
    assert [e["instance"] for e in skips] == [replacement], events(dep)
    assert float(skips[0]["not_before"]) > time.time() + 500  # type: ignore[arg-type]
    assert [e["action"] for e in events(dep)].count("replace") == 1
    assert replacement in {i.name for i in instances(dep, "local")}  # not destroyed


CRASH_IMAGE = "hapool/crashloop:test"


@pytest.fixture(scope="module")
def crash_image() -> Iterator[str]:
    """An image whose container exits right after it starts, like a broken release."""
    dockerfile = 'FROM hapool/base:bookworm\nCMD ["sh", "-c", "echo bad release >&2; exit 3"]\n'
    build = subprocess.run(["docker", "build", "-q", "-t", CRASH_IMAGE, "-"], input=dockerfile, text=True,
                           capture_output=True, timeout=300, check=False)
    assert build.returncode == 0, build.stdout + build.stderr
    yield CRASH_IMAGE
    subprocess.run(["docker", "rmi", "-f", CRASH_IMAGE], capture_output=True, check=False)


@pytest.mark.docker
@pytest.mark.slow
def test_a_crash_looping_image_is_backed_off_and_the_dead_host_kept(deploy: Deploy, crash_image: str) -> None:
    """The pool's image is replaced by one that exits at once, then a host dies: the replacement
    cannot launch, so the dead host is kept (the pool keeps its size), the run fails loudly and
    logs replace_failed; the next run backs off instead of launching again; once the image is
    good again and the backoff is over, the next run replaces the host."""
    dep = deploy("docker", backoff=25)
    victim, survivor = instances(dep, "docker")
    good_launch = dict(dep.extra_vars["hapool_pools"][0]["launch"])
    dep.extra_vars["hapool_pools"][0]["launch"] = {**good_launch, "image": crash_image}
    kill_hard(victim)

    first = dep.play("heal.yml")
    assert first.returncode != 0, first.stdout[-5000:]
    assert f"replacing web/{victim.name} failed" in first.stdout, first.stdout[-5000:]
    assert "exited right after start" in first.stdout, first.stdout[-5000:]
    after = instances(dep, "docker")
    assert {i.name for i in after} == {victim.name, survivor.name}, after
    leftovers = subprocess.run(["docker", "ps", "-aq", "--filter", f"ancestor={crash_image}"],
                               capture_output=True, text=True, check=True).stdout.split()
    assert leftovers == [], "the container of the failed launch was left behind"
    (failed,) = [e for e in events(dep) if e["action"] == "replace_failed"]
    assert failed["instance"] == victim.name

    second = dep.play("heal.yml")
    assert second.returncode == 0, second.stdout[-5000:]
    skips = [e for e in events(dep) if e["action"] == "backoff_skip"]
    assert [e["instance"] for e in skips] == [victim.name], events(dep)
    not_before = float(skips[0]["not_before"])  # type: ignore[arg-type]
    assert not_before == pytest.approx(float(failed["time"]) + 25, abs=1)  # type: ignore[arg-type]
    assert [e["action"] for e in events(dep)].count("replace_failed") == 1  # no second launch
    assert {i.name for i in instances(dep, "docker")} == {victim.name, survivor.name}

    dep.extra_vars["hapool_pools"][0]["launch"] = good_launch
    time.sleep(max(0.0, not_before - time.time()) + 1)
    third = dep.play("heal.yml")
    assert third.returncode == 0, third.stdout[-5000:]
    (replaced,) = [e for e in events(dep) if e["action"] == "replace"]
    assert replaced["instance"] == victim.name and replaced["serving"] is True, replaced
    assert server_status(dep, "docker") == {survivor.name: "UP", str(replaced["replacement"]): "UP"}
