"""The ``hapool`` inventory plugin through the real ``ansible-inventory`` and ``ansible-playbook``:
hosts launched by the providers appear with the right groups, variables and connection, and
a play reaches them (local connection with the nginx prefix, docker connection into the
container, docker connection into the container Vagrant made).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from ansible.module_utils.hapool.providers import Instance, get_provider
from ansible.module_utils.hapool.providers.local import pid_alive
from ansible.module_utils.hapool.warm import write_warm

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
VAGRANTFILE = ROOT / "Vagrantfile"

pytestmark = pytest.mark.e2e


def ansible_env() -> dict[str, str]:
    return {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def unwrap(value: Any) -> Any:
    """ansible-inventory marks strings from plugins as {"__ansible_unsafe": ...} (not templated)."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def inventory(config: Path, *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(BIN / "ansible-inventory"), "-i", str(config), "--list", *extra],
        cwd=ROOT,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def inventory_json(config: Path) -> dict[str, Any]:
    data: dict[str, Any] = unwrap(json.loads(inventory(config).stdout))
    return data


def playbook(config: Path, play: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / f"play-{uuid.uuid4().hex[:6]}.yml"
    path.write_text(play)
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(config), str(path)],
        cwd=ROOT,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return proc


def hosts_of(data: dict[str, Any], group: str) -> set[str]:
    return set(data.get(group, {}).get("hosts", []))


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read().decode()


def write_config(path: Path, **options: Any) -> Path:
    path.write_text(json.dumps({"plugin": "hapool", **options}))  # JSON is YAML
    return path


# --- local --------------------------------------------------------------------------------------


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Any]:
    provider = get_provider("local", state_root=tmp_path / "state")
    yield provider
    for inst in provider.list():
        provider.destroy(inst.pool, inst)


def test_local_hosts_groups_vars_and_a_play_through_the_local_connection(local, tmp_path):
    web = [local.launch("web"), local.launch("web")]
    api = local.launch("api")
    config = write_config(
        tmp_path / "pools.hapool.yml", providers=["local"], state_dir=str(tmp_path / "state")
    )

    data = inventory_json(config)
    assert hosts_of(data, "web") == {i.name for i in web}
    assert hosts_of(data, "api") == {api.name}
    assert hosts_of(data, "provider_local") == {i.name for i in [*web, api]}
    assert hosts_of(data, "hapool_instances") == {i.name for i in [*web, api]}
    hv = data["_meta"]["hostvars"][web[0].name]
    assert hv["hapool_pool"] == "web" and hv["hapool_instance"] == web[0].name
    assert hv["hapool_provider"] == "local" and hv["hapool_alive"] is True
    assert (hv["hapool_address"], hv["hapool_port"], hv["hapool_created"]) == (
        web[0].address,
        web[0].port,
        web[0].created,
    )
    assert hv["ansible_connection"] == "local"
    assert hv["ansible_python_interpreter"] == "{{ ansible_playbook_python }}"
    prefix = web[0].extra["prefix"]
    assert hv["nginx_web_prefix"] == prefix
    assert hv["nginx_web_conf_file"] == f"{prefix}/conf/nginx.conf" == web[0].extra["conf"]
    assert hv["nginx_web_pid_file"] == f"{prefix}/logs/nginx.pid" == web[0].extra["pid_file"]
    assert (hv["nginx_web_listen_address"], hv["nginx_web_port"]) == (web[0].address, web[0].port)
    assert hv["nginx_web_user"] == ("root" if os.geteuid() == 0 else "")

    # What the nginx_web role will do: write into the prefix and reload that nginx.
    playbook(
        config,
        """
- hosts: web
  gather_facts: false
  tasks:
    - ansible.builtin.copy:
        dest: "{{ nginx_web_prefix }}/html/index.html"
        content: "configured {{ inventory_hostname }} on {{ hapool_address }}:{{ hapool_port }}\\n"
        mode: "0644"
    - ansible.builtin.command:
        argv: [nginx, -p, "{{ nginx_web_prefix }}/", -c, "{{ nginx_web_prefix }}/conf/nginx.conf", -s, reload]
      changed_when: true
""",
        tmp_path,
    )
    for inst in web:
        assert get(f"http://{inst.endpoint}/") == f"configured {inst.name} on {inst.endpoint}\n"
    assert "Hello" in get(f"http://{api.endpoint}/")  # not in the play


