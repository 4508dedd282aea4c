"""The healer's event log: one JSON object a line, appended under an exclusive ``flock``.

Every action of ``heal.yml`` (and of the timer and watcher) is an event::

    {"time": 1700000000.2, "pool": "web", "action": "replace", "instance": "web-3f9a2c",
     "reason": "DOWN for 12 s (L4CON)", "duration": 9.41, "replacement": "web-a01b2c"}

``time`` (epoch seconds), ``pool``, ``action``, ``instance``, ``reason`` and ``duration``
(seconds, or null) are always present; other keys are free. Readers skip lines that are not
JSON objects (a torn line after a crash never stops the healer). Stdlib only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

from .errors import HapoolError

Event = dict[str, Any]

REQUIRED_KEYS = ("time", "pool", "action", "instance", "reason", "duration")


class EventLogError(HapoolError):
    """The event log cannot be written or read."""


def make_event(
    *,
    time: float,
    pool: str,
    action: str,
    instance: str | None = None,
    reason: str = "",
    duration: float | None = None,
    **extra: Any,
) -> Event:
    """An event with the required keys first, then ``extra`` (None values left out)."""
    if not action or not isinstance(action, str):
        raise EventLogError(f"an event needs an action, got {action!r}")
    event: Event = {
        "time": round(float(time), 3),
        "pool": pool,
        "action": action,
        "instance": instance,
        "reason": reason,
        "duration": None if duration is None else round(float(duration), 3),
    }
    event.update({key: value for key, value in extra.items() if value is not None and key not in event})
    return event


@contextlib.contextmanager
def _locked(path: str, mode: str) -> Iterator[Any]:
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        handle = open(path, mode, encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise EventLogError(f"cannot open the event log {path}: {exc}") from exc
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX if "a" in mode else fcntl.LOCK_SH)
        yield handle
    finally:
        handle.close()


def append_events(path: str, events: list[Event]) -> None:
    """Append events, each on one line, in one locked write."""
    if not events:
        return
    text = "".join(json.dumps(event, sort_keys=False, default=str) + "\n" for event in events)
    with _locked(path, "a") as handle:
        try:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        except OSError as exc:
            raise EventLogError(f"cannot write the event log {path}: {exc}") from exc


def append_event(path: str, event: Event) -> None:
    append_events(path, [event])


def parse_events(text: str) -> list[Event]:
    """The JSON-object lines of ``text``; anything else is skipped."""
    events: list[Event] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and isinstance(value.get("action"), str):
            events.append(value)
    return events


def read_events(
    path: str, *, pool: str | None = None, since: float | None = None, actions: tuple[str, ...] = ()
) -> list[Event]:
    """Events of the log (none if it does not exist), filtered by pool, time and action."""
    if not os.path.exists(path):
        return []
    with _locked(path, "r") as handle:
        try:
            text = handle.read()
        except OSError as exc:
            raise EventLogError(f"cannot read the event log {path}: {exc}") from exc
    return filter_events(parse_events(text), pool=pool, since=since, actions=actions)


def filter_events(
    events: list[Event] | list[Mapping[str, Any]],
    *,
    pool: str | None = None,
    since: float | None = None,
    actions: tuple[str, ...] = (),
) -> list[Event]:
    out: list[Event] = []
    for event in events:
        if pool is not None and event.get("pool") != pool:
            continue
        if since is not None and float(event.get("time") or 0) < since:
            continue
        if actions and event.get("action") not in actions:
            continue
        out.append(dict(event))
    return out


__all__ = [
    "REQUIRED_KEYS",
    "Event",
    "EventLogError",
    "append_event",
    "append_events",
    "filter_events",
    "make_event",
    "parse_events",
    "read_events",
]
