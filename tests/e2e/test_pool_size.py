"""The pool's size after failures beyond one host, end to end on the local provider: every host
killed at once is replaced (the circuit breaker is for partitions, not for dead hosts), and
site.yml, heal.yml and scale.yml agree on what counts - a dead instance is replaced or cleaned,
never launched beside - so the pool ends at its desired size and never above max.

One deployment (pool web: desired 4, max 6) for the module; each test starts from 4 hosts
alive and UP and an empty event log.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import pytest
from helpers.heal import events, fresh_pool, instances, kill_hard, server_status, shared_deployment
from helpers.load import Load
from helpers.procs import wait_until
from helpers.site import BIN, ROOT, Deployment

DESIRED, MAX = 4, 6


@pytest.fixture(scope="module")
def _pool4(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    yield from shared_deployment(tmp_path_factory.mktemp("pool4"), "local", desired=DESIRED, max=MAX)


@pytest.fixture
def pool4(_pool4: Deployment) -> Deployment:
    fresh_pool(_pool4, desired=DESIRED)
    return _pool4


def _alive(dep: Deployment) -> list[str]:
    return sorted(i.name for i in instances(dep, "local") if i.alive)


def _converged(dep: Deployment) -> None:
    """DESIRED hosts, all alive, all UP in HAProxy, no other server."""
    names = {i.name for i in instances(dep, "local")}
    assert len(names) == DESIRED and len(_alive(dep)) == DESIRED, instances(dep, "local")
    wait_until(lambda: server_status(dep, "local") == dict.fromkeys(names, "UP"), 30,
               f"{sorted(names)} UP and nothing else", interval=0.5)


def _play(dep: Deployment, playbook: str) -> subprocess.CompletedProcess[str]:
    run = dep.play(playbook)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    return run


@pytest.mark.e2e
@pytest.mark.slow
def test_every_host_killed_at_once_under_load_is_replaced_in_one_run(pool4: Deployment) -> None:
    dep = pool4
    before = instances(dep, "local")
    load = Load("127.0.0.1", dep.frontend, clients=4, max_requests=100_000, max_seconds=150,
                pause=0.02).start()
    try:
        load.wait_for(f"Hello {before[0].name}!")
        killed_at = time.monotonic()
        for inst in before:
            kill_hard(inst)
        wait_until(lambda: not any(i.alive for i in instances(dep, "local")), 10, "every host dead")
        heal = _play(dep, "heal.yml")
        assert "CIRCUIT OPEN" not in heal.stdout, heal.stdout[-4000:]
        _converged(dep)
        after = instances(dep, "local")
        load.wait_for(f"Hello {after[0].name}!", timeout=30)
        rebuilt_s = time.monotonic() - killed_at
    finally:
        outcomes = load.stop()
    assert not {i.name for i in before} & {i.name for i in after}
    replaced = [e for e in events(dep) if e["action"] == "replace"]
    assert sorted(str(e["instance"]) for e in replaced) == sorted(i.name for i in before), events(dep)
    assert all(e["serving"] is True for e in replaced), replaced
    assert "circuit_open" not in [e["action"] for e in events(dep)]
    failed = [o for o in outcomes if o.status != 200]
    print(f"\ntotal loss of {DESIRED} local hosts: all {DESIRED} serving again {rebuilt_s:.1f} s after "
          f"the kill (one heal.yml run); {len(outcomes)} requests, {len(failed)} failed (no host answered)")
    assert len(outcomes) > len(failed)


@pytest.mark.e2e
@pytest.mark.slow
def test_site_after_a_kill_replaces_the_dead_host_and_heal_then_has_nothing_to_do(pool4: Deployment) -> None:
    dep = pool4
    victim = instances(dep, "local")[0]
    kill_hard(victim)
    wait_until(lambda: victim.name not in _alive(dep), 10, "the victim dead")
    site = _play(dep, "site.yml")
    assert victim.name in site.stdout  # cleaned by name
    assert victim.name not in {i.name for i in instances(dep, "local")}
    _converged(dep)
    _play(dep, "heal.yml")
    _converged(dep)
    assert [e["action"] for e in events(dep) if e["action"] in ("replace", "replace_launch")] == []


@pytest.mark.e2e
@pytest.mark.slow
def test_site_after_a_total_loss_rebuilds_the_pool_to_desired_not_beside_the_dead(pool4: Deployment) -> None:
    dep = pool4
    for inst in instances(dep, "local"):
        kill_hard(inst)
    wait_until(lambda: not _alive(dep), 10, "every host dead")
    _play(dep, "site.yml")
    _converged(dep)
    _play(dep, "heal.yml")
    _converged(dep)


@pytest.mark.e2e
@pytest.mark.slow
def test_site_and_heal_at_once_after_a_kill_end_at_desired(pool4: Deployment) -> None:
    """site.yml takes the pool lock heal.yml takes: whichever runs second counts after the
    first one acted (site waits for the lock; a heal run that finds site's lock changes nothing)."""
    dep = pool4
    victim = instances(dep, "local")[0]
    kill_hard(victim)
    wait_until(lambda: victim.name not in _alive(dep), 10, "the victim dead")

    def start(playbook: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(BIN / "ansible-playbook"), "-i", str(dep.inventory), str(ROOT / "playbooks" / playbook),
             "-e", json.dumps(dep.extra_vars)],
            cwd=ROOT, env=dep.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )

    procs = [start("heal.yml"), start("site.yml")]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[-4000:] for o in outs]
    _play(dep, "heal.yml")  # whatever the order was, one more run finds nothing to add
    _converged(dep)


@pytest.mark.e2e
@pytest.mark.slow
def test_scale_counts_a_dead_host_and_heal_replaces_it_so_the_pool_stays_desired(pool4: Deployment) -> None:
    dep = pool4
    victim = instances(dep, "local")[0]
    kill_hard(victim)
    wait_until(lambda: victim.name not in _alive(dep), 10, "the victim dead")
    _play(dep, "scale.yml")  # no policy: keeps desired, counting the dead host (heal.yml's to replace)
    assert len(instances(dep, "local")) == DESIRED
    _play(dep, "heal.yml")
    _converged(dep)
