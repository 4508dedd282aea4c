#!/usr/bin/python
# Copyright: hapool contributors
# Apache License 2.0 (see pyproject.toml)
"""Ansible module: decide how many hosts a pool needs and which to launch or drain (no side effects)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: scale_plan
short_description: Decide the size of a hapool pool and the hosts to launch, drain and remove
description:
  - "Observes one pool: HAProxy's C(show stat) rows of the pool's backend (current sessions
    C(scur) and session rate C(rate) per server, status), the provider's instances, the CPU use
    of each host when a policy needs it (two samples O(cpu_interval) seconds apart), the metric
    files of the C(file) policies, the list of protected hosts, and the pool's scaling history
    from the event log. Returns the scaler's plan. Changes nothing: C(scale.yml) acts on it and
    writes the events."
  - "Policies (C(scale.policies) of the pool; the one asking for the most capacity wins):
    C(file) - the desired count written in a file (one whole number), re-read every run (a
    missing or empty file gives no recommendation, anything else than a number is an error);
    C(target) - target tracking of a per-host C(metric) (C(sessions), C(request_rate) in
    sessions per second, C(cpu) in percent of one core) to C(target); C(step) - C(steps), each
    C(lower)/C(upper) bounds on the per-host average and a C(change) in hosts."
  - Averages count only warm hosts (UP in the balancer and older than C(warmup)). Then the
    guards, in order - no policy keeps the configured C(desired); a scale-in is held to the
    highest recommendation of the last C(scale_in_stabilization) seconds; C(min)/C(max);
    C(scale_out_cooldown) after a scale-out; C(scale_in_cooldown) after any scaling (bounds are
    restored despite cooldowns); C(max_step_out)/C(max_step_in) per run. Scale-in drains DOWN or
    dead hosts first, then by C(termination_order); protected hosts and hosts an operator put in
    DRAIN or MAINT are never drained. Every plan says why, and what capped it.
  - The decision is pure Python (C(module_utils/hapool/scaling.py)); time is the controller's
    clock unless O(now) is given.
version_added: "0.2.0"
author:
  - hapool contributors
extends_documentation_fragment:
  - hapool_provider
  - haproxy_runtime
options:
  pool:
    description:
      - The pool's entry of C(hapool_pools) - C(name) (the backend), C(min), C(max), C(desired)
        and a C(scale) dict with C(policies) (list, see above), C(tolerance) (share, default
        0.1), C(scale_out_cooldown) (seconds, 60), C(scale_in_cooldown) (120),
        C(scale_in_stabilization) (300), C(max_step_out) (4), C(max_step_in) (2), C(warmup)
        (30), C(termination_order) (C(oldest_first) or C(newest_first)), C(protected) (host
        names), C(protect_file), C(drain_timeout) (seconds, 60; used by C(scale.yml)).
      - Its C(provider), and the provider options of its C(launch) (C(image), C(network),
        C(vagrant_backend), C(docker_host), ...), are the provider options where the task does
        not give them (as in M(pool_instance)).
    type: dict
    required: true
  event_log:
    description:
      - The event log (JSON lines) shared with the healer. Its C(scale_out), C(scale_in),
        C(scale_recommendation) and C(scale_drain) events are the scaler's history (cooldowns,
        stabilization window, interrupted scale-ins). Only read.
      - No history when omitted (no cooldown, and no scale-in while a stabilization window is set).
    type: path
  protect_file:
    description:
      - A file naming protected hosts, one per line (C(#) comments allowed); they are never
        drained by a scale-in. Overrides C(scale.protect_file) of the pool. A missing file
        protects nothing.
    type: path
  cpu_interval:
    description: Seconds between the two CPU samples, when a policy uses the C(cpu) metric.
    type: float
    default: 1.0
  now:
    description: The time of the decision, epoch seconds (tests); default the current time.
    type: float
notes:
  - Supports check mode; the module never changes anything.
  - "Unreadable state is an error, never a guess: a missing or refused socket, a provider that
    does not answer, a metric file that is not a whole number (a missing one only silences its
    policy), or a malformed C(scale) setting fail the module."
seealso:
  - module: heal_plan
  - module: haproxy_stats_info
  - module: hapool_event
requirements:
  - HAProxy 2.6 or later with a stats socket; the provider's requirements (see M(pool_instance)).
"""

