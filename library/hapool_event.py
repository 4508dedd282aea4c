#!/usr/bin/python
# Copyright: hapool contributors
# Apache License 2.0 (see pyproject.toml)
"""Ansible module: append an event to hapool's event log (JSON lines)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hapool_event
short_description: Append an event to the healer's event log
description:
  - Appends one JSON object on one line to the event log, under an exclusive lock, with the
    keys C(time), C(pool), C(action), C(instance), C(reason), C(duration) and any O(extra) keys.
  - C(duration) is O(duration), or the seconds since O(started) when that is given.
version_added: "0.1.0"
author:
  - hapool contributors
options:
  path:
    description: The event log (created with its directory when missing).
    type: path
    required: true
  pool:
    description: The pool.
    type: str
    required: true
  action:
    description: What happened (C(replace), C(register), C(remove_server), C(circuit_open), ...).
    type: str
    required: true
  instance:
    description: The instance or server concerned.
    type: str
  reason:
    description: Why.
    type: str
    default: ""
  duration:
    description: Seconds the action took.
    type: float
  started:
    description: Epoch seconds when the action started; the duration is computed from it.
    type: float
  extra:
    description: More keys (for example C(replacement), C(age), C(run)).
    type: dict
    default: {}
notes:
  - In check mode nothing is written; the event is returned.
seealso:
  - module: heal_plan
"""

EXAMPLES = r"""
- name: Record a replacement
  hapool_event:
    path: "{{ hapool_state_root }}/heal/events.jsonl"
    pool: web
    action: replace
    instance: web-3f9a2c
    reason: HAProxy holds it DOWN
    started: "{{ started }}"
    extra:
      replacement: web-a01b2c
"""

RETURN = r"""
event:
  description: The event written.
  returned: always
  type: dict
  sample: {"time": 1700000000.2, "pool": "web", "action": "replace", "instance": "web-3f9a2c",
           "reason": "HAProxy holds it DOWN", "duration": 9.4, "replacement": "web-a01b2c"}
"""

import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.hapool.events import append_event, make_event
from ansible.module_utils.hapool.module import run_module


def run(module: AnsibleModule) -> dict[str, Any]:
    p = module.params
    now = time.time()
    duration = p["duration"]
    if duration is None and p["started"] is not None:
        duration = max(0.0, now - p["started"])
    event = make_event(
        time=now, pool=p["pool"], action=p["action"], instance=p["instance"], reason=p["reason"],
        duration=duration, **p["extra"],
    )  # fmt: skip
    if not module.check_mode:
        append_event(p["path"], event)
    return {"changed": not module.check_mode, "event": event}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "pool": {"type": "str", "required": True},
            "action": {"type": "str", "required": True},
            "instance": {"type": "str"},
            "reason": {"type": "str", "default": ""},
            "duration": {"type": "float"},
            "started": {"type": "float"},
            "extra": {"type": "dict", "default": {}},
        },
        supports_check_mode=True,
    )
    run_module(module, lambda: run(module))


if __name__ == "__main__":
    main()
