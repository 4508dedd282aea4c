"""Bad values are refused where they enter, and the running pool is untouched.

The issue: site.yml with a pool weight of ``abc`` succeeded and rendered ``weight 0`` for every
server (every request answered 503 until the next good run), and heal.yml and site.yml accepted
``min: abc``. Now every playbook validates the pools first (playbooks/tasks/pool_settings.yml,
module pool_validate), and the haproxy role refuses a weight it cannot read instead of casting
it to 0.

On the shared local-provider deployment (conftest.py's ``local_pool``: 2 hosts alive and UP):
after each refused run the balancer's configuration file is byte-identical, the hosts and the
event log are the same, and requests still answer 200.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from helpers.heal import instances
from helpers.site import Deployment

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def snapshot(dep: Deployment) -> tuple[bytes, list[tuple[str, bool]], bytes | None]:
    """The balancer's configuration file, the hosts (name, alive) and the event log."""
    config = dep.root / "local" / "haproxy" / "haproxy.cfg"
    log = dep.root / "heal" / "events.jsonl"
    hosts = sorted((i.name, i.alive) for i in instances(dep, "local"))
    return config.read_bytes(), hosts, log.read_bytes() if log.exists() else None


def serving(dep: Deployment, requests: int = 20) -> list[int]:
    return [dep.get()[0] for _ in range(requests)]


def with_pool(dep: Deployment, **over: Any) -> None:
    pool = copy.deepcopy(dep.extra_vars["hapool_pools"][0])
    dep.extra_vars["hapool_pools"] = [{**pool, **over}]


def assert_untouched(dep: Deployment, before: tuple[bytes, list[tuple[str, bool]], bytes | None]) -> None:
    assert snapshot(dep) == before
    assert serving(dep) == [200] * 20


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"weight": "abc"},
         "pool web: weight must be a number, got 'abc' (expected a whole number from 0 to 256)"),
        ({"check": {"path": "/health", "inter": "2x", "rise": 1, "fall": 2}},
         "pool web: check.inter must be a time such as 2000, '2s' or '500ms', got '2x'"),
    ],
    ids=["weight", "check-inter"],
)
def test_site_refuses_a_bad_pool_value_and_changes_nothing(
    local_pool: Deployment, over: dict[str, Any], message: str
) -> None:
    dep = local_pool
    before = snapshot(dep)
    assert len(before[1]) == 2 and serving(dep) == [200] * 20
    with_pool(dep, **over)
    run = dep.play("site.yml")
    assert run.returncode != 0, run.stdout[-3000:]
    assert message in run.stdout, run.stdout[-3000:]
    assert "Nothing was launched or destroyed" in run.stdout
    # the failure on localhost stops the playbook: no web host or balancer play runs
    assert "PLAY [Provision the web hosts" not in run.stdout, run.stdout[-3000:]
    assert "PLAY [Provision the load balancers" not in run.stdout, run.stdout[-3000:]
    assert_untouched(dep, before)


def test_the_haproxy_role_refuses_a_host_weight_that_is_not_a_number(local_pool: Deployment) -> None:
    """A host's hapool_weight is not a pool setting: the role itself refuses it (model.yml)
    before it renders anything, where `| int` used to make it a weight of 0."""
    dep = local_pool
    before = snapshot(dep)
    run = dep.play("site.yml", hapool_weight="abc")
    assert run.returncode != 0, run.stdout[-3000:]
    assert "Server weights must be whole numbers from 0 to 256" in run.stdout, run.stdout[-3000:]
    assert ', server web-' in run.stdout and ': weight "abc"' in run.stdout, run.stdout[-3000:]
    assert_untouched(dep, before)


@pytest.mark.parametrize("playbook", ["heal.yml", "scale.yml"])
def test_heal_and_scale_refuse_min_abc_and_change_nothing(local_pool: Deployment, playbook: str) -> None:
    dep = local_pool
    before = snapshot(dep)
    lock = dep.root / "heal" / "heal.lock"
    lock_before = lock.read_bytes() if lock.exists() else None
    with_pool(dep, min="abc")
    run = dep.play(playbook)
    assert run.returncode != 0, run.stdout[-3000:]
    assert "pool web: min must be a number, got 'abc' (expected a whole number >= 0)" in run.stdout, (
        run.stdout[-3000:]
    )
    assert "Nothing was launched or destroyed" in run.stdout
    assert_untouched(dep, before)
    assert (lock.read_bytes() if lock.exists() else None) == lock_before  # not even the lock was taken


def test_a_good_run_after_the_refused_ones_still_converges(local_pool: Deployment) -> None:
    """The validator's normalized pools drive the launch: "2" as desired still means 2 hosts."""
    dep = local_pool
    before = snapshot(dep)
    with_pool(dep, desired="2", weight="1")
    run = dep.play("site.yml")
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    assert snapshot(dep)[1] == before[1]
    config = (dep.root / "local" / "haproxy" / "haproxy.cfg").read_text()
    assert config.count(" weight 1") == 2, config
    assert serving(dep) == [200] * 20
