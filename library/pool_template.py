#!/usr/bin/python
# Copyright: hapool contributors
# Apache License 2.0 (see pyproject.toml)
"""Ansible module: bake a pool's launch template (plan and build host, then artefact, check, record)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pool_template
short_description: Bake the launch template of a hapool pool into a versioned artefact
description:
  - "A pool's I(launch template) is everything that makes one of its hosts (see
    M(pool_template_info)); its I(version) is a content hash of the provider's base, the pool's
    C(nginx_web_*) variables and the nginx_web role's files. A bake turns one version into an
    I(artefact) new hosts launch from, ready to serve with no provisioning: a docker image
    C(hapool/<pool>:<version>-<scope>) (V(docker), and V(vagrant) with its docker backend, whose
    machines run the same image; tagged with the deployment's docker scope), a template tree
    C(<state_dir>/templates/<pool>/<version>) (V(local))."
  - "A bake is three calls around the nginx_web role (C(playbooks/bake.yml) makes them):
    O(state=present) computes the version and, when the pool's index has no usable record of
    it, makes a I(build host) (a directory with a free loopback port, or a build container from
    the base image) and returns how to reach it (RV(build.host_vars), for C(add_host)); the
    playbook applies the role to it with the per-host values as placeholders
    (C(nginx_web_hostname: \"@@HAPOOL_HOST@@\")); O(state=baked) turns the build host into the
    artefact, launches a throw-away host from it through the provider (in a scratch state root,
    no pool sees it), checks its health and its page (no placeholder left), destroys it, and
    records the version as current; O(state=failed) records a bake whose role failed."
  - "Idempotent: the same inputs give the same version, which is reused (RV(action=reuse),
    C(changed=false)) and never rebuilt - unless its artefact was deleted (C(docker image rm), the
    template tree removed): then it is baked again (RV(action=bake), RV(reason) says so), as a
    launch from it would fail. A bake that fails (the role, the commit, the check)
    is recorded in the index as not usable with its reason, its build host and artefact are
    removed, the pool's current version does not change, and the module fails saying why."
  - "After a good bake, the versions nobody needs are garbage-collected: the current one and
    the most recent previous ones are kept (the pool's C(template.keep), default 2), and every
    version a live host of the pool runs; a docker image another container still runs is kept."
  - "Bakes of a pool should not run at once: C(playbooks/bake.yml) and C(site.yml) bake under
    the pool lock M(pool_lock) hands out. The index itself is written under its own lock."
version_added: "0.4.0"
author:
  - hapool contributors
options:
  pool:
    description:
      - The pool's entry of C(hapool_pools), checked by the one pool validator. Its C(provider)
        (V(local), V(docker), or V(vagrant) with its docker backend) and C(launch) options
        (C(image), C(network), ...) are used.
    type: dict
    required: true
  state:
    description:
      - "V(present): plan; make the build host when the version must be baked (not in check mode)."
      - "V(baked): finish the bake of O(build): artefact, check, record, garbage collection."
      - "V(failed): record that the bake of O(build) failed (O(reason)) and remove its build host."
      - "V(absent): delete every baked version of the pool (its artefacts, then its index), as
        C(teardown.yml) does; a docker image a container still runs is kept with its record. A
        pool whose provider bakes nothing (a vagrant VM backend) has nothing to delete."
    type: str
    choices: [present, baked, failed, absent]
    default: present
  variables:
    description:
      - The resolved C(nginx_web_*) variables the controller sees (JSON-safe values), with
        O(state=present). The module drops the ones the bake sets itself on the provider's build
        host (both providers - C(nginx_web_hostname), C(nginx_web_json_extra),
        C(nginx_web_listen_address), C(nginx_web_port); V(local) also the paths under the host's
        directory and C(nginx_web_user)), adds the pool's C(template.variables) and the per-host
        placeholders; the result (RV(variables)) is hashed and is what the build host gets.
        M(pool_template_info) computes the version from the same inputs.
    type: dict
    default: {}
  role_dir:
    description:
      - The nginx_web role directory, hashed into the version (see M(pool_template_info)).
        Required with O(state=present).
    type: path
  files:
    description:
      - Extra files hashed into the version (keyed by basename).
    type: list
    elements: path
    default: []
  build:
    description:
      - The RV(build) that O(state=present) returned, with O(state=baked) and O(state=failed).
    type: dict
  paths:
    description:
      - "The role's paths on the build host (C(nginx_web_binary), C(nginx_web_conf_file),
        C(nginx_web_prefix), C(nginx_web_root)), with O(state=baked): the start script of a
        docker image substitutes the placeholders below them and runs that nginx with that file."
    type: dict
    default: {}
  reason:
    description:
      - Why the bake failed, with O(state=failed).
    type: str
    default: the nginx_web role failed on the build host
  state_dir:
    description:
      - hapool's state root; the pool's index is C(<state_dir>/templates/<pool>/index.json).
        Default C($HAPOOL_STATE_DIR), else C(.state) in the project directory.
    type: path
  event_log:
    description:
      - The event log (JSON lines) that gets a C(bake) or C(bake_failed) event; none when unset.
    type: path
notes:
  - Supports check mode (O(state=present) plans only, C(changed) true when it would bake; the
    other states change nothing and say what they would do). Has no diff.
  - "A build host and a validation's throw-away hosts belong to the C(ansible-playbook) run that
    made them; O(state=present) and O(state=absent) first remove what interrupted bakes of the
    pool left (build directories and containers, scratch hosts, index temporary files) whose run
    is gone, never what a live run owns."
  - Runs on the controller, where the provider's engine is (the docker SDK for V(docker)).
seealso:
  - module: pool_template_info
  - module: pool_instance
"""

