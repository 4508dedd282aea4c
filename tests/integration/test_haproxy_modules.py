"""The modules themselves (library/haproxy_*.py) against a real HAProxy and nginx.

Most tests run the module file the way Ansible does (``run_module``); one test runs a
playbook through ``ansible-playbook`` and the project's ansible.cfg (AnsiballZ, check mode and
diff handled by Ansible itself).
"""

from __future__ import annotations

import textwrap
import threading
from pathlib import Path

import pytest
from ansible.module_utils.hapool.stats import parse_servers_state
from helpers.modules import run_module, run_playbook
from helpers.pool import Pool, wait_served

pytestmark = pytest.mark.integration

CHECKS = {"inter": "200ms", "fastinter": "100ms", "rise": 2, "fall": 2}


def server(pool: Pool, name: str, **args):
    return run_module("haproxy_server", {"socket": pool.socket, "backend": "app", "name": name, **args})


def server_check(pool: Pool, name: str, **args):
    return run_module(
        "haproxy_server",
        {"socket": pool.socket, "backend": "app", "name": name, **args},
        check_mode=True,
        diff=True,
    )


def web3_args(pool: Pool) -> dict:
    web3 = pool.webs["web3"]
    return {"address": web3.host, "port": web3.port, **CHECKS}


# --- haproxy_stats_info -------------------------------------------------------------------------


def test_stats_info(pool: Pool) -> None:
    pool.client.set_server_state("app", "web2", "drain")
    result = run_module("haproxy_stats_info", {"socket": pool.socket})
    assert not result.get("failed") and result["changed"] is False
    assert result["backend_names"] == ["app", "fixed"]
    app = result["backends"]["app"]
    assert app["servers_total"] == 2 and app["servers_available"] == 1
    assert app["counts"] == {"UP": 1, "DRAIN": 1}
    assert [(s["name"], s["status"]) for s in app["servers"]] == [("web1", "UP"), ("web2", "DRAIN")]
    assert app["servers"][0]["check_status"] == "L7OK" and app["servers"][0]["check_code"] == 200
    flags = [(s["serving"], s["available"], s["failed"]) for s in app["servers"]]
    assert flags == [(True, True, False), (False, False, False)]  # UP, DRAIN


def test_stats_info_filter_tcp_check_mode(pool: Pool) -> None:
    result = run_module(
        "haproxy_stats_info",
        {"socket": pool.tcp_socket, "backend": ["fixed"], "include_servers": False},
        check_mode=True,
    )
    assert result["backend_names"] == ["fixed"]
    assert "servers" not in result["backends"]["fixed"]
    assert result["backends"]["fixed"]["algo"] == "static-rr"


def test_stats_info_failures(pool: Pool, tmp_path: Path) -> None:
    result = run_module("haproxy_stats_info", {"socket": pool.socket, "backend": ["app", "nope"]})
    assert result["failed"] and "no backend named 'nope'" in result["msg"]
    assert result["error"] == "UnknownBackendError"
    result = run_module("haproxy_stats_info", {"socket": str(tmp_path / "missing.sock")})
    assert result["failed"] and "no HAProxy runtime socket" in result["msg"]
    assert result["error"] == "SocketNotFoundError"
    result = run_module("haproxy_stats_info", {"socket": pool.socket, "backend": ["app;show info"]})
    assert result["failed"] and "invalid backend name" in result["msg"]
    # A user-level socket is enough to read.
    result = run_module("haproxy_stats_info", {"socket": pool.user_socket})
    assert not result.get("failed")


# --- haproxy_server -----------------------------------------------------------------------------


def test_add_check_mode_changes_nothing_then_add_is_idempotent(pool: Pool) -> None:
    before = pool.snapshot()
    result = server_check(pool, "web3", **web3_args(pool))
    assert result["changed"] and not result.get("failed")
    port = pool.webs["web3"].port
    assert result["commands"] == [
        f"add server app/web3 127.0.0.1:{port} check inter 200ms fastinter 100ms rise 2 fall 2",
        "enable health app/web3",
        "set server app/web3 state ready; set server app/web3 health down",
    ]
    assert result["diff"]["before"] == {} and result["diff"]["after"]["state"] == "ready"
    assert result["state"] == "ready" and result["before"] is None
    assert pool.snapshot() == before and "web3" not in pool.statuses()

    result = server(pool, "web3", **web3_args(pool))
    assert result["changed"] and result["state"] == "ready"
    assert result["server"]["checks_enabled"] and result["server"]["status"].startswith("DOWN")
    assert result["server_line"].startswith(f"server web3 127.0.0.1:{pool.webs['web3'].port} check inter")
    pool.wait_status("web3", "UP")
    wait_served(pool, "web3")

    again = server(pool, "web3", **web3_args(pool))
    assert not again["changed"] and again["commands"] == []
    assert not server_check(pool, "web3", **web3_args(pool))["changed"]
    # present with no address leaves an existing server alone
    assert not server(pool, "web3")["changed"]


