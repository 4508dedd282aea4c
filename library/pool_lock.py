#!/usr/bin/python
# Copyright: hapool contributors
# Apache License 2.0 (see pyproject.toml)
"""Ansible module: take or give up the pool lock, the lease that lets one acting run at a time
(heal.yml, scale.yml, site.yml, reconcile.yml and the coming refresh) change the pools."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pool_lock
short_description: One acting run at a time over the pools - a lease lock that spans the tasks of a play
description:
  - The B(pool lock) - shared by every playbook that acts on pools (C(heal.yml), C(scale.yml),
    C(site.yml), C(reconcile.yml) through them, and the coming C(refresh.yml)), so that no run
    counts or changes a pool while another one launches, drains or destroys its hosts.
  - Every task of a play is a new process, so a C(flock) cannot be held across a play. A run
    holds a B(lease) instead - a small JSON file (owner, expiry) rewritten under C(flock).
    O(state=acquired) takes it unless another owner holds one that has not expired and returns
    RV(acquired); it never fails because of a held lease (the play decides, usually to say
    "locked" and end cleanly). O(state=released) gives it up if O(owner) holds it.
  - A run that crashed leaves a lease that expires after O(ttl) seconds, or at once when the
    C(ansible-playbook) process that took it is gone (the lease records its pid and start time).
  - This module was called C(heal_lock) earlier; the lease file and its format are
    unchanged (default C(<state root>/heal/heal.lock)), so a run of either version sees the
    other's lease.
version_added: "0.1.0"
author:
  - hapool contributors
options:
  path:
    description: The lease file (created with its directory when missing).
    type: path
    required: true
  owner:
    description: Who takes the lease, unique per run (for example a random id made by the play).
    type: str
    required: true
  state:
    description: V(acquired) or V(released).
    type: str
    choices: [acquired, released]
    default: acquired
  ttl:
    description: Seconds after which a lease that was not released expires (longer than a run).
    type: float
    default: 900
notes:
  - Check mode takes the lease all the same (a planning run must not overlap an acting one).
  - The playbooks take it through C(playbooks/tasks/pool_lock.yml) and give it back through
    C(playbooks/tasks/pool_unlock.yml).
seealso:
  - module: heal_plan
  - module: scale_plan
  - module: site_plan
"""

EXAMPLES = r"""
- name: Take the pool lock
  pool_lock:
    path: "{{ hapool_state_root }}/heal/heal.lock"
    owner: "{{ run_id }}"
  check_mode: false
  register: lock

- name: Another run holds it - stop here
  ansible.builtin.meta: end_play
  when: not lock.acquired

- name: Give it back
  pool_lock:
    path: "{{ hapool_state_root }}/heal/heal.lock"
    owner: "{{ run_id }}"
    state: released
  check_mode: false
"""

RETURN = r"""
acquired:
  description: Whether this owner holds the lease now (O(state=acquired)).
  returned: always
  type: bool
holder:
  description: Who holds the lease.
  returned: always
  type: str
expires:
  description: When the lease expires, epoch seconds.
  returned: always
  type: float
stale_owner:
  description: The owner of an expired lease that was taken over.
  returned: always
  type: str
released:
  description: Whether the lease was given up (O(state=released)).
  returned: always
  type: bool
"""

import os
import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.hapool.lock import acquire, release
from ansible.module_utils.hapool.module import run_module
from ansible.module_utils.hapool.providers.procfs import read_stat


def playbook_pid() -> int | None:
    """The ansible-playbook process this module runs for: the farthest ancestor whose command
    line is ansible-playbook (its task workers are forks with the same command line, and they
    exit after each task). None when there is none."""
    found = None
    pid = os.getppid()
    for _ in range(16):
        if pid <= 1:
            break
        stat = read_stat(pid)
        if stat is None:
            break
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmdline = fh.read().split(b"\0")
        except OSError:
            break
        if any(part.endswith(b"ansible-playbook") for part in cmdline[:2]):
            found = pid
        elif found is not None:
            break
        pid = stat.ppid
    return found


def run(module: AnsibleModule) -> dict[str, Any]:
    p = module.params
    if p["state"] == "released":
        done = release(p["path"], p["owner"])
        return {"changed": done, "released": done, "acquired": False, "holder": None, "expires": None,
                "stale_owner": None}
    lease = acquire(p["path"], p["owner"], p["ttl"], time.time(), holder_pid=playbook_pid())
    return {"changed": lease.acquired, "released": False, **lease.as_dict()}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "owner": {"type": "str", "required": True},
            "state": {"type": "str", "choices": ["acquired", "released"], "default": "acquired"},
            "ttl": {"type": "float", "default": 900.0},
        },
        supports_check_mode=True,
    )
    run_module(module, lambda: run(module))


if __name__ == "__main__":
    main()
