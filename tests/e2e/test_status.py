"""playbooks/status.yml against a real local-provider deployment (two nginx hosts behind HAProxy).

The table's numbers follow HAProxy and the provider: 2 in service; after `set server web/x state
drain` on the runtime socket, 1 in service and 1 draining; after kill -9 of a host, it counts
as down at once (the provider reports it dead). The last scale decision's `to` and the last
events come from the event log. Nothing is ever changed, in check mode or not.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from helpers.heal import instances, kill_hard
from helpers.site import Deployment, recap

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

COLUMNS = ["pool", "provider", "desired", "scaled", "hosts", "up", "drain", "down"]


def status(dep: Deployment, *args: str, **extra: object) -> tuple[dict[str, str], str]:
    """Run status.yml; return the table's row of pool web (by column) and the output."""
    run = dep.play("status.yml", *args, **extra)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert all(c["changed"] == 0 and c["failed"] == 0 for c in recap(run.stdout).values()), run.stdout[-3000:]
    lines = run.stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if re.match(r"^\s*POOL\s+PROVIDER\s+DESIRED", line))
    # Cells are padded and joined with two spaces; a cell has single spaces at most ("2 (1 dead)").
    assert re.split(r"\s{2,}", lines[head].strip()) == [c.upper() for c in COLUMNS], lines[head]
    row = dict(zip(COLUMNS, re.split(r"\s{2,}", lines[head + 1].strip()), strict=True))
    assert row["pool"] == "web", lines[head : head + 3]
    return row, run.stdout


def test_status_counts_servers_in_service_draining_and_down(local_pool: Deployment) -> None:
    dep = local_pool  # shared (conftest.py): 2 hosts alive and UP, an empty event log
    first, second = instances(dep, "local")

    row, out = status(dep)
    assert row == {"pool": "web", "provider": "local", "desired": "2", "scaled": "-", "hosts": "2",
                   "up": "2", "drain": "0", "down": "0"}, out[-3000:]
    assert f"{first.name} UP" in out and f"{second.name} UP" in out
    assert "web: no events in" in out

    # A scale decision and another event in the log: SCALED shows the decision's `to`.
    log = dep.root / "heal" / "events.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    now = time.time()
    with log.open("a") as handle:
        for event in (
            {"time": now - 60, "pool": "web", "action": "scale_out", "instance": None, "reason": "test",
             "duration": None, "from": 2, "to": 3},
            {"time": now - 30, "pool": "web", "action": "scale_in", "instance": None, "reason": "test",
             "duration": None, "from": 3, "to": 2, "drain": ["web-gone"]},
            {"time": now - 10, "pool": "other", "action": "replace", "instance": "x", "reason": "not ours",
             "duration": 1.0},
        ):
            handle.write(json.dumps(event) + "\n")

    sock = dep.admin_socket("local")
    Deployment.runtime(sock, f"set server web/{first.name} state drain")
    row, out = status(dep, "--check", hapool_status_events=1)
    assert (row["up"], row["drain"], row["down"], row["scaled"]) == ("1", "1", "0", "2"), out[-3000:]
    assert f"{first.name} DRAIN" in out
    assert "web last 1 event(s):" in out, out[-3000:]
    assert re.search(r"web\s+scale_in\s+-\s+-\s+test from=3 to=2", out), out[-3000:]
    assert "scale_out" not in out.split("web last 1 event(s):")[1] and "not ours" not in out

    Deployment.runtime(sock, f"set server web/{first.name} state ready")
    kill_hard(second)
    row, out = status(dep)
    assert (row["hosts"], row["drain"], row["down"]) == ("2 (1 dead)", "0", "1"), out[-3000:]
    # Nothing was changed: both hosts are still there.
    assert {i.name for i in instances(dep, "local")} == {first.name, second.name}

    run = dep.play("status.yml", hapool_status_pool="nope")
    assert run.returncode != 0
    assert "hapool_status_pool one of the pools ['web']" in run.stdout, run.stdout[-3000:]
