"""History can never stop healing: a line of the event log that cannot be read (bytes that are
not UTF-8, a half-written line, NUL bytes, a line that is not a JSON object, a known key of the
wrong type, a huge line) is skipped and named, never fatal; the events that survive feed every
reader (the heal and scale plans, the queries, the table) without a crash. heal_plan (run for
real against a socket that answers ``show stat`` like HAProxy) warns and logs one
``event_log_corrupt`` event per set of bad lines; hapool_event_info and scripts/events.py warn
and go on."""

from __future__ import annotations

import contextlib
import json
import math
import pathlib
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from ansible.module_utils.hapool.actions import (
    EVENT_LOG_CORRUPT,
    REPLACE,
    REPLACE_FAILED,
    REPLACE_LAUNCH,
    SCALE_DRAIN,
    SCALE_IN,
    SCALE_OUT,
    SCALE_RECOMMENDATION,
)
from ansible.module_utils.hapool.errors import EventLogError
from ansible.module_utils.hapool.events import (
    KEY_TYPES,
    MAX_DEPTH,
    MAX_LINE_BYTES,
    CheckedEvents,
    append_events,
    check_line,
    corrupt_log_event,
    count_actions,
    filter_events,
    format_events,
    make_event,
    parse_events,
    parse_events_checked,
    read_events,
    read_events_checked,
)
from ansible.module_utils.hapool.healing import plan_heal
from ansible.module_utils.hapool.providers import Instance
from ansible.module_utils.hapool.scaling import (
    HostObservation,
    ScaleSettings,
    plan_scale,
)
from ansible.module_utils.hapool.stats import normalize_status
from helpers.modules import run_module
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHOW_STAT = (ROOT / "tests" / "unit" / "fixtures" / "haproxy" / "show_stat.csv").read_text()
NOW = 10_000.0

GOOD_FIRST = make_event(time=100, pool="web", action=REPLACE_LAUNCH, instance="web-a", reason="dead",
                        replacement="web-b", age=20.0)
GOOD_LAST = make_event(time=200, pool="web", action=REPLACE_FAILED, instance="web-c", reason="launch failed")