def test_dead_hosts_are_left_out_unless_asked_for(local, tmp_path):
    alive, dead = local.launch("web"), local.launch("web")
    os.kill(dead.extra["pid"], signal.SIGKILL)
    deadline = time.time() + 5
    while pid_alive(dead.extra["pid"]) and time.time() < deadline:
        time.sleep(0.05)
    base = {"providers": ["local"], "state_dir": str(tmp_path / "state")}
    data = inventory_json(write_config(tmp_path / "a.hapool.yml", **base))
    assert hosts_of(data, "web") == {alive.name}
    data = inventory_json(
        write_config(
            tmp_path / "b.hapool.yml",
            **base,
            include_stopped=True,
            pool_group_prefix="pool_",
            keyed_groups=[{"key": "hapool_state", "prefix": "state"}],
            groups={"dead": "not hapool_alive"},
            compose={
                "server_line": "'server ' ~ inventory_hostname ~ ' ' ~ hapool_address ~ ':' ~ hapool_port"
            },
            strict=True,
        )
    )
    assert hosts_of(data, "pool_web") == {alive.name, dead.name}
    assert hosts_of(data, "hapool_stopped") == {dead.name}
    assert hosts_of(data, "state_stopped") == {dead.name}
    assert hosts_of(data, "dead") == {dead.name}
    assert data["_meta"]["hostvars"][dead.name]["hapool_alive"] is False
    assert data["_meta"]["hostvars"][alive.name]["server_line"] == f"server {alive.name} {alive.endpoint}"


def test_warm_hosts_get_weight_zero_and_an_unreadable_warm_file_fails_the_source(local, tmp_path):
    member, warm = local.launch("web"), local.launch("web")
    write_warm(tmp_path / "state", "web", {warm.name: {"since": 1.0, "template": None}})
    config = write_config(tmp_path / "w.hapool.yml", providers=["local"], state_dir=str(tmp_path / "state"))
    data = inventory_json(config)
    assert hosts_of(data, "web") == {member.name, warm.name}
    assert hosts_of(data, "hapool_warm") == {warm.name}
    hv = data["_meta"]["hostvars"]
    assert hv[warm.name]["hapool_warm"] is True and hv[warm.name]["hapool_weight"] == 0
    assert "hapool_warm" not in hv[member.name] and "hapool_weight" not in hv[member.name]
    (tmp_path / "state" / "warm" / "web.json").write_text("{torn")
    proc = inventory(config, check=False)
    assert "cannot read the warm file" in proc.stderr and "web.json" in proc.stderr, proc.stderr
    assert member.name not in proc.stdout  # the source failed as a whole: no host is half-known


def test_only_hapool_config_files_are_claimed(tmp_path):
    config = tmp_path / "other.yml"
    config.write_text(json.dumps({"plugin": "hapool"}))
    proc = inventory(config, "-vvv", check=False)
    assert "Using inventory plugin 'hapool'" not in proc.stdout + proc.stderr


# --- docker -------------------------------------------------------------------------------------


@pytest.fixture
def docker_pool(tmp_path: Path) -> Iterator[tuple[Any, str, str]]:
    client = docker.from_env()
    pool, network = f"i{uuid.uuid4().hex[:8]}", f"hapool-itest-{uuid.uuid4().hex[:8]}"
    provider = get_provider("docker", state_root=tmp_path / "state", network=network)
    yield provider, pool, network
    for c in client.containers.list(all=True, filters={"label": f"io.hapool.pool={pool}"}):
        c.remove(force=True)
    for net in client.networks.list(names=[network]):
        if net.name == network:
            net.remove()
    client.close()


def test_the_nginx_web_role_applies_to_a_local_provider_host(local, tmp_path):
    """The contract between the provider and the nginx_web role, with the local inventory's
    group_vars loaded too (the plugin's host variables must win): the role re-configures the
    running nginx in place (no second nginx), the provider still sees it alive, and it serves
    the role's pages on the address and port HAProxy knows."""
    inst = local.launch("web")
    config = write_config(tmp_path / "pools.hapool.yml", state_dir=str(tmp_path / "state"))
    play = tmp_path / "role.yml"
    play.write_text("- hosts: provider_local\n  gather_facts: false\n  roles: [nginx_web]\n")
    proc = subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            "-i",
            str(ROOT / "inventories" / "local"),
            "-i",
            str(config),
            str(play),
        ],
        cwd=ROOT,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    (after,) = local.list("web")
    assert after.alive and after.extra["pid"] == inst.extra["pid"]  # reloaded, not replaced
    assert get(f"http://{inst.endpoint}/").strip() == f"Hello {inst.name}!"
    assert get(f"http://{inst.endpoint}/health").strip() == "OK"