EXAMPLES = r"""
- name: Plan the size of pool web
  scale_plan:
    pool:
      name: web
      min: 2
      max: 8
      desired: 2
      scale:
        policies:
          - type: target
            metric: request_rate
            target: 50
          - type: file
            path: /var/lib/hapool/desired-web
        scale_in_stabilization: 300
    provider: docker
    socket: /run/haproxy/admin.sock
    event_log: /var/lib/hapool/heal/events.jsonl
  register: scale

- name: Say what it decided and why
  ansible.builtin.debug:
    msg: "{{ scale.plan.current }} -> {{ scale.plan.desired }}: {{ scale.plan.reasons | join('; ') }}"
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
    current:
      description: Hosts counted as the pool's capacity (every instance not being removed).
      type: int
      sample: 3
    desired:
      description: The size after this plan is carried out.
      type: int
      sample: 5
    action:
      description: C(scale_out), C(scale_in) or C(none).
      type: str
      sample: scale_out
    launch:
      description: Hosts to launch.
      type: int
      sample: 2
    drain:
      description: Hosts to drain now, then remove from the balancer and destroy.
      type: list
      elements: str
    leaving:
      description: Hosts an earlier scale-in began to remove and that still exist (finish them).
      type: list
      elements: str
    remove:
      description: C(leaving) plus C(drain), in that order.
      type: list
      elements: str
    recommendation:
      description: The highest policy recommendation before the guards (null when none).
      type: int
    recommendations:
      description: One per policy - C(policy), C(desired) (null - nothing to say), C(reason), C(value).
      type: list
      elements: dict
    reasons:
      description: Why, step by step.
      type: list
      elements: str
      sample: ["policy target:request_rate asks for the most: 5", "launch 2 host(s): 3 -> 5"]
    capped_by:
      description:
        - What held the recommendation back - C(max), C(min), C(scale_out_cooldown),
          C(scale_in_cooldown), C(scale_in_stabilization), C(max_step_out), C(max_step_in),
          C(protection).
      type: list
      elements: str
    record_recommendation:
      description: Whether the caller should log the recommendation (it changed since the last one logged).
      type: bool
    serving:
      description: Hosts available in the balancer.
      type: int
    warm:
      description: Serving hosts past their warm-up (the ones averaged).
      type: int
    hosts:
      description: Each host - C(name), C(created), C(alive), C(status), C(sessions), C(request_rate), C(cpu).
      type: list
      elements: dict
    changes:
      description: Whether there is anything to do.
      type: bool
    settings:
      description: The scaling settings used (defaults filled in).
      type: dict
warm:
  description: The pool's warm hosts (not members of the pool, not in the plan).
  returned: always
  type: list
  elements: str
todo:
  description:
    - The plan's actions as lists ready to loop over, each entry with its C(pool). Over several
      pools (a loop of this module), join them with
      C(results | map(attribute='todo.remove') | flatten(levels=1)).
  returned: always
  type: dict
  contains:
    remove:
      description:
        - One per host of RV(plan.remove) - C(pool), C(name), C(new) (drained by this run, so
          its C(scale_drain) event is still to be written; false for a host an earlier run
          began to remove), C(in_balancer) (the balancer has its server), C(drain_timeout)
          (the pool's, seconds).
      type: list
      elements: dict
      sample: [{"pool": "web", "name": "web-3f9a2c", "new": true, "in_balancer": true, "drain_timeout": 60}]
    launch:
      description:
        - The pool (O(pool), as given) once per host to launch, the C(_hapool_launch_pool) of
          C(playbooks/tasks/launch_host.yml) - the hosts of the scale-out that no warm host covers.
      type: list
      elements: dict
    promote:
      description:
        - The warm hosts the scale-out takes into service instead of launching (C(pool), C(name)) -
          warm hosts HAProxy reports UP, oldest first (M(pool_warm)).
      type: list
      elements: dict
    adopt:
      description:
        - The hosts the heal watcher's scale-out fast path launched (or promoted) and added to
          the balancer at runtime - a C(scale_register) event each - that are alive and that no
          C(scale_launch) event logged yet; C(scale.yml) re-renders the balancers, waits for
          them and logs them. Each - C(pool), C(name), C(started) (the scale-out decision),
          C(launched), C(promoted), C(adopted) (true).
      type: list
      elements: dict
    scale_out:
      description: RV(plan) in a list when the plan scales out, else empty.
      type: list
      elements: dict
    scale_in:
      description: RV(plan) in a list when the plan scales in, else empty.
      type: list
      elements: dict
instances:
  description: The pool's instances as the provider lists them (see M(pool_instance_info)).
  returned: always
  type: list
  elements: dict
protected:
  description: The protected hosts (settings and O(protect_file)).
  returned: always
  type: list
  elements: str
now:
  description: The time of the decision.
  returned: always
  type: float
"""

import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.hapool.fastscale import observe_scale
from ansible.module_utils.hapool.haproxy import RUNTIME_ARGUMENT_SPEC, RuntimeClient
from ansible.module_utils.hapool.module import run_module
from ansible.module_utils.hapool.providers.options import (
    PROVIDER_ARGUMENT_SPEC,
    pool_params,
    provider_from_params,
)
from ansible.module_utils.hapool.providers.state import default_state_root


def run(module: AnsibleModule) -> dict[str, Any]:
    p = module.params
    pool_cfg = dict(p["pool"])
    now = p["now"] if p["now"] is not None else time.time()
    client = RuntimeClient(p["socket"], timeout=p["timeout"])
    with provider_from_params(pool_params(p)) as provider:
        seen = observe_scale(
            pool_cfg,
            client,
            provider,
            p["event_log"],
            now,
            state_root=p["state_dir"] or str(default_state_root()),
            protect_file=p["protect_file"],
            cpu_interval=p["cpu_interval"],
        )
    return {
        "changed": False,
        "plan": seen.plan.as_dict(),
        "todo": seen.todo,
        "instances": [i.to_dict() for i in seen.instances],
        "warm": seen.warm,
        "protected": seen.protected,
        "now": now,
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "pool": {"type": "dict", "required": True},
            **RUNTIME_ARGUMENT_SPEC,
            **PROVIDER_ARGUMENT_SPEC,
            "event_log": {"type": "path"},
            "protect_file": {"type": "path"},
            "cpu_interval": {"type": "float", "default": 1.0},
            "now": {"type": "float"},
        },
        supports_check_mode=True,
    )
    run_module(module, lambda: run(module))


if __name__ == "__main__":
    main()