def line(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode() + b"\n"


def log_with(tmp_path: pathlib.Path, *middle: bytes, tail: bytes = b"") -> str:
    """A log: a good event, the ``middle`` lines (each given its newline), a good event, ``tail``."""
    path = tmp_path / "heal" / "events.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(line(GOOD_FIRST) + b"".join(m + b"\n" for m in middle) + line(GOOD_LAST) + tail)
    return str(path)


def typed(**over: Any) -> bytes:
    """A replace_launch line with ``over`` (values as JSON gives them back)."""
    return json.dumps({"time": 150, "pool": "web", "action": REPLACE_LAUNCH, "instance": "web-x",
                       "reason": "r", "duration": None, "replacement": "web-y", "age": 3.5, **over}).encode()


BAD_LINES = {
    "not UTF-8": (b"\xff\xfe garbage", "not UTF-8 (byte 0xff at column 1)"),
    "UTF-8 torn inside a character": (typed()[:-3] + b"\xc3", "not UTF-8"),
    "half a JSON line": (b'{"time": 1700000000.2, "pool": "web", "act', "not JSON"),
    "NUL bytes": (b"\x00" * 64, "not JSON"),
    "NUL inside a JSON string": (b'{"action": "replace\x00", "pool": "web"}', "not JSON"),
    "a JSON array": (b"[1, 2, 3]", "not a JSON object (a list)"),
    "JSON null": (b"null", "not a JSON object (a null)"),
    "a JSON string": (b'"replace"', "not a JSON object (a str)"),
    "no action": (b'{"time": 5, "pool": "web"}', "no action"),
    "time as text": (typed(time="abc"), 'time is "abc", not epoch seconds'),
    "time true": (typed(time=True), "time is true"),
    "time NaN": (b'{"time": NaN, "action": "replace"}', "time is NaN"),
    "time Infinity": (b'{"time": Infinity, "action": "replace"}', "time is Infinity"),
    "time overflowing to inf": (b'{"time": 1e400, "action": "replace"}', "time is Infinity"),
    "time too large for a float": (b'{"time": 1' + b"0" * 400 + b', "action": "replace"}', "time is 1000"),
    "time negative": (typed(time=-5), "time is -5"),
    "time after the year 9999": (typed(time=1e15), "time is 1000000000000000.0"),
    "age as text": (typed(age="x"), 'age is "x", not a number or null'),
    "age a list": (typed(age=[1]), "age is [1]"),
    "instance a number": (typed(instance=5), "instance is 5, not a string or null"),
    "replacement a list": (typed(replacement=["web-y"]), "replacement is"),
    "pool null": (typed(pool=None), "pool is null, not a string"),
    "action empty": (typed(action=""), 'action is "", not a non-empty string'),
    "action a number": (typed(action=3), "action is 3"),
    "reason a number": (typed(reason=7), "reason is 7"),
    "duration as text": (typed(duration="slow"), 'duration is "slow"'),
    "not_before as text": (typed(action="backoff_skip", not_before="later"), "not_before is"),
    "to as text": (typed(action="scale_out", to="three"), 'to is "three"'),
    "recommendation a dict": (typed(action="scale_recommendation", recommendation={"n": 3}),
                              "recommendation is"),
    "skipped as text": (typed(action=EVENT_LOG_CORRUPT, skipped="two"), "skipped is"),
    "nested too deep": (b'{"action": "a", "x": ' + b"[" * 40 + b"]" * 40 + b"}",
                        f"nested more than {MAX_DEPTH}"),
    "nested past the recursion limit": (b"[" * 100_000, f"nested more than {MAX_DEPTH}"),
    "a huge line": (b'{"action": "replace", "reason": "' + b"a" * (MAX_LINE_BYTES + 1) + b'"}',
                    f"longer than {MAX_LINE_BYTES} bytes"),
}


@pytest.mark.parametrize(("raw", "why"), BAD_LINES.values(), ids=BAD_LINES.keys())
def test_a_bad_line_is_skipped_and_named(tmp_path: pathlib.Path, raw: bytes, why: str) -> None:
    path = log_with(tmp_path, raw)
    checked = read_events_checked(path)
    assert checked.events == [GOOD_FIRST, GOOD_LAST]
    assert checked.skipped_lines == [2], checked.skipped
    assert why in checked.skipped[0][1], checked.skipped
    # the old entry point still works, and says nothing about the line
    assert read_events(path) == [GOOD_FIRST, GOOD_LAST]
    assert check_line(raw) == (None, checked.skipped[0][1])


def test_good_lines_with_every_known_key_are_kept() -> None:
    event = make_event(time=NOW, pool="web", action="scale_in", instance=None, reason="r", duration=1.5,
                       replacement="web-b", age=3, not_before=NOW + 60, launch_seconds=1.2, recommendation=2,
                       current=3, to=2, servers_total=3, servers_down=0, forced_sessions=0, skipped=0,
                       drain=["web-a"], capped_by=[], run="abc", **{"from": 3})
    assert set(KEY_TYPES) <= set(event), set(KEY_TYPES) - set(event)
    assert check_line(json.dumps(event)) == (event, "")
    text_recommendation = {"time": 1, "action": "scale_recommendation", "recommendation": "3"}
    assert check_line(json.dumps(text_recommendation)) == (text_recommendation, "")
    # only the action is needed (older or hand-written lines); unknown keys are free
    assert parse_events('{"action": "a"}\n{"action": "b", "anything": {"x": [1, "y", null]}}') == [
        {"action": "a"}, {"action": "b", "anything": {"x": [1, "y", None]}}]


def test_line_numbers_count_every_line_blank_ones_too(tmp_path: pathlib.Path) -> None:
    path = log_with(tmp_path, b"", b"  ", b"\xff", b"", typed(age="x"), b"\r", tail=b'{"half')
    checked = read_events_checked(path)
    assert checked.skipped_lines == [4, 6, 9], checked.skipped
    assert [e["action"] for e in checked.events] == [REPLACE_LAUNCH, REPLACE_FAILED]
    summary = checked.summary()
    assert summary.startswith("3 unreadable line(s) skipped (lines 4,6,9): line 4: not UTF-8"), summary
    assert path in checked.warning(path) and summary in checked.warning(path)
    assert CheckedEvents([GOOD_FIRST]).warning(path) == "" and CheckedEvents([]).summary() == ""


def test_the_skipped_lines_are_the_whole_log_s_whatever_the_filters(tmp_path: pathlib.Path) -> None:
    path = log_with(tmp_path, b"\xff", typed(pool="api", age="x"))
    checked = read_events_checked(path, pool="web", actions=(REPLACE_FAILED,), limit=1)
    assert checked.events == [GOOD_LAST] and checked.skipped_lines == [2, 3]


def test_a_long_run_of_bad_lines_is_summed_up(tmp_path: pathlib.Path) -> None:
    path = log_with(tmp_path, *([b"\x00garbage"] * 40), typed(time="x"), *([b"{"] * 3))
    checked = read_events_checked(path)
    assert len(checked.skipped) == 44 and len(checked.events) == 2
    assert checked.summary().startswith("44 unreadable line(s) skipped (lines 2-45): line 2: not JSON")
    assert checked.summary().endswith("; 41 more")


def test_an_event_appended_after_a_torn_last_line_starts_a_line_of_its_own(tmp_path: pathlib.Path) -> None:
    path = log_with(tmp_path, tail=b'{"time": 300, "pool": "web", "action": "repl')
    after = make_event(time=400, pool="web", action=REPLACE, instance="web-a", replacement="web-b")
    append_events(path, [after])
    checked = read_events_checked(path)
    assert checked.events == [GOOD_FIRST, GOOD_LAST, after]
    assert checked.skipped_lines == [3]
    append_events(path, [GOOD_LAST])  # the file ends with a newline now: none is added
    assert pathlib.Path(path).read_bytes().count(b"\n") == 5


def test_a_log_that_cannot_be_read_at_all_is_still_an_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(EventLogError, match="is a directory"):
        read_events_checked(str(tmp_path))
    assert read_events_checked(str(tmp_path / "missing.jsonl")) == CheckedEvents([])


# --- the events that survive feed every reader ----------------------------------------------------


def plan_for(history: list[dict[str, Any]]) -> dict[str, str]:
    """The plan of pool web: web-a is dead, web-y is alive and not in the balancer."""
    instances = [Instance(name=n, pool="web", provider="local", address="127.0.0.1", port=80,
                          created=NOW - 600, state=s) for n, s in (("web-a", "exited"), ("web-y", "running"))]
    plan = plan_heal({"name": "web", "provider": "local"}, [], instances, history, NOW)
    return {d.name: f"{d.action}{' adopt ' + str(d.replacement) if d.adopt else ''}" for d in plan.decisions}


def test_a_readable_launch_event_is_adopted() -> None:
    """The control of the next test: with its replace_launch line intact, web-y (launched by an
    interrupted run to replace web-a) is adopted."""
    history = parse_events(typed(instance="web-a"))
    assert plan_for(history) == {"web-a": "replace adopt web-y", "web-y": "register"}


@pytest.mark.parametrize("raw", [v[0] for v in BAD_LINES.values()], ids=BAD_LINES.keys())
def test_the_plans_run_on_what_survives(tmp_path: pathlib.Path, raw: bytes) -> None:
    """The same replace_launch line, corrupt: no crash; the link is lost, so web-a is replaced
    by a new launch (not adopted) and web-y is only registered as a live host the balancer
    does not know: one host more than before, for scale.yml to bring back."""
    path = log_with(tmp_path, raw.replace(b"web-x", b"web-a"))
    assert plan_for(read_events(path, pool="web")) == {"web-a": "replace", "web-y": "register"}


class Row:
    def __init__(self, server: str, status: str) -> None:
        self.server, self.status, self.lastchg = server, status, 30

    @property
    def status_class(self) -> str:
        return normalize_status(self.status)


NAMES = ["web-a", "web-b", "web-c"]
SCALARS = (
    st.none() | st.booleans() | st.integers() | st.integers(min_value=10**300, max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=6) | st.sampled_from(NAMES)
)  # fmt: skip
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(max_size=3), inner, max_size=3), max_leaves=6)
ACTIONS = [REPLACE, REPLACE_LAUNCH, REPLACE_FAILED, SCALE_DRAIN, SCALE_RECOMMENDATION, SCALE_OUT,
           SCALE_IN, EVENT_LOG_CORRUPT]
