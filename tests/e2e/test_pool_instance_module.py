"""``pool_instance`` and ``pool_instance_info`` run by the real ``ansible-playbook`` (AnsiballZ,
the project's ansible.cfg, check mode and diff handled by Ansible), with the JSON callback so
that each task's result can be checked here.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from ansible.module_utils.hapool.providers import get_provider

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.e2e


def run_play(
    tmp_path: Path, tasks: str, *, extra_env: dict[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """Run one play on localhost; return {task name: result}. Fails on an unexpected failure."""
    play = tmp_path / f"play-{uuid.uuid4().hex[:6]}.yml"
    play.write_text(
        "- hosts: localhost\n"
        "  connection: local\n"
        "  gather_facts: false\n"
        "  vars:\n"
        '    ansible_python_interpreter: "{{ ansible_playbook_python }}"\n'
        f"    state_dir: {json.dumps(str(tmp_path / 'state'))}\n"
        '    iname: "{{ launched.instance.name }}"\n'
        "  tasks:\n" + tasks
    )
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
        "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        **(extra_env or {}),
    }
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "localhost,", "--diff", str(play)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(
            f"no JSON from ansible-playbook (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        ) from exc
    results = {t["task"]["name"]: t["hosts"]["localhost"] for t in report["plays"][0]["tasks"]}
    assert proc.returncode == 0, json.dumps(results, indent=1)[-4000:]
    return results


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read().decode()


@pytest.fixture
def local_cleanup(tmp_path: Path) -> Iterator[None]:
    yield
    provider = get_provider("local", state_root=tmp_path / "state")
    for inst in provider.list():
        provider.destroy(inst.pool, inst)


def test_local_lifecycle_with_check_mode_and_diff(tmp_path, local_cleanup):
    r = run_play(
        tmp_path,
        """
    - name: plan
      pool_instance: {pool: web, state_dir: "{{ state_dir }}"}
      check_mode: true
      register: plan
    - name: nothing yet
      pool_instance_info: {pool: web, state_dir: "{{ state_dir }}"}
    - name: launch
      pool_instance: {pool: web, state_dir: "{{ state_dir }}"}
      register: launched
    - name: serve
      ansible.builtin.uri:
        url: "http://{{ launched.instance.address }}:{{ launched.instance.port }}/"
        return_content: true
    - name: again
      pool_instance: {pool: web, state_dir: "{{ state_dir }}", name: "{{ iname }}"}
    - name: list
      pool_instance_info: {pool: web, state_dir: "{{ state_dir }}"}
    - name: plan destroy
      pool_instance: {pool: web, state_dir: "{{ state_dir }}", name: "{{ iname }}", state: absent}
      check_mode: true
    - name: still there
      pool_instance_info: {pool: web, state_dir: "{{ state_dir }}"}
    - name: destroy
      pool_instance: {pool: web, state_dir: "{{ state_dir }}", name: "{{ iname }}", state: absent}
    - name: destroy again
      pool_instance: {pool: web, state_dir: "{{ state_dir }}", name: "{{ iname }}", state: absent}
    - name: reuse the name
      pool_instance: {pool: web, state_dir: "{{ state_dir }}", name: "{{ iname }}"}
      ignore_errors: true
    - name: reuse the name in check mode
      pool_instance: {pool: web, state_dir: "{{ state_dir }}", name: "{{ iname }}"}
      check_mode: true
      ignore_errors: true
    - name: bad pool
      pool_instance: {pool: Web-1, state_dir: "{{ state_dir }}"}
      ignore_errors: true
    - name: absent without a name
      pool_instance: {pool: web, state_dir: "{{ state_dir }}", state: absent}
      ignore_errors: true
    - name: at the end
      pool_instance_info: {state_dir: "{{ state_dir }}"}
""",
    )
    assert r["plan"]["changed"] and r["plan"]["instance"]["name"] is None
    assert r["plan"]["diff"]["before"] == {} and r["plan"]["diff"]["after"]["pool"] == "web"
    assert r["nothing yet"]["count"] == 0

    inst = r["launch"]["instance"]
    assert r["launch"]["changed"] and inst["alive"] and inst["provider"] == "local" and inst["pool"] == "web"
    assert inst["name"].startswith("web-") and inst["port"] > 0 and inst["created"] > 0
    assert r["launch"]["diff"]["after"]["name"] == inst["name"]
    assert f"Hello {inst['name']}!" in r["serve"]["content"]

    assert r["again"]["changed"] is False and r["again"]["instance"]["name"] == inst["name"]
    (listed,) = r["list"]["instances"]
    assert (listed["name"], listed["created"], r["list"]["alive"]) == (inst["name"], inst["created"], 1)

    assert r["plan destroy"]["changed"] and r["plan destroy"]["diff"]["after"] == {}
    assert r["still there"]["count"] == 1
    assert r["destroy"]["changed"] and r["destroy"]["instance"]["state"] == "destroyed"
    assert r["destroy again"]["changed"] is False and r["destroy again"]["instance"] is None

    assert r["reuse the name"]["failed"] and "never reused" in r["reuse the name"]["msg"]
    assert r["reuse the name"]["error"] == "NameReusedError"
    assert r["reuse the name in check mode"]["failed"], r["reuse the name in check mode"]
    assert r["reuse the name in check mode"]["error"] == "NameReusedError"
    assert r["bad pool"]["failed"] and "invalid pool name 'Web-1'" in r["bad pool"]["msg"]
    assert r["absent without a name"]["failed"] and "name" in r["absent without a name"]["msg"]
    assert r["at the end"]["instances"] == []


def test_the_pool_entry_gives_the_provider_and_the_launch_options(tmp_path, local_cleanup):
    """``pool`` may be the pool's entry of hapool_pools, as the playbooks pass it: its provider
    and launch options are used (bind_network: the host gets its own loopback address) unless
    the task sets them; anything but a name or an entry is a clear error."""
    r = run_play(
        tmp_path,
        """
    - name: launch
      pool_instance: {pool: "{{ entry }}", state_dir: "{{ state_dir }}"}
      register: launched
      vars:
        entry:
          {name: web, provider: local, max: 3, launch: {bind_network: 127.0.13.0/24, start_timeout: "20"}}
    - name: launch in another network
      pool_instance: {pool: "{{ entry }}", state_dir: "{{ state_dir }}", bind_network: 127.0.14.0/24}
      vars:
        entry: {name: web, provider: local, launch: {bind_network: 127.0.13.0/24}}
    - name: list
      pool_instance_info: {pool: {name: web, provider: local}, state_dir: "{{ state_dir }}"}
    - name: list with another provider's entry
      pool_instance_info: {pool: {name: web, provider: docker, launch: {docker_host: "unix:///nonexistent.sock"}}}
      ignore_errors: true
    - name: destroy
      pool_instance:
        pool: {name: web, provider: local, launch: {bind_network: 127.0.13.0/24}}
        name: "{{ iname }}"
        state: absent
        state_dir: "{{ state_dir }}"
    - name: not a pool
      pool_instance: {pool: [web], state_dir: "{{ state_dir }}"}
      ignore_errors: true
    - name: an entry without a name
      pool_instance_info: {pool: {provider: local}, state_dir: "{{ state_dir }}"}
      ignore_errors: true
