#!/usr/bin/python
# Copyright: hapool contributors
# Apache License 2.0 (see pyproject.toml)
"""Ansible module: launch or destroy one web host of a pool through its provider."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pool_instance
short_description: Launch or destroy one web host (instance) of a hapool pool
description:
  - Makes sure one instance of a pool (the web hosts behind a HAProxy backend, like the
    instances of an AWS Auto Scaling Group) is present or absent, through the pool's provider.
  - "Providers: V(local) runs each instance as an nginx process on this machine, with its own
    prefix directory and loopback address or port (no Docker needed); V(docker) runs a
    container from the pool's image (default the local base image C(hapool/base:bookworm),
    never pulled) on the C(hapool) network; V(vagrant) runs a Vagrant machine, described in a
    state file that the repository's C(Vagrantfile) reads (Vagrant's docker provider by
    default, libvirt or VirtualBox for real VMs)."
  - O(state=present) without O(name) launches a B(new) instance with a new unique name
    (C(<pool>-<6 hex digits>), never reused), like C(aws ec2 run-instances); it is not
    idempotent on purpose (keeping a count of instances is the job of the scaling logic).
    With O(name), an existing instance of that name is left alone (C(changed=false)); a name
    that the pool used before and destroyed is refused, since names are never reused.
  - O(state=absent) destroys the instance O(name) (nginx gets QUIT, a container is stopped,
    a Vagrant machine is destroyed) and removes its state; nothing happens if it does not exist.
  - The returned RV(instance) has the address and port HAProxy connects to, and the creation
    time (for grace periods and termination policies). The web server answers when the
    module returns.
  - A failed launch leaves nothing behind (the half-created host is removed). If even that
    clean-up fails, the module fails with the name of what is left.
  - "Runs where the provider's engine is, usually the controller (C(delegate_to: localhost) or a
    C(local) connection), with a Python that has the docker SDK (docker provider) or
    python-vagrant (vagrant provider); the local provider needs nginx only."
version_added: "0.1.0"
author:
  - hapool contributors
extends_documentation_fragment:
  - hapool_provider
options:
  pool:
    description:
      - The pool - its name, or its entry of C(hapool_pools) (a dict with C(name)).
      - The name has 1-32 characters, a lowercase letter first, then lowercase letters, digits or
        C(_) (it names inventory groups, containers and directories).
      - From an entry come its C(provider) and every option of its C(launch) (C(image), C(network),
        C(cpus), C(memory), C(bind_network), C(port), C(vagrant_backend), C(box) and the other
        provider options) where the task does not set the option itself, so a playbook passes
        the entry and lists no provider option. Anything but a name or a dict with a name is an
        error.
      - "From a validated entry (M(pool_validate)) comes its launch template too: when its
        C(template.enabled) is true and the pool's index (C(<state_dir>/templates/<pool>/index.json))
        has a current version, a new instance is launched from that baked artefact (a docker image,
        a local template tree), ready to serve with no provisioning, and records the version
        (RV(instance.extra.template)). Without a baked version, or given a pool name, it is
        launched bare (the base image's default page) and the playbooks provision it."
    type: raw
    required: true
  name:
    description:
      - Name of the instance. Optional with O(state=present) (a new name is generated),
        required with O(state=absent).
      - Lowercase letters, digits, C(-) and C(_), at most 63 characters.
    type: str
  state:
    description: V(present) launches the instance if needed, V(absent) destroys it.
    type: str
    choices: [present, absent]
    default: present
  cpus:
    description:
      - CPU limit of a V(docker) container (cores, V(0.5)), or number of CPUs of a Vagrant VM.
        Ignored by V(local).
    type: float
  memory:
    description:
      - Memory limit of a V(docker) container or Vagrant machine, bytes or with a unit (V(256m),
        V(1g)). Ignored by V(local).
    type: str
notes:
  - Supports check mode (nothing is launched or destroyed; a new instance's name is not known
    yet and returned as null) and diff mode (the instance before and after).
  - Names are recorded in a per-pool ledger (C(<state_dir>/<provider>/pools/<pool>/names)) before
    anything is created, so they are never handed out twice, like cloud instance ids.
seealso:
  - module: pool_instance_info
requirements:
  - nginx (local), the Python docker SDK and a Docker engine (docker), Vagrant and python-vagrant (vagrant).
"""

EXAMPLES = r"""
- name: Launch a host of pool web with the pool's provider and launch template (its hapool_pools entry)
  pool_instance:
    pool: "{{ hapool_pools | selectattr('name', 'eq', 'web') | first }}"
    state_dir: "{{ hapool_state_root }}"
  delegate_to: localhost
  register: launched

- name: Destroy it again, the provider options taken from the same entry
  pool_instance:
    pool: "{{ hapool_pools | selectattr('name', 'eq', 'web') | first }}"
    name: "{{ launched.instance.name }}"
    state: absent
    state_dir: "{{ hapool_state_root }}"
  delegate_to: localhost

- name: Launch a new web host in pool web (local provider, nginx on this machine)
  pool_instance:
    pool: web
    state_dir: "{{ playbook_dir }}/../.state"
  register: launched

- name: Show where it answers
  ansible.builtin.debug:
    msg: "{{ launched.instance.name }} at {{ launched.instance.address }}:{{ launched.instance.port }}"

- name: Launch a container with limits, on the controller's Docker engine
  pool_instance:
    pool: web
    provider: docker
    image: hapool/base:bookworm
    cpus: 0.5
    memory: 256m
  delegate_to: localhost

- name: Each local host on its own loopback address, port 80 (root)
  pool_instance:
    pool: web
    bind_network: 127.0.1.0/24
    port: 80

- name: A Vagrant machine (Vagrant's docker provider, no hypervisor needed)
  pool_instance:
    pool: web
    provider: vagrant

- name: Destroy a host that HAProxy holds DOWN (after draining it)
  pool_instance:
    pool: web
    provider: docker
    name: web-3f9a2c
    state: absent
"""