OBJECTS = st.fixed_dictionaries(
    {"action": st.sampled_from(ACTIONS) | VALUES, "pool": st.just("web") | VALUES},
    optional={
        "time": st.floats(0, NOW) | VALUES,
        "instance": st.sampled_from(NAMES) | VALUES,
        "replacement": st.sampled_from(NAMES) | VALUES,
        "age": st.floats(0, 1000) | VALUES,
        **{key: VALUES for key in KEY_TYPES
           if key not in ("action", "pool", "time", "instance", "replacement", "age")},
    },
)


@settings(max_examples=150, deadline=None)
@given(st.lists(OBJECTS | VALUES, max_size=8), st.lists(st.binary(max_size=12), max_size=3))
def test_no_reader_crashes_on_what_survives(objects: list[Any], garbage: list[bytes]) -> None:
    data = b"\n".join([json.dumps(o).encode() for o in objects] + garbage)
    checked = parse_events_checked(data)
    assert len(checked.events) + len(checked.skipped) <= data.count(b"\n") + 1
    history = checked.events
    states = [("web-a", "exited"), ("web-b", "running"), ("web-c", "running")]
    instances = [Instance(name=n, pool="web", provider="local", address="127.0.0.1", port=80,
                          created=NOW - 100 * i, state=s) for i, (n, s) in enumerate(states)]
    rows = [Row("web-b", "DOWN"), Row("web-c", "UP")]
    plan_heal({"name": "web", "provider": "local", "max_replace_per_run": 3}, rows, instances,
              [e for e in history if e.get("pool") == "web"], NOW)
    hosts = [HostObservation(name=n, created=NOW - 900, status="UP", sessions=5, request_rate=5)
             for n in NAMES]
    plan_scale("web", ScaleSettings.from_pool({"name": "web", "min": 1, "max": 6, "desired": 3}), hosts,
               [e for e in history if e.get("pool") == "web"], now=NOW)
    format_events(history)
    count_actions(history)
    filter_events(history, since=1, until=NOW, instance="web-a", limit=2)
    json.dumps(history, allow_nan=False)  # what a module returns
    corrupt_log_event(checked, pool="web", now=NOW, history=history)


