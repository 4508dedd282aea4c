"""The roles' systemd paths, run for real: a container with systemd as PID 1.

This machine's init is not systemd, so the roles take their process paths everywhere else.
Here a container of ``hapool/systemd:bookworm`` (the base image plus systemd, built by
``make setup``: scripts/setup.sh ``build_systemd_image``) boots /sbin/init. It needs no
``--privileged`` (which this machine's runtime refuses: "unable to apply caps"): a tmpfs on /run
and /run/lock, the cgroup tree mounted read-write, and CAP_SYS_ADMIN (without it, units that
sandbox fail at step NAMESPACE: "Failed to set up mount namespacing: Operation not supported",
e.g. the haproxy package's unit with its ``BindReadOnlyPaths=/dev/log``). With Docker's default (host)
cgroup namespace on cgroup v1, the container's systemd keeps its units below the container's own
cgroup (``/docker/<id>/system.slice``), so it touches no other container.

One playbook run over the ``community.docker.docker`` connection applies the haproxy role, the
nginx_web role and the heal_timer role with their service managers on ``auto``: each finds
/run/systemd/system and takes its systemd path (``run_systemd.yml``: the package's unit with the
role's drop-in; the heal timer's .timer/.service and watcher units). Then: the units run with
the roles' pid files, the page answers through HAProxy, the drop-in's ``Restart=always`` brings a
SIGKILLed HAProxy master back, the heal timer is listed by ``systemctl list-timers`` and its
ticks run (the playbook is a stand-in that logs its arguments, as in the role's molecule
scenario), and a second run changes nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
IMAGE = os.environ.get("HAPOOL_SYSTEMD_IMAGE", "hapool/systemd:bookworm")
TIMER_PERIOD = 5

PLAYBOOK = """
- name: Prepare the stand-in project the heal ticks run
  hosts: all
  gather_facts: false
  tasks:
    - name: Create its directories
      ansible.builtin.file:
        path: "{{ item }}"
        state: directory
        mode: "0755"
      loop: [/opt/hapool/playbooks, /opt/hapool/bin]
    - name: Add the playbook the ticks run
      ansible.builtin.copy:
        dest: /opt/hapool/playbooks/heal.yml
        content: "---\\n[]\\n"
        mode: "0644"
    - name: Add a stand-in for ansible-playbook that logs its arguments
      ansible.builtin.copy:
        dest: /opt/hapool/bin/ansible-playbook
        content: "#!/bin/sh\\necho \\"stand-in ansible-playbook $*\\"\\n"
        mode: "0755"

- name: The roles on systemd
  hosts: all
  gather_facts: false
  roles:
    - nginx_web
    - haproxy
    - heal_timer
