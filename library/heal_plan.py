#!/usr/bin/python
# Copyright: hapool contributors
# Apache License 2.0 (see pyproject.toml)
"""Ansible module: decide which hosts of a pool the healer replaces (no side effects)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: heal_plan
short_description: Decide which web hosts of a hapool pool to replace, register or remove
description:
  - Observes one pool - HAProxy's C(show stat) rows of the pool's backend (through the runtime
    socket) and the provider's list of instances (dead ones included) - reads the pool's
    history from the healer's event log, and returns the healer's plan. Changes nothing on
    hosts or in the balancer; C(heal.yml) acts on the plan.
  - A host is B(replaced) when HAProxy holds its server DOWN (not MAINT, DRAIN or NOLB) and it is
    older than the pool's C(grace_period), or when the provider says it is not alive (its nginx
    or container is gone). A live instance the balancer does not know is B(registered); a
    server without an instance is B(removed) from the balancer (static C(servers) of the pool
    are left alone). Hosts a scale-in is removing (a C(scale_drain) event in the log, see
    M(scale_plan)) are left alone.
  - "Guards: at most C(max_replace_per_run) replacements of live hosts HAProxy holds DOWN
    (DOWN longest first) and at most C(max_replace_dead_per_run) of hosts the provider reports
    dead; the B(circuit breaker) - when every server of a live host (and static server) is
    DOWN, or more than C(circuit_threshold) of them, no live host is replaced, a
    C(circuit_open) event is logged and the module fails (the fault is likely between the
    balancer and the hosts) - hosts the provider reports dead are replaced all the same, as
    they are gone whatever the network does; the B(size invariant) - live hosts never exceed
    the pool's C(max): a replacement is launched before the failed host is destroyed unless
    that would make C(max) + 1 live hosts (then C(destroy_first)), and a dead host that cannot
    be replaced under C(max) is B(cleaned) (destroyed, not replaced); B(backoff) - a
    crash-looping image is not relaunched in a loop. n counts the replacements in a row that
    failed within C(flap_window) seconds of their launch and the attempts to replace the host
    that failed (its replacement did not launch); the host is not replaced again before
    C(backoff * 2^(n-1)) seconds (at most C(backoff_max)) after the later of the end of its
    grace period and the last failed attempt; a C(backoff_skip) event is logged."
  - A host whose replacement an earlier, interrupted run launched (a C(replace_launch) event
    names it, and the replacement is alive) is replaced by that host (C(adopt)) whatever its
    own status, so a host left in MAINT by a killed run, or one that came back UP, never
    stays beside its successor.
  - The decision is pure Python (C(module_utils/hapool/healing.py)); time is the controller's
    clock unless O(now) is given.
version_added: "0.1.0"
author:
  - hapool contributors
extends_documentation_fragment:
  - hapool_provider
  - haproxy_runtime
options:
  pool:
    description:
      - The pool's entry of C(hapool_pools) (C(name) is the backend). Healing settings are read
        from it, or from its C(heal) dict - C(grace_period) (seconds, default 30),
        C(max_replace_per_run) (1), C(max_replace_dead_per_run) (10), C(circuit_threshold)
        (share of DOWN servers of live hosts above which the circuit opens, 0.5), C(backoff)
        (60), C(backoff_max) (3600), C(flap_window) (300).
      - Its C(provider), and the provider options of its C(launch) (C(image), C(network),
        C(vagrant_backend), C(docker_host), ...), are the provider options where the task does
        not give them (as in M(pool_instance)).
    type: dict
    required: true
  event_log:
    description:
      - The healer's event log (JSON lines). Its C(replace_launch), C(replace) and
        C(replace_failed) events drive the backoff; the
        module appends C(circuit_open) and C(backoff_skip) events to it (not in check mode).
      - A line of the log that cannot be read (not UTF-8, not a JSON object, a known key of the
        wrong type, a half-written line) is skipped, never fatal - the module warns with the
        count and the line numbers, and appends an C(event_log_corrupt) event (C(skipped) is the
        count, C(lines) the line numbers) unless the pool's last C(event_log_corrupt) event
        recorded the same lines. A log that cannot be read at all (a directory, no
        permission) makes the module fail.
      - No history and no events when omitted.
    type: path
  now:
    description: The time of the decision, epoch seconds (tests); default the current time.
    type: float
  fail_on_circuit_open:
    description: Fail when the circuit breaker is open (after logging the event).
    type: bool
    default: true
notes:
  - Supports check mode. In check mode nothing is written to the event log.
seealso:
  - module: haproxy_stats_info
  - module: pool_instance_info
  - module: hapool_event
requirements:
  - HAProxy 2.6 or later with a stats socket; the provider's requirements (see M(pool_instance)).
"""

