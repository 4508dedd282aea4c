"""The balancer heals too (local inventory, real HAProxy and nginx, one deployment for the module).

HAProxy 2.6 in master-worker mode: a worker killed with ``kill -9`` takes the master down with it
(``exit-on-failure``, the default; measured, and asserted below). Nothing else restarted it:
heal.yml failed on the dead socket and only a site.yml brought it back. Now the haproxy role's
supervise script (``<run dir>/ensure-running.sh``) starts it again from its current, validated
configuration and server state - run by heal.yml before anything else, and by the heal watcher
as soon as the stats socket stops answering - and a ``balancer_restart`` event says what was done.

Each test starts with the balancer running and the pool converged (2 hosts UP) and leaves it so,
also when it fails (the fixture restores the configuration and starts the balancer again).
Timings are printed (``-s``), not asserted.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.chaos import config_servers, view
from helpers.heal import events, fresh_pool, instances, shared_deployment
from helpers.procs import unix_cli, wait_until
from helpers.site import ROOT, Deployment

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WATCHER = ROOT / "roles" / "heal_timer" / "files" / "heal_watch.py"


class Balancer:
    """The deployment's HAProxy, seen from its files and processes."""

    def __init__(self, dep: Deployment) -> None:
        self.dep = dep
        self.dir = dep.root / "local" / "haproxy"
        self.run = self.dir / "run"
        self.config = self.dir / "haproxy.cfg"
        self.pid_file = self.run / "haproxy.pid"
        self.master_socket = self.run / "master.sock"
        self.admin_socket = self.run / "admin.sock"
        self.state_file = self.dir / "server-state"
        self.script = self.run / "ensure-running.sh"

    def master(self) -> int | None:
        """The live master in the pid file (not a zombie)."""
        try:
            pid = int(self.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if _alive_haproxy(pid) else None

    def show_proc(self) -> str:
        """The master CLI's ``show proc`` ("" when it does not answer)."""
        try:
            return unix_cli(self.master_socket, "show proc")
        except OSError:
            return ""

    def worker(self) -> int | None:
        """The current worker (``# workers`` in ``show proc``)."""
        section = ""
        for line in self.show_proc().splitlines():
            if line.startswith("#"):
                section = line
            elif section.startswith("# workers") and line.split()[1:2] == ["worker"]:
                return int(line.split()[0])
        return None

    def processes(self) -> list[int]:
        """Master and every child of it."""
        master = self.master()
        if master is None:
            return []
        children = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True, check=False)
        return [master, *(int(p) for p in children.stdout.split())]

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.dep.frontend}/", timeout=1) as resp:
                return resp.status == 200 and resp.read().decode().startswith("Hello ")
        except (urllib.error.URLError, OSError):
            return False

    def ensure(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.script), *args], capture_output=True, text=True, timeout=90, check=False
        )


