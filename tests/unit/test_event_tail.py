"""``EventTail``: the event log read incrementally by the watcher's scale-out check - the same
events as ``read_events``, after appends, a torn last line, a replaced or cut log."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from ansible.module_utils.hapool.errors import EventLogError
from ansible.module_utils.hapool.events import EventTail, append_event, make_event, read_events


def ev(t: float, action: str = "scale_out", pool: str = "web") -> dict[str, object]:
    return make_event(time=t, pool=pool, action=action, instance="", reason=f"r{t:g}")


def test_it_reads_what_read_events_reads_after_each_append(tmp_path: Path) -> None:
    log = str(tmp_path / "events.jsonl")
    tail = EventTail(log)
    assert tail.read() == []  # no log yet
    for i in range(1, 6):
        append_event(log, ev(i, "scale_out" if i % 2 else "replace", "web" if i < 4 else "api"))
        assert tail.read() == read_events(log)
        where = {"pool": "web", "actions": ("scale_out",)}
        assert tail.read(**where) == read_events(log, **where)  # type: ignore[arg-type]
    assert [e["time"] for e in tail.read(pool="web")] == [1, 2, 3]


def test_only_the_appended_bytes_are_read(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    append_event(str(log), ev(1))
    tail = EventTail(str(log))
    assert len(tail.read()) == 1
    # a line changed in place before the offset is not read again: the tail only reads what follows
    text = log.read_bytes()
    log.write_bytes(text.replace(b'"r1"', b'"xx"'))
    append_event(str(log), ev(2))
    assert [e["reason"] for e in tail.read()] == ["r1", "r2"]


def test_a_torn_last_line_waits_for_its_newline_and_a_bad_line_is_skipped(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    line = json.dumps(ev(1))
    log.write_text(line[:20])
    tail = EventTail(str(log))
    assert tail.read() == []
    with open(log, "a") as handle:
        handle.write(line[20:] + "\n" + "not json\n")
    assert tail.read() == [ev(1)] == read_events(str(log))
    append_event(str(log), ev(2))
    assert [e["time"] for e in tail.read()] == [1, 2]


def test_a_replaced_or_cut_log_is_read_again_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    for i in range(3):
        append_event(str(log), ev(i))
    tail = EventTail(str(log))
    assert len(tail.read()) == 3
    new = tmp_path / "new.jsonl"
    append_event(str(new), ev(9))
    os.replace(new, log)  # rotated: another inode
    assert tail.read() == [ev(9)]
    log.write_text("")  # cut
    assert tail.read() == []
    append_event(str(log), ev(10))
    assert tail.read() == [ev(10)]
    log.unlink()
    assert tail.read() == []


def test_a_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(EventLogError, match="directory"):
        EventTail(str(tmp_path)).read()
