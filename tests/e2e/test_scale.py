"""scale.yml end to end on the docker provider, one pool through every phase of its life:

1. check mode prints the plan and changes nothing;
2. a load step (a fixed request rate, well above one host's target) makes the pool grow to
   the size the target asks for, and every new host serves;
3. when the load drops, the first run is held by the scale-in stabilization window; after the
   window the pool shrinks, and not one request fails while hosts are drained and removed;
4. writing a desired count to the metric file changes the pool size;
5. busy CPUs (a bounded busy loop in a container) grow the pool through the CPU policy.

The times from the load step to the new capacity serving, and the requests sent and failed
during the drains, are printed (pytest -s) for the record.
"""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.heal import Deploy, deployments, events, instances, server_status
from helpers.load import Load, Outcome
from helpers.site import Deployment

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.slow]

RATE_HIGH = 120.0  # requests per second of the load step
RATE_LOW = 20.0  # after it
TARGET = 50.0  # request_rate target per host: 120/50 -> 3 hosts, 20/50 -> 1 host
CPU_TARGET = 15.0  # a busy loop that gets 35 % of a core or more makes 2 hosts grow
STABILIZATION = 20.0


@pytest.fixture
def deploy(tmp_path: Path) -> Iterator[Deploy]:
    yield from deployments(tmp_path)


def scale_settings(dep: Deployment) -> dict[str, Any]:
    return {
        "policies": [
            {"type": "target", "metric": "request_rate", "target": TARGET},
            {"type": "file", "path": str(dep.root / "scale" / "web.desired")},
            {"type": "target", "metric": "cpu", "target": CPU_TARGET},
        ],
        "tolerance": 0.1,
        "scale_out_cooldown": 0,
        "scale_in_cooldown": 0,
        "scale_in_stabilization": STABILIZATION,
        "max_step_out": 4,
        "max_step_in": 4,
        "warmup": 0,
        "drain_timeout": 10,
    }


def scale(dep: Deployment, *args: str) -> str:
    run = dep.play("scale.yml", *args)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    return run.stdout


def alive(dep: Deployment) -> set[str]:
    return {i.name for i in instances(dep, "docker") if i.alive}


def failed(outcomes: list[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if o.status != 200]


def wait_serving(load: Load, names: set[str], timeout: float = 30) -> None:
    for name in names:
        load.wait_for(f"Hello {name}!", timeout=timeout)


def test_scale_out_on_load_in_after_the_window_file_and_cpu_policies(deploy: Deploy) -> None:
    dep = deploy("docker", desired=1, min=1, max=4)
    dep.extra_vars["hapool_pools"][0]["scale"] = scale_settings(dep)
    first = alive(dep)
    assert len(first) == 1

    # 1. Check mode: the plan, and nothing else.
    out = scale(dep, "--check")
    assert "web: 1 -> 1 (none)" in out, out[-3000:]
    assert alive(dep) == first and not [e for e in events(dep) if str(e["action"]).startswith("scale")]

    # 2. The load step: 120 requests per second on one host whose target is 50.
    high = Load(
        "127.0.0.1", dep.frontend, clients=6, rate=RATE_HIGH, max_requests=200_000, max_seconds=240
    ).start()
    try:
        time.sleep(3)  # HAProxy's session rate is over the last second
        step_at = time.monotonic()
        out = scale(dep)
        grown = alive(dep)
        expected = math.ceil(RATE_HIGH / TARGET)
        assert len(grown) == expected and first <= grown, (grown, out[-3000:])
        wait_serving(high, grown - first)
        capacity_s = time.monotonic() - step_at
        # A second run at the same load changes nothing (within the target's tolerance or at it).
        steady = scale(dep)
        assert f"web: {expected} -> {expected} (none)" in steady, steady[-3000:]
    finally:
        step_outcomes = high.stop()
    assert server_status(dep, "docker") == dict.fromkeys(grown, "UP")
    launches = [e for e in events(dep) if e["action"] == "scale_launch"]
    assert {e["instance"] for e in launches} == grown - first
    assert all(float(e["duration"]) > 0 for e in launches)  # type: ignore[arg-type]
    print(f"\nload step {RATE_HIGH:g}/s -> {expected} hosts serving in {capacity_s:.1f} s "
          f"(scale_launch durations {[e['duration'] for e in launches]}); "
          f"{len(step_outcomes)} requests, {len(failed(step_outcomes))} failed")  # fmt: skip
    assert not failed(step_outcomes), failed(step_outcomes)[:5]

    # 3. The load drops to 20/s: held by the stabilization window, then drained with no loss.
    low = Load(
        "127.0.0.1", dep.frontend, clients=2, rate=RATE_LOW, max_requests=20_000, max_seconds=240
    ).start()
    try:
        time.sleep(3)
        held = scale(dep)
        assert "capped by scale_in_stabilization" in held and alive(dep) == grown, held[-3000:]
        time.sleep(STABILIZATION + 1)
        out = scale(dep)
        shrunk = alive(dep)
        assert len(shrunk) == 1 and shrunk < grown, (shrunk, out[-3000:])
        drained = grown - shrunk
        time.sleep(1)
    finally:
        drain_outcomes = low.stop()
    print(f"scale-in {len(grown)} -> 1 after the {STABILIZATION:g} s window: {len(drain_outcomes)} requests, "
          f"{len(failed(drain_outcomes))} failed")  # fmt: skip
    assert not failed(drain_outcomes), failed(drain_outcomes)[:5]
    # The oldest host goes first: the first host of the pool is among the drained ones.
    assert first <= drained
    assert set(server_status(dep, "docker")) == shrunk
    removed = [e for e in events(dep) if e["action"] == "scale_remove"]
    assert {e["instance"] for e in removed} == drained and all(e["forced_sessions"] == 0 for e in removed)
    assert {e["instance"] for e in events(dep) if e["action"] == "scale_drain"} == drained
    assert any(e["action"] == "scale_in" and e["to"] == 1 for e in events(dep))

    # 4. The metric file asks for 2.
    (dep.root / "scale").mkdir(exist_ok=True)
    (dep.root / "scale" / "web.desired").write_text("2\n")
    scale(dep)
    assert len(alive(dep)) == 2 and len(dep.hosts_answering(2)) == 2

    # 5. A busy loop in one container: the average CPU of the pool is far above its target.
    busy = sorted(alive(dep))[0]
    container = next(i for i in instances(dep, "docker") if i.name == busy).extra["container"]
    subprocess.run(["docker", "exec", "-d", container, "timeout", "60", "sh", "-c", "while :; do :; done"],
                   check=True, capture_output=True)  # fmt: skip
    try:
        time.sleep(2)
        out = scale(dep)
    finally:
        subprocess.run(
            ["docker", "exec", container, "pkill", "-f", "while :"], capture_output=True, check=False
        )
    # How far the pool grows follows the CPU the loop got, which the other tests sharing the
    # machine's 2 cores decide (75 % of a core gives 3 hosts, a whole core 4): it grew, as far as
    # the recorded recommendation says, and for the CPU.
    recommendations = [e for e in events(dep) if e["action"] == "scale_recommendation"]
    assert "average cpu" in str(recommendations[-1]["reason"]), recommendations[-1]
    recommended = int(float(recommendations[-1]["recommendation"]))  # type: ignore[arg-type]
    assert recommended > 2, (recommendations[-1], out[-3000:])
    assert len(alive(dep)) == min(4, recommended), out[-3000:]