def _alive_haproxy(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.split("(", 1)[1].split(")", 1)[0] == "haproxy" and stat.rsplit(")", 1)[1].split()[0] != "Z"


def _kill(pids: list[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def balancer_events(dep: Deployment) -> list[dict[str, object]]:
    return [e for e in events(dep) if str(e["action"]).startswith("balancer_")]


def wait_answering(lb: Balancer, since: float, timeout: float = 60) -> float:
    """Seconds from ``since`` (monotonic) until the frontend answers 200 from a web host."""
    wait_until(lb.answers, timeout, "the frontend to answer again", interval=0.02)
    return time.monotonic() - since


@pytest.fixture(scope="module")
def _deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    yield from shared_deployment(tmp_path_factory.mktemp("balancer-heal"), "local")


@pytest.fixture
def lb(_deployment: Deployment) -> Iterator[Balancer]:
    """The running balancer of a converged pool, an empty event log; restored afterwards."""
    dep = _deployment
    balancer = Balancer(dep)
    original = balancer.config.read_text()
    state = balancer.state_file.read_bytes() if balancer.state_file.exists() else None
    fresh_pool(dep)
    assert balancer.master() is not None and balancer.worker() is not None
    try:
        yield balancer
    finally:
        if state is not None:  # what a later start loads
            balancer.state_file.write_bytes(state)
        if balancer.config.read_text() != original:
            balancer.config.write_text(original)
            if balancer.master() is not None:
                unix_cli(balancer.master_socket, "reload")
                wait_until(lambda: balancer.worker() is not None, 30, "a worker after the reload")
        if not balancer.answers():
            done = balancer.ensure()
            assert done.returncode == 0, done.stderr
        wait_until(balancer.answers, 30, "the balancer to answer (clean-up)")


def test_a_killed_worker_takes_the_master_down_and_heal_yml_starts_it_again(lb: Balancer) -> None:
    dep = lb.dep
    master, worker = lb.master(), lb.worker()
    assert master and worker
    killed = time.monotonic()
    _kill([worker])
    # master-worker's default (exit-on-failure): the master leaves with its worker (HAProxy 2.6)
    wait_until(lambda: lb.master() is None, 10, "the master to exit after its worker")
    assert not lb.answers()
    status = dep.play("status.yml")
    assert status.returncode == 0, status.stdout[-3000:]
    assert "balancer DOWN: master not running" in status.stdout, status.stdout[-3000:]

    started = time.monotonic()
    run = dep.play("heal.yml")
    heal_s = time.monotonic() - started
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    assert lb.answers()
    new_master = lb.master()
    assert new_master not in (None, master)
    [event] = balancer_events(dep)
    assert event["action"] == "balancer_restart" and event["by"] == "heal.yml"
    assert event["restart"] == "start" and event["reason"] == "master not running"
    assert event["master"] == new_master and event["instance"] == "localhost" and event["pool"] == ""
    # The start is timed and the frontend answers; how long it takes is a figure, not a test:
    # bench/scenarios/balancer.py measures it (docs/benchmarks.md, "balancer").
    assert float(str(event["duration"])) > 0 and lb.answers()
    names = {i.name for i in instances(dep, "local")}
    assert dep.hosts_answering(2) == {f"Hello {n}!" for n in names}
    print(
        f"\nworker killed -> master gone; heal.yml run {heal_s:.1f} s (kill -> run end "
        f"{time.monotonic() - killed:.1f} s), the start itself {event['duration']} s"
    )


def test_master_and_workers_killed_start_again_from_the_configuration_and_server_state(lb: Balancer) -> None:
    dep = lb.dep
    names = sorted(i.name for i in instances(dep, "local"))
    drained = names[0]
    # a runtime change, saved the way the role's reload handler saves it before a reload
    assert unix_cli(lb.admin_socket, f"set server web/{drained} state drain").strip() == ""
    lb.state_file.write_text(unix_cli(lb.admin_socket, "show servers state"))
    _kill(lb.processes())
    wait_until(lambda: lb.master() is None and not lb.answers(), 10, "the balancer to be gone")

    run = dep.play("heal.yml")
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    [event] = balancer_events(dep)
    assert (event["action"], event["restart"]) == ("balancer_restart", "start")
    # the pool's servers are there, from the configuration; the drain came back from the state file
    v = view(dep)
    assert set(v.servers) == set(names) == config_servers(dep)
    assert v.servers[drained] == "DRAIN", v.servers
    loaded = (lb.run / "loaded-config").read_text().split()
    sha1 = [
        subprocess.run(["sha1sum", str(f)], capture_output=True, text=True, check=True).stdout.split()[0]
        for f in (lb.config, lb.dir / "hapool-stats-users.cfg")
    ]
    assert loaded == sha1  # the marker the role compares: the current files were loaded
    # the new master does not hold the supervise script's lock (it would block every later run)
    lock = subprocess.run(["flock", "-n", str(lb.run / "ensure-running.lock"), "true"], check=False)
    assert lock.returncode == 0
    assert unix_cli(lb.admin_socket, f"set server web/{drained} state ready").strip() == ""
    lb.state_file.write_text(unix_cli(lb.admin_socket, "show servers state"))  # a later start: no drain
    assert dep.hosts_answering(2) == {f"Hello {n}!" for n in names}


def test_the_watcher_starts_the_balancer_again_at_once_without_heal_yml(lb: Balancer, tmp_path: Path) -> None:
    dep = lb.dep
    log, ticks = tmp_path / "watch.log", tmp_path / "ticks"
    watcher = subprocess.Popen(
        [
            sys.executable,
            str(WATCHER),
            "--socket",
            str(lb.admin_socket),
            "--interval",
            "0.2",
            "--ensure",
            f"{lb.script} --restart",
            "--events",
            str(dep.root / "heal" / "events.jsonl"),
            "--instance",
            "localhost",
            "--log",
            str(log),
            "--",
            "sh",
            "-c",
            f"echo tick >> {ticks}",
        ],
        stdin=subprocess.DEVNULL,
    )
    timings: dict[str, float] = {}
    try:
        wait_until(lambda: log.exists() and "polling" in log.read_text(), 20, "the watcher to poll")
        for what, victims in (("worker", lambda: [lb.worker()]), ("master", lb.processes)):
            pids = [p for p in victims() if p]
            assert pids
            killed = time.monotonic()
            _kill(pids)
            timings[what] = wait_answering(lb, killed)
            wait_until(lambda: lb.worker() is not None, 10, "the worker")
            time.sleep(1.5)  # the next kill is a new outage, past the watcher's one-second bound
        wait_until(lambda: ticks.exists() and len(ticks.read_text().split()) >= 2, 20, "the heal ticks")
    finally:
        watcher.send_signal(signal.SIGTERM)
        watcher.wait(30)
    restarts = [e for e in balancer_events(dep) if e["action"] == "balancer_restart"]
    assert [(e["by"], e["restart"]) for e in restarts] == [("watcher", "start"), ("watcher", "start")]
    assert all(float(str(e["down_seconds"])) >= float(str(e["duration"])) for e in restarts)
    text = log.read_text()
    assert text.count("started the master again") == 2 and "running a heal tick" in text
    assert dep.hosts_answering(2)
    print(
        f"\nwatcher (0.2 s polls): kill -9 worker -> frontend answers {timings['worker']:.2f} s; "
        f"kill -9 master + worker -> {timings['master']:.2f} s; starts {[e['duration'] for e in restarts]} s"
    )


def test_a_master_left_without_a_worker_is_reloaded(lb: Balancer) -> None:
    """HAProxy 2.6 forgets `no-exit-on-failure` after its re-exec, so a master without a worker is
    made here another way: a `program` keeps the master a child, and the worker is stopped with
    SIGTERM (not a failure for the master). heal.yml reloads it (no new master)."""
    dep = lb.dep
    lb.config.write_text(lb.config.read_text() + "\nprogram hapool-test-keep\n    command /bin/sleep 600\n")
    unix_cli(lb.master_socket, "reload")
    wait_until(lambda: "hapool-test-keep" in lb.show_proc(), 20, "the program to run")
    master = lb.master()
    _kill([w for w in [lb.worker()] if w], signal.SIGTERM)
    wait_until(lambda: lb.worker() is None and not lb.answers(), 10, "the worker to be gone")
    assert lb.master() == master
    status = dep.play("status.yml")
    assert f"balancer DOWN: master running (pid {master}), no worker" in status.stdout, status.stdout[-3000:]

    run = dep.play("heal.yml")
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    assert lb.master() == master and lb.worker() is not None and lb.answers()
    [event] = balancer_events(dep)
    assert (event["action"], event["restart"], event["master"]) == ("balancer_restart", "reload", master)
    assert event["reason"] == f"master {master} running, no worker"
    print(f"\nmaster without a worker: reloaded in {event['duration']} s")


def test_a_configuration_that_fails_validation_is_not_started(lb: Balancer) -> None:
    dep = lb.dep
    good = lb.config.read_text()
    _kill(lb.processes())
    wait_until(lambda: lb.master() is None, 10, "the balancer to be gone")
    lb.config.write_text(good + "\nfrontend broken\n    no-such-keyword here\n")

    run = dep.play("heal.yml")
    assert run.returncode != 0
    assert "does not pass haproxy -c, so HAProxy was not started" in run.stdout, run.stdout[-5000:]
    assert "no-such-keyword" in run.stdout and "Nothing else was done" in run.stdout
    assert "Plan each pool" not in run.stdout  # nothing after it ran
    assert lb.master() is None and not lb.answers()
    [event] = balancer_events(dep)
    assert event["action"] == "balancer_restart_failed" and "haproxy -c" in str(event["reason"])
    status = dep.play("status.yml")
    assert "balancer DOWN, and it will not be started" in status.stdout, status.stdout[-3000:]
    direct = lb.ensure("--restart")
    assert direct.returncode == 2 and "no-such-keyword" in direct.stderr and direct.stdout == ""
    assert lb.master() is None

    lb.config.write_text(good)
    run = dep.play("heal.yml")
    assert run.returncode == 0, run.stdout[-5000:]
    assert lb.answers() and [e["action"] for e in balancer_events(dep)][-1] == "balancer_restart"


def test_a_balancer_stopped_on_purpose_is_left_alone(lb: Balancer) -> None:
    """teardown.yml's `stop` removes the pid file, then soft-stops: heal.yml, the watcher and the
    timer's ticks (the watcher's --once) do not start it again."""
    dep = lb.dep
    master = lb.master()
    assert master
    lb.pid_file.unlink()  # what tasks_from: stop does: the pid file first, then a soft stop
    os.kill(master, signal.SIGUSR1)
    wait_until(lambda: not _alive_haproxy(master), 30, "the soft stop")
    check = lb.ensure("--check", "--restart")
    assert check.returncode == 0 and json.loads(check.stdout)["action"] == "stopped", check
    once = subprocess.run(
        [sys.executable, str(WATCHER), "--once", "--socket", str(lb.admin_socket), "--ensure",
         f"{lb.script} --restart", "--events", str(dep.root / "heal" / "events.jsonl"), "--by", "timer"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert once.returncode == 0 and "the balancer: stopped" in once.stderr, once.stderr
    run = dep.play("heal.yml")  # leaves it stopped, then fails on its socket as before
    assert run.returncode != 0 and "connection refused" in run.stdout.lower(), run.stdout[-3000:]
    done = lb.ensure("--restart")
    assert done.returncode == 0 and json.loads(done.stdout)["action"] == "stopped"
    assert lb.master() is None and not lb.answers() and balancer_events(dep) == []
    # the role's own start (site.yml) still starts it: the script without --restart
    started = lb.ensure()
    assert started.returncode == 0 and json.loads(started.stdout)["action"] == "start", started.stderr
    assert lb.answers()
