"""scale.yml and the pool lock: a run that finds the lock held by another run (heal.yml,
scale.yml, site.yml) says "locked" and changes nothing - no host launched, no event, the other
run's lease untouched - although the pool's metric file asks for one more host."""

from __future__ import annotations

import time

import pytest
from ansible.module_utils.hapool.lock import acquire
from helpers.heal import events, instances, server_status
from helpers.site import Deployment

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_a_scale_run_that_finds_the_pool_lock_held_changes_nothing(local_pool: Deployment) -> None:
    dep = local_pool
    metric = dep.root / "scale" / "web.desired"
    metric.parent.mkdir(parents=True, exist_ok=True)
    metric.write_text("3\n")
    dep.extra_vars["hapool_pools"][0]["scale"] = {
        "policies": [{"type": "file", "path": str(metric)}],
        "scale_out_cooldown": 0, "scale_in_cooldown": 0, "scale_in_stabilization": 0,
    }
    before = sorted(i.name for i in instances(dep, "local"))
    lock = dep.root / "heal" / "heal.lock"
    held = acquire(str(lock), "heal-someotherrun", ttl=600, now=time.time())  # no pid: only the ttl counts
    assert held.acquired
    lease = lock.read_bytes()
    try:
        run = dep.play("scale.yml")
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
        assert "locked: scale run" in run.stdout and "heal-someotherrun" in run.stdout, run.stdout[-4000:]
        assert sorted(i.name for i in instances(dep, "local")) == before
        assert sorted(server_status(dep, "local")) == before
        assert events(dep) == []
        assert lock.read_bytes() == lease  # the holder's lease, untouched
    finally:
        lock.unlink(missing_ok=True)
    # With the lock free, the same run scales out (the locked run had something to do).
    again = dep.play("scale.yml")
    assert again.returncode == 0, again.stdout[-4000:]
    assert len(instances(dep, "local")) == 3
    metric.write_text("2\n")
    back = dep.play("scale.yml")
    assert back.returncode == 0, back.stdout[-4000:]
    assert len(instances(dep, "local")) == 2
    # A run with nothing to do gives the lock back before its later plays (provisioning, the
    # re-render): the watcher's scale-out check then need not wait for the end of a tick.
    idle = dep.play("scale.yml")
    assert idle.returncode == 0, idle.stdout[-4000:]
    early = idle.stdout.split("TASK [Give the pool lock back at once", 1)[1].split("PLAY [", 1)[0]
    assert "included:" in early and "TASK [Give the pool lock back]" in early, early
    assert "ok: [localhost]" in early.split("TASK [Give the pool lock back]", 1)[1], early