""",
    )
    inst = r["launch"]["instance"]
    assert (inst["pool"], inst["provider"]) == ("web", "local") and inst["address"].startswith("127.0.13.")
    other = r["launch in another network"]["instance"]
    assert other["address"].startswith("127.0.14.")  # the task's option wins over the entry's
    assert sorted(i["name"] for i in r["list"]["instances"]) == sorted([inst["name"], other["name"]])
    docker = r["list with another provider's entry"]
    assert docker["failed"] and docker["error"] == "ProviderUnavailableError", docker
    assert r["destroy"]["changed"] and r["destroy"]["instance"]["state"] == "destroyed"
    not_a_pool = r["not a pool"]
    assert not_a_pool["failed"] and "pool must be a pool name or the pool's entry" in not_a_pool["msg"]
    assert r["an entry without a name"]["failed"] and "has no name" in r["an entry without a name"]["msg"]


def test_default_state_dir_comes_from_the_environment(tmp_path, local_cleanup):
    state = tmp_path / "state"
    r = run_play(
        tmp_path,
        """
    - name: launch
      pool_instance: {pool: api, bind_network: 127.0.0.1/32}
""",
        extra_env={"HAPOOL_STATE_DIR": str(state)},
    )
    name = r["launch"]["instance"]["name"]
    assert (state / "local" / "pools" / "api" / name / "instance.json").is_file()


# --- docker -------------------------------------------------------------------------------------


@pytest.fixture
def docker_names(tmp_path: Path) -> Iterator[tuple[str, str]]:
    pool, network = f"m{uuid.uuid4().hex[:8]}", f"hapool-mtest-{uuid.uuid4().hex[:8]}"
    yield pool, network
    client = docker.from_env()
    for c in client.containers.list(all=True, filters={"label": f"io.hapool.pool={pool}"}):
        c.remove(force=True)
    for net in client.networks.list(names=[network]):
        if net.name == network:
            net.remove()
    client.close()


@pytest.mark.docker
def test_docker_lifecycle_and_clear_failures(tmp_path, docker_names):
    pool, network = docker_names
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        bogus = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    common = f'pool: {pool}, provider: docker, network: {network}, state_dir: "{{{{ state_dir }}}}"'
    r = run_play(
        tmp_path,
        f"""
    - name: plan
      pool_instance: {{{common}}}
      check_mode: true
    - name: launch
      pool_instance: {{{common}, cpus: 0.5, memory: 64m}}
      register: launched
    - name: serve
      ansible.builtin.uri:
        url: "http://{{{{ launched.instance.address }}}}/"
        return_content: true
    - name: list
      pool_instance_info: {{{common}}}
    - name: destroy
      pool_instance: {{{common}, name: "{{{{ iname }}}}", state: absent}}
    - name: missing image
      pool_instance: {{{common}, image: "hapool/no-such-image:x1"}}
      ignore_errors: true
    - name: engine down
      pool_instance: {{{common}, docker_host: "{bogus}"}}
      ignore_errors: true
    - name: at the end
      pool_instance_info: {{{common}}}
""",
    )
    assert r["plan"]["changed"] and r["plan"]["instance"]["provider"] == "docker"
    inst = r["launch"]["instance"]
    assert (
        inst["alive"] and inst["port"] == 80 and inst["extra"]["container"] == f"hapool-{pool}-{inst['name']}"
    )
    assert "nginx" in r["serve"]["content"].lower()
    assert [i["name"] for i in r["list"]["instances"]] == [inst["name"]]
    assert r["destroy"]["changed"]
    assert r["missing image"]["failed"] and r["missing image"]["error"] == "ImageNotFoundError"
    assert "never pulls" in r["missing image"]["msg"]
    assert r["engine down"]["failed"] and r["engine down"]["error"] == "ProviderUnavailableError"
    assert f"Docker engine at {bogus} does not answer" in r["engine down"]["msg"]
    assert r["at the end"]["count"] == 0