@pytest.mark.docker
def test_docker_hosts_use_the_docker_connection_and_a_play_reaches_them(docker_pool, local, tmp_path):
    provider, pool, network = docker_pool
    inst = provider.launch(pool)
    local_inst = local.launch(pool)
    config = write_config(
        tmp_path / "hapool.yml",
        providers=["local", "docker"],
        state_dir=str(tmp_path / "state"),
        network=network,
    )
    data = inventory_json(config)
    assert hosts_of(data, pool) == {inst.name, local_inst.name}
    assert hosts_of(data, "provider_docker") == {inst.name}
    hv = data["_meta"]["hostvars"][inst.name]
    assert hv["ansible_connection"] == "community.docker.docker"
    assert hv["ansible_host"] == f"hapool-{pool}-{inst.name}" == hv["hapool_container"]
    assert (hv["hapool_address"], hv["hapool_port"]) == (inst.address, 80)

    playbook(
        config,
        """
- hosts: provider_docker
  gather_facts: false
  tasks:
    - ansible.builtin.copy:
        dest: /var/www/html/index.html
        content: "configured {{ inventory_hostname }}\\n"
        mode: "0644"
""",
        tmp_path,
    )
    assert get(f"http://{inst.endpoint}/") == f"configured {inst.name}\n"


@pytest.mark.docker
def test_an_unreachable_engine_fails_the_inventory_or_is_skipped(local, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        bogus = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    local_inst = local.launch("web")
    base = {"providers": ["local", "docker"], "state_dir": str(tmp_path / "state"), "docker_host": bogus}
    strict = write_config(tmp_path / "strict.hapool.yml", **base)
    proc = inventory(strict, "--flush-cache", check=False)
    assert f"the docker provider: the Docker engine at {bogus} does not answer" in proc.stderr
    assert local_inst.name not in proc.stdout  # the source failed as a whole

    lenient = write_config(tmp_path / "lenient.hapool.yml", **base, skip_unavailable=True)
    proc = inventory(lenient)
    assert "skipping the docker provider" in proc.stderr
    assert hosts_of(unwrap(json.loads(proc.stdout)), "web") == {local_inst.name}


# --- vagrant ------------------------------------------------------------------------------------


@pytest.mark.vagrant
@pytest.mark.slow
def test_vagrant_machines_are_reached_through_the_container_vagrant_made(tmp_path):
    client = docker.from_env()
    pool, network = f"j{uuid.uuid4().hex[:8]}", f"hapool-ivtest-{uuid.uuid4().hex[:8]}"
    provider = get_provider(
        "vagrant", state_root=tmp_path / "state", network=network, vagrantfile=str(VAGRANTFILE)
    )
    inst: Instance | None = None
    try:
        inst = provider.launch(pool)
        config = write_config(
            tmp_path / "vagrant.hapool.yml",
            providers=["vagrant"],
            state_dir=str(tmp_path / "state"),
            vagrantfile=str(VAGRANTFILE),
        )
        data = inventory_json(config)
        assert hosts_of(data, pool) == hosts_of(data, "provider_vagrant") == {inst.name}
        hv = data["_meta"]["hostvars"][inst.name]
        assert hv["ansible_connection"] == "community.docker.docker"
        assert hv["ansible_host"] == inst.extra["container"]
        assert hv["hapool_address"] == inst.address
        playbook(
            config,
            """
- hosts: provider_vagrant
  gather_facts: false
  tasks:
    - ansible.builtin.command: cat /etc/hostname
      register: hostname
      changed_when: false
    - ansible.builtin.assert:
        that: hostname.stdout == inventory_hostname
""",
            tmp_path,
        )
    finally:
        if inst is not None:
            provider.destroy(pool, inst)
        for c in client.containers.list(all=True, filters={"label": f"io.hapool.pool={pool}"}):
            c.remove(force=True)
        for net in client.networks.list(names=[network]):
            if net.name == network:
                net.remove()
        client.close()
