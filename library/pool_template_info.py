#!/usr/bin/python
# Copyright: hapool contributors
# Apache License 2.0 (see pyproject.toml)
"""Ansible module: a pool's launch template - its version now, its baked versions, who is behind."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pool_template_info
short_description: The launch template of a hapool pool - its version, its bakes, the hosts behind
description:
  - "A pool's I(launch template) is everything that makes one of its hosts: the provider's base
    image (O(base)), the resolved C(nginx_web_*) variables of the pool (O(variables)), the
    content of the nginx_web role's files (O(role_dir)), extra files (O(files)) and the bake code
    (C(extra/baking.py)). The inputs are the ones M(pool_template) hashes (one function,
    C(hapool.baking.template_inputs)), so both give the same version for the same pool. Its
    I(version) (RV(version), 12 hex digits) is a content hash of those inputs: the same inputs give
    the same version on any controller, any change to one of them gives a new one."
  - Reads the pool's index of baked versions (C(<state_dir>/templates/<pool>/index.json)) and
    says whether this version can be reused (RV(action=reuse), with its RV(artifact)) or must be
    baked (RV(action=bake) - never baked, or its last bake failed), which version new hosts launch
    from now (RV(current)), and which of the pool's hosts do not run it (RV(behind)).
  - The files are hashed by content, keyed C(role/<path relative to role_dir>) for the role's
    files and C(extra/<basename>) for the extra files, so moving a file inside the role or
    renaming an extra file gives a new version too. A symlink in the role is hashed by its target
    text, never followed.
  - A directory or file that cannot be read, a variable that JSON cannot hold exactly (a set,
    bytes, NaN), two extra files with the same basename, a host given twice and an index that
    cannot be read or does not validate are errors naming the thing; the module never guesses.
  - Changes nothing; runs in check mode like in normal mode.
version_added: "0.4.0"
author:
  - hapool contributors
options:
  pool:
    description:
      - The pool's entry of C(hapool_pools) (a dict with C(name), C(provider), C(launch), ...),
        checked by the one pool validator (as M(pool_validate) does).
      - Its C(provider) is part of the template. A pool without a provider (a static pool, its
        servers listed) has no launch template and is an error, as is a vagrant pool with a VM
        backend.
    type: dict
    required: true
  variables:
    description:
      - The resolved C(nginx_web_*) variables the controller sees (JSON-safe values), as given to
        M(pool_template). The ones the bake sets itself on the provider's build host are dropped
        (C(nginx_web_hostname), C(nginx_web_json_extra), the listen address and port; for V(local)
        also the paths under the host's directory and C(nginx_web_user)), the pool's
        C(template.variables) and the per-host placeholders are added.
      - Their order does not matter.
    type: dict
    default: {}
  role_dir:
    description:
      - The nginx_web role directory; every file under it is part of the template, except
        C(molecule), C(README.md), C(__pycache__) and C(*.pyc) at any depth.
    type: path
    required: true
  files:
    description:
      - Extra files that are part of the template (the start script of a docker image, for
        example), hashed by content and keyed by basename. Two with the same basename are an
        error.
    type: list
    elements: path
    default: []
  base:
    description:
      - The provider's base image, by id. Omitted (the usual way), the provider is asked as
        M(pool_template) asks it - for V(docker) (and V(vagrant), docker backend) the pool's
        image's id (C(sha256:...)), for V(local) the nginx binary's path and sha256 - and the
        pool's RV(action) also checks the artefact of a usable version is still there (a deleted
        one is V(bake)).
      - Given, the version is computed without the provider (no engine needed) and the artefact
        is not checked. Must not be empty.
    type: str
  state_dir:
    description:
      - hapool's state root (as M(pool_instance)'s C(state_dir)); the pool's index of baked
        versions is C(<state_dir>/templates/<pool>/index.json). A missing index means nothing
        was baked yet.
      - Default C($HAPOOL_STATE_DIR), else C(.state) in the project directory.
    type: path
  instances:
    description:
      - The hosts of the pool and the template version each runs, for RV(behind). Each is a dict
        with C(name) and C(template) (a version, or null for a host launched bare and
        provisioned; a missing C(template) is null), other keys are ignored.
    type: list
    elements: dict
    default: []
notes:
  - Supports check mode. Has no diff (it changes nothing).
  - The version does not depend on the state directory, the host names or the order of
    O(variables), O(files) and the role's directory listing.
seealso:
  - module: pool_instance
  - module: pool_instance_info
  - module: pool_validate
"""

