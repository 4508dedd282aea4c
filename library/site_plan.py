#!/usr/bin/python
# Copyright: hapool contributors
# Apache License 2.0 (see pyproject.toml)
"""Ansible module: decide which hosts site.yml launches and cleans for a pool (no side effects)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: site_plan
short_description: Decide how site.yml brings a hapool pool to its desired size
description:
  - Lists the pool's instances (dead ones included) and returns what C(site.yml) does to bring
    the pool to O(desired) live hosts - the same count C(heal.yml) and C(scale.yml) use.
  - "A pool's B(members) are its instances that no scale-in is removing (a C(scale_drain)
    event in O(event_log) names those) and that no live replacement supersedes (a heal run
    killed after launching a host's replacement - the next heal run finishes it), live and
    dead alike. Dead members are B(cleaned)
    (destroyed) and as many hosts are launched as bring the live members to O(desired); live
    hosts (leaving ones included) never exceed O(max). So C(site.yml) never launches beside a
    dead instance that C(heal.yml) would also replace."
  - The decision is pure Python (C(module_utils/hapool/sizing.py)). Changes nothing.
version_added: "0.2.0"
author:
  - hapool contributors
extends_documentation_fragment:
  - hapool_provider
options:
  pool:
    description:
      - The pool's name, or its entry of C(hapool_pools) as C(pool_validate) returns it - then
        O(desired), O(max), O(provider) and the provider options of its C(launch) (C(image),
        C(network), C(vagrant_backend), ...) are the entry's own where the task does not give them.
    type: raw
    required: true
  desired:
    description: How many live hosts the pool should have (required with a pool name).
    type: int
  max:
    description: The most live hosts the pool may have (required with a pool name).
    type: int
  event_log:
    description:
      - The healer's event log (JSON lines). Its C(scale_drain) events name the hosts a
        scale-in is removing, its C(replace_launch) and C(replace) events the hosts a live
        replacement supersedes (neither counted nor cleaned). None when omitted.
    type: path
notes:
  - Supports check mode (it changes nothing either way).
seealso:
  - module: heal_plan
  - module: scale_plan
  - module: pool_instance_info
"""

EXAMPLES = r"""
- name: Plan the launches of pool web
  site_plan:
    pool: web
    desired: 3
    max: 6
    provider: local
    state_dir: "{{ hapool_state_root }}"
    event_log: "{{ hapool_state_root }}/heal/events.jsonl"
  register: plan

- name: Show it
  ansible.builtin.debug:
    msg: "launch {{ plan.plan.launch }}, clean {{ plan.plan.clean }}"
"""

RETURN = r"""
plan:
  description: What site.yml does for the pool.
  returned: always
  type: dict
  contains:
    pool:
      description: The pool.
      type: str
    desired:
      description: O(desired).
      type: int
    max:
      description: O(max).
      type: int
    members:
      description: Instances that count toward the pool's size (not leaving), live or dead.
      type: int
    alive:
      description: Live instances, leaving ones included.
      type: int
    clean:
      description: Dead members to destroy.
      type: list
      elements: str
      sample: [web-3f9a2c]
    launch:
      description: How many hosts to launch.
      type: int
      sample: 1
todo:
  description:
    - The plan as lists ready to loop over, each entry with its C(pool). Over several pools (a
      loop of this module), join them with C(results | map(attribute='todo.launch') | flatten(levels=1)).
  returned: always
  type: dict
  contains:
    clean:
      description: One C({pool, name}) per dead member to destroy.
      type: list
      elements: dict
      sample: [{"pool": "web", "name": "web-3f9a2c"}]
    launch:
      description: One C({pool}) per host to launch.
      type: list
      elements: dict
      sample: [{"pool": "web"}]
instances:
  description: The pool's instances as the provider lists them (see M(pool_instance_info)).
  returned: always
  type: list
  elements: dict
"""

from collections.abc import Mapping
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.hapool.actions import SCALE_DRAIN
from ansible.module_utils.hapool.errors import InvalidArgumentError
from ansible.module_utils.hapool.events import read_events
from ansible.module_utils.hapool.healing import HISTORY_ACTIONS, superseded
from ansible.module_utils.hapool.module import run_module
from ansible.module_utils.hapool.providers import validate_pool
from ansible.module_utils.hapool.providers.options import PROVIDER_ARGUMENT_SPEC, provider_from_params
from ansible.module_utils.hapool.providers.options import pool_params as entry_params
from ansible.module_utils.hapool.sizing import leaving_hosts, plan_site


def loop_items(plan: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """A plan as lists ready to loop over (RV(todo)), each entry with its pool."""
    pool = plan["pool"]
    return {
        "clean": [{"pool": pool, "name": name} for name in plan["clean"]],
        "launch": [{"pool": pool} for _ in range(plan["launch"])],
    }


def pool_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The module's parameters with those of a pool entry filled in where the task gives none:
    its provider and launch options (options.pool_params), its desired and max."""
    entry = params["pool"] if isinstance(params["pool"], Mapping) else {}
    out = entry_params(params)
    for key in ("desired", "max"):
        if out.get(key) is None:
            out[key] = entry.get(key)
        if out.get(key) is None:
            raise InvalidArgumentError(f"site_plan: {key} is required (the pool entry has none)")
        out[key] = int(out[key])
    return out


from ansible.module_utils.hapool.providers.state import default_state_root
from ansible.module_utils.hapool.warm import read_warm, split_warm


def run(module: AnsibleModule) -> dict[str, Any]:
    p = pool_params(module.params)
    pool = validate_pool(str(p["pool"] or ""))
    history = []
    if p["event_log"]:
        history = read_events(p["event_log"], pool=pool, actions=(SCALE_DRAIN, *HISTORY_ACTIONS))
    with provider_from_params(p) as provider:
        everything = provider.list(pool)
    # warm hosts (hapool.warm) are no members: the warm pool's refill keeps them
    instances, _warm = split_warm(everything, read_warm(p["state_dir"] or str(default_state_root()), pool))
    plan = plan_site(
        pool,
        p["desired"],
        p["max"],
        instances,
        leaving=leaving_hosts(history),
        superseded=superseded(instances, history, pool, leaving=leaving_hosts(history)),
    )
    planned = plan.as_dict()
    return {
        "changed": False,
        "plan": planned,
        "todo": loop_items(planned),
        "instances": [i.to_dict() for i in instances],
        "warm": [i.name for i in _warm],
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "pool": {"type": "raw", "required": True},
            "desired": {"type": "int"},
            "max": {"type": "int"},
            "event_log": {"type": "path"},
            **PROVIDER_ARGUMENT_SPEC,
        },
        supports_check_mode=True,
    )
    run_module(module, lambda: run(module))


if __name__ == "__main__":
    main()