def test_missing_server_without_address_fails(pool: Pool) -> None:
    result = server(pool, "web9", state="ready")
    assert result["failed"] and "give address and port" in result["msg"]
    assert (result["backend"], result["name"]) == ("app", "web9")
    planned = server_check(pool, "web9", state="ready")  # check mode fails the same way
    assert planned["failed"] and (planned["backend"], planned["name"]) == ("app", "web9")


def test_drain_maint_ready_check_mode_and_idempotence(pool: Pool) -> None:
    for state, status in (("drain", "DRAIN"), ("maint", "MAINT"), ("ready", "UP")):
        before = pool.snapshot()
        planned = server_check(pool, "web1", state=state)
        assert planned["changed"] and planned["state"] == state
        assert planned["diff"]["after"]["state"] == state
        assert pool.snapshot() == before, f"check mode changed HAProxy ({state})"

        done = server(pool, "web1", state=state)
        assert done["changed"] and done["state"] == state and done["commands"] == planned["commands"]
        if state == "ready":  # maint -> ready waits for `rise` good checks
            assert planned["commands"] == ["set server app/web1 state ready; set server app/web1 health down"]
        pool.wait_status("web1", status)
        assert not server(pool, "web1", state=state)["changed"]
        assert not server_check(pool, "web1", state=state)["changed"]


def test_ready_without_health_gate(pool: Pool) -> None:
    server(pool, "web1", state="maint")
    result = server(pool, "web1", state="ready", health_gate=False)
    assert result["commands"] == ["set server app/web1 state ready"]
    assert result["server"]["status"].startswith("UP")  # HAProxy assumes UP before a check


def test_weight_and_address(pool: Pool) -> None:
    planned = server_check(pool, "web2", weight=30)
    assert planned["changed"] and planned["commands"] == ["set server app/web2 weight 30"]
    assert planned["diff"]["before"]["weight"] == 1 and planned["diff"]["after"]["weight"] == 30
    assert pool.client.server_state("app", "web2").weight == 1
    assert server(pool, "web2", weight=30)["server"]["weight"] == 30
    assert not server(pool, "web2", weight=30)["changed"]

    web3 = pool.webs["web3"]
    result = server(pool, "web2", address=web3.host, port=web3.port)
    assert result["changed"] and result["commands"] == [
        f"set server app/web2 addr 127.0.0.1 port {web3.port}"
    ]
    assert result["server"]["port"] == web3.port
    assert not server(pool, "web2", address=web3.host, port=web3.port)["changed"]
    result = server(pool, "web2", address="localhost", port=web3.port)
    assert result["failed"] and "IP address" in result["msg"]


def test_absent_waits_and_is_idempotent(pool: Pool) -> None:
    assert server(pool, "web3", **web3_args(pool))["changed"]
    planned = server_check(pool, "web3", state="absent")
    assert planned["changed"] and planned["commands"] == [
        "set server app/web3 state maint",
        "del server app/web3",
    ]
    assert planned["state"] == "absent" and planned["diff"]["after"] == {}
    assert "web3" in pool.statuses()
    result = server(pool, "web3", state="absent")
    assert result["changed"] and result["state"] == "absent" and result["server"] is None
    assert "web3" not in pool.statuses()
    again = server(pool, "web3", state="absent")
    assert not again["changed"] and again["commands"] == []


def test_drain_wait_returns_when_the_slow_request_ends(pool: Pool) -> None:
    results = []
    thread = threading.Thread(target=lambda: results.append(pool.get("/slow", timeout=20)), daemon=True)
    server(pool, "web2", state="maint")  # the slow request goes to web1
    thread.start()
    pool.wait_until_sessions("web1", 1)
    result = server(pool, "web1", state="drain", wait=True, drain_timeout=20, poll_interval=0.05)
    # It waited for the request (which ended whole) and returned before its drain_timeout ran
    # out (that would have failed). How soon after the request it returns is measured by the
    # bench's drain scenario, not asserted here.
    assert not result.get("failed") and result["changed"]
    assert result["sessions"] == 0 and result["waited"] > 0
    thread.join(10)
    assert results and results[0][0] == 200 and len(results[0][1]) == 64 * 1024


