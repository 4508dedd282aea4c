"""The healer's event log: one JSON object a line, appended under an exclusive ``flock``.

Every action of ``heal.yml`` (and of the timer and watcher) is an event::

    {"time": 1700000000.2, "pool": "web", "action": "replace", "instance": "web-3f9a2c",
     "reason": "DOWN for 12 s (L4CON)", "duration": 9.41, "replacement": "web-a01b2c"}

``time`` (epoch seconds), ``pool``, ``action``, ``instance``, ``reason`` and ``duration``
(seconds, or null) are always present; other keys are free. Stdlib only.

History can never stop healing: the log is read as bytes and each line is checked on its own.
A line that is not UTF-8, not JSON, not an object, longer than :data:`MAX_LINE_BYTES`, nested
deeper than :data:`MAX_DEPTH`, without an action, or whose known keys (:data:`KEY_TYPES`: the
required keys, and the keys readers convert with ``float()`` / ``int()``) have the wrong type,
is skipped and counted (:func:`read_events_checked` returns the line numbers and why); only a
log that cannot be read at all (a directory, no permission) is an :class:`EventLogError`.
Appending after a torn last line (a crash in the middle of a write) starts a new line, so the
torn line never takes the next event with it.

Queries (``hapool_event_info``, ``scripts/events.py``): :func:`read_events` /
:func:`filter_events` by pool, time range, actions, instance and a limit; :func:`parse_time`
reads time arguments (epoch, ``10m``, ISO-8601); :func:`format_events` renders a table.

The actions hapool writes are catalogued in ``actions.py``.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict, Unpack

from .actions import EVENT_LOG_CORRUPT  # re-exported: heal_plan and the e2e tests import it from here
from .errors import EventLogError

Event = dict[str, Any]

REQUIRED_KEYS = ("time", "pool", "action", "instance", "reason", "duration")

#: Lines longer than this are skipped unread (an event is well under a kilobyte).
MAX_LINE_BYTES = 1 << 20
#: Lists and objects nested deeper than this are skipped (events are flat; a deep value could
#: not be written back as JSON by a module's result).
MAX_DEPTH = 16
#: The last time an event may have: 9999-12-31T23:59:59Z (later ones cannot be displayed).
MAX_TIME = 253402300799.0


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
    """The log opened in binary ``mode`` under ``flock`` (exclusive to append, shared to read)."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        handle = open(path, mode)  # noqa: SIM115 - closed below
    except OSError as exc:
        raise EventLogError(f"cannot open the event log {path}: {exc}") from exc
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX if "a" in mode else fcntl.LOCK_SH)
        yield handle
    finally:
        handle.close()


