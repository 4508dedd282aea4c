"""A hung host (its nginx stopped with SIGSTOP: the kernel still accepts connections, nobody
answers) against the real HAProxy and the real local provider:

* ``haproxy_server state=absent force=true drain_timeout=0`` takes its server out at once -
  MAINT, ``shutdown sessions server``, ``del server`` - and HAProxy answers the requests that
  were waiting on it from another server (``retry-on empty-response``, ``option redispatch``);
* the local provider destroys a stopped nginx without waiting for its ``stop_timeout``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ansible.module_utils.hapool.haproxy import RuntimeClient
from ansible.module_utils.hapool.providers import DESTROYED
from ansible.module_utils.hapool.providers.local import LocalProvider, pid_alive
from helpers.modules import run_module
from helpers.pool import Pool
from helpers.procs import HAProxy, Nginx, wait_until

pytestmark = pytest.mark.integration

# Sessions left waiting on the hung server before it is taken out.
STUCK = 3


@pytest.fixture
def hung_pool(
    nginx_factory: Callable[..., Nginx], haproxy_factory: Callable[..., HAProxy]
) -> Iterator[Pool]:
    """web1 and web2 behind HAProxy with the role's retry conditions; web1 is stopped (SIGSTOP)
    by the test and continued afterwards, whatever happens."""
    webs = {name: nginx_factory(name) for name in ("web1", "web2")}
    lb = haproxy_factory(
        {
            "app": [
                "retry-on conn-failure empty-response junk-response",
                "timeout server 30s",
                f"server web1 {webs['web1'].address} check",
                f"server web2 {webs['web2'].address} check",
            ]
        }
    )
    pool = Pool(lb=lb, webs=webs, client=RuntimeClient(str(lb.admin_socket), timeout=5))
    for name in webs:
        wait_until(lambda name=name: (row := pool.row(name)) is not None and row.check_status == "L7OK",
                   10, f"first good check of {name}")
    try:
        yield pool
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(webs["web1"].proc.pid, signal.SIGCONT)


def _hang_with_sessions(pool: Pool) -> tuple[list[tuple[int, str]], list[threading.Thread]]:
    """Stop web1 and leave STUCK requests waiting on it (the others went to web2); wait until
    HAProxy holds web1 DOWN."""
    os.kill(pool.webs["web1"].proc.pid, signal.SIGSTOP)
    answers: list[tuple[int, str]] = []

    def ask() -> None:
        try:
            status, body = pool.get("/", timeout=40)
            answers.append((status, body.decode().strip()))
        except OSError as exc:
            answers.append((0, f"{type(exc).__name__}: {exc}"))

    threads = []
    while (row := pool.row("web1")) is not None and row.scur < STUCK:
        thread = threading.Thread(target=ask, daemon=True)
        thread.start()
        threads.append(thread)
        time.sleep(0.02)
        assert len(threads) < 100, "no request reached the stopped web1"
    pool.wait_status("web1", "DOWN", timeout=15)
    return answers, threads


def test_take_out_at_once_plans_shutdown_sessions(hung_pool: Pool) -> None:
    _hang_with_sessions(hung_pool)
    planned = run_module(
        "haproxy_server",
        {"socket": hung_pool.socket, "backend": "app", "name": "web1", "state": "absent", "force": True,
         "drain_timeout": 0},
        check_mode=True,
        diff=True,
    )
    assert planned["changed"] and planned["state"] == "absent" and planned["diff"]["after"] == {}
    assert planned["commands"] == [
        "set server app/web1 state maint",
        "shutdown sessions server app/web1",
        "del server app/web1",
    ]
    row = hung_pool.row("web1")
    assert row is not None and row.status == "DOWN" and row.scur >= STUCK  # check mode changed nothing


def test_a_down_hung_server_is_taken_out_at_once_and_its_requests_answered_elsewhere(hung_pool: Pool) -> None:
    answers, threads = _hang_with_sessions(hung_pool)
    stuck = hung_pool.row("web1").scur  # type: ignore[union-attr]
    result = run_module(
        "haproxy_server",
        {"socket": hung_pool.socket, "backend": "app", "name": "web1", "state": "absent", "force": True,
         "drain_timeout": 0, "poll_interval": 0.05},
    )
    assert not result.get("failed"), result
    assert result["commands"] == [
        "set server app/web1 state maint",
        "shutdown sessions server app/web1",
        "del server app/web1",
    ]
    assert result["forced_sessions"] == stuck and result["state"] == "absent" and result["server"] is None
    assert "web1" not in hung_pool.statuses()
    print(f"\ntook out a DOWN server with {stuck} hung sessions in {result['waited']} s")
    for thread in threads:
        thread.join(10)
    # Every request that waited on web1 was retried on web2 (none was drained for 30 s, none failed).
    assert len(answers) == len(threads) and set(answers) == {(200, "Hello web2!")}, answers
    again = run_module("haproxy_server", {"socket": hung_pool.socket, "backend": "app", "name": "web1",
                                          "state": "absent", "force": True, "drain_timeout": 0})
    assert not again["changed"] and again["commands"] == []


def test_the_drained_path_still_waits_for_a_down_server(hung_pool: Pool) -> None:
    """Without force / drain_timeout 0 nothing changes: the sessions of the hung server are
    waited for (and here the wait runs out), which is why heal.yml takes DOWN servers out at once."""
    _hang_with_sessions(hung_pool)
    result = run_module(
        "haproxy_server",
        {"socket": hung_pool.socket, "backend": "app", "name": "web1", "state": "absent",
         "drain_timeout": 0.5, "poll_interval": 0.05},
    )
    assert result["failed"] and result["error"] == "DrainTimeoutError" and result["sessions"] >= STUCK
    assert result["commands"] == ["set server app/web1 state maint"]
    assert hung_pool.client.server_state("app", "web1").admin == "maint"


# --- the local provider ---------------------------------------------------------------------------


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[LocalProvider]:
    # A stop_timeout far above what the test waits: a stopped host must not wait for it.
    prov = LocalProvider(tmp_path / "local", stop_timeout=600)
    yield prov
    for inst in prov.list():
        for pid in _tree(inst.extra.get("pid") or 0):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        LocalProvider(tmp_path / "local", stop_timeout=5).destroy(inst.pool, inst)


def _stopped(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "T"
    except (OSError, IndexError):
        return False


def _tree(master: int) -> list[int]:
    if not master:
        return []
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat.rsplit(")", 1)[-1].split()[1]) == master:
                    children.append(int(entry))
    return [master, *children]


@pytest.mark.parametrize("which", ["master and workers", "workers only"])
def test_a_stopped_local_host_is_destroyed_without_waiting_for_stop_timeout(
    provider: LocalProvider, which: str
) -> None:
    inst = provider.launch("web")
    prefix = Path(inst.extra["prefix"])
    # The port answers as soon as the master listens; its workers may be forked a moment later.
    wait_until(lambda: len(_tree(int(inst.extra["pid"]))) >= 2, 5, "nginx forked a worker")
    pids = _tree(int(inst.extra["pid"]))  # master and at least one worker
    stopped = pids if which == "master and workers" else pids[1:]
    for pid in stopped:
        os.kill(pid, signal.SIGSTOP)
    wait_until(lambda: all(_stopped(p) for p in stopped), 5, "the processes stopped")
    (listed,) = provider.list("web")
    assert listed.alive  # stopped, not dead: only HAProxy's checks see the hang

    done: list[object] = []
    started = time.monotonic()
    worker = threading.Thread(target=lambda: done.append(provider.destroy("web", inst.name)), daemon=True)
    worker.start()
    worker.join(60)  # stop_timeout is 600 s: a destroy that waited for it would still run
    assert done, "destroy waited for stop_timeout on a stopped nginx"
    print(f"\ndestroyed a stopped local host ({which}) in {time.monotonic() - started:.2f} s")
    gone = done[0]
    assert getattr(gone, "state", None) == DESTROYED
    assert not prefix.exists() and provider.list("web") == []
    assert not any(pid_alive(p) for p in pids)