"""


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=check)


def sh(container: str, command: str, check: bool = True) -> str:
    done = docker("exec", container, "sh", "-c", command, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{command!r} exited {done.returncode}: {done.stdout}{done.stderr}")
    return done.stdout.strip()


def wait_for(what: str, probe: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.25)


def unit(container: str, name: str, *props: str) -> dict[str, str]:
    out = sh(container, f"systemctl show {name} " + " ".join(f"-p {p}" for p in props))
    return dict(line.split("=", 1) for line in out.splitlines())


@pytest.fixture(scope="module")
def container() -> Iterator[str]:
    if docker("image", "inspect", IMAGE, check=False).returncode != 0:
        pytest.fail(f"the image {IMAGE} is missing: run `make setup` (scripts/setup.sh builds it)")
    name = f"hapool-sd-{uuid.uuid4().hex[:8]}"
    docker(
        "run", "-d", "--name", name, "--hostname", "lb1", "--label", "io.hapool.test=systemd",
        "--cap-add", "SYS_ADMIN", "--tmpfs", "/run", "--tmpfs", "/run/lock",
        "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
        IMAGE, "/sbin/init",
    )  # fmt: skip
    try:
        wait_for(
            "systemd is up as PID 1",
            lambda: sh(name, "systemctl is-system-running", check=False) in ("running", "degraded"),
        )
        assert sh(name, "cat /proc/1/comm") == "systemd"
        yield name
    finally:
        docker("rm", "-f", "-v", name, check=False)


@pytest.fixture(scope="module")
def converged(container: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    work = tmp_path_factory.mktemp("systemd")
    (work / "site.yml").write_text(PLAYBOOK)
    host_vars = {
        "ansible_connection": "community.docker.docker",
        "ansible_host": container,
        "ansible_python_interpreter": "/usr/bin/python3",
        "nginx_web_hostname": "web1",
        "nginx_web_port": 8081,
        "haproxy_log_target": "",
        "haproxy_stats_password_file": str(work / "secrets" / "haproxy-stats-password"),
        "haproxy_stats_bind": "127.0.0.1:8404",
        "haproxy_frontends": [{"name": "main", "bind": ["127.0.0.1:8080"], "default_backend": "app"}],
        "haproxy_backends": [
            {"name": "app", "servers": [{"name": "web1", "address": "127.0.0.1", "port": 8081}]}
        ],
        "heal_timer_period": TIMER_PERIOD,
        "heal_timer_dir": "/var/lib/hapool/heal",
        "heal_timer_project_dir": "/opt/hapool",
        "heal_timer_inventory": "/opt/hapool/inventories/local",
        "heal_timer_ansible_playbook": "/opt/hapool/bin/ansible-playbook",
        "heal_timer_python": "/usr/bin/python3",
        "heal_timer_watch": True,
        "heal_timer_watch_socket": "/run/haproxy/admin.sock",
    }
    inventory = {"all": {"hosts": {"lb1": host_vars}}}
    (work / "inventory.json").write_text(json.dumps(inventory))
    return container, work


def play(work: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(work / "inventory.json"), str(work / "site.yml")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def first_run(converged: tuple[str, Path]) -> str:
    container, work = converged
    run = play(work)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    return container


def test_the_roles_take_their_systemd_paths(first_run: str) -> None:
    c = first_run
    haproxy = unit(c, "haproxy", "ActiveState", "MainPID", "DropInPaths", "Restart", "UnitFileState")
    assert haproxy["ActiveState"] == "active" and haproxy["UnitFileState"] == "enabled", haproxy
    assert "/etc/systemd/system/haproxy.service.d/hapool.conf" in haproxy["DropInPaths"]
    assert haproxy["Restart"] == "always"
    # the unit runs the role's configuration, pid file and master socket (the drop-in's variables)
    assert sh(c, "cat /run/haproxy/haproxy.pid").split()[0] == haproxy["MainPID"]
    cmdline = sh(c, f"tr '\\0' ' ' < /proc/{haproxy['MainPID']}/cmdline")
    assert "-f /etc/haproxy/haproxy.cfg" in cmdline and "-S /run/haproxy/master.sock" in cmdline, cmdline

    nginx = unit(c, "nginx", "ActiveState", "MainPID", "DropInPaths", "UnitFileState")
    assert nginx["ActiveState"] == "active" and nginx["UnitFileState"] == "enabled", nginx
    assert "/etc/systemd/system/nginx.service.d/hapool.conf" in nginx["DropInPaths"]
    assert sh(c, "cat /run/nginx.pid") == nginx["MainPID"]
    # the role's page, through HAProxy (the unit's HAProxy serves the role's config)
    assert sh(c, "curl -s -m 5 http://127.0.0.1:8080/") == "Hello web1!"
    # the process path was not taken: no HAProxy or nginx outside the units
    for name in ("haproxy", "nginx"):
        cgroups = sh(c, f"for p in $(pgrep -x {name}); do grep name=systemd /proc/$p/cgroup; done")
        unit_cgroup = f"/system.slice/{name}.service"
        assert cgroups and all(unit_cgroup in line for line in cgroups.splitlines()), cgroups


def test_restart_always_brings_a_killed_haproxy_master_back(first_run: str) -> None:
    c = first_run
    before = unit(c, "haproxy", "MainPID", "NRestarts")
    sh(c, f"kill -9 {before['MainPID']}")

    def back() -> bool:
        now = unit(c, "haproxy", "ActiveState", "MainPID", "NRestarts")
        return now["ActiveState"] == "active" and now["MainPID"] not in ("0", before["MainPID"])

    wait_for("systemd starts HAProxy again", back, timeout=30)
    after = unit(c, "haproxy", "MainPID", "NRestarts")
    assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1
    wait_for("the page answers through HAProxy again",
             lambda: sh(c, "curl -s -m 2 http://127.0.0.1:8080/", check=False) == "Hello web1!")  # fmt: skip


def test_the_heal_timer_is_a_running_systemd_timer_whose_ticks_run(first_run: str) -> None:
    c = first_run
    timers = sh(c, "systemctl list-timers --all --no-pager")
    assert "hapool-heal.timer" in timers and "hapool-heal.service" in timers, timers
    timer = unit(c, "hapool-heal.timer", "ActiveState", "UnitFileState")
    assert timer == {"ActiveState": "active", "UnitFileState": "enabled"}, timer
    # the timer fires the service, whose wrapper runs the (stand-in) playbook
    wait_for(
        "a tick of the timer ran the playbook",
        lambda: "stand-in ansible-playbook" in sh(c, "cat /var/lib/hapool/heal/hapool-heal.log", check=False),
        timeout=6 * TIMER_PERIOD,
    )
    assert unit(c, "hapool-heal.service", "Result")["Result"] == "success"
    watcher = unit(c, "hapool-heal-watch.service", "ActiveState", "UnitFileState", "MainPID")
    assert watcher["ActiveState"] == "active" and watcher["UnitFileState"] == "enabled", watcher
    assert "hapool-heal-watch.py" in sh(c, f"tr '\\0' ' ' < /proc/{watcher['MainPID']}/cmdline")


def test_a_second_run_changes_nothing(first_run: str, converged: tuple[str, Path]) -> None:
    _, work = converged
    run = play(work)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    recap = [line for line in run.stdout.splitlines() if line.startswith("lb1 ")]
    assert recap and "changed=0" in recap[-1], run.stdout[-6000:]
