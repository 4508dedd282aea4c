#!/usr/bin/python
# Copyright: hapool contributors
# Apache License 2.0 (see pyproject.toml)
"""Ansible module: a pool's warm pool - refill it, or take one of its hosts into service."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pool_warm
short_description: Keep a pool's warm hosts (launched from its template, checked, no traffic) and promote them
description:
  - A B(warm pool) (AWS Auto Scaling warm pools) - O(pool)'s C(warm.size) hosts launched ahead of
    need from the pool's current launch template, in the balancer with weight 0 (UP and checked,
    taking no traffic), not members of the pool (they count neither toward C(desired) nor C(max)).
    Which hosts are warm is the pool's warm file, C(<state_dir>/warm/<pool>.json).
  - O(state=refilled) takes out and destroys the warm hosts that are dead, DOWN past the pool's
    C(grace_period), behind the pool's current template version, or over the size, then
    launches new ones from the current version up to the size - each name is written to the
    warm file before its launch, so a run killed after a launch leaves a warm host, never an
    extra member - and adds each at runtime with weight 0, health-gated. A launch that fails is
    logged (C(warm_launch_failed)) and ends the refill; the module does not fail for it (the
    next run tries again). Without a baked template version nothing is launched.
  - O(state=promoted) takes the warm host O(name) into service - out of the warm file first, then
    its weight at runtime (milliseconds). C(heal.yml) does it for a replacement its plan named
    (M(heal_plan)'s C(promote)), C(scale.yml) for a scale-out. A host that is no longer warm is
    left alone (RV(promoted) false).
  - The callers hold the pool lock (M(pool_lock)). Events (C(warm_remove), C(warm_launch),
    C(warm_launch_failed), C(warm_promote)) are appended to O(event_log).
version_added: "0.1.0"
author:
  - hapool contributors
extends_documentation_fragment:
  - hapool_provider
  - haproxy_runtime
options:
  pool:
    description: The pool's entry of C(hapool_pools), validated (M(pool_validate)); its C(warm.size).
    type: dict
    required: true
  state:
    description: V(refilled) or V(promoted).
    type: str
    choices: [refilled, promoted]
    default: refilled
  name:
    description: The warm host to promote (O(state=promoted)).
    type: str
  weight:
    description: Its weight in service (O(state=promoted); default the pool's C(weight), else 1).
    type: int
  check_defaults:
    description:
      - The check options of servers added at runtime (the haproxy role's
        C(haproxy_runtime.check_defaults)), combined with the pool's C(check).
    type: dict
    default: {}
  event_log:
    description: The event log (JSON lines) the events are appended to.
    type: path
notes:
  - Check mode returns the refill's plan (RV(plan)) and changes nothing.
seealso:
  - module: heal_plan
  - module: pool_template
"""

EXAMPLES = r"""
- name: Refill the warm pool of pool web
  pool_warm:
    pool: "{{ hapool_pools | selectattr('name', 'eq', 'web') | first }}"
    socket: /run/haproxy/admin.sock
    state_dir: /var/lib/hapool
    check_defaults: "{{ haproxy_runtime.check_defaults }}"
    event_log: /var/lib/hapool/heal/events.jsonl

- name: Take a warm host into service
  pool_warm:
    pool: "{{ pool }}"
    state: promoted
    name: web-3f9a2c
    socket: /run/haproxy/admin.sock
    state_dir: /var/lib/hapool
"""

RETURN = r"""
plan:
  description:
    - O(state=refilled) - C(size), C(version) (the current template version), C(warm) (the warm
      hosts found), C(remove) (name -> why), C(prune) (names without an instance) and C(launch)
      (how many).
  returned: when state is refilled
  type: dict
removed:
  description: The warm hosts taken out and destroyed.
  returned: when state is refilled
  type: list
  elements: str
launched:
  description: The warm hosts launched - C(name), C(address), C(port), C(template), C(seconds).
  returned: when state is refilled
  type: list
  elements: dict
error:
  description: Why a warm host could not be launched (the refill ended there; the next run tries again).
  returned: when state is refilled
  type: str
promoted:
  description: Whether O(name) was a warm host and is now in service (O(state=promoted)).
  returned: when state is promoted
  type: bool
events:
  description: The events appended to O(event_log).
  returned: always
  type: list
  elements: dict
"""

import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.hapool.baking import current_template
from ansible.module_utils.hapool.events import append_events
from ansible.module_utils.hapool.haproxy import RUNTIME_ARGUMENT_SPEC, RuntimeClient
from ansible.module_utils.hapool.healing import HealSettings
from ansible.module_utils.hapool.launching import provider_for
from ansible.module_utils.hapool.module import run_module
from ansible.module_utils.hapool.providers import validate_instance_name, validate_pool
from ansible.module_utils.hapool.providers.options import PROVIDER_ARGUMENT_SPEC
from ansible.module_utils.hapool.providers.state import default_state_root
from ansible.module_utils.hapool.warm import promote_logged, read_warm, refill, warm_size


def run(module: AnsibleModule) -> dict[str, Any]:
    p = module.params
    entry = dict(p["pool"])
    pool = validate_pool(str(entry.get("name") or ""))
    warm_size(entry)  # a bad size fails before anything is read
    state_root = p["state_dir"] or str(default_state_root())
    client = RuntimeClient(p["socket"], timeout=p["timeout"])
    events: list[dict[str, Any]] = []
    if p["state"] == "promoted":
        if not p["name"]:
            module.fail_json(msg="state=promoted needs the name of the warm host to promote")
        name = validate_instance_name(p["name"])
        weight = p["weight"] if p["weight"] is not None else int(entry.get("weight") or 1)
        if module.check_mode:
            return {"changed": name in read_warm(state_root, pool), "promoted": False, "events": []}
        event = promote_logged(
            client, state_root, pool, name, weight, started=time.time(), reason="taken into service",
            clock=time.time,
        )
        promoted = event is not None
        events += [event] if event is not None else []
        if events and p["event_log"]:
            append_events(p["event_log"], events)
        return {"changed": promoted, "promoted": promoted, "events": events}

    grace = HealSettings.from_pool(entry).grace_period
    with provider_for(entry, state_root) as provider:
        result = refill(
            entry,
            provider,
            client,
            state_root=state_root,
            check_defaults=p["check_defaults"] or {},
            template=current_template(entry, state_root),
            grace_period=grace,
            now=time.time(),
            clock=time.time,
            check_mode=module.check_mode,
        )
    events = result.events
    if events and p["event_log"]:
        append_events(p["event_log"], events)
    if result.error:
        module.warn(
            f"pool {pool}: a warm host could not be launched (the next run tries again): {result.error}"
        )
    out = result.as_dict()
    out["changed"] = result.changed or (module.check_mode and bool(result.plan.remove or result.plan.launch))
    return out


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "pool": {"type": "dict", "required": True},
            "state": {"type": "str", "default": "refilled", "choices": ["refilled", "promoted"]},
            "name": {"type": "str"},
            "weight": {"type": "int"},
            "check_defaults": {"type": "dict", "default": {}},
            "event_log": {"type": "path"},
            **RUNTIME_ARGUMENT_SPEC,
            **PROVIDER_ARGUMENT_SPEC,
        },
        supports_check_mode=True,
    )
    run_module(module, lambda: run(module))


if __name__ == "__main__":
    main()
