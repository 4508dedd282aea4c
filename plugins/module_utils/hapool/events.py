"""The healer's event log: one JSON object a line, appended under an exclusive ``flock``.

Every action of ``heal.yml`` (and of the timer and watcher) is an event::

    {"time": 1700000000.2, "pool": "web", "action": "replace", "instance": "web-3f9a2c",
     "reason": "DOWN for 12 s (L4CON)", "duration": 9.41, "replacement": "web-a01b2c"}

``time`` (epoch seconds), ``pool``, ``action``, ``instance``, ``reason`` and ``duration``
(seconds, or null) are always present; other keys are free. Readers skip lines that are not
JSON objects (a torn line after a crash never stops the healer). Stdlib only.

Queries (``hapool_event_info``, ``scripts/events.py``): :func:`read_events` /
:func:`filter_events` by pool, time range, actions, instance and a limit; :func:`parse_time`
reads time arguments (epoch, ``10m``, ISO-8601); :func:`format_events` renders a table.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import math
import os
import re
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
    path: str,
    *,
    pool: str | None = None,
    since: float | None = None,
    actions: tuple[str, ...] = (),
    until: float | None = None,
    instance: str | None = None,
    limit: int | None = None,
) -> list[Event]:
    """Events of the log (none if it does not exist), filtered as :func:`filter_events` does."""
    if not os.path.exists(path):
        return []
    if os.path.isdir(path):
        raise EventLogError(f"cannot read the event log {path}: it is a directory")
    with _locked(path, "r") as handle:
        try:
            text = handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise EventLogError(f"cannot read the event log {path}: {exc}") from exc
    return filter_events(
        parse_events(text), pool=pool, since=since, actions=actions, until=until, instance=instance,
        limit=limit,
    )  # fmt: skip


def _event_time(event: Mapping[str, Any]) -> float:
    try:
        return float(event.get("time") or 0)
    except (TypeError, ValueError):
        return 0.0


def filter_events(
    events: list[Event] | list[Mapping[str, Any]],
    *,
    pool: str | None = None,
    since: float | None = None,
    actions: tuple[str, ...] = (),
    until: float | None = None,
    instance: str | None = None,
    limit: int | None = None,
) -> list[Event]:
    """The events of ``pool`` with ``since <= time <= until``, one of ``actions`` (all when
    empty), about ``instance`` (its ``instance`` or its ``replacement``), in log order; with
    ``limit``, only the last ``limit`` of them (the newest, as the log is appended in time order).
    """
    if limit is not None and limit < 0:
        raise EventLogError(f"limit must be 0 or more, got {limit}")
    out: list[Event] = []
    for event in events:
        if pool is not None and event.get("pool") != pool:
            continue
        if since is not None and _event_time(event) < since:
            continue
        if until is not None and _event_time(event) > until:
            continue
        if actions and event.get("action") not in actions:
            continue
        if instance is not None and instance not in (event.get("instance"), event.get("replacement")):
            continue
        out.append(dict(event))
    if limit is not None:
        out = out[len(out) - limit :] if limit else []
    return out


def count_actions(events: list[Event] | list[Mapping[str, Any]]) -> dict[str, int]:
    """How many events of each action, by action name (sorted)."""
    counts: dict[str, int] = {}
    for event in events:
        action = str(event.get("action"))
        counts[action] = counts.get(action, 0) + 1
    return dict(sorted(counts.items()))


# --- time arguments -----------------------------------------------------------------------------

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])(?:\s+ago)?$")


def _epoch(value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or math.isnan(value) or value < 0:
        raise EventLogError(f"not a time: {value!r} (epoch seconds must be a number, 0 or more)")
    return float(value)


def parse_time(value: str | float | int | None, *, now: float) -> float | None:
    """Epoch seconds for a time argument; None for None or an empty string.

    Accepted: epoch seconds (``1795311644``, ``1795311644.5``); a duration before ``now``
    (``90s``, ``10m``, ``2h``, ``1d``, ``1w``, also ``10m ago``); ``now``; an ISO-8601 date and
    time (``2026-11-22T04:00:00Z``, ``2026-11-22 04:00:00+01:00``, ``2026-11-22``), read as UTC
    when it has no offset. Anything else raises :class:`EventLogError`.
    """
    if value is None or isinstance(value, (int, float)):
        return _epoch(value)
    text = str(value).strip()
    if not text:
        return None
    if text.lower() == "now":
        return float(now)
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    match = _RELATIVE.fullmatch(text.lower())
    if match:
        return float(now) - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise EventLogError(
            f"not a time: {text!r} (use epoch seconds, a duration ago like 30s, 10m, 2h, 1d, 1w, "
            "'now', or an ISO-8601 date and time like 2026-11-22T04:00:00Z)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


# --- display ------------------------------------------------------------------------------------

_SHOWN = set(REQUIRED_KEYS) | {"run"}


def format_time(epoch: float) -> str:
    """``2026-11-22T04:00:00Z`` (UTC, seconds)."""
    moment = datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _short(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), default=str)
    return str(value)


def event_details(event: Mapping[str, Any]) -> str:
    """The reason, then the keys beyond the required ones (``key=value``), on one line."""
    parts = [
        f"{key}={_short(value)}"
        for key, value in event.items()
        if key not in _SHOWN and value not in (None, "", [])
    ]
    reason = str(event.get("reason") or "")
    return " ".join(([reason] if reason else []) + parts).replace("\n", " ")


def format_events(events: list[Event] | list[Mapping[str, Any]]) -> list[str]:
    """Aligned lines: a header, then time (UTC), pool, action, instance, duration, details."""
    rows = [("TIME (UTC)", "POOL", "ACTION", "INSTANCE", "DURATION", "DETAILS")]
    for event in events:
        duration = event.get("duration")
        rows.append((
            format_time(_event_time(event)),
            str(event.get("pool") or "-"),
            str(event.get("action") or "-"),
            str(event.get("instance") or "-"),
            "-" if duration is None else f"{float(duration):.1f}s",
            event_details(event),
        ))  # fmt: skip
    widths = [max(len(row[col]) for row in rows) for col in range(5)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:5], widths, strict=True)) + "  " + row[5]
        for row in rows
    ]


__all__ = [
    "REQUIRED_KEYS",
    "Event",
    "EventLogError",
    "append_event",
    "append_events",
    "count_actions",
    "event_details",
    "filter_events",
    "format_events",
    "format_time",
    "make_event",
    "parse_events",
    "parse_time",
    "read_events",
]
