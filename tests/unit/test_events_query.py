"""Queries of the event log: filters (pool, time range, actions, instance, limit), time
arguments, counts and the table; the hapool_event_info module run for real (run_module), and
scripts/events.py (exit codes, table, JSON lines)."""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import subprocess
import sys

import pytest
from ansible.module_utils.hapool.errors import EventLogError
from ansible.module_utils.hapool.events import (
    append_events,
    count_actions,
    event_details,
    filter_events,
    format_events,
    format_time,
    make_event,
    parse_time,
    read_events,
)
from helpers.modules import run_module
from hypothesis import given
from hypothesis import strategies as st

ROOT = pathlib.Path(__file__).resolve().parents[2]
NOW = 1_800_000_000.0

EVENTS = [
    make_event(time=100, pool="web", action="replace", instance="web-a", reason="DOWN", duration=9.5,
               replacement="web-b", run="r1"),
    make_event(time=200, pool="api", action="circuit_open", reason="all DOWN", servers_total=2,
               servers_down=2),
    make_event(time=300, pool="web", action="scale_out", reason="target", **{"from": 2, "to": 3}),
    make_event(time=400, pool="web", action="scale_launch", instance="web-c", reason="serving",
               duration=30.0),
    make_event(time=500, pool="web", action="replace_failed", instance="web-b", reason="launch failed"),
]


def times(events: list[dict[str, object]]) -> list[object]:
    return [e["time"] for e in events]


# --- filters ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, [100, 200, 300, 400, 500]),
        ({"pool": "web"}, [100, 300, 400, 500]),
        ({"pool": "nope"}, []),
        ({"since": 300}, [300, 400, 500]),
        ({"until": 300}, [100, 200, 300]),
        ({"since": 200, "until": 400}, [200, 300, 400]),
        ({"since": 301, "until": 399}, []),
        ({"actions": ("replace", "replace_failed")}, [100, 500]),
        ({"instance": "web-b"}, [100, 500]),  # as the replacement, then as the instance
        ({"instance": "web-c"}, [400]),
        ({"limit": 2}, [400, 500]),
        ({"limit": 0}, []),
        ({"limit": 99}, [100, 200, 300, 400, 500]),
        ({"pool": "web", "since": 200, "limit": 1}, [500]),
        ({"pool": "web", "actions": ("scale_out", "scale_in"), "limit": 1}, [300]),
    ],
)
def test_filter_events(kwargs: dict[str, object], expected: list[float]) -> None:
    assert times(filter_events(EVENTS, **kwargs)) == expected  # type: ignore[arg-type]


def test_filter_events_keeps_the_old_signature_and_copies() -> None:
    out = filter_events(EVENTS, pool="web", since=300, actions=("scale_out",))
    assert out == [EVENTS[2]] and out[0] is not EVENTS[2]


def test_a_negative_limit_is_refused() -> None:
    with pytest.raises(EventLogError, match="limit must be 0 or more"):
        filter_events(EVENTS, limit=-1)


def test_events_with_a_bad_time_count_as_time_zero() -> None:
    odd = [{"action": "x", "time": "soon"}, {"action": "y"}, {"action": "z", "time": 5}]
    assert [e["action"] for e in filter_events(odd, since=1)] == ["z"]
    assert [e["action"] for e in filter_events(odd, until=1)] == ["x", "y"]


@given(
    st.lists(st.tuples(st.sampled_from(["web", "api"]), st.sampled_from(["replace", "scale_out"]),
                       st.integers(0, 1000)), max_size=30),
    st.none() | st.integers(0, 1000),
    st.none() | st.integers(0, 1000),
    st.none() | st.integers(0, 40),
)
def test_filter_properties(rows: list[tuple[str, str, int]], since: int | None, until: int | None,
                           limit: int | None) -> None:
    events = [make_event(time=t, pool=p, action=a) for p, a, t in rows]
    out = filter_events(events, pool="web", since=since, until=until, limit=limit)
    everything = filter_events(events, pool="web", since=since, until=until)
    assert all(e["pool"] == "web" for e in out)
    assert all((since is None or e["time"] >= since) and (until is None or e["time"] <= until) for e in out)
    assert out == (everything if limit is None else everything[len(everything) - limit :] if limit else [])


def test_read_events_filters_like_filter_events(tmp_path: pathlib.Path) -> None:
    log = str(tmp_path / "events.jsonl")
    append_events(log, EVENTS)
    with open(log, "a", encoding="utf-8") as handle:
        handle.write('{"torn": \n')
    assert times(read_events(log, pool="web", until=400, instance="web-c")) == [400]
    assert times(read_events(log, limit=1)) == [500]
    assert read_events(str(tmp_path / "missing.jsonl"), limit=3) == []