EXAMPLES = r"""
- name: Plan the bake of pool web, make its build host when its version is new
  pool_template:
    pool: "{{ hapool_pools | selectattr('name', 'eq', 'web') | first }}"
    variables: "{{ _nginx_web_vars }}"
    role_dir: "{{ playbook_dir }}/../roles/nginx_web"
    state_dir: "{{ hapool_state_root }}"
  register: _bake

- name: Reach the build host
  ansible.builtin.add_host:
    name: hapool-bake-web
    groups: [hapool_bake]
    hapool_bake: "{{ _bake.build }}"
  when: _bake.action == 'bake'

# ... the nginx_web role runs on hapool_bake with nginx_web_hostname "@@HAPOOL_HOST@@" ...

- name: Commit, check and record the new version
  pool_template:
    pool: "{{ hapool_pools | selectattr('name', 'eq', 'web') | first }}"
    state: baked
    build: "{{ _bake.build }}"
    state_dir: "{{ hapool_state_root }}"
    event_log: "{{ hapool_state_root }}/heal/events.jsonl"
  when: _bake.action == 'bake'
"""

RETURN = r"""
version:
  description: The template version (12 lowercase hex digits).
  returned: always
  type: str
  sample: 3f9a2c0b1d4e
action:
  description: V(reuse) (the version is baked and usable) or V(bake); with O(state=baked), V(baked).
  returned: always
  type: str
reason:
  description: Why the version is baked (O(state=present)) - first bake, template changed, its last
    bake failed, its artefact is missing; empty with V(reuse).
  returned: with O(state=present)
  type: str
  sample: the artefact hapool/web:3f9a2c0b1d4e of version 3f9a2c0b1d4e is missing
variables:
  description: The template's variables (O(state=present)), as hashed and as the build host gets them.
  returned: with O(state=present)
  type: dict
current:
  description: The version new hosts launch from after this call (null before the first good bake).
  returned: always
  type: str
artifact:
  description: The artefact of the version (reuse, or the one just baked); null while baking.
  returned: always
  type: str
  sample: hapool/web:3f9a2c0b1d4e
build:
  description: The build host (O(state=present) with RV(action=bake), not in check mode) - the
    provider, pool, version, its directory and port or its container, and C(host_vars) to reach it.
  returned: when a build host was made
  type: dict
removed:
  description: The versions whose artefacts the garbage collection removed (O(state=baked)), or
    O(state=absent) removed.
  returned: success
  type: list
  elements: str
kept:
  description: With O(state=absent), the versions whose docker image a container still runs (kept).
  returned: with O(state=absent)
  type: list
  elements: str
msg:
  description: With O(state=failed), what failed (the pool, the version and O(reason)).
  returned: with O(state=failed)
  type: str
checked:
  description: The throw-away host the artefact was checked on (O(state=baked)).
  returned: success
  type: str
duration:
  description: Seconds from the build host's creation to the recorded version (O(state=baked)).
  returned: success
  type: float
"""

