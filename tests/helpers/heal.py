"""Shared by the heal tests: a deployment per test, its hosts, events and balancer view, and
killing a host hard (kill -9 of a local host's nginx master and workers, docker kill)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

from ansible.module_utils.hapool.providers import Instance, get_provider

from helpers.procs import wait_until
from helpers.site import Deployment

CHECK = {"path": "/health", "expect_status": "200", "inter": "1s", "fastinter": "500ms", "downinter": "1s",
         "rise": 1, "fall": 2}
Deploy = Callable[..., Deployment]
LAUNCH = {"local": {}, "docker": {"image": "hapool/base:bookworm"}, "vagrant": {"vagrant_backend": "docker"}}


def pool(provider: str, **over: object) -> dict[str, object]:
    return {"name": "web", "provider": provider, "min": 1, "desired": 2, "max": 3, "balance": "roundrobin",
            "port": 80, "launch": LAUNCH[provider], "check": CHECK, "grace_period": 5, **over}


def instances(dep: Deployment, provider: str) -> list[Instance]:
    with get_provider(provider, state_root=str(dep.root)) as prov:
        return prov.list("web")


def events(dep: Deployment) -> list[dict[str, object]]:
    path = dep.root / "heal" / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def balancer_dir(provider: str) -> str:
    return "local" if provider == "local" else f"balancer-{provider}"


def server_stats(dep: Deployment, provider: str) -> dict[str, dict[str, str]]:
    """Each server of backend web: its `show stat` row, by column name."""
    stat = Deployment.runtime(dep.admin_socket(balancer_dir(provider)), "show stat")
    header = stat.splitlines()[0].lstrip("# ").split(",")
    out = {}
    for line in stat.splitlines()[1:]:
        values = dict(zip(header, line.split(","), strict=False))
        if values.get("pxname") == "web" and values.get("svname") not in (None, "BACKEND"):
            out[values["svname"]] = values
    return out


def server_status(dep: Deployment, provider: str) -> dict[str, str]:
    return {name: row["status"] for name, row in server_stats(dep, provider).items()}


def nginx_pids(inst: Instance) -> list[int]:
    """Master and workers of a local instance."""
    master = int((Path(inst.extra["prefix"]) / "logs" / "nginx.pid").read_text().strip())
    children = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True, check=False)
    return [master, *(int(p) for p in children.stdout.split())]


def kill_hard(inst: Instance) -> None:
    if inst.provider == "docker" or inst.extra.get("backend") == "docker":  # vagrant's docker backend too
        subprocess.run(["docker", "kill", inst.extra["container"]], check=True, capture_output=True)
    else:
        for pid in nginx_pids(inst):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def deployments(tmp_path: Path) -> Iterator[Callable[..., Deployment]]:
    """For a fixture: yields ``make(provider, **pool_settings)`` (site.yml done); tears every
    deployment down afterwards, and destroys whatever teardown.yml left."""
    made: list[tuple[Deployment, str]] = []

    def make(provider: str, **over: object) -> Deployment:
        dep = Deployment(tmp_path, provider, [pool(provider, **over)])
        made.append((dep, provider))
        run = dep.play("site.yml")
        assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
        return dep

    yield make
    for dep, provider in made:
        dep.play("teardown.yml")
        with contextlib.suppress(Exception), get_provider(provider, state_root=str(dep.root)) as prov:
            for inst in prov.list():
                prov.destroy(inst.pool, inst)
        dep.remove_state()


def shared_deployment(tmp_path: Path, provider: str, **over: object) -> Iterator[Deployment]:
    """For a module- or session-scoped fixture: one deployment (site.yml done) for several
    tests; torn down (teardown.yml, then whatever it left destroyed) afterwards, also when
    site.yml failed."""
    made = deployments(tmp_path)
    make = next(made)
    try:
        yield make(provider, **over)
    finally:
        for _ in made:
            pass


def fresh_pool(dep: Deployment, provider: str = "local", desired: int = 2, timeout: float = 90) -> None:
    """Before a test on a shared deployment: the state a fresh site.yml leaves. ``desired``
    hosts alive and UP, the provider, HAProxy and its configuration agree (one heal.yml run if
    a previous test left the pool short), and an empty event log, so that no test sees the
    history (replacements, backoff, circuit breaker) of another."""
    from helpers.chaos import config_servers, view  # noqa: PLC0415

    def converged() -> bool:
        v = view(dep, provider)
        return v.converged_to == desired and config_servers(dep) == set(v.provider)

    log = dep.root / "heal" / "events.jsonl"
    if not converged():
        log.unlink(missing_ok=True)  # a previous test's history must not hold a replacement back
        run = dep.play("heal.yml")
        assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    wait_until(converged, timeout, f"{desired} hosts alive and UP, provider == HAProxy == config",
               interval=0.5)
    log.unlink(missing_ok=True)
