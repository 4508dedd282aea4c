# Copyright: hapool contributors
# Apache License 2.0 (see pyproject.toml)
"""Ansible inventory plugin ``hapool``: the web hosts of hapool pools, from their providers."""

from __future__ import annotations

DOCUMENTATION = r"""
---
name: hapool
short_description: The web hosts of hapool pools (local, docker, vagrant providers)
description:
  - Lists the instances of hapool pools from their providers (nginx prefixes of the V(local)
    provider, labelled containers of V(docker), the machine list of V(vagrant)) so that roles
    apply to freshly launched hosts without editing an inventory.
  - Each instance becomes a host named after the instance (C(web-3f9a2c)), in the groups
    C(<pool>) (with O(pool_group_prefix)), C(provider_<provider>) and C(hapool_instances).
  - "Host variables: C(hapool_pool), C(hapool_instance), C(hapool_provider), C(hapool_address),
    C(hapool_port), C(hapool_created), C(hapool_state), C(hapool_alive), C(hapool_template) (the
    launch template version the host was launched from, null for a host launched bare), and the
    connection. A warm host (named in its pool's warm file, C(<state_dir>/warm/<pool>.json)) is in
    the group C(hapool_warm) too, with C(hapool_warm=true) and C(hapool_weight=0): the balancer
    renders it with weight 0 (checked, no traffic) until a promotion takes it into service.
    V(local): C(ansible_connection=local), C(ansible_python_interpreter={{ ansible_playbook_python }})
    and the nginx_web role's paths pinned to the instance's nginx - C(nginx_web_prefix),
    C(nginx_web_conf_file) (C(<prefix>/conf/nginx.conf)), C(nginx_web_pid_file)
    (C(<prefix>/logs/nginx.pid)), C(nginx_web_root), C(nginx_web_log_dir), C(nginx_web_temp_dir),
    C(nginx_web_listen_address) and C(nginx_web_port) (the address and port HAProxy knows), and
    C(nginx_web_user) (the worker user the provider chose). V(docker):
    C(ansible_connection=community.docker.docker) and C(ansible_host=<container name>)
    (C(ansible_docker_host) when O(docker_host) is set). V(vagrant) with the docker backend: the
    same docker connection to the container Vagrant made; with a VM backend: SSH to the VM's
    address as C(vagrant) with the key Vagrant made."
  - Supports C(compose), C(groups) and C(keyed_groups) (constructed).
  - The configuration file must be named C(hapool.yml), C(hapool.yaml), C(*.hapool.yml) or
    C(*.hapool.yaml). The plugin loads hapool's provider code from the C(plugins/module_utils)
    directory next to this plugin's directory.
version_added: "0.1.0"
author:
  - hapool contributors
extends_documentation_fragment:
  - constructed
options:
  plugin:
    description: The name of this plugin; must be V(hapool).
    type: str
    required: true
    choices: [hapool]
  providers:
    description: Providers to ask for instances.
    type: list
    elements: str
    default: [local]
  pools:
    description: Only these pools (all pools when empty).
    type: list
    elements: str
    default: []
  state_dir:
    description:
      - hapool's state directory (providers use C(<state_dir>/<provider>)).
      - Default C($HAPOOL_STATE_DIR), else C(.state) in the project this plugin belongs to.
    type: path
    env:
      - name: HAPOOL_STATE_DIR
  network:
    description:
      - Docker network whose addresses are reported (docker, vagrant docker backend).
        Default C(hapool).
    type: str
  docker_host:
    description:
      - Docker engine URL for the V(docker) provider; also set as C(ansible_docker_host) so the
        docker connection reaches the same engine. Default C($DOCKER_HOST) or the local socket.
    type: str
  vagrant_dir:
    description: Directory of the Vagrant machine list; default C(<state_dir>/vagrant).
    type: path
  vagrantfile:
    description: The Vagrantfile; default the project's.
    type: path
  include_stopped:
    description:
      - Also list instances that do not run (dead nginx, exited container). They go to the
        group C(hapool_stopped) too; tasks on them fail as unreachable.
    type: bool
    default: false
  skip_unavailable:
    description:
      - When a provider cannot be asked (Docker engine down, Vagrant missing), warn and go on with
        the others instead of failing the inventory.
    type: bool
    default: false
  pool_group_prefix:
    description: Prefix of the pool groups (V(pool_) gives C(pool_web)).
    type: str
    default: ""
"""