def test_read_events_of_a_directory_is_a_clear_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(EventLogError, match="is a directory"):
        read_events(str(tmp_path))


def test_count_actions() -> None:
    assert count_actions(EVENTS) == {"circuit_open": 1, "replace": 1, "replace_failed": 1, "scale_launch": 1,
                                     "scale_out": 1}
    assert count_actions([]) == {}


# --- time arguments -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("now", NOW),
        ("NOW", NOW),
        (1795311644, 1795311644.0),
        (0, 0.0),
        (12.5, 12.5),
        ("1795311644", 1795311644.0),
        ("1795311644.25", 1795311644.25),
        ("30s", NOW - 30),
        ("10m", NOW - 600),
        ("2h", NOW - 7200),
        ("1.5h", NOW - 5400),
        ("1d", NOW - 86400),
        ("1w", NOW - 604800),
        ("10m ago", NOW - 600),
        (" 2H ", NOW - 7200),
        ("2026-11-22T04:00:00Z", datetime.datetime(2026, 11, 22, 4, tzinfo=datetime.UTC).timestamp()),
        ("2026-11-22T04:00:00", datetime.datetime(2026, 11, 22, 4, tzinfo=datetime.UTC).timestamp()),
        ("2026-11-22 05:00:00+01:00", datetime.datetime(2026, 11, 22, 4, tzinfo=datetime.UTC).timestamp()),
        ("2026-11-22", datetime.datetime(2026, 11, 22, tzinfo=datetime.UTC).timestamp()),
    ],
)
def test_parse_time(value: str | float | None, expected: float | None) -> None:
    assert parse_time(value, now=NOW) == expected


@pytest.mark.parametrize("value", ["yesterday", "10", "-5m", "10 minutes", "5x", "2026-13-01", "1e9", "m"])
def test_parse_time_refuses_anything_else(value: str) -> None:
    if value == "10":  # a bare number is epoch seconds, not an error
        assert parse_time(value, now=NOW) == 10.0
        return
    with pytest.raises(EventLogError, match="not a time"):
        parse_time(value, now=NOW)


@pytest.mark.parametrize("value", [-1, float("nan"), True])
def test_parse_time_refuses_bad_numbers(value: float) -> None:
    with pytest.raises(EventLogError, match="not a time"):
        parse_time(value, now=NOW)


# --- display ------------------------------------------------------------------------------------


def test_format_time_is_utc() -> None:
    assert format_time(datetime.datetime(2026, 11, 22, 4, 5, 6, tzinfo=datetime.UTC).timestamp()) == (
        "2026-11-22T04:05:06Z"
    )


def test_event_details_and_table() -> None:
    assert event_details(EVENTS[0]) == "DOWN replacement=web-b"
    assert event_details(EVENTS[1]) == "all DOWN servers_total=2 servers_down=2"
    assert event_details({"reason": "a\nb", "drain": ["x", "y"], "capped_by": []}) == 'a b drain=["x","y"]'
    lines = format_events(EVENTS[:3])
    assert lines[0].split() == ["TIME", "(UTC)", "POOL", "ACTION", "INSTANCE", "DURATION", "DETAILS"]
    assert lines[1].split() == ["1970-01-01T00:01:40Z", "web", "replace", "web-a", "9.5s", "DOWN",
                                "replacement=web-b"]
    assert lines[3].split()[:5] == ["1970-01-01T00:05:00Z", "web", "scale_out", "-", "-"]
    # Aligned: every column starts at the same offset on every line.
    words = ["ACTION", "replace", "circuit_open", "scale_out"]
    assert len({line.index(word) for line, word in zip(lines, words, strict=True)}) == 1
    assert format_events([]) == ["TIME (UTC)  POOL  ACTION  INSTANCE  DURATION  DETAILS"]


# --- the module, run for real -------------------------------------------------------------------


