#!/usr/bin/python
# Copyright: hapool contributors
# Apache License 2.0 (see pyproject.toml)
"""Ansible module: validate and normalize the pools (hapool_pools) before anything uses them."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pool_validate
short_description: Validate the hapool pools and return them normalized
description:
  - "Checks every entry of C(hapool_pools) with the one validator that C(site.yml),
    C(heal.yml), C(scale.yml) and C(teardown.yml) run first (C(playbooks/tasks/pool_settings.yml)),
    so a bad value is a clear error before anything is launched, destroyed or rendered, and the
    running configuration is untouched."
  - "Checked: C(name) (1-32 characters, a lowercase letter first, then lowercase letters, digits
    or C(_); unique); C(provider) (C(local), C(docker), C(vagrant), or absent for a static pool);
    C(min), C(desired), C(max) (whole numbers, C(0 <= min <= desired <= max); defaults: min 1,
    desired min, max the larger of min and 1); C(port) (1-65535); C(weight) and C(weights)
    (per inventory host; whole numbers from 0 to 256); C(balance) (the algorithms the haproxy
    role renders); C(mode); C(retries); C(redispatch); C(timeout_server) (an HAProxy
    time); C(group), C(balance_args), C(hash_type)
    and C(extra) (no line break); C(check) (C(inter), C(fastinter), C(downinter), C(slowstart):
    HAProxy times such as C(2s), C(500ms), C(1m) or milliseconds; C(rise), C(fall): whole
    numbers >= 1; C(path) starting with C(/); C(expect_status); C(enabled); C(method);
    C(host)); C(servers) (static servers: C(name), C(address), C(port), C(weight), C(state),
    C(backup), C(extra)); the heal settings (as C(heal_plan) reads them); the C(scale) block (as
    C(scale_plan) reads it); C(launch) (C(image), C(network), C(cpus), C(memory),
    C(bind_network), C(port), C(vagrant_backend), C(box) and the other provider settings)."
  - Keys it does not know are kept as they are.
  - The validation is pure Python (C(module_utils/hapool/pools.py)).
version_added: "0.3.0"
author:
  - hapool contributors
options:
  pools:
    description:
      - The pools, i.e. C(hapool_pools). Null means no pool.
    type: raw
    required: true
notes:
  - Supports check mode; the module never changes anything.
  - On a bad value it fails with a message that names the pool and the key, and
    C(error=InvalidArgumentError).
seealso:
  - module: heal_plan
  - module: scale_plan
  - module: pool_instance
"""

EXAMPLES = r"""
- name: Validate the pools
  pool_validate:
    pools: "{{ hapool_pools | default([]) }}"
  register: _hapool_pools_valid

- name: The pools that a provider backs
  ansible.builtin.set_fact:
    _hapool_provider_pools: "{{ _hapool_pools_valid.pools | selectattr('provider', 'defined') | list }}"
"""

RETURN = r"""
pools:
  description:
    - The pools, in order, normalized - numbers as numbers (C("3") becomes C(3)), times and
      statuses as strings, and for pools with a C(provider) the sizes C(min), C(desired) and
      C(max) filled in with their defaults. Other keys as given.
  returned: success
  type: list
  elements: dict
  sample:
    - name: web
      provider: local
      min: 1
      desired: 3
      max: 6
      weight: 10
      check: {inter: 2s, rise: 2, fall: 3, path: /health, expect_status: "200"}
count:
  description: Number of pools.
  returned: success
  type: int
  sample: 1
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.hapool.module import run_module
from ansible.module_utils.hapool.pools import validate_pools


def run(module: AnsibleModule) -> dict[str, Any]:
    pools = validate_pools(module.params["pools"])
    return {"changed": False, "pools": pools, "count": len(pools)}


def main() -> None:
    module = AnsibleModule(
        argument_spec={"pools": {"type": "raw", "required": True}},
        supports_check_mode=True,
    )
    run_module(module, lambda: run(module))


if __name__ == "__main__":
    main()