import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.hapool import baking
from ansible.module_utils.hapool.errors import HapoolError, InvalidArgumentError, TemplateError
from ansible.module_utils.hapool.events import append_event, make_event
from ansible.module_utils.hapool.module import run_module
from ansible.module_utils.hapool.pools import validate_pool
from ansible.module_utils.hapool.providers import LaunchTemplate
from ansible.module_utils.hapool.providers.options import (
    launch_spec,
    pool_params,
    provider_from_params,
    provider_settings,
)
from ansible.module_utils.hapool.providers.state import default_state_root
from ansible.module_utils.hapool.templates import TemplateVersion, index_path, read_index

ARGUMENT_SPEC: dict[str, Any] = {
    "pool": {"type": "dict", "required": True},
    "state": {"type": "str", "choices": ["present", "baked", "failed", "absent"], "default": "present"},
    "variables": {"type": "dict", "default": {}},
    "role_dir": {"type": "path"},
    "files": {"type": "list", "elements": "path", "default": []},
    "build": {"type": "dict"},
    "paths": {"type": "dict", "default": {}},
    "reason": {"type": "str", "default": "the nginx_web role failed on the build host"},
    "state_dir": {"type": "path"},
    "event_log": {"type": "path"},
}


def _event(path: str | None, **fields: Any) -> None:
    if path:
        append_event(path, make_event(time=time.time(), instance=None, **fields))


def _checked_build(params: dict[str, Any], pool: str) -> dict[str, Any]:
    build = params["build"]
    if not isinstance(build, dict) or build.get("pool") != pool or not isinstance(build.get("version"), str):
        raise InvalidArgumentError(
            f"build must be what state=present returned for pool {pool}, not {build!r}"
        )
    return build