EXAMPLES = r"""
---
# inventories/pools.hapool.yml — every pool of the local and docker providers
plugin: hapool
providers: [local, docker]

---
# vagrant machines in a test directory, one group per pool prefixed with pool_
plugin: hapool
providers: [vagrant]
vagrant_dir: /tmp/hapool-test/vagrant
pool_group_prefix: pool_

---
# only pool web; a group per state, a variable for HAProxy's server line
plugin: hapool
providers: [docker]
pools: [web]
include_stopped: true
keyed_groups:
  - key: hapool_state
    prefix: state
compose:
  haproxy_server_line: "'server ' ~ inventory_hostname ~ ' ' ~ hapool_address ~ ':' ~ hapool_port ~ ' check'"
"""

import os
import pathlib
from typing import Any

import ansible.module_utils
from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin, Constructable
from ansible.template import trust_as_template
from ansible.utils.vars import combine_vars

# Controller-side plugins cannot import from the `module_utils` path of ansible.cfg (only
# modules get it, through AnsiballZ). Extend `ansible.module_utils` with this repository's
# plugins/module_utils (as tests/conftest.py does) so that the plugin runs exactly the code
# the modules run.
_PLUGINS_DIR = pathlib.Path(__file__).resolve().parent.parent
_PROJECT_DIR = _PLUGINS_DIR.parent
_MODULE_UTILS = str(_PLUGINS_DIR / "module_utils")
if _MODULE_UTILS not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(_MODULE_UTILS)

from ansible.module_utils.hapool.errors import HapoolError
from ansible.module_utils.hapool.providers import (
    PROVIDER_NAMES,
    Instance,
    ProviderUnavailableError,
    validate_pool,
)
from ansible.module_utils.hapool.providers.options import provider_from_params
from ansible.module_utils.hapool.warm import read_warm

CONFIG_NAMES = ("hapool.yml", "hapool.yaml")
CONFIG_SUFFIXES = (".hapool.yml", ".hapool.yaml")


def connection_vars(instance: Instance, docker_host: str | None = None) -> dict[str, Any]:
    """How Ansible reaches ``instance`` (host variables), by provider and backend."""
    extra = dict(instance.extra)
    if instance.provider == "local":
        prefix = pathlib.Path(str(extra.get("prefix", "")))
        return {
            "ansible_connection": "local",
            "ansible_python_interpreter": trust_as_template("{{ ansible_playbook_python }}"),
            # The nginx_web role's paths, pinned to how the provider started this nginx: the
            # master re-reads the -c file it was started with on reload, the provider reads
            # the pid file to tell whether the host is alive, and HAProxy knows address:port.
            "nginx_web_prefix": str(prefix),
            "nginx_web_conf_file": str(prefix / "conf" / "nginx.conf"),
            "nginx_web_pid_file": str(prefix / "logs" / "nginx.pid"),
            "nginx_web_root": str(prefix / "html"),
            "nginx_web_log_dir": str(prefix / "logs"),
            "nginx_web_temp_dir": str(prefix / "tmp"),
            "nginx_web_listen_address": instance.address,
            "nginx_web_port": instance.port,
            # workers keep the user the provider chose (root under a root controller: nginx's
            # default "nobody" cannot read a prefix below a private directory)
            "nginx_web_user": str(extra.get("user") or ""),
        }
    container = extra.get("container")
    if instance.provider == "docker" or (instance.provider == "vagrant" and extra.get("backend") == "docker"):
        found: dict[str, Any] = {
            "ansible_connection": "community.docker.docker",
            "ansible_host": container or instance.name,
            "hapool_container": container,
        }
        if docker_host:
            found["ansible_docker_host"] = docker_host
        return found
    # vagrant with a VM backend: SSH to its private-network address with Vagrant's key
    return {
        "ansible_connection": "ssh",
        "ansible_host": extra.get("ip") or instance.address,
        "ansible_user": "vagrant",
        "ansible_ssh_private_key_file": extra.get("private_key"),
    }


