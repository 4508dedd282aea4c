"""The collection hapool.pool as a user gets it: built by scripts/build-collection.py (what
``make collection`` runs), installed with ``ansible-galaxy collection install`` into a temporary
collections path (offline, no dependency fetched), and used from a directory outside the
repository, with an ansible.cfg that knows nothing of the repository's library/, module_utils
or roles: the modules, the roles and the inventory plugin by their FQCNs, and ansible-doc.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from ansible.module_utils.hapool.haproxy import RuntimeClient
from ansible.module_utils.hapool.providers import get_provider
from helpers.procs import free_port, start_haproxy, start_nginx, wait_until

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@dataclass
class Installed:
    tarball: Path
    collections: Path  # the collections path (ANSIBLE_COLLECTIONS_PATH)
    work: Path  # a directory outside the repository with its own ansible.cfg

    @property
    def path(self) -> Path:
        return self.collections / "ansible_collections" / "hapool" / "pool"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
        return {
            **env,
            "ANSIBLE_CONFIG": str(self.work / "ansible.cfg"),
            "ANSIBLE_COLLECTIONS_PATH": str(self.collections),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        }

    def run(self, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / argv[0]), *argv[1:]],
            cwd=self.work,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def playbook(self, name: str, text: str, *extra: str) -> subprocess.CompletedProcess[str]:
        path = self.work / name
        path.write_text(textwrap.dedent(text))
        return self.run("ansible-playbook", str(path), *extra)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    base = tmp_path_factory.mktemp("collection")
    assert not base.resolve().is_relative_to(ROOT)
    built = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build-collection.py"), "--dist", str(base / "dist")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    tarball = Path(built.stdout.strip().splitlines()[-1])
    assert tarball.name == "hapool-pool-0.1.0.tar.gz" and tarball.is_file()

    work = base / "work"
    work.mkdir()
    # Nothing of the repository: no library, module_utils, roles_path or inventory plugins.
    (work / "ansible.cfg").write_text(
        textwrap.dedent(
            f"""\
            [defaults]
            collections_path = {base / "collections"}
            local_tmp = {work / ".ansible-tmp"}
            retry_files_enabled = False
            interpreter_python = auto_silent
            """
        )
    )
    inst = Installed(tarball=tarball, collections=base / "collections", work=work)
    done = inst.run(
        "ansible-galaxy", "collection", "install", str(tarball), "-p", str(inst.collections),
        "--offline", "--no-deps",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert (inst.path / "MANIFEST.json").is_file()
    yield inst


def test_the_tarball_holds_the_collection_layout_and_no_repository_import(installed: Installed) -> None:
    path = installed.path
    modules = {p.name for p in (path / "plugins" / "modules").glob("*.py")}
    assert modules == {p.name for p in (ROOT / "library").glob("*.py")}
    assert (path / "plugins" / "module_utils" / "hapool" / "haproxy.py").is_file()
    assert (path / "plugins" / "inventory" / "hapool.py").is_file()
    assert (path / "meta" / "runtime.yml").read_text().count("requires_ansible") == 1
    roles = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "tasks").is_dir())
    assert sorted(p.name for p in (path / "roles").iterdir()) == roles
    assert {"haproxy", "heal_timer", "nginx_web"} <= set(roles)
    assert not list((path / "roles").rglob("molecule"))
    left = [str(p) for p in path.rglob("*.py") if "ansible.module_utils.hapool" in p.read_text()]
    assert left == []


def test_ansible_doc_renders_from_the_installed_collection(installed: Installed) -> None:
    doc = installed.run("ansible-doc", "hapool.pool.haproxy_server")
    assert doc.returncode == 0, doc.stderr
    assert f"hapool.pool.haproxy_server ({installed.path}/plugins/modules/haproxy_server.py)" in doc.stdout
    assert "socket" in doc.stdout and "backend" in doc.stdout
    # options that come from the collection's doc fragment hapool.pool.hapool_provider
    info = installed.run("ansible-doc", "hapool.pool.pool_instance_info")
    assert info.returncode == 0, info.stderr
    assert "state_dir" in info.stdout and "provider" in info.stdout
    inventory = installed.run("ansible-doc", "-t", "inventory", "hapool.pool.hapool")
    assert inventory.returncode == 0, inventory.stderr
    assert "hapool.pool.hapool" in inventory.stdout
    # and nothing leaks from the repository: the short name is unknown out here
    short = installed.run("ansible-doc", "haproxy_server")
    assert short.stdout == "" and "haproxy_server was not found" in short.stderr


def test_a_role_of_the_collection_finds_the_collections_modules_by_short_name(installed: Installed) -> None:
    """Why the build leaves the roles' module names alone: a role of a collection searches its
    own collection first. A play outside the collection does not know the short name."""
    probe = installed.path / "roles" / "haproxy" / "tasks" / "probe_short_name.yml"
    probe.write_text(
        "---\n- name: A module of the collection by its short name\n  pool_validate:\n    pools: []\n"
    )
    try:
        inside = installed.playbook(
            "probe-role.yml",
            """\
            - name: Short name inside the collection's role
              hosts: localhost
              gather_facts: false
              tasks:
                - name: Include the probe
                  ansible.builtin.include_role:
                    name: hapool.pool.haproxy
                    tasks_from: probe_short_name
            """,
        )
        assert inside.returncode == 0, inside.stdout + inside.stderr
        assert "TASK [hapool.pool.haproxy : A module of the collection by its short name]" in inside.stdout
        outside = installed.playbook(
            "probe-play.yml",
            """\
            - name: Short name in a play of the user's repository
              hosts: localhost
              gather_facts: false
              tasks:
                - name: Not found
                  pool_validate:
                    pools: []
            """,
        )
        assert outside.returncode != 0
        assert "pool_validate" in outside.stdout + outside.stderr
    finally:
        probe.unlink()


def test_the_old_lock_name_redirects_to_pool_lock(installed: Installed, tmp_path: Path) -> None:
    """heal_lock was renamed pool_lock (the lock heal, scale and site share): a user's playbook
    that still says hapool.pool.heal_lock takes the same lock and is told the new name."""
    lock = tmp_path / "pool.lock"
    result = installed.playbook(
        "old-lock-name.yml",
        f"""\
        - name: The lock by its old name
          hosts: localhost
          gather_facts: false
          tasks:
            - name: Take it
              hapool.pool.heal_lock:
                path: {lock}
                owner: old-name
              register: taken
            - name: It was taken
              ansible.builtin.assert:
                that: taken.acquired
        """,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hapool.pool.pool_lock" in result.stderr, result.stderr
    assert "old-name" in lock.read_text()


def test_modules_by_fqcn_change_a_real_haproxy(installed: Installed, tmp_path: Path) -> None:
    web1 = start_nginx(tmp_path / "web1", "web1")
    web2 = start_nginx(tmp_path / "web2", "web2")
    lb = None
    try:
        lb = start_haproxy(tmp_path / "lb", {"app": [f"server web1 {web1.address} check"]})
        out = installed.work / "modules.json"
        proc = installed.playbook(
            "modules.yml",
            f"""\
            - name: hapool.pool modules against a real HAProxy
              hosts: localhost
              gather_facts: false
              tasks:
                - name: Read the backend
                  hapool.pool.haproxy_stats_info:
                    socket: {lb.admin_socket}
                    backend: app
                  register: before
                - name: Add web2
                  hapool.pool.haproxy_server:
                    socket: {lb.admin_socket}
                    backend: app
                    name: web2
                    address: {web2.host}
                    port: {web2.port}
                    state: ready
                  register: added
                - name: Read it again
                  hapool.pool.haproxy_stats_info:
                    socket: {lb.admin_socket}
                    backend: app
                  register: after
                - name: Keep the results
                  ansible.builtin.copy:
                    content: "{{{{ {{'before': before, 'added': added, 'after': after}} | to_json }}}}"
                    dest: {out}
                    mode: "0600"
            """,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        results = json.loads(out.read_text())
        assert results["before"]["backends"]["app"]["servers_total"] == 1
        assert results["added"]["changed"] is True
        assert results["after"]["backends"]["app"]["servers_total"] == 2
        assert sorted(s["name"] for s in results["after"]["backends"]["app"]["servers"]) == ["web1", "web2"]
        # HAProxy itself, read without Ansible
        server = RuntimeClient(str(lb.admin_socket), timeout=5).get_server("app", "web2")
        assert server is not None and (server.address, server.port) == (web2.host, web2.port)
    finally:
        if lb is not None:
            lb.stop()
        web2.stop()
        web1.stop()


def test_the_haproxy_role_by_fqcn_renders_runs_and_stops_a_private_haproxy(
    installed: Installed, tmp_path: Path
) -> None:
    web = start_nginx(tmp_path / "web1", "web1")
    state = tmp_path / "lb"
    front, stats = free_port(), free_port()
    role_vars = {
        "haproxy_install": False,
        "haproxy_service_manager": "process",
        "haproxy_config_dir": str(state),
        "haproxy_run_dir": str(state / "run"),
        "haproxy_state_file": str(state / "server-state"),
        "haproxy_chroot": "",
        "haproxy_user": "",
        "haproxy_group": "",
        "haproxy_socket_group": str(os.getgid()),
        "haproxy_log_target": "",
        "haproxy_global_maxconn": 0,
        "haproxy_stats_password_file": str(state / "secrets" / "stats-password"),
        "haproxy_stats_bind": f"127.0.0.1:{stats}",
        "haproxy_frontends": [{"name": "main", "bind": f"127.0.0.1:{front}", "default_backend": "app"}],
        "haproxy_backends": [
            {"name": "app", "servers": [{"name": "web1", "address": web.host, "port": web.port}]}
        ],
    }
    (installed.work / "role-vars.json").write_text(json.dumps(role_vars))
    play = """\
        - name: The haproxy role of hapool.pool, entry point {entry}
          hosts: localhost
          gather_facts: false
          tasks:
            - name: Run the role
              ansible.builtin.include_role:
                name: hapool.pool.haproxy
                tasks_from: {entry}
        """
    try:
        proc = installed.playbook("role.yml", play.format(entry="main"), "-e", "@role-vars.json")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "TASK [hapool.pool.haproxy : Write haproxy.cfg" in proc.stdout
        assert "server web1" in (state / "haproxy.cfg").read_text()
        wait_until(
            lambda: RuntimeClient(str(state / "run" / "admin.sock"), timeout=5).get_server("app", "web1")
            is not None,
            10,
            "web1 in the role's haproxy",
        )

        def served() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{front}/", timeout=2) as resp:
                    return "web1" in resp.read().decode()
            except OSError:
                return False

        wait_until(served, 15, "web1 served through the role's haproxy")
    finally:
        stop = installed.playbook("stop.yml", play.format(entry="stop"), "-e", "@role-vars.json")
        web.stop()
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert not (state / "run" / "haproxy.pid").exists()
    wait_until(lambda: not _answers(state), 15, "the role's haproxy stopped")


def _answers(state: Path) -> bool:
    try:
        RuntimeClient(str(state / "run" / "admin.sock"), timeout=2).show_stat()
    except Exception:  # any failure (no socket, refused, timeout): nothing answers any more
        return False
    return True


def test_the_inventory_plugin_by_fqcn_lists_a_local_host(installed: Installed, tmp_path: Path) -> None:
    state = tmp_path / "state"
    provider = get_provider("local", state_root=state)
    inst = provider.launch("web")
    try:
        config = installed.work / "pools.hapool.yml"
        config.write_text(f"plugin: hapool.pool.hapool\nproviders: [local]\nstate_dir: {state}\n")
        proc = installed.run("ansible-inventory", "-i", str(config), "--list")
        assert proc.returncode == 0, proc.stderr
        data = json.loads(proc.stdout)
        # (ansible-inventory exits 0 when no plugin takes the file: the reason is on stderr)
        assert inst.name in data.get("web", {}).get("hosts", []), proc.stdout + proc.stderr
        hostvars = data["_meta"]["hostvars"][inst.name]
        assert hostvars["hapool_provider"] in ("local", {"__ansible_unsafe": "local"})
    finally:
        provider.destroy(inst.pool, inst)