# --- the event_log_corrupt event: once per set of bad lines ---------------------------------------


def test_corrupt_log_event_is_logged_once_per_set_of_bad_lines() -> None:
    checked = parse_events_checked(b"\xff\n" + line(GOOD_FIRST) + b"{half\n")
    event = corrupt_log_event(checked, pool="web", now=NOW)
    assert event is not None
    assert (event["action"], event["pool"], event["skipped"], event["lines"]) == (EVENT_LOG_CORRUPT, "web", 2,
                                                                                   "1,3")
    assert event["time"] == NOW and "lines 1,3" in event["reason"] and "line 1: not UTF-8" in event["reason"]
    assert check_line(json.dumps(event)) == (event, "")
    # the pool's last event recorded these lines: nothing new
    assert corrupt_log_event(checked, pool="web", now=NOW + 10, history=[GOOD_FIRST, event]) is None
    # another pool's event does not count for this one
    other = {**event, "pool": "api"}
    assert corrupt_log_event(checked, pool="web", now=NOW, history=[other]) is not None
    # one more bad line: a new event; the lines of an older event do not count, only the last one's
    more = parse_events_checked(b"\xff\n" + line(GOOD_FIRST) + b"{half\n[]\n")
    newer = corrupt_log_event(more, pool="web", now=NOW + 20, history=[event])
    assert newer is not None and newer["skipped"] == 3 and newer["lines"] == "1,3-4"
    assert corrupt_log_event(checked, pool="web", now=NOW, history=[event, newer]) is not None
    # nothing skipped: nothing to log
    assert corrupt_log_event(parse_events_checked(line(GOOD_FIRST)), pool="web", now=NOW) is None


# --- the modules and the script, run for real ------------------------------------------------------


@contextlib.contextmanager
def haproxy_cli(path: pathlib.Path, reply: str) -> Iterator[str]:
    """A unix socket that answers every command line with ``reply``, like HAProxy's CLI."""
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(8)
    server.settimeout(0.05)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                data = b""
                while not data.endswith(b"\n") and (chunk := conn.recv(4096)):
                    data += chunk
                conn.sendall(reply.encode())

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield str(path)
    finally:
        stop.set()
        thread.join()
        server.close()


def warned(result: dict[str, Any]) -> str:
    """The warnings of a module's result as one text (ansible-core 2.19 returns them as
    structured summaries, older ones as strings)."""
    return json.dumps(result.get("warnings") or [])


def corrupt_events(path: str) -> list[dict[str, Any]]:
    return [e for e in read_events(path) if e["action"] == EVENT_LOG_CORRUPT]


