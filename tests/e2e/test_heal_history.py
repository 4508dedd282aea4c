"""History can never stop healing, end to end: with bytes that are not UTF-8, a line whose
keys have the wrong types and a half-written last line in the deployment's event log, a
killed host is still replaced by heal.yml (rc 0, the new host serves), the run warns and logs
one ``event_log_corrupt`` event; a second run logs no second one; status.yml and
scripts/events.py read the same log without failing.

Uses the shared local-provider deployment (``local_pool`` of conftest.py: 2 hosts alive and UP,
an empty event log)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from ansible.module_utils.hapool.events import EVENT_LOG_CORRUPT, read_events_checked
from helpers.heal import instances, kill_hard, server_status
from helpers.procs import wait_until
from helpers.site import ROOT, Deployment

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BAD = [
    b"\xff\xfe garbage\n",  # not UTF-8: a torn write, a disk-full moment
    json.dumps({"time": "abc", "pool": "web", "action": "replace_launch", "instance": 5,
                "reason": "r", "duration": None, "replacement": "web-000000", "age": "x"}).encode() + b"\n",
    b'{"time": 1795311621.475, "pool": "web", "action": "replace_la',  # half a line, no newline
]


def checked_events(dep: Deployment) -> list[dict[str, Any]]:
    """The readable events of the deployment's log (helpers.heal.events would stop at the bytes)."""
    return read_events_checked(str(dep.root / "heal" / "events.jsonl")).events


def test_a_corrupt_event_log_does_not_stop_healing(local_pool: Deployment) -> None:
    dep = local_pool
    log = dep.root / "heal" / "events.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as handle:
        handle.write(b"".join(BAD))
    victim, survivor = instances(dep, "local")
    kill_hard(victim)

    heal = dep.play("heal.yml")
    output = heal.stdout + heal.stderr
    assert heal.returncode == 0, heal.stdout[-6000:] + heal.stderr[-2000:]
    assert "3 unreadable line(s) skipped (lines 1-3)" in output, output[-6000:]
    assert "line 1: not UTF-8 (byte 0xff at column 1)" in output, output[-6000:]

    after = {i.name for i in instances(dep, "local")}
    assert victim.name not in after and survivor.name in after and len(after) == 2, after
    (replacement,) = after - {survivor.name}
    wait_until(lambda: server_status(dep, "local") == {survivor.name: "UP", replacement: "UP"}, 30,
               "survivor and replacement UP")
    assert dep.hosts_answering(2) == {f"Hello {survivor.name}!", f"Hello {replacement}!"}

    events = checked_events(dep)
    (corrupt,) = [e for e in events if e["action"] == EVENT_LOG_CORRUPT]
    assert (corrupt["pool"], corrupt["skipped"], corrupt["lines"]) == ("web", 3, "1-3"), corrupt
    (replaced,) = [e for e in events if e["action"] == "replace"]
    assert (replaced["instance"], replaced["replacement"]) == (victim.name, replacement), replaced
    # the corrupt event was not glued to the half line: it starts line 4
    assert log.read_bytes().split(b"\n")[3].startswith(b'{"time"'), log.read_bytes()[-2000:]

    again = dep.play("heal.yml")
    assert again.returncode == 0, again.stdout[-6000:] + again.stderr[-2000:]
    assert "3 unreadable line(s) skipped (lines 1-3)" in again.stdout + again.stderr
    assert [e["lines"] for e in checked_events(dep) if e["action"] == EVENT_LOG_CORRUPT] == ["1-3"]
    assert {i.name for i in instances(dep, "local")} == {survivor.name, replacement}

    status = dep.play("status.yml")
    assert status.returncode == 0, status.stdout[-4000:] + status.stderr[-2000:]
    assert "event log: 3 unreadable line(s) skipped (lines 1, 2, 3)" in status.stdout, status.stdout[-4000:]
    assert f"{replacement} UP" in status.stdout, status.stdout[-4000:]

    cli = subprocess.run([sys.executable, str(ROOT / "scripts" / "events.py"), "--log", str(log),
                          "--pool", "web"], capture_output=True, text=True, timeout=60, check=False)
    assert cli.returncode == 0, cli.stderr
    assert "3 unreadable line(s) skipped" in cli.stderr and EVENT_LOG_CORRUPT in cli.stdout, cli