def test_hapool_event_info_module(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "heal" / "events.jsonl"
    append_events(str(log), EVENTS)
    result = run_module("hapool_event_info", {"path": str(log), "pool": "web", "since": "150",
                                              "actions": ["scale_out", "scale_launch", "replace_failed"]})
    assert result["_rc"] == 0 and not result.get("failed"), result
    assert result["changed"] is False and result["exists"] is True
    assert times(result["events"]) == [300, 400, 500]
    assert result["counts"] == {"replace_failed": 1, "scale_launch": 1, "scale_out": 1}
    assert result["total"] == 3 and result["since"] == 150.0 and result["until"] is None
    assert result["lines"][0].startswith("TIME (UTC)") and len(result["lines"]) == 4

    limited = run_module("hapool_event_info", {"path": str(log), "instance": "web-b", "limit": 1,
                                               "until": "now"}, check_mode=True)
    assert times(limited["events"]) == [500] and limited["counts"] == {"replace_failed": 1}

    recent = run_module("hapool_event_info", {"path": str(log), "since": "10m"})
    assert recent["events"] == [] and recent["counts"] == {}

    missing = run_module("hapool_event_info", {"path": str(tmp_path / "none.jsonl")})
    assert missing["exists"] is False and missing["events"] == [] and not missing.get("failed")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"since": "yesterday"}, "not a time: 'yesterday'"),
        ({"since": "400", "until": "300"}, "since (400) is after until (300)"),
        ({"limit": -2}, "limit must be 0 or more"),
    ],
)
def test_hapool_event_info_module_refuses_bad_arguments(tmp_path: pathlib.Path, args: dict[str, object],
                                                        message: str) -> None:
    log = tmp_path / "events.jsonl"
    append_events(str(log), EVENTS)
    result = run_module("hapool_event_info", {"path": str(log), **args})
    assert result["failed"] and message in result["msg"], result


def test_hapool_event_info_module_fails_on_an_unreadable_log(tmp_path: pathlib.Path) -> None:
    result = run_module("hapool_event_info", {"path": str(tmp_path)})
    assert result["failed"] and "is a directory" in result["msg"], result


# --- scripts/events.py --------------------------------------------------------------------------


def cli(*args: str, state_dir: pathlib.Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "HAPOOL_STATE_DIR"}
    if state_dir is not None:
        env["HAPOOL_STATE_DIR"] = str(state_dir)
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "events.py"), *args], capture_output=True,
                          text=True, timeout=60, check=False, env=env)


def test_events_cli(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "heal" / "events.jsonl"
    append_events(str(log), EVENTS)
    table = cli("--pool", "web", "--action", "replace,scale_out", "--action", "replace_failed",
                state_dir=tmp_path)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["TIME", "(UTC)", "POOL"]
    assert [line.split()[2] for line in lines[1:4]] == ["replace", "scale_out", "replace_failed"]
    assert lines[-1] == "3 event(s): replace 1, replace_failed 1, scale_out 1"

    as_json = cli("--log", str(log), "--instance", "web-b", "--limit", "1", "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert [json.loads(line)["time"] for line in as_json.stdout.splitlines()] == [500]

    window = cli("--log", str(log), "--since", "1970-01-01T00:03:00Z", "--until", "1970-01-01T00:06:00Z",
                 "--json")
    assert [json.loads(line)["time"] for line in window.stdout.splitlines()] == [200, 300]

    none = cli("--log", str(log), "--since", "1h")
    assert none.returncode == 0 and "no matching events" in none.stdout


def test_events_cli_warns_of_an_action_hapool_never_writes(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "events.jsonl"
    append_events(str(log), [*EVENTS, make_event(time=600, pool="web", action="my_deploy")])
    typo = cli("--log", str(log), "--action", "replcae,scale_out", "--json")
    assert typo.returncode == 0, typo.stderr
    assert "warning: replcae: not an action hapool writes (those are: replace_launch, replace," in typo.stderr
    assert [json.loads(line)["action"] for line in typo.stdout.splitlines()] == ["scale_out"]
    own = cli("--log", str(log), "--action", "my_deploy", "--json")  # the user's own action: found
    assert own.returncode == 0 and "my_deploy: not an action hapool writes" in own.stderr
    assert [json.loads(line)["time"] for line in own.stdout.splitlines()] == [600]
    known = cli("--log", str(log), "--action", "replace", "--json")
    assert known.returncode == 0 and known.stderr == "", known.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "not a time: 'yesterday'"),
        (["--until", "5m", "--since", "now"], "is after --until"),
        (["--limit", "-1"], "--limit must be 0 or more"),
        (["--limit", "ten"], "invalid int value"),
        (["--bogus"], "unrecognized arguments"),
        (["--log", "/nonexistent/events.jsonl"], "does not exist"),
        (["--log", "/"], "is a directory"),
    ],
)
def test_events_cli_exits_2_on_a_bad_argument_or_log(args: list[str], message: str) -> None:
    result = cli(*args)
    assert result.returncode == 2 and message in result.stderr, (result.returncode, result.stderr)


def test_events_cli_without_a_log_yet(tmp_path: pathlib.Path) -> None:
    result = cli(state_dir=tmp_path)
    assert result.returncode == 0 and "does not exist yet" in result.stderr
