"""No request is lost while servers are added, drained, removed and re-weighted under load.

A bounded load (4 keep-alive clients, at most 40 000 requests / 30 s, in practice a few
seconds) runs through HAProxy on loopback while the haproxy_server module changes the pool.
HAProxy's config is production-like: ``option redispatch``, ``retries 3``,
``option idle-close-on-response`` (tests/helpers/procs.py).
"""

from __future__ import annotations

import pytest
from helpers.load import Load
from helpers.modules import run_module
from helpers.pool import Pool

pytestmark = pytest.mark.integration

CHECKS = {"inter": "200ms", "fastinter": "100ms", "rise": 2, "fall": 2}


def module(pool: Pool, name: str, **args) -> dict:
    result = run_module("haproxy_server", {"socket": pool.socket, "backend": "app", "name": name, **args})
    assert not result.get("failed"), result
    return result


def assert_no_loss(outcomes, allowed: set[str]) -> None:
    failures = [o for o in outcomes if o.error or o.status != 200]
    assert not failures, f"{len(failures)} failed of {len(outcomes)}: {failures[:5]}"
    assert {o.body for o in outcomes} <= allowed


def test_scale_out_drain_remove_under_load_loses_nothing(pool: Pool) -> None:
    web3 = pool.webs["web3"]
    load = Load("127.0.0.1", pool.lb.frontend_port).start()
    try:
        load.wait_for("Hello web1!")

        # Scale out: web3 joins and takes traffic once its checks pass.
        module(pool, "web3", address=web3.host, port=web3.port, **CHECKS)
        load.wait_for("Hello web3!")

        # Scale in: drain web1 until its last request is answered, then delete it.
        drained = module(pool, "web1", state="drain", wait=True, drain_timeout=10, poll_interval=0.05)
        assert drained["sessions"] == 0
        removed = module(pool, "web1", state="absent", drain_timeout=10, poll_interval=0.05)
        assert removed["state"] == "absent"
        after_removal = load.mark()

        # Re-weight the rest; then maintenance and back for web2 (web3 carries the load).
        module(pool, "web2", weight=3)
        module(pool, "web2", state="maint", wait=True, drain_timeout=10, poll_interval=0.05)
        module(pool, "web2", state="ready")
        pool.wait_status("web2", "UP")
        load.wait_for("Hello web2!")
    finally:
        outcomes = load.stop()

    assert len(outcomes) > 300
    assert_no_loss(outcomes, {"Hello web1!", "Hello web2!", "Hello web3!"})
    late_web1 = [o for o in outcomes if o.seq > after_removal and o.body == "Hello web1!"]
    assert not late_web1, "web1 answered after it was removed"
    assert pool.client.get_server("app", "web1") is None
    assert sorted(pool.statuses()) == ["web2", "web3"]


def test_reload_under_load_keeps_state_and_loses_nothing(pool: Pool) -> None:
    """Master-worker reload with the server-state-file, while clients keep sending."""
    web3 = pool.webs["web3"]
    state_file = str(pool.lb.state_file)
    load = Load("127.0.0.1", pool.lb.frontend_port).start()
    try:
        added = module(pool, "web3", address=web3.host, port=web3.port, state_file=state_file, **CHECKS)
        pool.wait_status("web3", "UP")
        module(pool, "web2", state="drain", wait=True, drain_timeout=10, state_file=state_file)
        # The playbook writes the membership into the configuration, then reloads.
        pool.lb.write_config({**pool.lb.backends, "app": [*pool.lb.backends["app"], added["server_line"]]})
        pool.client.dump_servers_state(state_file)
        pool.lb.reload()
        mark = load.mark()
        load.wait_for("Hello web3!")
        pool.lb.reload()
    finally:
        outcomes = load.stop()
    assert len(outcomes) > 300
    assert_no_loss(outcomes, {"Hello web1!", "Hello web2!", "Hello web3!"})
    assert not [o for o in outcomes if o.seq > mark and o.body == "Hello web2!"]  # still draining
    assert pool.statuses() == {"web1": "UP", "web2": "DRAIN", "web3": "UP"}