EXAMPLES = r"""
- name: Plan the healing of pool web
  heal_plan:
    pool: "{{ hapool_pools | selectattr('name', 'eq', 'web') | first }}"
    socket: "{{ haproxy_runtime.socket }}"
    state_dir: "{{ hapool_state_root }}"
    event_log: "{{ hapool_state_root }}/heal/events.jsonl"
  register: plan

- name: Show what would be replaced
  ansible.builtin.debug:
    msg: "{{ plan.plan.replace }}"
"""

RETURN = r"""
plan:
  description: The plan of the pool.
  returned: always
  type: dict
  contains:
    pool:
      description: The pool.
      type: str
      sample: web
    replace:
      description: Instances to replace now (launch a replacement, take out of the balancer, destroy).
      type: list
      elements: str
      sample: [web-3f9a2c]
    register:
      description: Live instances to add to the balancer.
      type: list
      elements: str
    remove_servers:
      description: Servers to delete from the balancer (no instance behind them).
      type: list
      elements: str
    clean:
      description: Dead instances to destroy without a replacement (the pool has C(max) live hosts).
      type: list
      elements: str
    backoff:
      description: Failed instances left alone because of the backoff.
      type: list
      elements: str
    circuit_open:
      description: Whether the circuit breaker is open (nothing replaced).
      type: bool
    circuit_reason:
      description: Why it is open.
      type: str
    servers_total:
      description: Servers the circuit breaker counts (those of live hosts, and static servers).
      type: int
    servers_down:
      description: Of those, the servers HAProxy holds DOWN.
      type: int
    changes:
      description: Whether the plan has anything to do.
      type: bool
    settings:
      description: The healing settings used.
      type: dict
    decisions:
      description:
        - One entry per host - C(action) (replace, register, remove_server, clean, wait, keep,
          backoff_skip, over_limit, circuit_open), C(name), C(reason), C(in_balancer),
          C(has_instance), C(status), C(age) (seconds since launch), C(not_before), C(dead)
          (the provider reports it dead), C(destroy_first) (destroy it before launching its
          replacement, to stay within C(max)), and for a
          replacement C(replacement) (the new host's name, picked here so that it is logged
          before the launch) and C(adopt) (true when that host exists already, as an earlier
          run launched it and was interrupted before it destroyed this one, or the watcher's
          fast path launched it; it is taken and nothing is launched), C(launched_at) (when
          that earlier launch was logged) and C(promote) (the replacement is a warm host of the
          pool that HAProxy reports UP, taken into service instead of a launch), C(promoted)
          (for an adopted replacement, true when the run that launched it - the watcher's fast
          path or an interrupted heal run - took a warm host into service).
      type: list
      elements: dict
todo:
  description:
    - The plan's actions as lists ready to loop over, each entry a decision of RV(plan.decisions)
      with its C(pool) added. Over several pools (a loop of this module), join them with
      C(results | map(attribute='todo.replace') | flatten(levels=1)).
  returned: always
  type: dict
  contains:
    replace:
      description: The C(replace) and C(clean) decisions (launch a replacement, or only destroy).
      type: list
      elements: dict
      sample: [{"pool": "web", "name": "web-3f9a2c", "action": "replace", "replacement": "web-81bd0e"}]
    remove_servers:
      description: The C(remove_server) decisions (a server without an instance).
      type: list
      elements: dict
    register:
      description: The C(register) decisions (a live instance the balancer does not know).
      type: list
      elements: dict
instances:
  description: The pool's instances as the provider lists them (see M(pool_instance_info)).
  returned: always
  type: list
  elements: dict
warm:
  description:
    - The pool's warm hosts (its warm file, C(<state_dir>/warm/<pool>.json)) - not members of the pool,
      left out of the plan. A replacement may be one of them that HAProxy reports UP
      (RV(plan.decisions[].promote)), taken into service instead of a launch.
  returned: always
  type: list
  elements: str
events:
  description: Events appended to the event log by this run.
  returned: always
  type: list
  elements: dict
now:
  description: The time of the decision.
  returned: always
  type: float
"""