def run(module: AnsibleModule) -> dict[str, Any]:
    params = module.params
    entry = validate_pool(params["pool"])
    refused = baking.refuse_pool(entry)
    # state=absent (teardown.yml, every pool with a provider): a pool whose provider bakes nothing
    # (a vagrant VM backend) has nothing baked, and its run finds nothing to delete.
    if refused and (params["state"] != "absent" or not entry.get("provider")):
        raise InvalidArgumentError(refused)
    p = pool_params({"pool": entry, "state_dir": params["state_dir"]})
    pool, state_root = p["pool"], params["state_dir"] or str(default_state_root())
    spec = launch_spec(p)
    keep = int((entry.get("template") or {}).get("keep", 2))
    check = entry.get("check") or {}
    health = str(check.get("path") or "/") if isinstance(check, dict) else "/"
    with provider_from_params(p) as provider:
        if params["state"] == "present":
            if not params["role_dir"]:
                raise InvalidArgumentError("role_dir is required with state=present")
            inputs = baking.template_inputs(
                entry,
                provider.name,
                base=provider.template_base(spec),
                variables=params["variables"] or {},
                role_dir=params["role_dir"],
                extra=params["files"] or [],
            )
            bake = baking.plan(provider, inputs, state_root=state_root)
            result: dict[str, Any] = {
                "changed": bake.action == "bake",  # in check mode: what the run would do
                "version": bake.version,
                "action": bake.action,
                "reason": bake.reason,
                "current": bake.current,
                "artifact": bake.artifact,
                "variables": dict(inputs.variables),
            }
            if bake.action == "bake" and not module.check_mode:
                build = baking.prepare_build(provider, spec, bake, state_root)
                build["started"] = time.time()
                result.update(build=build)
            return result

        if params["state"] == "absent":
            if module.check_mode:
                index = read_index(index_path(state_root, pool), pool)
                gone = [r.version for r in index.versions]
                return {
                    "changed": bool(gone),
                    "version": None,
                    "action": "absent",
                    "current": None,
                    "artifact": None,
                    "removed": gone,
                }
            removed, kept = baking.remove_all(provider, state_root, pool)
            return {
                "changed": bool(removed),
                "version": None,
                "action": "absent",
                "current": None,
                "artifact": None,
                "removed": removed,
                "kept": kept,
            }

        build = _checked_build(params, pool)
        version = build["version"]
        if module.check_mode:
            return {
                "changed": True,
                "version": version,
                "action": params["state"],
                "current": None,
                "artifact": None,
            }
        if params["state"] == "failed":
            baking.discard_build(provider, build)
            reason = params["reason"]
            index, _ = baking.record(
                state_root,
                pool,
                version,
                baking.artifact_name(
                    baking.bake_kind(provider), state_root, pool, version, scope=baking.docker_scope(provider)
                ),
                time.time(),
                usable=False,
                reason=reason,
            )
            _event(
                params["event_log"],
                pool=pool,
                action="bake_failed",
                reason=reason,
                version=version,
                current=index.current,
            )
            return {
                "changed": True,
                "version": version,
                "action": "failed",
                "current": index.current,
                "artifact": None,
                "msg": f"pool {pool}: the bake of version {version} failed on its build host: {reason}",
            }

        started = float(build.get("started") or time.time())
        candidate = None
        try:
            candidate = baking.finish_build(provider, build, params["paths"] or {}, state_root)
            settings = provider_settings(p["provider"], p)
            settings.pop("vagrant_dir", None)  # the throw-away host lives in its scratch state root
            if p["provider"] == "local":
                settings["port"] = 0  # the throw-away host must not take a port the pool's hosts need
            checked = baking.validate_artifact(
                baking.provider_for(p["provider"], settings),
                pool,
                template=LaunchTemplate(candidate, version),
                spec=spec,
                health_path=health,
                scratch_parent=str(baking.templates_dir(state_root, pool)),
            )
            artifact = baking.publish(build, candidate, state_root)
        except (HapoolError, OSError) as exc:
            reason = str(exc) if isinstance(exc, HapoolError) else f"{type(exc).__name__}: {exc}"
            try:
                baking.discard_build(provider, build)
                if candidate is not None:
                    baking.remove_artifact(provider, _record(version, candidate), state_root, pool)
            finally:
                kind = baking.bake_kind(provider)
                index, _ = baking.record(
                    state_root,
                    pool,
                    version,
                    baking.artifact_name(
                        kind, state_root, pool, version, scope=baking.docker_scope(provider)
                    ),
                    time.time(),
                    usable=False,
                    reason=reason,
                )
                _event(
                    params["event_log"],
                    pool=pool,
                    action="bake_failed",
                    reason=reason,
                    version=version,
                    current=index.current,
                )
            raise TemplateError(
                f"the bake of pool {pool}'s template version {version} failed, the pool keeps "
                f"{index.current or 'no baked version (hosts launch bare and are provisioned)'}: {reason}"
            ) from exc

        def live_versions() -> list[str]:
            return [str(i.extra.get("template")) for i in provider.list(pool) if i.extra.get("template")]

        index, removed = baking.record(
            state_root,
            pool,
            version,
            artifact,
            time.time(),
            usable=True,
            in_use=live_versions,
            remove=lambda old: baking.remove_artifact(provider, old, state_root, pool),
            keep=keep,
        )
        duration = round(time.time() - started, 3)
        _event(
            params["event_log"],
            pool=pool,
            action="bake",
            duration=duration,
            reason=str(build.get("reason") or "template changed"),
            version=version,
            artifact=artifact,
            checked=checked,
            removed=removed or None,
        )
        return {
            "changed": True,
            "version": version,
            "action": "baked",
            "current": index.current,
            "artifact": artifact,
            "removed": removed,
            "checked": checked,
            "duration": duration,
        }


def _record(version: str, artifact: str) -> TemplateVersion:
    return TemplateVersion(version, artifact, 0.0, False)


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    run_module(module, lambda: run(module))


if __name__ == "__main__":
    main()
