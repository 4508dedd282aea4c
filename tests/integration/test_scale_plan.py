"""scale_plan against a real HAProxy and real local web hosts (nginx processes).

Each test gets its own state directory, a pool of two local hosts and an HAProxy whose backend
``web`` names them; the module is run the way Ansible runs it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.hapool.providers import get_provider
from ansible.module_utils.hapool.providers.local import LocalProvider
from helpers.modules import run_module
from helpers.procs import HAProxy, start_haproxy, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def scene() -> Iterator[tuple[LocalProvider, HAProxy, Path]]:
    state = Path(tempfile.mkdtemp(prefix="hp-sp-", dir="/tmp"))  # short: HAProxy socket paths <= 97 chars
    provider = get_provider("local", state_root=state)
    assert isinstance(provider, LocalProvider)
    hosts = [provider.launch("web") for _ in range(2)]
    lines = ["option httpchk GET /index.html"] + [f"server {h.name} {h.endpoint} check" for h in hosts]
    lb = start_haproxy(state / "lb", {"web": lines})
    try:
        wait_until(lambda: all(s.startswith("UP") for s in statuses(lb).values()), 15, "both hosts UP")
        yield provider, lb, state
    finally:
        lb.stop()
        for inst in provider.list("web"):
            provider.destroy("web", inst)
        shutil.rmtree(state, ignore_errors=True)


def statuses(lb: HAProxy) -> dict[str, str]:
    out = {}
    for line in lb.cli("show stat").splitlines()[1:]:
        cols = line.split(",")
        if len(cols) > 17 and cols[0] == "web" and cols[1] not in ("BACKEND", "FRONTEND"):
            out[cols[1]] = cols[17]
    return out


def plan(lb: HAProxy, state: Path, pool: dict[str, Any], **args: Any) -> dict[str, Any]:
    base = {"pool": {"name": "web", "min": 1, "max": 6, "desired": 2, **pool}, "socket": str(lb.admin_socket)}
    return run_module("scale_plan", {**base, "state_dir": str(state), "provider": "local", **args})


def test_fixed_size_pool_and_check_mode(scene: tuple[LocalProvider, HAProxy, Path]) -> None:
    _, lb, state = scene
    result = plan(lb, state, {"desired": 3})
    assert not result.get("failed"), result
    p = result["plan"]
    assert (p["current"], p["desired"], p["action"], p["launch"], p["serving"]) == (2, 3, "scale_out", 1, 2)
    assert len(result["instances"]) == 2 and result["changed"] is False
    args = {"pool": {"name": "web", "min": 1, "max": 6, "desired": 3}, "socket": str(lb.admin_socket)}
    again = run_module("scale_plan", {**args, "state_dir": str(state), "now": result["now"]}, check_mode=True)
    assert again["plan"]["launch"] == 1


def test_file_policy_missing_present_and_garbage(scene: tuple[LocalProvider, HAProxy, Path]) -> None:
    _, lb, state = scene
    metric = state / "desired-web"
    pool = {"scale": {"policies": [{"type": "file", "path": str(metric)}]}}
    missing = plan(lb, state, pool)
    assert not missing.get("failed"), missing
    assert (
        missing["plan"]["action"] == "none" and "missing" in missing["plan"]["recommendations"][0]["reason"]
    )
    metric.write_text("")  # caught in the middle of `echo 5 > file`: like a missing file
    assert plan(lb, state, pool)["plan"]["action"] == "none"
    metric.write_text("5\n")
    assert plan(lb, state, pool)["plan"]["launch"] == 3
    metric.write_text("five hosts please\n")
    bad = plan(lb, state, pool)
    assert bad["failed"] and bad["error"] == "MetricFileError" and "expected a whole number" in bad["msg"]


def test_request_rate_is_read_from_haproxy(scene: tuple[LocalProvider, HAProxy, Path]) -> None:
    _, lb, state = scene
    stop = threading.Event()
    served = [0]

    def hammer() -> None:
        deadline = time.monotonic() + 8  # bounded whatever happens
        while not stop.is_set() and time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{lb.frontend_port}/", timeout=5) as resp:
                resp.read()
            served[0] += 1

    threads = [threading.Thread(target=hammer, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.5)
        pool = {
            "scale": {"policies": [{"type": "target", "metric": "request_rate", "target": 1}], "warmup": 0}
        }
        result = plan(lb, state, pool)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    p = result["plan"]
    rates = [h["request_rate"] for h in p["hosts"]]
    assert all(r is not None and r > 1 for r in rates), (rates, served)
    # Far above a target of 1 session/s per host: the pool wants to grow, capped by max_step_out.
    assert p["recommendation"] > 2 and p["action"] == "scale_out" and p["warm"] == 2


def test_cpu_policy_samples_the_hosts(scene: tuple[LocalProvider, HAProxy, Path]) -> None:
    _, lb, state = scene
    pool = {"scale": {"policies": [{"type": "target", "metric": "cpu", "target": 50}], "warmup": 0}}
    result = plan(lb, state, pool, cpu_interval=0.3)
    p = result["plan"]
    assert all(h["cpu"] is not None and 0 <= h["cpu"] < 50 for h in p["hosts"]), p["hosts"]
    # Idle hosts: the recommendation is below the current size, but no history covers the
    # stabilization window, so nothing is drained.
    assert p["recommendation"] in (0, 1) and p["action"] == "none"
    assert p["capped_by"] == ["scale_in_stabilization"]


def test_scale_in_picks_unprotected_hosts_from_history(scene: tuple[LocalProvider, HAProxy, Path]) -> None:
    provider, lb, state = scene
    names = [i.name for i in provider.list("web")]
    log = state / "events.jsonl"
    now = time.time()
    old = {"time": now - 1000, "pool": "web", "action": "scale_recommendation", "instance": None}
    log.write_text(json.dumps({**old, "reason": "", "duration": None, "recommendation": 1}) + "\n")
    protect = state / "protected"
    protect.write_text(f"# keep this one\n{names[0]}\n")
    pool = {"scale": {"policies": [{"type": "file", "path": str(state / "d")}], "scale_in_cooldown": 0}}
    (state / "d").write_text("1")
    result = plan(lb, state, pool, event_log=str(log), protect_file=str(protect), now=now)
    p = result["plan"]
    assert result["protected"] == [names[0]]
    assert (p["action"], p["drain"], p["desired"]) == ("scale_in", [names[1]], 1)


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ({"socket": "/nonexistent/admin.sock"}, "SocketNotFoundError", "/nonexistent/admin.sock"),
        (
            {"pool": {"name": "web", "min": 5, "max": 2, "desired": 3}},
            "InvalidArgumentError",
            "min <= desired <= max",
        ),
        ({"pool": {"name": "web;rm", "min": 1, "max": 2, "desired": 1}}, "InvalidNameError", "web;rm"),
        (
            {"pool": {"name": "web", "scale": {"policies": [{"type": "target", "metric": "cpu"}]}}},
            "InvalidArgumentError",
            "target is required",
        ),
    ],
)
def test_bad_input_is_a_clear_error(
    scene: tuple[LocalProvider, HAProxy, Path], args: dict[str, Any], error: str, message: str
) -> None:
    provider, lb, state = scene
    before = [i.name for i in provider.list("web")]
    result = run_module("scale_plan", {"pool": {"name": "web"}, "socket": str(lb.admin_socket),
                                       "state_dir": str(state), **args})  # fmt: skip
    assert result["failed"] and result["error"] == error and message in result["msg"], result
    assert [i.name for i in provider.list("web")] == before  # nothing destroyed
