"""A hung host under load: its nginx stopped with SIGSTOP (local provider) or its container
paused (docker). It accepts connections and never answers, so HAProxy holds it DOWN only
after its checks time out, and a drain of its sessions would never end.

What the pool does about it (docs/healing.md, "A hung host"):

* the balancer sends a GET that got no answer within the pool's ``timeout_server`` to another
  host (``retry-on response-timeout``, ``option redispatch 1``): clients wait that long, they
  get no error;
* heal.yml takes the DOWN server out at once (maint, ``shutdown sessions server``, del: the
  sessions' GETs are answered by another host), destroys the stopped host (its processes
  gone, a paused container removed) and the pool is back to ``desired``, never above ``max``.

Figures (failed requests, seconds until HAProxy held the host DOWN and until it was out of
the pool) are printed: run with ``-s``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from ansible.module_utils.hapool.providers import DESTROYED, get_provider
from ansible.module_utils.hapool.providers.docker import DockerProvider
from helpers.chaos import PeakWatch, config_servers, view
from helpers.heal import Deploy, deployments, events, fresh_pool, instances, shared_deployment
from helpers.hung import ServerWatch, alive_pids, failures, hang, kinds, resume
from helpers.load import Load
from helpers.procs import wait_until
from helpers.site import Deployment

DESIRED = 3
MAX = 4
# Failed requests allowed in the hung-then-continued test: 0 in 8 of its 9 runs; one run, while
# other tests restarted balancers on the same 2-core machine (load 5), failed with a count that
# was not recorded. The old code failed one request per load client there (4: each one's 5-s
# timeout on the hung host). The other tests allow none (0 in every run).
RESUMED_FAILED_BUDGET = 1
# The pool as the inventories have it: 3 s of patience for an answer, then another host.
POOL: dict[str, Any] = {"desired": DESIRED, "max": MAX, "timeout_server": "3s"}


@pytest.fixture(scope="module")
def hung_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """site.yml on the local provider (3 hosts), shared by the local tests of this module."""
    yield from shared_deployment(tmp_path_factory.mktemp("hung"), "local", **POOL)


@pytest.fixture
def local(hung_pool: Deployment) -> Deployment:
    fresh_pool(hung_pool, "local", desired=DESIRED)
    return hung_pool


@pytest.fixture
def deploy(tmp_path: Path) -> Iterator[Deploy]:
    yield from deployments(tmp_path)


def _load(dep: Deployment) -> Load:
    # Clients give up after 5 s: the 504 after 30 s is a failure here.
    return Load("127.0.0.1", dep.frontend, clients=4, max_requests=200_000, max_seconds=240, pause=0.01,
                timeout=5.0).start()


def _converged(dep: Deployment, provider: str, timeout: float) -> set[str]:
    def done() -> bool:
        v = view(dep, provider)
        return v.converged_to == DESIRED and (provider != "local" or config_servers(dep) == set(v.provider))

    wait_until(done, timeout, f"{DESIRED} hosts alive and UP, provider == HAProxy (== config)", interval=0.5)
    return set(view(dep, provider).provider)


def _hang_heal_once(dep: Deployment, provider: str) -> None:
    """Hang one of the 3 hosts under load, run heal.yml once HAProxy holds it DOWN (or, for
    a paused container, which the provider reports dead, at once), check and print."""
    cfg = (dep.root / ("local" if provider == "local" else f"balancer-{provider}") / "haproxy" /
           "haproxy.cfg").read_text()
    assert "retry-on conn-failure empty-response junk-response response-timeout" in cfg, cfg
    assert "timeout server 3s" in cfg
    assert "http-request disable-l7-retry unless { method GET HEAD OPTIONS }" in cfg
    before = instances(dep, provider)
    assert len(before) == DESIRED and all(i.alive for i in before)
    victim = before[0]
    load = _load(dep)
    watch = ServerWatch(dep, provider, victim.name)
    peak = PeakWatch(dep, provider)
    pids: list[int] = []
    try:
        load.wait_for(f"Hello {victim.name}!")
        peak.start()
        watch.start()
        pids = hang(victim)
        if provider == "local":
            watch.wait_down(30)  # the provider still reports the host alive: HAProxy decides
        heal = dep.play("heal.yml")
        assert heal.returncode == 0, heal.stdout[-6000:] + heal.stderr[-2000:]
        final = _converged(dep, provider, 60)
        wait_until(lambda: watch.gone_s is not None, 10, f"{victim.name} out of the balancer")
        (replacement,) = final - {i.name for i in before}
        load.wait_for(f"Hello {replacement}!", timeout=20)
    finally:
        resume(victim, pids)
        watch.stop()
        most = peak.stop()
        outcomes = load.stop()
    failed = failures(outcomes)
    replaced = [e for e in events(dep) if e["action"] == "replace"]
    print(f"\n{provider}: hung host {victim.name}: DOWN in HAProxy {watch.down_s} s after the hang, out of "
          f"the pool {watch.gone_s:.1f} s after it (one heal run); {len(outcomes)} requests, {len(failed)} "
          f"failed {kinds(failed)}; at most {most} live hosts (max {MAX})")
    assert victim.name not in final and len(final) == DESIRED
    assert [e["instance"] for e in replaced] == [victim.name], events(dep)
    assert most <= MAX
    if provider == "local":
        assert alive_pids(pids) == [], "the hung host's processes were left running"
        assert victim.name not in config_servers(dep)
    assert not failed, failed[:10]


@pytest.mark.e2e
@pytest.mark.slow
def test_a_hung_local_host_is_taken_out_at_once_and_destroyed_with_no_failed_request(
    local: Deployment,
) -> None:
    _hang_heal_once(local, "local")


@pytest.mark.e2e
@pytest.mark.slow
def test_a_host_hung_for_10_s_then_resumed_does_not_leave_the_pool_above_desired(local: Deployment) -> None:
    """The issue's second case: heal.yml acts while the host hangs (the old drain gave up
    after 10 s, left the server in MAINT and the host running, which came back as a fourth
    host); the host is continued after the run, then heal.yml runs again as a timer would."""
    dep = local
    victim = instances(dep, "local")[0]
    load = _load(dep)
    peak = PeakWatch(dep, "local").start()
    watch = ServerWatch(dep, "local", victim.name).start()
    marks = {"hang": load.mark()}
    pids = hang(victim)
    hung_at = time.monotonic()
    runs = []
    try:
        watch.wait_down(30)
        marks["down"] = load.mark()
        runs.append(dep.play("heal.yml"))
        marks["healed"] = load.mark()
        time.sleep(max(0.0, hung_at + 10 - time.monotonic()))  # hung for at least 10 s
        resume(victim, pids)
        marks["resumed"] = load.mark()
        resumed_s = time.monotonic() - hung_at
        for _ in range(2):  # the next ticks of the timer
            runs.append(dep.play("heal.yml"))
        final = _converged(dep, "local", 60)
    finally:
        resume(victim, pids)
        watch.stop()
        most = peak.stop()
        outcomes = load.stop()
    failed = failures(outcomes)
    v = view(dep, "local")
    print(f"\nhung then resumed after {resumed_s:.1f} s: DOWN {watch.down_s} s, out of the pool "
          f"{watch.gone_s} s after the hang; heal runs rc {[r.returncode for r in runs]}; "
          f"{len(final)} hosts (desired {DESIRED}), at most {most} live; {len(outcomes)} requests, "
          f"{len(failed)} failed {kinds(failed)}")
    assert runs[0].returncode == 0, runs[0].stdout[-6000:]
    assert all(r.returncode == 0 for r in runs), [r.stdout[-3000:] for r in runs if r.returncode]
    assert len(v.provider) == DESIRED and victim.name not in v.provider, v
    assert "MAINT" not in v.servers.values() and config_servers(dep) == set(v.provider)
    assert alive_pids(pids) == []
    assert most <= MAX
    assert len(failed) <= RESUMED_FAILED_BUDGET, (marks, failed[:10])


@pytest.mark.docker
@pytest.mark.slow
def test_a_paused_container_is_replaced_and_destroyed_with_no_failed_request(deploy: Deploy) -> None:
    dep = deploy("docker", **POOL)
    container = instances(dep, "docker")[0].extra["container"]
    try:
        _hang_heal_once(dep, "docker")
    finally:
        subprocess.run(["docker", "unpause", container], capture_output=True, check=False)
    gone = subprocess.run(["docker", "ps", "-aq", "--filter", f"name=^{container}$"], capture_output=True,
                          text=True, check=True).stdout.split()
    assert gone == [], f"the paused container {container} was left behind"


# --- the docker provider: destroy does not wait for a container that cannot stop -------------------


@pytest.fixture
def provider(tmp_path: Path, network: str) -> Iterator[DockerProvider]:
    # A stop timeout far above what the test waits: a frozen container must not wait for it.
    prov = get_provider("docker", state_root=tmp_path, network=network, stop_timeout=600)
    assert isinstance(prov, DockerProvider)
    yield prov
    for inst in prov.list():
        subprocess.run(["docker", "rm", "-f", inst.extra["container"]], capture_output=True, check=False)
    prov.close()


def _freeze(how: str, container: str, client: docker.DockerClient) -> list[int]:
    if how == "paused":
        subprocess.run(["docker", "pause", container], check=True, capture_output=True)
        return []
    # SIGSTOP from the host (PID 1 of the container ignores it from inside): nginx master and workers.
    main = int(client.containers.get(container).attrs["State"]["Pid"])
    children = subprocess.run(["pgrep", "-P", str(main)], capture_output=True, text=True, check=False).stdout
    pids = [main, *(int(p) for p in children.split())]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    return pids


@pytest.mark.docker
@pytest.mark.parametrize("how", ["paused", "main process stopped"])
def test_a_frozen_container_is_destroyed_without_waiting_for_the_stop_timeout(
    provider: DockerProvider, client: docker.DockerClient, how: str
) -> None:
    inst = provider.launch("web")
    container = inst.extra["container"]
    pids = _freeze(how, container, client)
    try:
        (listed,) = provider.list("web")
        assert listed.alive is (how != "paused")  # a paused container is reported stopped
        done: list[object] = []
        started = time.monotonic()
        worker = threading.Thread(target=lambda: done.append(provider.destroy("web", inst.name)), daemon=True)
        worker.start()
        worker.join(60)  # stop_timeout is 600 s: a destroy that waited for it would still run
        assert done, f"destroy of a {how} container waited for the stop timeout"
        print(f"\ndestroyed a {how} container in {time.monotonic() - started:.2f} s")
        assert getattr(done[0], "state", None) == DESTROYED
        assert provider.list("web") == []
        assert subprocess.run(["docker", "ps", "-aq", "--filter", f"name=^{container}$"], capture_output=True,
                              text=True, check=True).stdout.split() == []
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
