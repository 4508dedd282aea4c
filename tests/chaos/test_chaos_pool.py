"""Chaos on one local deployment (issue #8): backends killed at random under load while
heal.yml runs in a loop; a storm of HAProxy reloads under load; a heal run killed in the
middle. One deployment (site.yml, local provider: nginx processes) serves the three tests, in
this order, to keep the suite within its budget (site.yml alone takes 30-55 s on the 2-core
CI machine); each test starts from a converged pool and leaves one.

Figures (failed requests, kills, recovery times) are printed: run with ``-s`` to see them.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ansible.module_utils.hapool.lock import holder_alive
from helpers.chaos import HealLoop, PeakWatch, answering, config_servers, kill_group, start_heal, view
from helpers.heal import deployments, events, instances, kill_hard
from helpers.load import Load, Outcome
from helpers.procs import unix_cli, wait_until
from helpers.site import Deployment

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

DESIRED = 4
# Seconds during which backends are killed (test 1); the heal loop then runs until the pool is
# back (at most RECOVERY_S more). Two minutes, as issue #8 asks.
CHAOS_S = 120
KILL_EVERY_S = 9
RECOVERY_S = 120
# Failed requests allowed while backends are killed. HAProxy retries a request that meets a
# dead server (`retries 3`, `retry-on conn-failure empty-response junk-response`, `option
# redispatch 1`) and checks take the server out (fall 2, fastinter 500ms): measured 0 over
# 4 runs, so no request may fail.
KILL_FAILED_BUDGET = 0
# Reloads of the storm (test 2), each one with a re-rendered configuration; none may fail a request.
RELOADS = 20
RELOAD_FAILED_BUDGET = 0
POOL = {
    "desired": DESIRED,
    "max": 6,
    # Up to two hosts die at once here: both are replaced in one run. Chaos kills replacements
    # on purpose (they are not crash-looping images): no backoff (a zero flap window).
    "max_replace_per_run": 2,
    "flap_window": 0,
}


@pytest.fixture(scope="module")
def dep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    made = deployments(tmp_path_factory.mktemp("chaos"))
    make = next(made)
    started = time.monotonic()
    deployment = make("local", **POOL)
    print(f"\nsite.yml (local, {DESIRED} hosts): {time.monotonic() - started:.1f} s")
    try:
        yield deployment
    finally:
        for _ in made:  # teardown.yml, then destroy whatever it left
            pass


def converged(dep: Deployment, timeout: float) -> set[str]:
    """Wait until provider, HAProxy and its configuration agree on DESIRED live hosts, all UP
    (no orphan either way); their names."""
    def done() -> bool:
        v = view(dep)
        return v.converged_to == DESIRED and config_servers(dep) == set(v.provider)

    wait_until(done, timeout, f"{DESIRED} hosts alive, all UP, provider == HAProxy == config", interval=0.5)
    return set(view(dep).provider)


def ensure_converged(dep: Deployment) -> set[str]:
    """The pool as it should be before a test; one heal run if a previous test left it short."""
    if view(dep).converged_to != DESIRED:
        dep.play("heal.yml")
    return converged(dep, 60)


def assert_no_failure(outcomes: list[Outcome], budget: int) -> list[Outcome]:
    failed = [o for o in outcomes if o.status != 200]
    assert len(failed) <= budget, (len(failed), failed[:10])
    return failed


def serving(dep: Deployment) -> list[str]:
    """Hosts that are alive and UP in HAProxy."""
    v = view(dep)
    return sorted(n for n, alive in v.provider.items() if alive and v.servers.get(n) == "UP")


def test_backends_killed_at_random_under_load_are_replaced_with_no_failed_request(dep: Deployment) -> None:
    rng = random.Random()
    start_names = ensure_converged(dep)
    load = Load("127.0.0.1", dep.frontend, clients=4, max_requests=200_000,
                max_seconds=CHAOS_S + RECOVERY_S + 60, pause=0.02).start()
    heal = HealLoop(dep, max_seconds=CHAOS_S + RECOVERY_S).start()
    kills: list[tuple[float, str]] = []
    unlogged: list[str] = []
    started = time.monotonic()
    try:
        load.wait_for(f"Hello {sorted(start_names)[0]}!")
        next_kill = started
        while (now := time.monotonic()) < started + CHAOS_S:
            # Kill only while at least 2 hosts would still serve: more would trip heal.yml's
            # circuit breaker (more than half of the servers DOWN), which refuses to act.
            up = serving(dep) if now >= next_kill else []
            # Any of them, replacements too, also one that a running heal.yml is still waiting
            # for: that wait ends when the host is UP or refuses connections (L4CON).
            if len(up) >= 3:
                victim = rng.choice(up)
                inst = next((i for i in instances(dep, "local") if i.name == victim), None)
                if inst is None:  # the healer just removed it
                    continue
                if victim not in start_names and victim not in {
                    str(e.get("replacement")) for e in events(dep) if e["action"] == "replace"
                }:
                    unlogged.append(victim)  # its heal run may still be waiting for it to be UP
                kill_hard(inst)
                kills.append((now - started, victim))
                next_kill = now + KILL_EVERY_S
            time.sleep(0.5)
        chaos_end = time.monotonic()
        try:
            final = converged(dep, RECOVERY_S)
        except TimeoutError as exc:
            runs = heal.stop()
            v = view(dep)
            timeline = [(round(r.started - started), round(r.seconds), r.returncode) for r in runs]
            pytest.fail(f"{exc}\nkills {kills}\nprovider {v.provider}\nHAProxy {v.servers}\n"
                        f"config {config_servers(dep)}\nheal runs (start, s, rc) {timeline}\n"
                        f"events {events(dep)}\nlast runs:\n"
                        + "\n----\n".join(r.tail[-2500:] for r in runs[-2:]))
        recovery_s = time.monotonic() - chaos_end
        last_kill_to_converged = time.monotonic() - started - kills[-1][0] if kills else 0.0
        answered = answering(dep, final)
    finally:
        runs = heal.stop()
        outcomes = load.stop()
    failed = [o for o in outcomes if o.status != 200]
    replaced = [e for e in events(dep) if e["action"] == "replace"]
    print(f"\nkill under load: {CHAOS_S} s of chaos, {len(kills)} kill(s) {[k for _, k in kills]} at "
          f"{[round(t) for t, _ in kills]} s; {len(runs)} heal run(s) "
          f"({[round(r.seconds) for r in runs]} s, rc {[r.returncode for r in runs]}); {len(replaced)} "
          f"replace event(s); {sum(k not in start_names for _, k in kills)} victim(s) were replacements, "
          f"{len(unlogged)} of them before their heal run had logged them; "
          f"back to {DESIRED} hosts {recovery_s:.1f} s after the chaos "
          f"({last_kill_to_converged:.1f} s after the last kill); {len(outcomes)} requests, "
          f"{len(failed)} failed (budget {KILL_FAILED_BUDGET})")
    assert kills, "nothing was killed"
    assert answered == final, (answered, final)
    assert not {k for _, k in kills} & final  # every victim is gone
    assert {e["instance"] for e in replaced} >= {k for _, k in kills}
    bad_runs = [r for r in runs if r.returncode != 0]
    assert not bad_runs, [r.tail[-3000:] for r in bad_runs]
    assert_no_failure(outcomes, KILL_FAILED_BUDGET)


def test_every_host_killed_at_once_under_load_is_rebuilt_never_above_max(dep: Deployment) -> None:
    """A total loss: every host's nginx killed at once while heal.yml runs in a loop. The
    circuit breaker is for partitions (live hosts HAProxy holds DOWN), not for dead hosts:
    the pool is rebuilt, never with more live hosts than max. Requests fail while no host is
    left (reported, not budgeted: nothing can answer them)."""
    before = ensure_converged(dep)
    load = Load("127.0.0.1", dep.frontend, clients=4, max_requests=100_000, max_seconds=RECOVERY_S + 60,
                pause=0.02).start()
    peak = PeakWatch(dep).start()
    heal = HealLoop(dep, max_seconds=RECOVERY_S).start()
    try:
        load.wait_for(f"Hello {sorted(before)[0]}!")
        killed_at = time.monotonic()
        for inst in instances(dep, "local"):
            kill_hard(inst)
        final = converged(dep, RECOVERY_S)
        rebuilt_s = time.monotonic() - killed_at
        answered = answering(dep, final)
        back_s = time.monotonic() - killed_at
    finally:
        runs = heal.stop()
        most = peak.stop()
        outcomes = load.stop()
    failed = [o for o in outcomes if o.status != 200]
    print(f"\nevery host killed at once: {DESIRED} hosts rebuilt in {rebuilt_s:.1f} s "
          f"({len(runs)} heal run(s), rc {[r.returncode for r in runs]}), all answering {back_s:.1f} s "
          f"after the kill; at most {most} live hosts (max {POOL['max']}, {peak.samples} samples); "
          f"{len(outcomes)} requests, {len(failed)} failed while no host was left")
    assert not final & before and answered == final
    assert 0 < most <= POOL["max"]
    assert all(r.returncode == 0 for r in runs), [r.tail[-3000:] for r in runs if r.returncode]
    assert "circuit_open" not in [e["action"] for e in events(dep)]


def _master_reloads(master: Path) -> int | None:
    """The master's reload counter (``show proc``); None while it re-executes itself."""
    try:
        found = re.search(r"^\d+\s+master\s+(\d+)", unix_cli(master, "show proc"), re.MULTILINE)
    except OSError:
        return None
    return int(found[1]) if found else None


