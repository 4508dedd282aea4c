"""Runtime changes across a master-worker reload (``reload`` on the master CLI), HAProxy 2.6.

What is verified here is what haproxy_server documents:
* membership comes from the configuration: a server added at runtime and written into the
  config (the module's ``server_line``) stays; one that is not written there is gone;
* the server-state-file (written by the module's ``state_file``) restores drain / maint and
  the runtime weight, the latter while the config keeps the server's initial weight;
* without the state file, a reload forgets the runtime state.
"""

from __future__ import annotations

import pytest
from helpers.modules import run_module
from helpers.pool import Pool

pytestmark = pytest.mark.integration

CHECKS = {"inter": "200ms", "fastinter": "100ms", "rise": 2, "fall": 2}


def module(pool: Pool, name: str, **args) -> dict:
    result = run_module("haproxy_server", {"socket": pool.socket, "backend": "app", "name": name, **args})
    assert not result.get("failed"), result
    return result


def states(pool: Pool) -> dict[str, tuple[str, int, int]]:
    return {s.server: (s.admin, s.uweight, s.iweight) for s in pool.client.show_servers_state("app")}


def test_membership_and_state_survive_reload(pool: Pool) -> None:
    web3 = pool.webs["web3"]
    state_file = str(pool.lb.state_file)
    added = module(
        pool, "web3", address=web3.host, port=web3.port, weight=10, state_file=state_file, **CHECKS
    )
    assert added["server_line"] == (
        f"server web3 127.0.0.1:{web3.port} check inter 200ms fastinter 100ms rise 2 fall 2 weight 10"
    )
    module(pool, "ghost", address=web3.host, port=web3.port, state_file=state_file, **CHECKS)
    pool.wait_status("web3", "UP")
    module(pool, "web3", state="drain", weight=4, state_file=state_file)
    module(pool, "web2", state="maint", state_file=state_file)
    module(pool, "web1", weight=3, state_file=state_file)
    before = states(pool)
    assert before["web3"] == ("drain", 4, 10) and before["ghost"][0] == "ready"

    # A playbook writes web3 (not ghost) into the configuration, then the role reloads.
    pool.lb.write_config({**pool.lb.backends, "app": [*pool.lb.backends["app"], added["server_line"]]})
    workers = pool.lb.worker_pids()
    pool.lb.reload()
    assert set(pool.lb.worker_pids()).isdisjoint(workers)

    after = states(pool)
    assert set(after) == {"web1", "web2", "web3"}  # ghost was only in the running process
    assert after["web1"] == ("ready", 3, 1)
    assert after["web2"][0] == "maint"
    assert after["web3"] == ("drain", 4, 10)
    assert pool.statuses() == {"web1": "UP", "web2": "MAINT", "web3": "DRAIN"}
    for _ in range(5):
        assert pool.get()[1].strip() == b"Hello web1!"


def test_weight_is_not_restored_when_the_config_weight_differs(pool: Pool) -> None:
    """HAProxy applies a saved weight only if the config's weight is still the saved initial
    weight: the config line must keep the weight the server was added with."""
    state_file = str(pool.lb.state_file)
    module(pool, "web1", weight=5, state_file=state_file)
    lines = [
        line.replace(" check", " check weight 2") if "web1" in line else line
        for line in pool.lb.backends["app"]
    ]
    pool.lb.write_config({**pool.lb.backends, "app": lines})
    pool.lb.reload()
    assert states(pool)["web1"] == ("ready", 2, 2)


def test_without_state_file_a_reload_forgets_runtime_state(pool: Pool) -> None:
    module(pool, "web2", state="maint", weight=7)  # no state_file
    assert not pool.lb.state_file.exists()
    pool.lb.reload()
    assert states(pool)["web2"] == ("ready", 1, 1)