def test_heal_plan_warns_and_logs_one_event_per_set_of_bad_lines(tmp_path: pathlib.Path) -> None:
    log = log_with(tmp_path, b"\xff\xfe garbage", typed(age="x"), tail=b'{"time": 1, "pool": "empty", "ac')
    with haproxy_cli(tmp_path / "admin.sock", SHOW_STAT) as sock:
        args = {"pool": {"name": "empty", "provider": "local"}, "socket": sock, "provider": "local",
                "state_dir": str(tmp_path / "state"), "event_log": log, "now": NOW}

        checking = run_module("heal_plan", args, check_mode=True)
        assert checking["_rc"] == 0 and not checking.get("failed"), checking
        assert "3 unreadable line(s) skipped (lines 2-3,5)" in warned(checking), checking
        assert corrupt_events(log) == []  # check mode writes nothing

        first = run_module("heal_plan", args)
        assert first["_rc"] == 0 and not first.get("failed"), first
        assert f"event log {log}: 3 unreadable" in warned(first) and "line 2: not UTF-8" in warned(first)
        (event,) = first["events"]
        assert (event["action"], event["pool"], event["skipped"], event["lines"]) == (
            EVENT_LOG_CORRUPT, "empty", 3, "2-3,5")
        assert corrupt_events(log) == [event]

        again = run_module("heal_plan", {**args, "now": NOW + 10})
        assert again["_rc"] == 0 and again["events"] == [] and "3 unreadable" in warned(again), again
        assert corrupt_events(log) == [event]

        with open(log, "ab") as handle:
            handle.write(b"\x00\x00\n")
        changed = run_module("heal_plan", {**args, "now": NOW + 20})
        assert [e["lines"] for e in changed["events"]] == ["2-3,5,7"], changed
        assert [e["skipped"] for e in corrupt_events(log)] == [3, 4]

        other_pool = run_module("heal_plan", {**args, "pool": {"name": "app", "provider": "local"}})
        assert [e["pool"] for e in other_pool["events"]] == ["app"], other_pool

    # a clean log: no warning, no event
    clean = tmp_path / "clean.jsonl"
    append_events(str(clean), [GOOD_FIRST])
    with haproxy_cli(tmp_path / "admin2.sock", SHOW_STAT) as sock:
        result = run_module("heal_plan", {**args, "socket": sock, "event_log": str(clean)})
    assert result["_rc"] == 0 and result["events"] == [] and "unreadable" not in warned(result), result


def test_hapool_event_info_skips_and_warns(tmp_path: pathlib.Path) -> None:
    log = log_with(tmp_path, b"\xff\xfe garbage", typed(time="abc"), b"\x00" * 8)
    result = run_module("hapool_event_info", {"path": log, "pool": "web"})
    assert result["_rc"] == 0 and not result.get("failed"), result
    assert result["events"] == [GOOD_FIRST, GOOD_LAST] and result["total"] == 2
    assert result["skipped"] == 3
    assert [s["line"] for s in result["skipped_lines"]] == [2, 3, 4]
    assert result["skipped_lines"][0]["reason"].startswith("not UTF-8")
    assert "3 unreadable line(s) skipped (lines 2-4)" in warned(result), result

    clean = run_module("hapool_event_info", {"path": str(tmp_path / "none.jsonl")})
    assert clean["skipped"] == 0 and clean["skipped_lines"] == [] and warned(clean) == "[]", clean


def test_events_script_skips_and_warns(tmp_path: pathlib.Path) -> None:
    log = log_with(tmp_path, b"\xff\xfe garbage", typed(instance=5), tail=b'{"half')
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "events.py"), "--log", log],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "events.py: warning: event log" in result.stderr
    assert "3 unreadable line(s) skipped (lines 2-3,5)" in result.stderr
    assert result.stdout.strip().endswith("2 event(s): replace_failed 1, replace_launch 1"), result.stdout
    as_json = subprocess.run([sys.executable, str(ROOT / "scripts" / "events.py"), "--log", log, "--json"],
                             capture_output=True, text=True, timeout=60, check=False)
    assert as_json.returncode == 0
    assert [json.loads(x)["time"] for x in as_json.stdout.splitlines()] == [100, 200]
    assert all(math.isfinite(json.loads(x)["time"]) for x in as_json.stdout.splitlines())
