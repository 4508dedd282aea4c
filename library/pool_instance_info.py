#!/usr/bin/python
# Copyright: hapool contributors
# Apache License 2.0 (see pyproject.toml)
"""Ansible module: list the web hosts of a pool (or of every pool) of a provider."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pool_instance_info
short_description: List the web hosts (instances) of hapool pools
description:
  - Lists the instances of one pool, or of every pool, that a provider manages, oldest first,
    with their address, port, creation time and whether they run.
  - Hosts that no longer run (an nginx that died, an exited container, a machine that was
    never created) are listed too, with RV(instances[].alive=false), so that the healer can
    replace them; nothing is dropped silently.
  - Reads the provider's own state (prefix directories, container labels, the Vagrant machine
    list), so it finds every host again after a controller restart.
  - Changes nothing; runs in check mode like in normal mode.
version_added: "0.1.0"
author:
  - hapool contributors
extends_documentation_fragment:
  - hapool_provider
options:
  pool:
    description:
      - The pool to list - its name, or its entry of C(hapool_pools) (a dict with C(name)). All
        pools of the provider when omitted.
      - From an entry come its C(provider) and the provider options of its C(launch) (C(network),
        C(vagrant_backend), C(docker_host), ...) where the task does not set them, as in
        M(pool_instance).
    type: raw
notes:
  - Supports check mode. Has no diff (it changes nothing).
  - The launch options of the shared provider options (O(image), O(bind_network), O(port),
    O(box), O(vm_network), O(start_timeout)) are accepted and ignored, so that one set of pool
    variables serves this module and M(pool_instance).
seealso:
  - module: pool_instance
"""

EXAMPLES = r"""
- name: List the hosts of pool web
  pool_instance_info:
    pool: web
    provider: docker
  register: web

- name: List the hosts of every pool, each with its provider and options (hapool_pools entries)
  pool_instance_info:
    pool: "{{ item }}"
    state_dir: "{{ hapool_state_root }}"
  loop: "{{ hapool_pools | selectattr('provider', 'defined') }}"
  register: listed

- name: Hosts to replace (not running)
  ansible.builtin.debug:
    msg: "{{ web.instances | rejectattr('alive') | map(attribute='name') | list }}"

- name: The oldest running host (termination policy "oldest instance")
  ansible.builtin.debug:
    msg: "{{ (web.instances | selectattr('alive') | first).name }}"
"""

RETURN = r"""
instances:
  description: The instances, oldest first (by pool, then creation time).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Instance name.
      type: str
      sample: web-3f9a2c
    pool:
      description: The pool's name.
      type: str
    provider:
      description: The provider.
      type: str
    address:
      description: IPv4 address (empty when not running).
      type: str
    port:
      description: TCP port of the web server.
      type: int
    created:
      description: Launch time, epoch seconds.
      type: float
    state:
      description: C(running), C(stopped), C(missing) (recorded but nothing behind it) or C(broken).
      type: str
    alive:
      description: Whether the host runs.
      type: bool
    extra:
      description: Provider details (see M(pool_instance)).
      type: dict
count:
  description: Number of instances listed.
  returned: always
  type: int
  sample: 3
alive:
  description: Number of running instances.
  returned: always
  type: int
  sample: 2
template:
  description:
    - The pool's launch template, when O(pool) is its validated entry with C(template.enabled)
      (null otherwise) - C(current), the version new hosts launch from (null before the first
      good bake), and C(behind), the instances (sorted) that do not run it (launched from an older
      version, or bare). Each instance's own version is its C(extra.template).
    - "An index that cannot be read (corrupt, unreadable) does not fail the module, whose
      instances a status page still needs - C(template) is then C(current) null, C(behind) empty
      and C(error) what is wrong, naming the file; the module warns."
  returned: always
  type: dict
  sample: {"current": "3f9a2c0b1d4e", "behind": ["web-1a2b3c"]}
warm:
  description:
    - The pool's warm hosts (its warm file, C(<state_dir>/warm/<pool>.json); M(pool_warm)) - in the
      balancer with weight 0, not members. Empty without O(pool) or without a warm pool; null
      (with a warning) when the warm file cannot be read.
  returned: always
  type: list
  elements: str
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.hapool.errors import TemplateError
from ansible.module_utils.hapool.module import run_module
from ansible.module_utils.hapool.providers import validate_pool
from ansible.module_utils.hapool.providers.options import (
    PROVIDER_ARGUMENT_SPEC,
    pool_params,
    provider_from_params,
)
from ansible.module_utils.hapool.providers.state import default_state_root
from ansible.module_utils.hapool.templates import hosts_behind, index_path, read_index
from ansible.module_utils.hapool.warm import WarmError, read_warm


def template_view(entry: Any, pool: str | None, state_root: str, instances: list[dict[str, Any]]) -> Any:
    """The pool's current template version and the instances behind it (None without a template).

    An index that cannot be read is no reason to hide the instances (a status page prints them):
    the view is then ``{"current": None, "behind": [], "error": <what is wrong, naming the file>}``."""
    settings = entry.get("template") if isinstance(entry, dict) else None
    if pool is None or not isinstance(settings, dict) or settings.get("enabled") is not True:
        return None
    try:
        index = read_index(index_path(state_root, pool), pool)
    except TemplateError as exc:
        return {"current": None, "behind": [], "error": str(exc)}
    versions = {i["name"]: (i.get("extra") or {}).get("template") for i in instances}
    return {"current": index.current, "behind": hosts_behind(index, versions)}


def run(module: AnsibleModule) -> dict[str, Any]:
    p = pool_params(module.params)
    pool = validate_pool(p["pool"]) if p["pool"] is not None else None
    with provider_from_params(p) as provider:
        instances = [i.to_dict() for i in provider.list(pool)]
    state_root = p.get("state_dir") or str(default_state_root())
    template = template_view(module.params["pool"], pool, state_root, instances)
    if template is not None and template.get("error"):
        module.warn(f"pool {pool}: launch template unknown: {template['error']}")
    warm: list[str] | None = []
    if pool is not None:
        try:
            warm = sorted(read_warm(state_root, pool))
        except WarmError as exc:  # a status page prints the rest
            module.warn(f"pool {pool}: warm hosts unknown: {exc}")
            warm = None
    return {
        "changed": False,
        "instances": instances,
        "count": len(instances),
        "alive": sum(1 for i in instances if i["alive"]),
        "template": template,
        "warm": warm,
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec={"pool": {"type": "raw"}, **PROVIDER_ARGUMENT_SPEC},
        supports_check_mode=True,
    )
    run_module(module, lambda: run(module))


if __name__ == "__main__":
    main()