def append_events(path: str, events: list[Event]) -> None:
    """Append events, each on one line, in one locked write. After a torn last line (no
    newline at the end of the file), the events start on a new line."""
    if not events:
        return
    text = "".join(json.dumps(event, sort_keys=False, default=str) + "\n" for event in events)
    with _locked(path, "a+b") as handle:
        try:
            end = handle.seek(0, os.SEEK_END)
            if end > 0:
                handle.seek(end - 1)
                if handle.read(1) != b"\n":
                    text = "\n" + text
            handle.write(text.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        except OSError as exc:
            raise EventLogError(f"cannot write the event log {path}: {exc}") from exc


def append_event(path: str, event: Event) -> None:
    append_events(path, [event])


# --- reading: every line checked on its own ----------------------------------------------------


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _number_or_null(value: Any) -> bool:
    return value is None or _is_number(value)


def _str_or_null(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _epoch_time(value: Any) -> bool:
    return _is_number(value) and 0 <= value <= MAX_TIME


#: Known keys, the check of their value and what it expects. Besides the required keys: the
#: keys a reader converts with ``float()`` / ``int()`` (healing.py: ``age``; status.yml: ``to``;
#: the table: ``duration``), or compares as a name (``replacement``).
KEY_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "time": (_epoch_time, "epoch seconds (a finite number, 0 to the year 9999)"),
    "pool": (lambda v: isinstance(v, str), "a string"),
    "action": (lambda v: isinstance(v, str) and bool(v), "a non-empty string"),
    "instance": (_str_or_null, "a string or null"),
    "reason": (_str_or_null, "a string or null"),
    "duration": (_number_or_null, "a number or null"),
    "replacement": (_str_or_null, "a string or null"),
    "age": (_number_or_null, "a number or null"),
    "not_before": (_number_or_null, "a number or null"),
    "launch_seconds": (_number_or_null, "a number or null"),
    "recommendation": (lambda v: isinstance(v, str) or _number_or_null(v), "a number, text or null"),
    "current": (_number_or_null, "a number or null"),
    "from": (_number_or_null, "a number or null"),
    "to": (_number_or_null, "a number or null"),
    "servers_total": (_number_or_null, "a number or null"),
    "servers_down": (_number_or_null, "a number or null"),
    "forced_sessions": (_number_or_null, "a number or null"),
    "skipped": (_number_or_null, "a number or null"),
}


def _too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether lists / objects in ``value`` are nested more than ``limit`` deep (iterative)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


_BLANK = object()


def _json_value(raw: bytes | str) -> tuple[Any, str]:
    """The JSON value of one line, or why it cannot be read (``_BLANK``: a blank line)."""
    if len(raw) > MAX_LINE_BYTES:
        return None, f"longer than {MAX_LINE_BYTES} bytes"
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return None, f"not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
    else:
        text = raw
    line = text.strip()
    if not line:
        return _BLANK, ""
    try:
        return json.loads(line), ""
    except RecursionError:
        return None, f"nested more than {MAX_DEPTH} deep"
    except ValueError:
        return None, "not JSON (a torn or half-written line?)"


def _wrong_type(value: Mapping[str, Any]) -> str:
    """Why the object ``value`` is not an event ("" when it is one)."""
    if _too_deep(value):
        return f"nested more than {MAX_DEPTH} deep"
    if "action" not in value:
        return "no action"
    for key, (valid, expected) in KEY_TYPES.items():
        if key in value and not valid(value[key]):
            shown = json.dumps(value[key], default=str)
            return f"{key} is {shown if len(shown) <= 40 else shown[:37] + '...'}, not {expected}"
    return ""


def check_line(raw: bytes | str) -> tuple[Event | None, str]:
    """One line of the log: ``(event, "")``, or ``(None, why)`` when it is skipped; a blank
    line is ``(None, "")`` (nothing to skip)."""
    value, why = _json_value(raw)
    if why or value is _BLANK:
        return None, why
    if not isinstance(value, dict):
        kind = "null" if value is None else type(value).__name__
        return None, f"not a JSON object (a {kind})"
    why = _wrong_type(value)
    return (None, why) if why else (value, "")


@dataclass(frozen=True)
class CheckedEvents:
    """The events of a log, and the lines that were skipped: ``(line number, why)``, the
    first line being 1, in log order."""

    events: list[Event]
    skipped: list[tuple[int, str]] = field(default_factory=list)

    @property
    def skipped_lines(self) -> list[int]:
        return [number for number, _ in self.skipped]

    def summary(self, shown: int = 3) -> str:
        """``3 unreadable line(s) skipped (lines 1-2,5): line 1: not UTF-8 ...; line 2: ...``,
        the reasons of the first ``shown`` lines ("" when none was skipped)."""
        if not self.skipped:
            return ""
        parts = [f"line {number}: {why}" for number, why in self.skipped[:shown]]
        if len(self.skipped) > shown:
            parts.append(f"{len(self.skipped) - shown} more")
        lines = _ranges(self.skipped_lines, shown=10)
        return f"{len(self.skipped)} unreadable line(s) skipped (lines {lines}): {'; '.join(parts)}"

    def warning(self, path: str) -> str:
        """The warning of a reader that skipped lines of ``path`` ("" when none was skipped)."""
        if not self.skipped:
            return ""
        return f"event log {path}: {self.summary()}. They are left out; the rest of the log is used."


def parse_events_checked(data: bytes | str) -> CheckedEvents:
    """The events of ``data`` (the log's bytes or text), each line checked by :func:`check_line`."""
    lines: Sequence[bytes | str] = data.split(b"\n") if isinstance(data, bytes) else data.split("\n")
    events: list[Event] = []
    skipped: list[tuple[int, str]] = []
    for number, raw in enumerate(lines, start=1):
        event, why = check_line(raw)
        if event is not None:
            events.append(event)
        elif why:
            skipped.append((number, why))
    return CheckedEvents(events, skipped)


def parse_events(text: bytes | str) -> list[Event]:
    """The valid events of ``text``; anything else is skipped (see :func:`parse_events_checked`)."""
    return parse_events_checked(text).events


class EventFilter(TypedDict, total=False):
    """The keyword arguments of :func:`filter_events`, which the readers pass on to it."""

    pool: str | None
    since: float | None
    actions: tuple[str, ...]
    until: float | None
    instance: str | None
    limit: int | None


def read_events_checked(path: str, **where: Unpack[EventFilter]) -> CheckedEvents:
    """The events of the log (none if it does not exist), filtered as :func:`filter_events`
    does, and every line of the log that was skipped (whatever its pool). Raises
    :class:`EventLogError` only when the log cannot be read at all."""
    if not os.path.exists(path):
        return CheckedEvents([])
    if os.path.isdir(path):
        raise EventLogError(f"cannot read the event log {path}: it is a directory")
    with _locked(path, "rb") as handle:
        try:
            data: bytes = handle.read()
        except OSError as exc:
            raise EventLogError(f"cannot read the event log {path}: {exc}") from exc
    checked = parse_events_checked(data)
    return CheckedEvents(filter_events(checked.events, **where), checked.skipped)


def read_events(path: str, **where: Unpack[EventFilter]) -> list[Event]:
    """Events of the log (none if it does not exist), filtered as :func:`filter_events` does;
    unreadable lines are skipped silently (:func:`read_events_checked` names them)."""
    return read_events_checked(path, **where).events


class EventTail:
    """The events of a log for a long-running reader (the heal watcher's scale-out check, every
    2 s): each :meth:`read` parses only the bytes appended since the previous one and keeps the
    events read so far, so a check costs what was appended, not the whole log. A log replaced or
    cut (another inode, a smaller size) is read again from its start; a last line without its
    newline is kept until the rest of it is there. Unreadable lines are skipped, as
    :func:`read_events` does."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file: tuple[int, int] | None = None  # (device, inode) of the log read so far
        self._offset = 0
        self._partial = b""
        self._events: list[Event] = []

    def read(self, **where: Unpack[EventFilter]) -> list[Event]:
        """The log's events, filtered as :func:`filter_events` does."""
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            self._file, self._offset, self._partial, self._events = None, 0, b"", []
            return []
        except OSError as exc:
            raise EventLogError(f"cannot read the event log {self.path}: {exc}") from exc
        if os.path.isdir(self.path):
            raise EventLogError(f"cannot read the event log {self.path}: it is a directory")
        if (info.st_dev, info.st_ino) != self._file or info.st_size < self._offset:
            self._file, self._offset, self._partial, self._events = (info.st_dev, info.st_ino), 0, b"", []
        if info.st_size > self._offset:
            with _locked(self.path, "rb") as handle:
                try:
                    handle.seek(self._offset)
                    data: bytes = handle.read()
                except OSError as exc:
                    raise EventLogError(f"cannot read the event log {self.path}: {exc}") from exc
            self._offset += len(data)
            complete, newline, self._partial = (self._partial + data).rpartition(b"\n")
            if newline:
                self._events += parse_events(complete)
        return filter_events(self._events, **where)


def _ranges(numbers: Sequence[int], shown: int = 50) -> str:
    """``1-3,7,9-10`` for [1, 2, 3, 7, 9, 10]; after ``shown`` ranges, ``,...``."""
    spans: list[tuple[int, int]] = []
    for number in sorted(set(numbers)):
        if spans and number == spans[-1][1] + 1:
            spans[-1] = (spans[-1][0], number)
        else:
            spans.append((number, number))
    text = ",".join(str(a) if a == b else f"{a}-{b}" for a, b in spans[:shown])
    return text + (",..." if len(spans) > shown else "")


def corrupt_log_event(
    checked: CheckedEvents, *, pool: str, now: float, history: Sequence[Mapping[str, Any]] = ()
) -> Event | None:
    """The ``event_log_corrupt`` event to log for ``pool`` when lines were skipped - unless the
    pool's last such event in ``history`` recorded the same lines (so that a bad line is logged
    once, not on every run). None when there is nothing new to log."""
    if not checked.skipped:
        return None
    lines = _ranges(checked.skipped_lines)
    last = [e for e in history if e.get("pool") == pool and e.get("action") == EVENT_LOG_CORRUPT]
    if last and last[-1].get("lines") == lines and last[-1].get("skipped") == len(checked.skipped):
        return None
    return make_event(
        time=now,
        pool=pool,
        action=EVENT_LOG_CORRUPT,
        reason=checked.summary(),
        skipped=len(checked.skipped),
        lines=lines,
    )


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
    "EVENT_LOG_CORRUPT",
    "KEY_TYPES",
    "MAX_DEPTH",
    "MAX_LINE_BYTES",
    "MAX_TIME",
    "REQUIRED_KEYS",
    "CheckedEvents",
    "Event",
    "EventFilter",
    "EventTail",
    "append_event",
    "append_events",
    "check_line",
    "corrupt_log_event",
    "count_actions",
    "event_details",
    "filter_events",
    "format_events",
    "format_time",
    "make_event",
    "parse_events",
    "parse_events_checked",
    "parse_time",
    "read_events",
    "read_events_checked",
]
