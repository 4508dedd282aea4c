"""The watcher (roles/heal_timer/files/heal_watch.py): its transition rule and show stat reader,
and its supervision of the balancer - the supervise script run when the stats socket stops
answering (rate-limited, backing off while it fails), the balancer_restart events it appends
(the format of events.py, read back by events.py) and the heal tick that follows. The
supervise scripts here are small shell scripts standing in for the haproxy role's (the real
one against a real HAProxy: tests/e2e/test_balancer_heal.py)."""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import pathlib
import socket
import sys
import threading
import time

import pytest
from ansible.module_utils.hapool.events import REQUIRED_KEYS, append_event, make_event, read_events

PATH = pathlib.Path(__file__).resolve().parents[2] / "roles" / "heal_timer" / "files" / "heal_watch.py"
spec = importlib.util.spec_from_file_location("heal_watch", PATH)
assert spec and spec.loader
heal_watch = importlib.util.module_from_spec(spec)
sys.modules["heal_watch"] = heal_watch  # dataclasses look their module up
spec.loader.exec_module(heal_watch)


@pytest.mark.parametrize(
    ("previous", "current", "fires"),
    [
        ("UP", "DOWN", True),
        ("UP", "UP 1/2", True),  # first failed check of a server going down
        ("UP 1/2", "DOWN", True),
        ("UP 1/2", "UP 1/2", False),
        ("DOWN", "DOWN", False),
        ("DOWN 1/2", "DOWN", False),  # was already down, failed its way back
        ("DOWN", "DOWN 1/2", False),  # coming up
        ("UP", "MAINT", False),
        ("UP", "DRAIN", False),
        ("MAINT", "DOWN", True),
        (None, "DOWN", True),  # a new server that is down
        (None, "UP", False),
        ("UP", "UP", False),
    ],
)
def test_transitions(previous: str | None, current: str, fires: bool) -> None:
    assert heal_watch.failing(previous, current) is fires


def test_show_stat_over_a_unix_socket(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "s.sock")
    answer = (
        "# pxname,svname,qcur,status,type\n"
        "fe,FRONTEND,,OPEN,0\nweb,web-a,0,UP,2\nweb,web-b,0,DOWN,2\nweb,BACKEND,0,UP,1\n\n"
    )
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            assert conn.recv(100) == b"show stat\n"
            conn.sendall(answer.encode())

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        assert heal_watch.show_stat(path, 2) == {("web", "web-a"): "UP", ("web", "web-b"): "DOWN"}
    finally:
        thread.join(5)
        server.close()


# ------------------------------------------------------------------------------ re-run rule


