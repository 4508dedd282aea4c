"""RuntimeClient against a real HAProxy 2.6 and real nginx servers on loopback."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import _core_path
import pytest
from ansible.module_utils.hapool.errors import (
    CommandError,
    DrainTimeoutError,
    NotAdminError,
    UnknownBackendError,
    UnknownServerError,
)
from ansible.module_utils.hapool.haproxy import Command, RuntimeClient, ServerOptions
from ansible.module_utils.hapool.stats import OpState, parse_servers_state
from helpers.pool import Pool, wait_served
from helpers.procs import wait_until

pytestmark = pytest.mark.integration

FAST_CHECKS = ServerOptions(inter=200, fastinter=100, downinter=200, rise=2, fall=2)


def add_web3(pool: Pool, options: ServerOptions = FAST_CHECKS) -> None:
    web3 = pool.webs["web3"]
    pool.client.add_server("app", "web3", web3.host, web3.port, options)
    pool.client.enable_health("app", "web3")
    pool.client.set_server_state("app", "web3", "ready", health_gate=True)


def slow_request(pool: Pool, results: list[tuple[int, int]]) -> threading.Thread:
    def fetch() -> None:
        status, body = pool.get("/slow", timeout=20)
        results.append((status, len(body)))

    thread = threading.Thread(target=fetch, daemon=True)
    thread.start()
    return thread


def busy_server(pool: Pool, timeout: float = 5.0) -> str:
    """The server that has a session in flight."""
    found: list[str] = []

    def look() -> bool:
        found[:] = [r.server for r in pool.client.show_stat("app") if r.is_server and r.scur > 0]
        return bool(found)

    wait_until(look, timeout, "a session in flight")
    return found[0]


def test_show_stat_and_backend_summary(pool: Pool) -> None:
    summary = pool.client.backends()
    assert list(summary) == ["app", "fixed"]
    app = summary["app"]
    assert (app.total, app.available, dict(app.counts)) == (2, 2, {"UP": 2})
    assert app.algo == "roundrobin" and summary["fixed"].algo == "static-rr"
    for _ in range(10):
        assert pool.get()[0] == 200
    app = pool.client.backends("app")["app"]
    assert app.stot >= 10
    assert list(pool.client.backends("fixed")) == ["fixed"]


def test_tcp_socket_and_levels(pool: Pool) -> None:
    assert RuntimeClient(pool.tcp_socket).cli_level() == "admin"
    assert RuntimeClient(f"127.0.0.1:{pool.lb.stats_tcp_port}").backends()["app"].total == 2
    assert RuntimeClient(pool.operator_socket).cli_level() == "operator"
    # A user-level socket reads statistics ...
    user = RuntimeClient(pool.user_socket)
    assert user.backends()["app"].total == 2
    # ... but changes nothing, and says so.
    before = pool.snapshot()
    for client in (user, RuntimeClient(pool.operator_socket)):
        with pytest.raises(NotAdminError, match="Permission denied"):
            client.set_weight("app", "web1", 5)
        with pytest.raises(NotAdminError):
            client.set_server_state("app", "web1", "drain")
        with pytest.raises(NotAdminError):
            client.require_admin()
    assert pool.snapshot() == before
    pool.client.require_admin()


def test_unknown_backend_and_server(pool: Pool) -> None:
    client = pool.client
    with pytest.raises(UnknownBackendError):
        client.show_stat("nope")
    with pytest.raises(UnknownBackendError):
        client.get_server("nope", "web1")
    with pytest.raises(UnknownBackendError):
        client.set_weight("nope", "web1", 3)
    with pytest.raises(UnknownBackendError):
        client.add_server("nope", "x", "127.0.0.1", 1)
    with pytest.raises(UnknownServerError):
        client.set_weight("app", "nope", 3)
    with pytest.raises(UnknownServerError):
        client.set_server_state("app", "nope", "drain")
    with pytest.raises(UnknownServerError):
        client.server_state("app", "nope")
    assert client.get_server("app", "nope") is None


def test_refusals_are_command_errors(pool: Pool) -> None:
    client = pool.client
    web3 = pool.webs["web3"]
    with pytest.raises(CommandError, match="dynamic load balancing"):
        client.add_server("fixed", "f2", web3.host, web3.port)
    with pytest.raises(CommandError, match="Already exists"):
        client.add_server("app", "web1", web3.host, web3.port)
    with pytest.raises(CommandError, match="maintenance mode"):
        client.del_server("app", "web1")
    # The builder refuses 300; HAProxy's own refusal of a hand-made line is a CommandError too.
    with pytest.raises(CommandError, match="between 0 and 256"):
        client.execute(Command("set server app/web1 weight 300"))


def test_add_server_with_health_gate(pool: Pool) -> None:
    client = pool.client
    web3 = pool.webs["web3"]
    client.add_server("app", "web3", web3.host, web3.port, FAST_CHECKS)
    info = client.server_state("app", "web3")
    assert info.admin == "maint" and info.checks_configured and not info.checks_enabled
    assert info.status == "MAINT"
    client.enable_health("app", "web3")
    client.set_server_state("app", "web3", "ready", health_gate=True)
    info = client.server_state("app", "web3")
    # Without the gate HAProxy shows "UP 1/2" here and sends traffic before any check.
    assert info.admin == "ready" and info.checks_enabled and info.status.startswith("DOWN")
    pool.wait_status("web3", "UP", timeout=5)
    wait_served(pool, "web3")
    assert client.server_state("app", "web3").op_state is OpState.RUNNING


def test_added_server_that_fails_checks_gets_no_traffic(pool: Pool) -> None:
    """A new server whose application is down never receives a request."""
    client = pool.client
    client.add_server("app", "broken", "127.0.0.1", 1, FAST_CHECKS)  # nothing listens on port 1
    client.enable_health("app", "broken")
    client.set_server_state("app", "broken", "ready", health_gate=True)
    for _ in range(30):
        status, body = pool.get()
        assert status == 200 and body.startswith(b"Hello web")
    row = pool.row("broken")
    assert row is not None and row.status.startswith("DOWN") and row.stot == 0


def test_drain_waits_for_a_slow_request(pool: Pool) -> None:
    results: list[tuple[int, int]] = []
    thread = slow_request(pool, results)
    server = busy_server(pool)
    pool.client.set_server_state("app", server, "drain")
    assert pool.row(server).status == "DRAIN"
    # 64 KiB at 32 KiB/s: about 2 s in flight. The wait polls until the session has ended
    # (how soon after it returns is the bench's drain scenario).
    polls: list[float] = []
    waited = pool.client.wait_drained(
        "app", server, timeout=15, interval=0.05, sleep=lambda s: (polls.append(s), time.sleep(s))
    )
    assert waited > 0 and polls, "returned before the slow request ended"
    thread.join(10)
    assert results == [(200, 64 * 1024)]
    # New requests went to the other server meanwhile.
    other = "web2" if server == "web1" else "web1"
    assert pool.get()[1].strip() == f"Hello {other}!".encode()


def test_drain_timeout_reports_open_sessions(pool: Pool) -> None:
    results: list[tuple[int, int]] = []
    thread = slow_request(pool, results)
    server = busy_server(pool)
    pool.client.set_server_state("app", server, "drain")
    with pytest.raises(DrainTimeoutError) as info:
        pool.client.wait_drained("app", server, timeout=0.4, interval=0.05)
    assert info.value.sessions == 1 and info.value.queued == 0
    thread.join(10)
    assert results == [(200, 64 * 1024)]


def test_remove_server_waits_then_deletes(pool: Pool) -> None:
    add_web3(pool)
    pool.wait_status("web3", "UP")
    pool.client.set_server_state("app", "web1", "maint")
    pool.client.set_server_state("app", "web2", "maint")
    results: list[tuple[int, int]] = []
    thread = slow_request(pool, results)
    assert busy_server(pool) == "web3"
    pool.client.set_server_state("app", "web1", "ready")
    polls: list[float] = []
    waited = pool.client.remove_server(
        "app", "web3", timeout=15, interval=0.05, sleep=lambda s: (polls.append(s), time.sleep(s))
    )
    assert waited > 0 and polls, "deleted without waiting for the slow request"
    thread.join(2)
    assert results == [(200, 64 * 1024)]
    assert pool.client.get_server("app", "web3") is None
    assert "web3" not in pool.statuses()


def test_weight_and_address(pool: Pool) -> None:
    client = pool.client
    client.set_weight("app", "web1", 7)
    assert client.server_state("app", "web1").weight == 7
    assert pool.row("web1").uweight == 7
    web3 = pool.webs["web3"]
    assert "changed" in client.set_addr("app", "web2", web3.host, web3.port)
    info = client.server_state("app", "web2")
    assert (info.address, info.port) == (web3.host, web3.port)
    assert "no need to change" in client.set_addr("app", "web2", web3.host, web3.port)
    client.set_server_state("app", "web1", "maint")
    assert pool.get()[1].strip() == b"Hello web3!"  # web2's slot now points at web3's nginx


def test_dump_servers_state(pool: Pool, tmp_path: Path) -> None:
    pool.client.set_server_state("app", "web2", "drain")
    target = tmp_path / "state"
    text = pool.client.dump_servers_state(str(target))
    assert target.read_text().rstrip("\n") == text.rstrip("\n")
    states = {s.server: s for s in parse_servers_state(target.read_text())}
    assert states["web2"].admin == "drain" and states["f1"].backend == "fixed"
    assert not list(tmp_path.glob(".hapool-state-*"))  # no temporary file left


def test_socket_permission_denied_for_another_user(nginx_factory, haproxy_factory) -> None:
    """The OS refuses the socket (mode 600, root) to 'nobody': SocketPermissionError.

    Runs the client with the system Python and no Ansible: module_utils is stdlib only.
    """
    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None or os.geteuid() != 0:
        pytest.fail("this test runs as root (as make test does) with Debian's /usr/bin/python3")
    shared = Path(tempfile.mkdtemp(prefix="hapool-perm-"))
    try:
        shared.chmod(0o755)
        web = nginx_factory("web1")
        lb = haproxy_factory(
            {"app": [f"server web1 {web.address} check"]},
            extra_sockets=[f"{shared}/admin.sock mode 600 level admin"],
        )
        assert RuntimeClient(f"{shared}/admin.sock").cli_level() == "admin"
        code = _core_path.SNIPPET + textwrap.dedent(
            f"""
            from ansible.module_utils.hapool.haproxy import RuntimeClient
            from ansible.module_utils.hapool.errors import SocketPermissionError
            try:
                RuntimeClient({f"{shared}/admin.sock"!r}).show_stat()
            except SocketPermissionError as exc:
                print("DENIED", exc)
            """
        )
        proc = subprocess.run(
            [python, "-c", code], user="nobody", capture_output=True, text=True, timeout=30, check=False
        )
        assert proc.stdout.startswith("DENIED permission denied opening"), proc.stdout + proc.stderr
        assert lb.proc.poll() is None
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_remove_server_closes_idle_connections(pool: Pool) -> None:
    """A request that ends while its server is already in MAINT leaves an idle server
    connection, and HAProxy 2.6 refuses ``del server`` until it is purged (pool-purge-delay,
    several seconds); remove_server makes HAProxy close it and deletes at once."""
    client = pool.client
    client.set_server_state("app", "web2", "maint")
    results: list[tuple[int, int]] = []
    thread = slow_request(pool, results)
    assert busy_server(pool) == "web1"
    client.set_server_state("app", "web1", "maint")
    thread.join(10)
    assert results == [(200, 64 * 1024)]
    with pytest.raises(CommandError, match="still has connections"):
        client.del_server("app", "web1")
    assert pool.row("web1").columns["idle_conn_cur"] == "1"
    # Deleted at once: HAProxy closed the idle connection when web1 re-entered MAINT, the
    # deletion did not wait for pool-purge-delay (no poll between the attempts).
    polls: list[float] = []
    client.remove_server(
        "app", "web1", timeout=10, interval=0.05, sleep=lambda s: (polls.append(s), time.sleep(s))
    )
    assert polls == []
    assert client.get_server("app", "web1") is None
