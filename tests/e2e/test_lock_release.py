"""The pool lock is given back whenever a run fails after taking it, not only when the
controller's play fails: here every host of a later play fails (the provisioning of every new
host - nginx_web rejects its port), Ansible stops the playbook before plays/release.yml, and the
rescue of that play (tasks/run_failed.yml) gives the lease back: it is empty right after the
failed run, not left to a dead owner until pool_lock's stale check or its ttl, and the next run
is not "locked". Nor does the failed run act on the balancer once the lock is given back (it
used to re-render and wait 3 minutes for a host whose provisioning had failed)."""

from __future__ import annotations

import json

import pytest
from helpers.heal import instances, kill_hard, server_status
from helpers.site import Deployment

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BAD_PORT = {"nginx_web_port": "not a port"}  # nginx_web's argument spec: an int


def lease(dep: Deployment) -> dict[str, object]:
    lock = dep.root / "heal" / "heal.lock"
    value: dict[str, object] = json.loads(lock.read_text() or "{}")
    return value


def test_scale_gives_the_lock_back_when_every_new_host_fails_provisioning(local_pool: Deployment) -> None:
    dep = local_pool
    metric = dep.root / "scale" / "web.desired"
    metric.parent.mkdir(parents=True, exist_ok=True)
    metric.write_text("3\n")
    dep.extra_vars["hapool_pools"][0]["scale"] = {
        "policies": [{"type": "file", "path": str(metric)}],
        "scale_out_cooldown": 0,
        "scale_in_cooldown": 0,
        "scale_in_stabilization": 0,
    }
    before = {i.name for i in instances(dep, "local")}
    try:
        run = dep.play("scale.yml", **BAD_PORT)
        assert run.returncode != 0, run.stdout[-4000:]
        assert "nginx_web_port" in run.stdout, run.stdout[-4000:]
        launched = {i.name for i in instances(dep, "local")} - before
        assert len(launched) == 1, launched  # launched, then its provisioning failed
        assert lease(dep) == {}, run.stdout[-4000:]  # given back by the failed run itself
        # The next run takes the lock (not "locked") and deals with the host the failed run left
        # unprovisioned and unregistered (heal.yml replaces it): the pool is whole again.
        heal = dep.play("heal.yml")
        assert heal.returncode == 0, heal.stdout[-4000:] + heal.stderr[-2000:]
        assert "locked:" not in heal.stdout, heal.stdout[-4000:]
        names = {i.name for i in instances(dep, "local")}
        assert len(names) == 3 and before <= names, names
        assert server_status(dep, "local") == dict.fromkeys(names, "UP")
        assert lease(dep) == {}
    finally:
        metric.write_text("2\n")
        back = dep.play("scale.yml")
    assert back.returncode == 0, back.stdout[-4000:]
    assert len(instances(dep, "local")) == 2


def test_heal_gives_the_lock_back_when_its_replacement_fails_provisioning(local_pool: Deployment) -> None:
    dep = local_pool
    before = instances(dep, "local")
    victim = before[0]
    kill_hard(victim)
    run = dep.play("heal.yml", **BAD_PORT)
    assert run.returncode != 0, run.stdout[-4000:]
    assert "nginx_web_port" in run.stdout, run.stdout[-4000:]
    assert lease(dep) == {}, run.stdout[-4000:]
    # Having given the lock back, the failed run touched the balancer no more: it did not render
    # its replacement in, nor waited for it (another run may hold the lock by then).
    replacement = {i.name for i in instances(dep, "local")} - {victim.name} - {i.name for i in before}
    assert len(replacement) == 1, replacement
    assert not replacement & set(server_status(dep, "local")), server_status(dep, "local")
    # The next run takes the lock and deals with the replacement the failed run launched.
    again = dep.play("heal.yml")
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-2000:]
    assert "locked:" not in again.stdout, again.stdout[-4000:]
    names = {i.name for i in instances(dep, "local")}
    assert victim.name not in names and len(names) == 2, names
    assert server_status(dep, "local") == dict.fromkeys(names, "UP")


def test_site_gives_the_lock_back_when_every_web_host_fails_provisioning(local_pool: Deployment) -> None:
    dep = local_pool
    run = dep.play("site.yml", **BAD_PORT)
    assert run.returncode != 0, run.stdout[-4000:]
    assert "nginx_web_port" in run.stdout, run.stdout[-4000:]
    assert lease(dep) == {}, run.stdout[-4000:]
    again = dep.play("site.yml")
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-2000:]