def test_drain_wait_timeout_fails_with_the_open_count(pool: Pool) -> None:
    results = []
    thread = threading.Thread(target=lambda: results.append(pool.get("/slow", timeout=20)), daemon=True)
    server(pool, "web2", state="maint")
    thread.start()
    pool.wait_until_sessions("web1", 1)
    result = server(pool, "web1", state="drain", wait=True, drain_timeout=0.3, poll_interval=0.05)
    assert result["failed"] and result["sessions"] == 1 and result["queued"] == 0
    assert "still has 1 current session" in result["msg"]
    assert result["changed"] and result["commands"] == ["set server app/web1 state drain"]
    thread.join(10)
    assert results[0][0] == 200


def test_absent_timeout_fails_and_leaves_the_server_in_maint(pool: Pool) -> None:
    results = []
    thread = threading.Thread(target=lambda: results.append(pool.get("/slow", timeout=20)), daemon=True)
    server(pool, "web2", state="maint")
    thread.start()
    pool.wait_until_sessions("web1", 1)
    result = server(pool, "web1", state="absent", drain_timeout=0.3, poll_interval=0.05)
    assert result["failed"] and result["sessions"] == 1 and "still has 1 current session" in result["msg"]
    assert result["error"] == "DrainTimeoutError"
    assert result["changed"] and result["commands"] == ["set server app/web1 state maint"]
    assert pool.client.server_state("app", "web1").admin == "maint"
    thread.join(10)
    assert results[0][0] == 200 and len(results[0][1]) == 64 * 1024
    assert server(pool, "web1", state="absent", drain_timeout=5)["changed"]
    assert "web1" not in pool.statuses()


def test_absent_force_closes_what_is_left_after_the_drain_timeout(pool: Pool) -> None:
    results: list[object] = []

    def slow() -> None:
        try:
            results.append(pool.get("/slow", timeout=20))
        except Exception as exc:  # the session is cut: that is the point
            results.append(exc)

    thread = threading.Thread(target=slow, daemon=True)
    server(pool, "web2", state="maint")
    thread.start()
    pool.wait_until_sessions("web1", 1)
    result = server(pool, "web1", state="absent", drain_timeout=0.5, poll_interval=0.05, force=True)
    assert not result.get("failed"), result
    assert result["forced_sessions"] == 1 and result["state"] == "absent"
    assert result["commands"] == [
        "set server app/web1 state maint",
        "shutdown sessions server app/web1",
        "del server app/web1",
    ]
    assert "web1" not in pool.statuses()
    thread.join(10)
    # The module did not wait for the request to end: its session was cut (the client got an
    # error, not the whole 64 KiB answer), and only then was the server deleted. How long the
    # take-out takes is measured by the bench (drain scenario), not asserted here.
    assert len(results) == 1 and isinstance(results[0], Exception), results
    # Nothing else was touched; without a session left, force changes nothing.
    assert server(pool, "web2", state="absent", drain_timeout=5, force=True)["forced_sessions"] == 0


# The builder is tested with many more in tests/unit/test_haproxy_commands.py.
HOSTILE = [
    "web1;del server app/web2",
    "web1 state maint",
    "web1\nset server app/web2 state maint",
    "app/web2",
]


@pytest.mark.parametrize("field", ["name", "backend"])
def test_hostile_names_are_rejected_and_haproxy_is_unchanged(pool: Pool, field: str) -> None:
    before = pool.snapshot()
    for hostile in HOSTILE:
        args = {"backend": "app", "name": "web1", field: hostile}
        result = run_module("haproxy_server", {"socket": pool.socket, "state": "maint", **args})
        assert result["failed"], hostile
        assert "invalid" in result["msg"] or "reserved" in result["msg"], result["msg"]
    for hostile_address in ("127.0.0.1;show info", "127.0.0.1 port 1"):
        result = server(pool, "web9", address=hostile_address, port=80)
        assert result["failed"] and "invalid address" in result["msg"]
    result = server(pool, "web9", address="127.0.0.1", port=80, inter="2s;show info")
    assert result["failed"] and "inter" in result["msg"]
    assert pool.snapshot() == before


