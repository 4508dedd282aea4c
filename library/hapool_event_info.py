#!/usr/bin/python
# Copyright: hapool contributors
# Apache License 2.0 (see pyproject.toml)
"""Ansible module: query hapool's event log (JSON lines) by pool, time, action and instance."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hapool_event_info
short_description: Query the event log of heal.yml and scale.yml
description:
  - Reads hapool's event log (one JSON object a line, written by M(hapool_event) for
    C(heal.yml) and C(scale.yml)) and returns the events that match every filter given, in log
    order (oldest first), with the number of events per action.
  - Lines that cannot be read - not UTF-8 (a torn write, a disk-full moment), not a JSON
    object, a half-written line, a known key of the wrong type (for example a C(time) that is
    not a number) - are skipped with a warning naming their count and line numbers
    (RV(skipped), RV(skipped_lines)); they never make the module fail.
  - A log that does not exist yet has no events (RV(exists=false)); a path that cannot be read
    (a directory, no permission) makes the module fail.
  - Changes nothing; runs in check mode like in normal mode.
version_added: "0.1.0"
author:
  - hapool contributors
options:
  path:
    description: The event log, usually C(<state root>/heal/events.jsonl).
    type: path
    required: true
  pool:
    description: Only the events of this pool.
    type: str
  since:
    description:
      - Only the events at or after this time.
      - Epoch seconds (C(1795311644)), a duration before now (C(30s), C(10m), C(2h), C(1d),
        C(1w)), C(now), or an ISO-8601 date and time (C(2026-11-22T04:00:00Z); UTC when it has
        no offset).
    type: str
  until:
    description: Only the events at or before this time (same formats as O(since)).
    type: str
  actions:
    description:
      - Only the events with one of these actions (for example C(replace), C(circuit_open),
        C(scale_out)). All actions when empty.
    type: list
    elements: str
    default: []
  instance:
    description: Only the events about this instance (as their C(instance) or their C(replacement)).
    type: str
  limit:
    description: Only the last (newest) this many of the matching events. All when omitted.
    type: int
notes:
  - Supports check mode. Has no diff (it changes nothing).
  - RV(counts) counts the returned events, so after O(limit).
seealso:
  - module: hapool_event
"""

EXAMPLES = r"""
- name: What the healer did to pool web in the last hour
  hapool_event_info:
    path: "{{ hapool_state_root }}/heal/events.jsonl"
    pool: web
    since: 1h
    actions: [replace, replace_failed, circuit_open, backoff_skip]
  register: heal_events

- name: Fail when a circuit breaker opened today
  ansible.builtin.assert:
    that: heal_events.counts.circuit_open | default(0) == 0

- name: The last scaling decision of pool web
  hapool_event_info:
    path: "{{ hapool_state_root }}/heal/events.jsonl"
    pool: web
    actions: [scale_out, scale_in]
    limit: 1
  register: last_scale

- name: The last 10 events of every pool
  hapool_event_info:
    path: "{{ hapool_state_root }}/heal/events.jsonl"
    limit: 10
  register: recent

- name: Print them as a table
  ansible.builtin.debug:
    msg: "{{ recent.lines }}"
"""

RETURN = r"""
events:
  description: The matching events, oldest first.
  returned: always
  type: list
  elements: dict
  sample: [{"time": 1795311644.688, "pool": "web", "action": "replace", "instance": "web-53d32f",
            "reason": "the provider reports it stopped", "duration": 25.975,
            "replacement": "web-650903", "age": 28.6, "launch_seconds": 2.762, "run": "wyrbakerwzov"}]
counts:
  description: Number of returned events per action.
  returned: always
  type: dict
  sample: {"replace": 2, "scale_out": 1}
total:
  description: Number of returned events.
  returned: always
  type: int
  sample: 3
lines:
  description: The events as aligned text lines (a header, then time in UTC, pool, action,
    instance, duration and the other keys), for a terminal.
  returned: always
  type: list
  elements: str
exists:
  description: Whether the event log exists.
  returned: always
  type: bool
since:
  description: O(since) as epoch seconds (null when not given).
  returned: always
  type: float
until:
  description: O(until) as epoch seconds (null when not given).
  returned: always
  type: float
skipped:
  description: Number of lines of the log that were skipped because they cannot be read (all
    of the log's lines, whatever the filters).
  returned: always
  type: int
  sample: 2
skipped_lines:
  description: The first 100 of those lines - C(line) (its number, the first line being 1) and
    C(reason) (why it was skipped).
  returned: always
  type: list
  elements: dict
  sample: [{"line": 7, "reason": "not UTF-8 (byte 0xff at column 1)"},
           {"line": 9, "reason": "not JSON (a torn or half-written line?)"}]
"""

import os
import time
from collections.abc import Callable
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.hapool.errors import HapoolError
from ansible.module_utils.hapool.events import count_actions, format_events, parse_time, read_events_checked
from ansible.module_utils.hapool.module import run_module

SKIPPED_SHOWN = 100


def run(params: dict[str, Any], now: float, warn: Callable[[str], None] | None = None) -> dict[str, Any]:
    since = parse_time(params["since"], now=now)
    until = parse_time(params["until"], now=now)
    if since is not None and until is not None and since > until:
        raise HapoolError(f"since ({params['since']}) is after until ({params['until']})")
    checked = read_events_checked(
        params["path"], pool=params["pool"], since=since, until=until, actions=tuple(params["actions"]),
        instance=params["instance"], limit=params["limit"],
    )  # fmt: skip
    events = checked.events
    if checked.skipped and warn is not None:
        warn(checked.warning(params["path"]))
    return {
        "changed": False,
        "events": events,
        "counts": count_actions(events),
        "total": len(events),
        "lines": format_events(events),
        "exists": os.path.exists(params["path"]),
        "since": since,
        "until": until,
        "skipped": len(checked.skipped),
        "skipped_lines": [{"line": line, "reason": why} for line, why in checked.skipped[:SKIPPED_SHOWN]],
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "pool": {"type": "str"},
            "since": {"type": "str"},
            "until": {"type": "str"},
            "actions": {"type": "list", "elements": "str", "default": []},
            "instance": {"type": "str"},
            "limit": {"type": "int"},
        },
        supports_check_mode=True,
    )
    run_module(module, lambda: run(module.params, time.time(), warn=module.warn))


if __name__ == "__main__":
    main()