EXAMPLES = r"""
- name: The hosts of pool web (without a template version they count as bare)
  pool_instance_info:
    pool: web
    provider: docker
    state_dir: "{{ hapool_state_root }}"
  register: _hosts

- name: The launch template of pool web
  pool_template_info:
    pool: "{{ hapool_pools | selectattr('name', 'eq', 'web') | first }}"
    # the nginx_web_* variables the controller sees, as playbooks/tasks/bake_start.yml passes them
    variables: >-
      {{ dict(query('ansible.builtin.varnames', '^nginx_web_')
              | zip(query('ansible.builtin.vars', *query('ansible.builtin.varnames', '^nginx_web_')))) }}
    role_dir: "{{ playbook_dir }}/../roles/nginx_web"
    state_dir: "{{ hapool_state_root }}"
    instances: "{{ _hosts.instances }}"
  register: _template

- name: Bake only what was never baked
  ansible.builtin.debug:
    msg: "bake {{ _template.version }} (current {{ _template.current }})"
  when: _template.action == 'bake'

- name: Hosts that do not run the current version (to replace them)
  ansible.builtin.debug:
    msg: "{{ _template.behind }}"
"""

RETURN = r"""
version:
  description: The version of the template the inputs make (12 lowercase hex digits).
  returned: always
  type: str
  sample: 3f9a2c0b1d4e
current:
  description: The version new hosts of the pool launch from (the index's), null before the first good bake.
  returned: always
  type: str
  sample: 1b2c3d4e5f60
action:
  description:
    - V(reuse) when RV(version) is recorded usable in the index (baked and validated) and its
      artefact is there, V(bake) otherwise (never baked, its last bake failed, its artefact is
      missing - checked only when O(base) is omitted).
  returned: always
  type: str
  sample: bake
reason:
  description: Why RV(version) must be baked (first bake, template changed, its last bake failed,
    its artefact is missing), when O(base) is omitted; empty otherwise.
  returned: always
  type: str
artifact:
  description:
    - The artefact of RV(version) (a docker image reference or a directory) when RV(action=reuse),
      else null.
  returned: always
  type: str
  sample: hapool/web:3f9a2c0b1d4e
versions:
  description: The records of the pool's index, in the order they were recorded.
  returned: always
  type: list
  elements: dict
  contains:
    version:
      description: The version baked.
      type: str
      sample: 3f9a2c0b1d4e
    artifact:
      description: Where the artefact is (a docker image reference or a directory).
      type: str
      sample: hapool/web:3f9a2c0b1d4e
    baked_at:
      description: When it was baked, epoch seconds.
      type: float
      sample: 1764687600.0
    usable:
      description: Whether the bake passed validation.
      type: bool
      sample: true
    reason:
      description: Why a bake is not usable (empty when it is).
      type: str
      sample: ""
behind:
  description:
    - Names (sorted) of the O(instances) that do not run RV(current), bare hosts (template null)
      included. Empty when there is no current version.
  returned: always
  type: list
  elements: str
  sample: [web-3f9a2c, web-a1b2c3]
inputs:
  description: A summary of what was hashed.
  returned: always
  type: dict
  contains:
    provider:
      description: The pool's provider.
      type: str
      sample: docker
    base:
      description: The base image id (O(base)).
      type: str
      sample: sha256:0b1d4e...
    variables:
      description: Number of variables.
      type: int
      sample: 14
    files:
      description: Number of files (the role's and the extra ones).
      type: int
      sample: 23
  sample: {"provider": "docker", "base": "sha256:0b1d4e", "variables": 14, "files": 23}
"""