@pytest.mark.parametrize(
    ("during_run", "runs"),
    [
        ([], 1),  # nothing seen during the run: no second run
        ([("web-b", "UP 1/2")], 2),  # one transition during the run: one more run after it
        ([("web-b", "UP 1/2"), ("web-b", "DOWN"), ("web-c", "DOWN")], 2),  # several: still one
    ],
)
def test_a_transition_during_a_run_triggers_exactly_one_more_run_after_it(
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    during_run: list[tuple[str, str]],
    runs: int,
) -> None:
    """The heal tick is a real process (a shell script that logs its start and end and waits for
    the test to release it); only the stats source is a stand-in: show_stat returns the table the
    test sets, so each poll sees exactly the transitions chosen here."""
    table = {("web", "web-a"): "UP", ("web", "web-b"): "UP", ("web", "web-c"): "UP"}
    monkeypatch.setattr(heal_watch, "show_stat", lambda _path, _timeout: dict(table))
    runs_log = tmp_path / "runs"
    tick = _script(
        tmp_path,
        "tick.sh",
        f"""n=$(($(grep -c start {runs_log} 2>/dev/null || true) + 1))
echo "start $n" >> {runs_log}
while [ ! -e {tmp_path}/release-$n ]; do sleep 0.02; done
echo "end $n" >> {runs_log}
""",
    )
    args = argparse.Namespace(
        socket=str(tmp_path / "unused.sock"), timeout=1.0, ensure=None, ensure_interval=1.0, events=None,
        instance="lb1", by="watcher", command=[str(tick)], fast_path=None, module_utils=None, fast_retry=60.0,
        fast_scale=False, scale_interval=2.0,
    )  # fmt: skip
    watcher = heal_watch.Watcher(args, io.StringIO())

    def lines() -> list[str]:
        return runs_log.read_text().splitlines() if runs_log.exists() else []

    def wait_for(line: str) -> None:
        deadline = time.monotonic() + 10
        while line not in lines():
            assert time.monotonic() < deadline, f"{line!r} never logged: {lines()}"
            time.sleep(0.02)

    def finish(n: int) -> None:
        (tmp_path / f"release-{n}").touch()
        watcher.running.wait(10)
        wait_for(f"end {n}")

    try:
        watcher.poll()
        assert watcher.running is None  # all UP: nothing to do
        table["web", "web-a"] = "DOWN"
        watcher.poll()
        wait_for("start 1")
        for name, status in during_run:  # each seen by a poll while run 1 is still going
            table["web", name] = status
            watcher.poll()
        for _ in range(3):
            watcher.poll()
        assert lines() == ["start 1"]  # a run in progress is never doubled
        finish(1)
        for _ in range(3):  # the first poll after run 1 ended starts the one more run, if any
            watcher.poll()
        if runs == 2:
            wait_for("start 2")
            for _ in range(3):  # nothing new seen during run 2
                watcher.poll()
            finish(2)
            for _ in range(3):
                watcher.poll()
        time.sleep(0.2)
        assert watcher.running is None
        expected = ["start 1", "end 1", "start 2", "end 2"][: 2 * runs]
        assert lines() == expected  # the one more run started after the first ended, and no third
    finally:
        for n in (1, 2, 3):
            (tmp_path / f"release-{n}").touch()
        if watcher.running is not None:
            watcher.running.wait(30)


