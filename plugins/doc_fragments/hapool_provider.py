# Copyright: hapool contributors
# Apache License 2.0 (see pyproject.toml)
"""Documentation of the provider options that pool_instance, pool_instance_info, heal_plan and
scale_plan share (their argument spec is PROVIDER_ARGUMENT_SPEC in
module_utils/hapool/providers/options.py)."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  provider:
    description:
      - Which provider manages the pool's instances. Default the C(provider) of the pool entry
        (when the module's C(pool) is one), else V(local).
    type: str
    choices: [local, docker, vagrant]
  state_dir:
    description:
      - hapool's state directory; each provider keeps its state in C(<state_dir>/<provider>)
        (local prefixes, name ledgers, the Vagrant machine list).
      - Default C($HAPOOL_STATE_DIR), else C(.state) in the project directory (C($HAPOOL_PROJECT_DIR),
        else the directory of C($ANSIBLE_CONFIG), else the nearest directory above the working
        directory with an C(ansible.cfg)). Playbooks should pass it explicitly, for example
        C("{{ playbook_dir }}/../.state").
    type: path
  image:
    description:
      - Image of a V(docker) instance, or of a V(vagrant) machine with the docker backend.
        Must exist on the engine; it is never pulled.
      - Default C(hapool/base:bookworm).
    type: str
  network:
    description:
      - Docker network (a user bridge, created if missing) for V(docker) instances and V(vagrant)
        machines with the docker backend. Default C(hapool).
    type: str
  docker_host:
    description:
      - Docker engine URL (C(unix:///var/run/docker.sock), C(tcp://host:2376)) for V(docker), and
        C(DOCKER_HOST) for V(vagrant)'s docker backend. Default C($DOCKER_HOST) or the local socket.
    type: str
  bind_network:
    description:
      - V(local) only. IPv4 loopback network the instances' addresses are taken from. With the
        default C(127.0.0.1/32) all instances share 127.0.0.1 on distinct ports; with
        C(127.0.1.0/24) each instance gets its own address (Linux routes all of 127.0.0.0/8 to lo).
    type: str
  port:
    description:
      - V(local) only. Port every instance listens on; V(0) (the default) picks a free port for
        each one. A fixed port (V(80) with O(bind_network=127.0.1.0/24)) looks like separate
        machines; ports below 1024 need root.
    type: int
  vagrant_dir:
    description:
      - V(vagrant) only. Directory of the machine list (C(machines.json)), Vagrant's data
        (C(.vagrant)) and logs. Default C(<state_dir>/vagrant).
    type: path
  vagrantfile:
    description:
      - V(vagrant) only. The Vagrantfile that reads the machine list. Default the project's
        C(Vagrantfile).
    type: path
  vagrant_backend:
    description:
      - V(vagrant) only. Vagrant provider of new machines. V(docker) (default) needs no
        hypervisor; V(libvirt) (vagrant-libvirt plugin) and V(virtualbox) make VMs from O(box).
    type: str
    choices: [docker, libvirt, virtualbox]
  box:
    description:
      - V(vagrant) with a VM backend only. The Vagrant box of new machines (for example
        C(debian/bookworm64)).
    type: str
  vm_network:
    description:
      - V(vagrant) with a VM backend only. Private network the VMs' static addresses are taken
        from (from .10 up). Default C(192.168.56.0/24).
    type: str
  start_timeout:
    description: Seconds to wait for a launched instance to serve on its port.
    type: float
"""
