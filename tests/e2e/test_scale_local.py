"""scale.yml on the local provider: a scale-in killed in the middle is finished by the next run.

The run is killed (SIGKILL of its process group) once it has marked its hosts as leaving
(``scale_drain`` events) and begun to drain them. Then heal.yml must leave those hosts alone
(neither register them again nor replace them), and the next scale.yml removes them: the pool
is at its new size, HAProxy has exactly the provider's hosts, and no request failed meanwhile.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.heal import Deploy, deployments, events, instances, server_status
from helpers.load import Load
from helpers.procs import wait_until
from helpers.site import BIN, ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def deploy(tmp_path: Path) -> Iterator[Deploy]:
    yield from deployments(tmp_path)


def test_an_interrupted_scale_in_is_finished_by_the_next_run(deploy: Deploy) -> None:
    dep = deploy("local", desired=3, max=4)
    metric = dep.root / "scale" / "web.desired"
    dep.extra_vars["hapool_pools"][0]["scale"] = {
        "policies": [{"type": "file", "path": str(metric)}],
        "scale_in_stabilization": 0,
        "scale_in_cooldown": 0,
        "max_step_in": 2,
        # Long enough that the run is still waiting on a drain when it is killed: a slow request
        # keeps one drained host busy.
        "drain_timeout": 30,
    }
    before = {i.name for i in instances(dep, "local")}
    assert len(before) == 3
    metric.parent.mkdir(parents=True, exist_ok=True)
    metric.write_text("1\n")

    load = Load("127.0.0.1", dep.frontend, clients=2, rate=30, max_requests=20_000, max_seconds=200).start()
    # Slow downloads (8 KiB at 1 KiB/s) one after the other on three connections: the hosts
    # always have a session open, so draining them takes seconds.
    slow = Load(
        "127.0.0.1", dep.frontend, path="/slow", clients=3, max_requests=60, max_seconds=200, timeout=60
    )
    try:
        slow.start()

        cmd = [str(BIN / "ansible-playbook"), "-i", str(dep.inventory), str(ROOT / "playbooks" / "scale.yml"),
               "-e", json.dumps(dep.extra_vars)]  # fmt: skip
        run = subprocess.Popen(cmd, cwd=ROOT, env=dep.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)  # fmt: skip
        try:
            wait_until(
                lambda: (
                    len([e for e in events(dep) if e["action"] == "scale_drain"]) == 2
                    and "DRAIN" in "".join(server_status(dep, "local").values())
                ),
                120,
                "the scale-in to mark and drain its hosts",
                interval=0.2,
            )
        finally:
            os.killpg(run.pid, signal.SIGKILL)
            run.communicate(timeout=30)
        leaving = {str(e["instance"]) for e in events(dep) if e["action"] == "scale_drain"}
        assert len(leaving) == 2 and leaving <= before
        assert not [e for e in events(dep) if e["action"] == "scale_remove"]
        assert {i.name for i in instances(dep, "local")} == before  # killed before anything was destroyed

        heal = dep.play("heal.yml")
        assert heal.returncode == 0, heal.stdout[-4000:]
        healed = [
            e for e in events(dep) if e["action"] in ("replace", "register") and e["instance"] in leaving
        ]
        assert not healed, healed

        again = dep.play("scale.yml")
        assert again.returncode == 0, again.stdout[-6000:] + again.stderr[-2000:]
        assert "finish removing" in again.stdout, again.stdout[-4000:]
        time.sleep(1)
    finally:
        outcomes = load.stop()
        slow.stop()
    left = {i.name for i in instances(dep, "local")}
    assert left == before - leaving and len(left) == 1
    assert set(server_status(dep, "local")) == left  # no orphan either way
    assert {e["instance"] for e in events(dep) if e["action"] == "scale_remove"} == leaving
    failed = [o for o in outcomes if o.status != 200]
    print(f"\ninterrupted scale-in finished by the next run: {len(outcomes)} requests, {len(failed)} failed")
    assert not failed, failed[:5]