def host_vars(instance: Instance, docker_host: str | None = None) -> dict[str, Any]:
    found = {
        "hapool_pool": instance.pool,
        "hapool_instance": instance.name,
        "hapool_provider": instance.provider,
        "hapool_address": instance.address,
        "hapool_port": instance.port,
        "hapool_created": instance.created,
        "hapool_state": instance.state,
        "hapool_alive": instance.alive,
        "hapool_template": instance.extra.get("template"),
    }
    found.update(connection_vars(instance, docker_host))
    return found


class InventoryModule(BaseInventoryPlugin, Constructable):
    NAME = "hapool"

    def verify_file(self, path: str) -> bool:
        if not super().verify_file(path):
            return False
        base = os.path.basename(path)
        return base in CONFIG_NAMES or base.endswith(CONFIG_SUFFIXES)

    def parse(self, inventory: Any, loader: Any, path: str, cache: bool = True) -> None:
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        providers = self.get_option("providers") or ["local"]
        unknown = [p for p in providers if p not in PROVIDER_NAMES]
        if unknown:
            raise AnsibleParserError(
                f"hapool inventory {path}: unknown provider(s) {unknown}; choose from {list(PROVIDER_NAMES)}"
            )
        try:
            pools = [validate_pool(p) for p in self.get_option("pools") or []]
        except HapoolError as exc:
            raise AnsibleParserError(f"hapool inventory {path}: {exc}") from exc
        state_dir = self.get_option("state_dir") or str(_PROJECT_DIR / ".state")
        params = {
            "state_dir": state_dir,
            "network": self.get_option("network"),
            "docker_host": self.get_option("docker_host"),
            "vagrant_dir": self.get_option("vagrant_dir"),
            "vagrantfile": self.get_option("vagrantfile") or str(_PROJECT_DIR / "Vagrantfile"),
        }
        self.inventory.add_group("hapool_instances")
        warm: dict[str, dict[str, Any]] = {}  # pool -> its warm file (hapool.warm)
        for name in providers:
            for instance in self._instances(name, params, pools, path):
                if instance.pool not in warm:
                    try:
                        warm[instance.pool] = read_warm(state_dir, instance.pool)
                    except HapoolError as exc:
                        raise AnsibleParserError(f"hapool inventory {path}: {exc}") from exc
                self._add(instance, params["docker_host"], warm=instance.name in warm[instance.pool])

    def _instances(
        self, provider_name: str, params: dict[str, Any], pools: list[str], path: str
    ) -> list[Instance]:
        try:
            with provider_from_params({**params, "provider": provider_name}) as provider:
                if not pools:
                    return provider.list()
                return [i for pool in pools for i in provider.list(pool)]
        except ProviderUnavailableError as exc:
            if self.get_option("skip_unavailable"):
                self.display.warning(f"hapool inventory: skipping the {provider_name} provider: {exc}")
                return []
            raise AnsibleParserError(f"hapool inventory {path}: the {provider_name} provider: {exc}") from exc
        except HapoolError as exc:
            raise AnsibleParserError(f"hapool inventory {path}: the {provider_name} provider: {exc}") from exc

    def _add(self, instance: Instance, docker_host: str | None, *, warm: bool = False) -> None:
        if not instance.alive and not self.get_option("include_stopped"):
            return
        host = instance.name
        pool_group = f"{self.get_option('pool_group_prefix') or ''}{instance.pool}"
        groups = [pool_group, f"provider_{instance.provider}", "hapool_instances"]
        if not instance.alive:
            groups.append("hapool_stopped")
        if warm:
            groups.append("hapool_warm")
        for group in groups:
            self.inventory.add_group(group)
            self.inventory.add_host(host, group=group)
        variables = host_vars(instance, docker_host)
        if warm:
            # a warm host (hapool.warm): in the backend with weight 0, checked, no traffic
            variables.update(hapool_warm=True, hapool_weight=0)
        for key, value in variables.items():
            self.inventory.set_variable(host, key, value)
        strict = self.get_option("strict")
        # inventory_hostname, group_names and the variables just set, for compose / groups / keyed_groups
        hostvars = combine_vars(self.inventory.get_host(host).get_vars(), variables)
        self._set_composite_vars(self.get_option("compose"), hostvars, host, strict=strict)
        self._add_host_to_composed_groups(self.get_option("groups"), hostvars, host, strict=strict)
        self._add_host_to_keyed_groups(self.get_option("keyed_groups"), hostvars, host, strict=strict)