from collections.abc import Mapping, Sequence
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.hapool import baking
from ansible.module_utils.hapool.errors import InvalidArgumentError
from ansible.module_utils.hapool.module import run_module
from ansible.module_utils.hapool.pools import validate_pool
from ansible.module_utils.hapool.providers.options import launch_spec, pool_params, provider_from_params
from ansible.module_utils.hapool.providers.state import default_state_root
from ansible.module_utils.hapool.templates import (
    VERSION_RE,
    hosts_behind,
    index_path,
    plan_bake,
    read_index,
    template_version,
)

ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "pool": {"type": "dict", "required": True},
    "variables": {"type": "dict", "default": {}},
    "role_dir": {"type": "path", "required": True},
    "files": {"type": "list", "elements": "path", "default": []},
    "base": {"type": "str"},
    "state_dir": {"type": "path"},
    "instances": {"type": "list", "elements": "dict", "default": []},
}


def host_versions(instances: Sequence[Any]) -> dict[str, str | None]:
    """Host name -> the template version it runs (None: launched bare)."""
    versions: dict[str, str | None] = {}
    for number, item in enumerate(instances):
        if not isinstance(item, Mapping):
            raise InvalidArgumentError(
                f"instances[{number}] must be a dict with name and template, not {item!r}"
            )
        name, template = item.get("name"), item.get("template")
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError(f"instances[{number}] has no name: {dict(item)!r}")
        if name in versions:
            raise InvalidArgumentError(f"instance {name} is given twice")
        if template is not None and (not isinstance(template, str) or not VERSION_RE.match(template)):
            raise InvalidArgumentError(
                f"instance {name}: template {template!r} is not a version (12 lowercase hex digits) or null"
            )
        versions[name] = template
    return versions


def run(module: AnsibleModule) -> dict[str, Any]:
    params = module.params
    entry = validate_pool(params["pool"])
    if not entry.get("provider"):
        raise InvalidArgumentError(
            f"pool {entry['name']} has no provider: a static pool (its servers listed) has no launch template"
        )
    refused = baking.refuse_pool(entry)
    if refused:
        raise InvalidArgumentError(refused)
    state_root = params["state_dir"] or str(default_state_root())
    pool = pool_params({"pool": entry, "state_dir": state_root})
    base = params["base"]
    if base is not None and not base.strip():
        raise InvalidArgumentError(f"pool {pool['pool']}: base (the provider's base image id) is empty")
    hosts = host_versions(params["instances"] or [])

    def inputs(base: str) -> Any:
        # The one definition pool_template hashes too (role files, bake code, variables).
        return baking.template_inputs(
            entry,
            pool["provider"],
            base=base,
            variables=params["variables"] or {},
            role_dir=params["role_dir"],
            extra=params["files"] or [],
        )

    if base is None:  # the provider's, as pool_template asks it; the artefact checked too
        with provider_from_params(pool) as provider:
            made = inputs(provider.template_base(launch_spec(pool)))
            bake = baking.plan(provider, made, state_root=state_root)
        version, action, artifact, reason = bake.version, bake.action, bake.artifact, bake.reason
        index = read_index(index_path(state_root, pool["pool"]), pool["pool"])
    else:
        made = inputs(base)
        version = template_version(made)
        index = read_index(index_path(state_root, pool["pool"]), pool["pool"])
        action = plan_bake(index, version)
        record = index.get(version)
        artifact = record.artifact if action == "reuse" and record is not None else None
        reason = ""
    return {
        "changed": False,
        "version": version,
        "current": index.current,
        "action": action,
        "reason": reason,
        "artifact": artifact,
        "versions": [r.to_dict() for r in index.versions],
        "behind": hosts_behind(index, hosts),
        "inputs": {
            "provider": pool["provider"],
            "base": made.base,
            "variables": len(made.variables),
            "files": len(made.files),
        },
    }


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    run_module(module, lambda: run(module))


if __name__ == "__main__":
    main()