def reload_with(haproxy: Path, config: str) -> float:
    """What the haproxy role's reload handler does: the (re-rendered) configuration written,
    the runtime state saved to the server-state file, `reload` on the master CLI; returns once
    the new worker answers on the admin socket, with the seconds it took."""
    master, admin = haproxy / "run" / "master.sock", haproxy / "run" / "admin.sock"
    (haproxy / "haproxy.cfg").write_text(config)
    (haproxy / "server-state").write_text(unix_cli(admin, "show servers state"))
    wait_until(lambda: _master_reloads(master) is not None, 20, "the master CLI")
    before = _master_reloads(master) or 0
    started = time.monotonic()
    unix_cli(master, "reload")

    def reloaded() -> bool:
        try:
            return (_master_reloads(master) or 0) > before and "admin" in unix_cli(admin, "show cli level")
        except OSError:
            return False

    wait_until(reloaded, 20, "the new worker after a reload", interval=0.05)
    return time.monotonic() - started


def test_a_storm_of_reloads_under_load_fails_no_request(dep: Deployment) -> None:
    names = ensure_converged(dep)
    haproxy = dep.root / "local" / "haproxy"
    original = (haproxy / "haproxy.cfg").read_text()
    load = Load("127.0.0.1", dep.frontend, clients=4, max_requests=100_000, max_seconds=120,
                pause=0.01).start()
    reload_s: list[float] = []
    try:
        load.wait_for(f"Hello {sorted(names)[0]}!")
        for n in range(RELOADS):
            # a configuration re-rendered each time (a comment changes); the last one is the
            # deployment's own again
            config = original if n == RELOADS - 1 else f"{original}# chaos {n}\n"
            reload_s.append(reload_with(haproxy, config))
            time.sleep(0.3)
        after = view(dep)
        answered = answering(dep, names)
    finally:
        if (haproxy / "haproxy.cfg").read_text() != original:  # the storm stopped half-way
            reload_with(haproxy, original)
        outcomes = load.stop()
    failed = [o for o in outcomes if o.status != 200]
    print(f"\nreload storm: {len(reload_s)} reloads ({min(reload_s):.2f}-{max(reload_s):.2f} s each), "
          f"{len(outcomes)} requests, {len(failed)} failed (budget {RELOAD_FAILED_BUDGET}); "
          f"right after: {after.servers}")
    assert after.converged_to == DESIRED and set(after.provider) == names, after
    assert answered == names
    assert_no_failure(outcomes, RELOAD_FAILED_BUDGET)
    converged(dep, 30)