def test_a_server_added_down_is_no_failure_but_its_later_fall_is(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server added at runtime starts DOWN (health-gated) until its good checks: the watcher
    does not run a tick for it. A server DOWN at the watcher's first poll, and a new server that
    later goes from UP to DOWN, do. Only the stats source is a stand-in (as above)."""
    table = {("web", "web-a"): "DOWN"}
    monkeypatch.setattr(heal_watch, "show_stat", lambda _path, _timeout: dict(table))
    args = argparse.Namespace(
        socket=str(tmp_path / "unused.sock"), timeout=1.0, ensure=None, ensure_interval=1.0, events=None,
        instance="lb1", by="watcher", command=["true"], fast_path=None, module_utils=None, fast_retry=60.0,
        fast_scale=False, scale_interval=2.0,
    )  # fmt: skip
    log = io.StringIO()
    watcher = heal_watch.Watcher(args, log)
    watcher.poll()
    assert watcher.running is not None  # DOWN at the first poll: a failure
    watcher.running.wait(10)
    table["web", "web-a"] = "UP"
    table["web", "web-new"] = "DOWN"  # added at runtime, health-gated
    for _ in range(3):
        watcher.poll()
    assert "web/web-new" not in log.getvalue() and not watcher.pending
    table["web", "web-new"] = "UP"
    watcher.poll()
    table["web", "web-new"] = "DOWN"
    watcher.poll()
    assert "web/web-new: UP -> DOWN" in log.getvalue()
    if watcher.running is not None:
        watcher.running.wait(10)


# ------------------------------------------------------------------------------ events


def test_an_event_has_the_keys_of_events_py_in_their_order() -> None:
    event = heal_watch.make_event(
        "balancer_restart",
        "lb1",
        "master not running",
        0.31234,
        1700000000.12345,
        by="watcher",
        restart="start",
        master=12,
        worker=None,
    )
    assert list(event)[:6] == list(REQUIRED_KEYS)
    assert event == {
        "time": 1700000000.123,
        "pool": "",
        "action": "balancer_restart",
        "instance": "lb1",
        "reason": "master not running",
        "duration": 0.312,
        "by": "watcher",
        "restart": "start",
        "master": 12,
    }
    # the same as events.py makes, extras in the same order
    assert event == make_event(
        time=1700000000.12345,
        pool="",
        action="balancer_restart",
        instance="lb1",
        reason="master not running",
        duration=0.31234,
        by="watcher",
        restart="start",
        master=12,
        worker=None,
    )


def test_appended_events_are_read_back_by_events_py_also_after_a_torn_line(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "heal" / "events.jsonl"
    heal_watch.append_event(
        str(log), heal_watch.make_event("balancer_restart", "lb1", "r1", 0.2, time.time())
    )
    with log.open("ab") as handle:
        handle.write(b'{"time": 1, "pool": "web", "act')  # a writer killed in the middle of a line
    heal_watch.append_event(
        str(log), heal_watch.make_event("balancer_restart_failed", "lb1", "r2", None, time.time())
    )
    append_event(str(log), make_event(time=time.time(), pool="web", action="replace", instance="web-1"))
    assert [(e["action"], e["reason"]) for e in read_events(str(log))] == [
        ("balancer_restart", "r1"),
        ("balancer_restart_failed", "r2"),
        ("replace", ""),
    ]
    assert len(log.read_bytes().splitlines()) == 4


def test_appends_from_threads_and_events_py_never_interleave(tmp_path: pathlib.Path) -> None:
    log = str(tmp_path / "events.jsonl")

    def watcher_side(n: int) -> None:
        for i in range(50):
            heal_watch.append_event(
                log, heal_watch.make_event("balancer_restart", f"w{n}", "x" * 500, i, time.time())
            )

    def module_side() -> None:
        for i in range(50):
            append_event(
                log,
                make_event(time=time.time(), pool="web", action="replace", instance=str(i), reason="y" * 500),
            )

    threads = [threading.Thread(target=watcher_side, args=(n,)) for n in range(3)]
    threads.append(threading.Thread(target=module_side))
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    lines = pathlib.Path(log).read_text().splitlines()
    assert len(lines) == 200
    assert all(isinstance(json.loads(line), dict) for line in lines)


# ------------------------------------------------------------------------------ supervision


def test_the_supervise_script_runs_at_once_then_at_most_once_an_interval_doubling_on_failure() -> None:
    sup = heal_watch.Supervisor(interval=1.0, maximum=4.0)
    assert sup.due(100.0)
    sup.attempted(100.0, ok=False)
    assert not sup.due(101.9) and sup.due(102.0)  # 1 s doubled after one failure
    sup.attempted(102.0, ok=False)
    assert not sup.due(105.9) and sup.due(106.0)  # 4 s
    sup.attempted(106.0, ok=False)
    assert not sup.due(109.9) and sup.due(110.0)  # capped at maximum
    sup.attempted(110.0, ok=True)
    assert not sup.due(110.5) and sup.due(111.0)  # success: back to the interval
    sup.recovered()
    assert sup.due(111.1)  # the socket answered again: the next outage is handled at once


def _script(tmp_path: pathlib.Path, name: str, body: str) -> pathlib.Path:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_run_ensure_reads_the_report_and_the_reason_of_a_failure(tmp_path: pathlib.Path) -> None:
    ok = _script(
        tmp_path, "ok.sh", """echo '{"action": "start", "reason": "master not running", "seconds": 0.1}'\n"""
    )
    bad = _script(tmp_path, "bad.sh", "echo 'haproxy.cfg does not pass haproxy -c' >&2; exit 2\n")
    mute = _script(tmp_path, "mute.sh", "echo hello\n")
    slow = _script(tmp_path, "slow.sh", "sleep 5\n")
    result = heal_watch.run_ensure([str(ok)], 10)
    assert (result.returncode, result.report["action"], result.error) == (0, "start", "")
    result = heal_watch.run_ensure([str(bad)], 10)
    assert result.returncode == 2 and "does not pass haproxy -c" in result.error
    result = heal_watch.run_ensure([str(mute)], 10)
    assert result.returncode == 1 and "no report" in result.error
    result = heal_watch.run_ensure([str(slow)], 0.3)
    assert result.returncode == -1 and "timed out" in result.error
    result = heal_watch.run_ensure([str(tmp_path / "missing.sh")], 10)
    assert result.returncode == -1 and "missing.sh" in result.error


def _watcher(
    tmp_path: pathlib.Path, ensure: pathlib.Path, interval: float = 1.0
) -> tuple[object, io.StringIO]:
    args = argparse.Namespace(
        socket=str(tmp_path / "no-such.sock"),
        interval=0.05,
        timeout=1.0,
        ensure=f"{ensure} --restart",
        ensure_interval=interval,
        ensure_timeout=10.0,
        events=str(tmp_path / "events.jsonl"),
        instance="lb1",
        by="watcher",
        once=False,
        fast_path=None,
        module_utils=None,
        fast_retry=60.0,
        fast_scale=False, scale_interval=2.0,
        command=["sh", "-c", f"echo tick >> {tmp_path / 'ticks'}"],
    )
    log = io.StringIO()
    return heal_watch.Watcher(args, log), log


def _events(tmp_path: pathlib.Path) -> list[dict[str, object]]:
    return read_events(str(tmp_path / "events.jsonl"))


def test_a_dead_socket_starts_the_balancer_logs_the_restart_and_runs_a_tick(tmp_path: pathlib.Path) -> None:
    calls = tmp_path / "calls"
    ensure = _script(
        tmp_path,
        "ensure.sh",
        f"""echo "$@" >> {calls}
echo '{{"action": "start", "reason": "master not running", "seconds": 0.25, "master": 10, "worker": 11}}'
""",
    )
    watcher, log = _watcher(tmp_path, ensure)
    watcher.poll()
    assert calls.read_text() == "--restart\n"
    [event] = _events(tmp_path)
    assert event["action"] == "balancer_restart" and event["pool"] == "" and event["instance"] == "lb1"
    assert (
        event["reason"],
        event["duration"],
        event["restart"],
        event["master"],
        event["worker"],
        event["by"],
    ) == ("master not running", 0.25, "start", 10, 11, "watcher")
    assert event["down_seconds"] >= 0
    assert "started the master again in 0.25 s" in log.getvalue()
    watcher.running.wait(10)  # the heal tick that follows the restart
    assert (tmp_path / "ticks").read_text() == "tick\n"
    # polls right after: the socket is still missing here, the script is not run again within the interval
    for _ in range(5):
        watcher.poll()
    assert calls.read_text() == "--restart\n"
    time.sleep(1.05)
    watcher.poll()
    assert calls.read_text() == "--restart\n--restart\n"


def test_a_balancer_that_cannot_start_logs_one_failure_per_outage_and_backs_off(
    tmp_path: pathlib.Path,
) -> None:
    calls = tmp_path / "calls"
    ensure = _script(
        tmp_path,
        "ensure.sh",
        f"""echo x >> {calls}
echo '/x/haproxy.cfg does not pass haproxy -c, so HAProxy was not started: [ALERT] unknown keyword' >&2
exit 2
""",
    )
    watcher, log = _watcher(tmp_path, ensure, interval=0.2)
    deadline = time.monotonic() + 1.9
    while time.monotonic() < deadline:
        watcher.poll()
        time.sleep(0.05)
    # at 0, 0.4 (0.2 doubled), 1.2 (0.8 after two failures); not the ~38 polls
    assert len(calls.read_text().split()) == 3
    [event] = _events(tmp_path)
    assert event["action"] == "balancer_restart_failed" and "does not pass haproxy -c" in event["reason"]
    assert log.getvalue().count("could not be started (exit 2)") == 3
    assert watcher.running is None  # no heal tick for a balancer that is down


def test_a_balancer_that_runs_or_was_stopped_on_purpose_is_left_alone_and_said_once(
    tmp_path: pathlib.Path,
) -> None:
    ensure = _script(
        tmp_path,
        "ensure.sh",
        """echo '{"action": "stopped", "reason": "stopped on purpose or never started: no pid file"}'\n""",
    )
    watcher, log = _watcher(tmp_path, ensure, interval=0.01)
    for _ in range(5):
        watcher.poll()
        time.sleep(0.02)
    assert _events(tmp_path) == []
    assert log.getvalue().count("the balancer: stopped (stopped on purpose") == 1
    assert watcher.running is None


def test_once_starts_a_dead_balancer_logs_it_and_exits(tmp_path: pathlib.Path) -> None:
    """The timer's tick runs the watcher with --once before its playbook."""
    ensure = _script(
        tmp_path,
        "ensure.sh",
        """echo '{"action": "reload", "reason": "master 7 running, no worker", "seconds": 0.1}'\n""",
    )
    events_log = str(tmp_path / "events.jsonl")
    common = ["--socket", str(tmp_path / "no-such.sock"), "--events", events_log, "--instance", "lb1"]
    rc = heal_watch.main(["--once", *common, "--ensure", f"{ensure} --restart", "--by", "timer"])
    assert rc == 0
    [event] = _events(tmp_path)
    assert (event["action"], event["by"], event["restart"]) == ("balancer_restart", "timer", "reload")
    bad = _script(tmp_path, "bad.sh", "echo 'does not pass haproxy -c' >&2; exit 2\n")
    assert heal_watch.main(["--once", *common, "--ensure", str(bad), "--by", "timer"]) == 1
    assert [e["action"] for e in _events(tmp_path)] == ["balancer_restart", "balancer_restart_failed"]
    assert heal_watch.main(["--once", *common]) == 1  # no supervise script: says so, nothing else
    assert len(_events(tmp_path)) == 2


def test_once_is_silent_while_the_socket_answers(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "s.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(100)
            conn.sendall(b"# pxname,svname,status,type\nweb,web-a,UP,2\n")

    thread = threading.Thread(target=serve)
    thread.start()
    calls = tmp_path / "calls"
    ensure = _script(tmp_path, "ensure.sh", f"echo x >> {calls}\n")
    try:
        assert heal_watch.main(["--once", "--socket", path, "--ensure", str(ensure)]) == 0
    finally:
        thread.join(5)
        server.close()
    assert not calls.exists() and capsys.readouterr().err == ""


def test_the_heal_tick_command_is_required_without_once() -> None:
    with pytest.raises(SystemExit):
        heal_watch.parse_args(["--socket", "/x"])


@pytest.mark.parametrize(
    ("status", "looked_at"),
    [
        ("UP", False),
        ("UP 1/2", True),
        ("DOWN", True),
        ("DOWN 1/2", True),
        ("MAINT", False),
        ("no check", False),
    ],
)
def test_a_tick_runs_the_fast_path_for_a_server_down_or_failing_its_checks(
    status: str, looked_at: bool
) -> None:
    assert heal_watch.unhealthy(status) is looked_at


def test_the_scale_out_fast_path_needs_the_fast_path_file() -> None:
    with pytest.raises(SystemExit):
        heal_watch.parse_args(["--socket", "/x", "--fast-scale", "tick"])
    args = heal_watch.parse_args(
        ["--socket", "/x", "--fast-path", "/f.json", "--module-utils", "/m", "--fast-scale", "tick"]
    )
    assert args.fast_scale is True and args.scale_interval == 2.0


def test_the_scale_out_check_runs_once_an_interval_and_a_scale_out_runs_a_tick() -> None:
    # The planning itself is hapool.fastscale's (tests/integration/test_fast_scale.py, real
    # HAProxy and hosts); here a stand-in for it counts the calls of the watcher's schedule.
    args = argparse.Namespace(
        socket="/unused", timeout=1.0, ensure=None, ensure_interval=1.0, events=None, instance="lb1",
        by="watcher", command=["true"], fast_path="/f.json", module_utils="/m", fast_retry=60.0,
        fast_scale=True, scale_interval=30.0,
    )  # fmt: skip
    watcher = heal_watch.Watcher(args, io.StringIO())
    calls: list[bool] = []

    def fake_scale() -> bool:
        calls.append(True)
        return len(calls) == 1  # the first check scales out

    watcher.fast_scale = fake_scale  # type: ignore[method-assign]
    watcher.scale_check()
    assert calls == [True] and watcher.pending is True
    watcher.pending = False
    watcher.scale_check()  # within the interval: not planned again
    assert calls == [True] and watcher.pending is False
    watcher.scale_next = 0.0
    watcher.scale_check()  # due again; nothing to do this time: no tick
    assert calls == [True, True] and watcher.pending is False
    watcher.socket_ok = False
    watcher.scale_next = 0.0
    watcher.scale_check()  # never while the balancer does not answer
    assert len(calls) == 2