def test_not_admin_fails_clearly(pool: Pool) -> None:
    before = pool.snapshot()
    result = run_module(
        "haproxy_server", {"socket": pool.operator_socket, "backend": "app", "name": "web1", "state": "drain"}
    )
    assert result["failed"] and "level 'operator'" in result["msg"]
    result = server(pool, "web1", state="drain", socket=pool.socket.replace("admin", "none"))
    assert result["failed"] and "no HAProxy runtime socket" in result["msg"]
    result = run_module("haproxy_server", {"socket": pool.socket, "backend": "nope", "name": "x"})
    assert result["failed"] and "nope" in result["msg"]
    assert pool.snapshot() == before


def test_state_file_is_written_after_a_change(pool: Pool, tmp_path: Path) -> None:
    state_file = tmp_path / "server-state"
    result = server(pool, "web2", state="drain", weight=9, state_file=str(state_file))
    assert result["state_file_written"]
    states = {s.server: s for s in parse_servers_state(state_file.read_text())}
    assert states["web2"].admin == "drain" and states["web2"].uweight == 9
    state_file.unlink()
    assert not server(pool, "web2", state="drain", state_file=str(state_file))["state_file_written"]
    assert not state_file.exists()
    assert not server_check(pool, "web2", state="maint", state_file=str(state_file))["state_file_written"]


def test_through_ansible_playbook_check_mode_diff_idempotence(pool: Pool, tmp_path: Path) -> None:
    """The real controller path: ansible-playbook, the project's ansible.cfg, AnsiballZ."""
    web3 = pool.webs["web3"]
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        textwrap.dedent(
            f"""\
            - name: haproxy_server through ansible-playbook
              hosts: localhost
              gather_facts: false
              module_defaults:
                haproxy_server: {{socket: "{pool.socket}", backend: app}}
                haproxy_stats_info: {{socket: "{pool.socket}"}}
              tasks:
                - name: Add web3 in check mode
                  haproxy_server:
                    name: web3
                    address: "{web3.host}"
                    port: {web3.port}
                    inter: 200ms
                    rise: 2
                  check_mode: true
                  register: planned
                - name: Read the pool
                  haproxy_stats_info: {{backend: [app]}}
                  register: stats
                - name: Check mode added nothing
                  ansible.builtin.assert:
                    that:
                      - planned is changed
                      - planned.commands | length == 3
                      - "'web3' not in (stats.backends.app.servers | map(attribute='name'))"
                - name: Add web3
                  haproxy_server:
                    name: web3
                    address: "{web3.host}"
                    port: {web3.port}
                    inter: 200ms
                    rise: 2
                  diff: true
                  register: added
                - name: Add web3 again
                  haproxy_server:
                    name: web3
                    address: "{web3.host}"
                    port: {web3.port}
                    inter: 200ms
                    rise: 2
                  register: again
                - name: Drain web3 in check mode
                  haproxy_server: {{name: web3, state: drain}}
                  check_mode: true
                  register: drain_planned
                - name: Read web3
                  haproxy_stats_info: {{backend: [app]}}
                  register: stats2
                - name: Drain web3
                  haproxy_server: {{name: web3, state: drain, wait: true, drain_timeout: 10}}
                  register: drained
                - name: Drain web3 again
                  haproxy_server: {{name: web3, state: drain}}
                  register: drained_again
                - name: Remove web3
                  haproxy_server: {{name: web3, state: absent, drain_timeout: 10}}
                  register: removed
                - name: Remove web3 again
                  haproxy_server: {{name: web3, state: absent}}
                  register: removed_again
                - name: A hostile name
                  haproxy_server: {{name: "web1;disable server app/web2", state: maint}}
                  register: hostile
                  ignore_errors: true
                - name: Results
                  ansible.builtin.assert:
                    that:
                      - added is changed
                      - added.state == 'ready'
                      - added.diff.after.port == {web3.port}
                      - again is not changed
                      - drain_planned is changed
                      - >-
                        (stats2.backends.app.servers | selectattr('name', 'eq', 'web3') | first).status
                        != 'DRAIN'
                      - drained is changed and drained.state == 'drain' and drained.sessions == 0
                      - drained_again is not changed
                      - removed is changed and removed.state == 'absent'
                      - removed_again is not changed
                      - hostile is failed and 'invalid server name' in hostile.msg
            """
        )
    )
    before = pool.snapshot()
    proc = run_playbook(playbook, "--diff")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert "failed=0" in proc.stdout and "ignored=1" in proc.stdout
    assert pool.snapshot() == before  # web3 added and removed again, nothing else touched