def test_a_heal_run_killed_in_the_middle_is_taken_over_by_the_next_run(dep: Deployment) -> None:
    before = ensure_converged(dep)
    victim = sorted(before)[0]
    kill_hard(next(i for i in instances(dep, "local") if i.name == victim))
    lock_file = dep.root / "heal" / "heal.lock"
    proc = start_heal(dep)
    t = time.monotonic()
    try:
        # Until the run has launched the replacement (a live host with a name the pool never
        # had), bounded; the run is then between the launch and the registration.
        def launched() -> bool:
            return proc.poll() is not None or any(i.alive and i.name not in before
                                                  for i in instances(dep, "local"))

        wait_until(launched, 180, "the killed run to launch a replacement", interval=0.1)
        assert proc.poll() is None, "the heal run ended before it could be killed"
    finally:
        kill_group(proc)
    killed_after = time.monotonic() - t
    orphan = ({i.name for i in instances(dep, "local")} - before).pop()
    lease = json.loads(lock_file.read_text())
    assert lease.get("owner") and not holder_alive(lease), lease  # the killed run's, stale at once
    mid = view(dep)
    t = time.monotonic()
    second = dep.play("heal.yml")
    second_s = time.monotonic() - t
    assert second.returncode == 0, second.stdout[-6000:] + second.stderr[-2000:]
    assert "locked: heal run" not in second.stdout
    final = converged(dep, 60)
    print(f"\nheal killed in the middle: killed {killed_after:.1f} s after its start, replacement {orphan} "
          f"launched (provider {mid.provider}, HAProxy {mid.servers}); the next run took the lease of "
          f"{lease['owner']} over and converged in {second_s:.1f} s: {sorted(final)}")
    assert victim not in final and orphan in final  # adopted (registered), not leaked
    assert any(e["action"] == "register" and e["instance"] == orphan for e in events(dep)), events(dep)
    assert answering(dep, final) == final
    assert json.loads(lock_file.read_text() or "{}") == {}  # given back