RETURN = r"""
instance:
  description:
    - The instance after the change (O(state=present)), or the one destroyed (O(state=absent)).
    - Null when O(state=absent) found nothing, and in check mode the name, address and port of
      an instance that would be launched are null.
  returned: always
  type: dict
  contains:
    name:
      description: Instance name, unique in the pool and never reused.
      type: str
      sample: web-3f9a2c
    pool:
      description: The pool's name (also when O(pool) is its entry).
      type: str
      sample: web
    provider:
      description: The provider (O(provider), else the pool entry's, else V(local)).
      type: str
      sample: docker
    address:
      description: IPv4 address HAProxy connects to (empty when the host is not running).
      type: str
      sample: 172.18.0.5
    port:
      description: TCP port of the host's web server.
      type: int
      sample: 80
    created:
      description: Launch time, epoch seconds.
      type: float
      sample: 1700000000.25
    state:
      description: C(running), C(stopped), C(missing), C(broken) or C(destroyed).
      type: str
      sample: running
    alive:
      description: Whether the host runs (C(state=running)).
      type: bool
      sample: true
    extra:
      description:
        - Provider details. local - C(prefix) (the nginx prefix, for the nginx_web role's
          C(nginx_web_prefix)), C(pid), C(conf), C(nginx_command). docker - C(container),
          C(container_id), C(image), C(network), C(status). vagrant - C(machine), C(backend),
          C(container), C(container_id), C(vagrant_dir), C(ip).
      type: dict
      sample: {"container": "hapool-web-web-3f9a2c", "network": "hapool"}
"""

import dataclasses
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.hapool.baking import current_template
from ansible.module_utils.hapool.module import fail, run_module
from ansible.module_utils.hapool.providers import (
    OrphanError,
    validate_instance_name,
    validate_pool,
)
from ansible.module_utils.hapool.providers.options import (
    LAUNCH_ARGUMENT_SPEC,
    PROVIDER_ARGUMENT_SPEC,
    launch_spec,
    pool_params,
    provider_from_params,
    view,
)
from ansible.module_utils.hapool.providers.state import default_state_root


def run(module: AnsibleModule) -> dict[str, Any]:
    p = pool_params(module.params)
    pool = validate_pool(p["pool"])
    name = validate_instance_name(p["name"]) if p["name"] is not None else None
    result: dict[str, Any] = {"changed": False, "instance": None}
    with provider_from_params(p) as provider:
        before = provider.get(pool, name) if name is not None else None
        before_dict = before.to_dict() if before else None

        if p["state"] == "absent":
            if before is None:
                result["diff"] = {"before": {}, "after": {}}
                return result
            result.update(changed=True, instance=before_dict, diff={"before": view(before_dict), "after": {}})
            if not module.check_mode:
                destroyed = provider.destroy(pool, before)
                result["instance"] = destroyed.to_dict() if destroyed else before_dict
            return result

        if before is not None:
            result.update(
                instance=before_dict, diff={"before": view(before_dict), "after": view(before_dict)}
            )
            if not before.alive:
                module.warn(
                    f"instance {name} of pool {pool} exists but is not running (state {before.state}); "
                    "destroy it (state=absent) and launch a new one to replace it"
                )
            return result

        if module.check_mode:
            if name is not None:
                provider.ledger.check_unused(pool, name)  # the real run would refuse it too
            planned = {
                "name": name,
                "pool": pool,
                "provider": provider.name,
                "address": None,
                "port": None,
                "created": None,
                "state": "running",
                "alive": True,
                "extra": {},
            }
            result.update(changed=True, instance=planned, diff={"before": {}, "after": view(planned)})
            return result

        spec = launch_spec(p)
        if isinstance(module.params["pool"], dict):
            state_root = p.get("state_dir") or str(default_state_root())
            spec = dataclasses.replace(spec, template=current_template(module.params["pool"], state_root))
        launched = provider.launch(pool, spec).to_dict()
        result.update(changed=True, instance=launched, diff={"before": {}, "after": view(launched)})
        return result


def run_reporting_orphans(module: AnsibleModule) -> dict[str, Any]:
    """:func:`run`; an instance left behind by a failed launch or destroy is returned as ``orphan``."""
    try:
        return run(module)
    except OrphanError as exc:
        fail(module, exc, orphan=exc.orphan)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "pool": {"type": "raw", "required": True},
            "name": {"type": "str"},
            "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
            **PROVIDER_ARGUMENT_SPEC,
            **LAUNCH_ARGUMENT_SPEC,
        },
        required_if=[("state", "absent", ("name",))],
        supports_check_mode=True,
    )
    run_module(module, lambda: run_reporting_orphans(module))


if __name__ == "__main__":
    main()