import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.hapool.actions import BACKOFF_SKIP, CIRCUIT_OPEN
from ansible.module_utils.hapool.events import append_events, make_event
from ansible.module_utils.hapool.fastheal import observe_heal
from ansible.module_utils.hapool.haproxy import RUNTIME_ARGUMENT_SPEC, RuntimeClient
from ansible.module_utils.hapool.healing import loop_items
from ansible.module_utils.hapool.module import run_module
from ansible.module_utils.hapool.providers import validate_pool
from ansible.module_utils.hapool.providers.options import (
    PROVIDER_ARGUMENT_SPEC,
    pool_params,
    provider_from_params,
)
from ansible.module_utils.hapool.providers.state import default_state_root


def run(module: AnsibleModule) -> dict[str, Any]:
    p = module.params
    pool_cfg = dict(p["pool"])
    pool = validate_pool(str(pool_cfg.get("name") or ""))
    now = p["now"] if p["now"] is not None else time.time()
    with provider_from_params(pool_params(p)) as provider:
        client = RuntimeClient(p["socket"], timeout=p["timeout"])
        state_root = p["state_dir"] or str(default_state_root())
        observed = observe_heal(pool_cfg, client, provider, p["event_log"], now, state_root=state_root)
    plan, instances = observed.plan, observed.instances
    if observed.warning:
        module.warn(observed.warning)
    log_events = observed.log_events

    events = log_events
    if plan.circuit_open:
        events.append(
            make_event(
                time=now,
                pool=pool,
                action=CIRCUIT_OPEN,
                reason=plan.circuit_reason,
                servers_total=plan.servers_total,
                servers_down=plan.servers_down,
            )
        )
    for decision in plan.decisions:
        if decision.action == BACKOFF_SKIP:
            events.append(
                make_event(
                    time=now,
                    pool=pool,
                    action=BACKOFF_SKIP,
                    instance=decision.name,
                    reason=decision.reason,
                    not_before=decision.not_before,
                )
            )
    if events and p["event_log"] and not module.check_mode:
        append_events(p["event_log"], events)
    result = {
        "changed": False,
        "plan": plan.as_dict(),
        "instances": [i.to_dict() for i in instances],
        "warm": observed.warm,
        "events": events,
        "now": now,
    }
    result["todo"] = loop_items(result["plan"])
    if plan.circuit_open and p["fail_on_circuit_open"]:
        module.fail_json(
            msg=f"circuit breaker open, nothing replaced: {plan.circuit_reason} "
            "(the fault is likely between the balancer and the hosts)",
            error="CircuitOpen",
            **result,
        )
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "pool": {"type": "dict", "required": True},
            **RUNTIME_ARGUMENT_SPEC,
            **PROVIDER_ARGUMENT_SPEC,
            "event_log": {"type": "path"},
            "now": {"type": "float"},
            "fail_on_circuit_open": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    run_module(module, lambda: run(module))


if __name__ == "__main__":
    main()
