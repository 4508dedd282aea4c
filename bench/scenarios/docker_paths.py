"""Docker provider fast paths: CPU time from cgroup files vs the engine's stats API, and how soon
an unreachable engine is reported.

These figures were wall-clock assertions in tests/e2e/test_provider_docker.py (``cpu_seconds``
under 0.5 s, the unreachable-engine error under 10 s); the tests now check the behaviour (no
engine stats call when the cgroup is readable; the clear error) and the time is measured here.

Two containers of the local base image are launched with the docker provider (a network of
their own, removed afterwards). ``cpu_seconds`` of both (plus one unknown name) is read
``5 x repeat`` times the normal way (cgroup files under /sys/fs/cgroup), then ``repeat`` times
with the cgroup root pointed at a missing directory, so that the provider falls back to the
engine's stats API (one ``stats`` call per container, run side by side; the engine samples for
about a second). Last, a provider whose ``base_url`` is a loopback port where nothing listens
tries to launch, ``repeat`` times: the time until ``ProviderUnavailableError``.
"""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from typing import Any

from ansible.module_utils.hapool.providers import ProviderUnavailableError, containers, get_provider

from bench.lib import BenchError, Context, fmt_summary, summary

NAME = "docker_paths"
TITLE = "Docker provider: CPU time from cgroups vs the engine's stats, and an unreachable engine"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_paths(ctx: Context, provider: Any, pool: str) -> dict[str, Any]:
    """``cpu_seconds`` timed from the cgroup files, then with the engine's stats API."""
    names = [provider.launch(pool).name for _ in range(2)]
    asked = [*names, f"{pool}-000000"]
    calls: list[str] = []
    engine = provider._engine_cpu_seconds

    def counted(cid: str) -> float | None:  # to know which path ran
        calls.append(cid)
        return engine(cid)

    provider._engine_cpu_seconds = counted
    cgroup_ms: list[float] = []
    for _ in range(ctx.repeat * 5):
        t0 = time.perf_counter()
        seconds = provider.cpu_seconds(pool, asked)
        cgroup_ms.append((time.perf_counter() - t0) * 1000)
    if calls or any(seconds[n] is None for n in names):
        raise BenchError(f"cgroup files not readable here: engine called for {calls}, read {seconds}")
    engine_ms: list[float] = []
    root = containers.CGROUP_ROOT
    containers.CGROUP_ROOT = str(ctx.dir(NAME) / "no-cgroups")  # looked up at call time
    try:
        for _ in range(ctx.repeat):
            calls.clear()
            t0 = time.perf_counter()
            seconds = provider.cpu_seconds(pool, asked)
            engine_ms.append((time.perf_counter() - t0) * 1000)
    finally:
        containers.CGROUP_ROOT = root
    if len(calls) != len(names) or any(seconds[n] is None for n in names):
        raise BenchError(f"engine stats: {len(calls)} calls for {len(names)} containers, read {seconds}")
    return {
        "containers": len(names),
        "cgroup_ms": summary(cgroup_ms),
        "engine_ms": summary(engine_ms),
        "engine_calls": len(calls),
    }


def _unreachable(ctx: Context, pool: str) -> list[float]:
    """Milliseconds until a launch through a port where no engine listens fails clearly."""
    times: list[float] = []
    for _ in range(ctx.repeat):
        bogus = f"tcp://127.0.0.1:{_free_port()}"
        dead = get_provider("docker", state_root=str(ctx.dir(NAME) / "dead"), base_url=bogus)
        t0 = time.perf_counter()
        try:
            dead.launch(pool)
        except ProviderUnavailableError:
            times.append((time.perf_counter() - t0) * 1000)
        else:
            raise BenchError(f"launch through {bogus} did not fail")
        finally:
            dead.close()
    return times


def run(ctx: Context) -> dict[str, Any]:
    if "docker" not in ctx.providers:
        raise BenchError("needs the docker provider (--providers ...,docker)")
    pool = f"b{uuid.uuid4().hex[:8]}"
    provider = get_provider("docker", state_root=str(ctx.dir(NAME)), network=f"hapool-bench-{pool}")
    ctx.log("launching 2 containers")
    try:
        result = _cpu_paths(ctx, provider, pool)
    finally:
        for inst in provider.list(pool):
            with contextlib.suppress(Exception):
                provider.destroy(pool, inst)
        with contextlib.suppress(Exception):
            provider.remove_network()
        provider.close()
    return {**result, "unreachable_ms": summary(_unreachable(ctx, pool))}


def markdown(r: dict[str, Any]) -> str:
    return "\n".join([
        f"`DockerProvider.cpu_seconds` of {r['containers']} running containers (and one unknown name), "
        "the two ways it can read them, and the time until a launch through an engine that does not "
        "answer (a loopback port where nothing listens) fails with `ProviderUnavailableError`:",
        "",
        "| path | time |",
        "|---|---|",
        f"| cgroup files (`/sys/fs/cgroup`, the normal path) | {fmt_summary(r['cgroup_ms'], 'ms', 2)} |",
        f"| the engine's stats API ({r['engine_calls']} calls side by side; cgroups not readable) "
        f"| {fmt_summary(r['engine_ms'], 'ms')} |",
        f"| unreachable engine → clear error | {fmt_summary(r['unreachable_ms'], 'ms', 2)} |",
    ])
