"""reconcile.yml end to end on the local provider: heal, then scale.

When heal.yml fails - here its circuit breaker opens, every live host's server being DOWN (the
nginx processes are stopped, not killed: they stop answering) - the run stops there: nothing is
scaled although the pool's metric file asks for one more host, and the pool lock is given back.
On a healthy pool the same run scales out (so the first test is not passing on a scale.yml that
could not have acted anyway).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path

import pytest
from helpers.heal import events, instances, nginx_pids, server_status
from helpers.procs import wait_until
from helpers.site import Deployment

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SCALE_ACTIONS = {"scale_out", "scale_in", "scale_launch", "scale_drain", "scale_remove"}


def _ask_for(dep: Deployment, hosts: int) -> None:
    """A file policy asking for ``hosts`` hosts, with no cooldown or stabilization in the way."""
    metric = dep.root / "scale" / "web.desired"
    metric.parent.mkdir(parents=True, exist_ok=True)
    metric.write_text(f"{hosts}\n")
    dep.extra_vars["hapool_pools"][0]["scale"] = {
        "policies": [{"type": "file", "path": str(metric)}],
        "scale_out_cooldown": 0, "scale_in_cooldown": 0, "scale_in_stabilization": 0, "warmup": 0,
    }


def _lease(dep: Deployment) -> dict[str, object]:
    path: Path = dep.root / "heal" / "heal.lock"
    return json.loads(path.read_text() or "{}") if path.exists() else {}


def test_when_heal_fails_nothing_is_scaled(local_pool: Deployment) -> None:
    dep = local_pool
    before = sorted(i.name for i in instances(dep, "local"))
    _ask_for(dep, 3)
    stopped = [pid for inst in instances(dep, "local") for pid in nginx_pids(inst)]
    try:
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        wait_until(lambda: all(s.startswith("DOWN") for s in server_status(dep, "local").values()), 30,
                   "every server DOWN")
        run = dep.play("reconcile.yml")
        assert run.returncode != 0, run.stdout[-4000:]
        assert "circuit breaker open" in run.stdout, run.stdout[-4000:]
        assert "Plan the size of every pool" not in run.stdout, run.stdout[-4000:]  # scale.yml never ran
        actions = [e["action"] for e in events(dep)]
        # heal.yml (reconcile's first step) replaced nothing and destroyed nothing: the circuit
        # breaker is for live hosts HAProxy holds DOWN (a partition), not for dead ones
        assert "circuit_open" in actions and "replace" not in actions, actions
        assert not SCALE_ACTIONS & set(actions), actions
        assert sorted(i.name for i in instances(dep, "local")) == before
        assert sorted(server_status(dep, "local")) == before
        assert _lease(dep) == {}  # given back
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def test_on_a_healthy_pool_reconcile_heals_nothing_and_scales(local_pool: Deployment) -> None:
    dep = local_pool
    before = {i.name for i in instances(dep, "local")}
    _ask_for(dep, 3)
    run = dep.play("reconcile.yml")
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    after = {i.name for i in instances(dep, "local")}
    assert before < after and len(after) == 3
    actions = [e["action"] for e in events(dep)]
    assert "scale_out" in actions and "scale_launch" in actions, actions
    assert not {"replace", "circuit_open"} & set(actions), actions
    assert set(server_status(dep, "local")) == after
    assert _lease(dep) == {}
    # Back to the two hosts the shared deployment's next test expects.
    _ask_for(dep, 2)
    back = dep.play("scale.yml")
    assert back.returncode == 0, back.stdout[-6000:]
    assert len(instances(dep, "local")) == 2
