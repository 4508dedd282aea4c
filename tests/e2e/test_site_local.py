"""playbooks/site.yml and playbooks/teardown.yml against the local inventory.

Two local nginx web hosts are declared in a temporary inventory next to inventories/local;
everything the playbooks write goes to a temporary state directory and every port is a free
one (extra vars), so this runs next to `make demo` and other tests. Requests through the
balancer must reach both web hosts; a second run must change nothing; teardown must stop
exactly the processes site.yml started.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.procs import free_port
from helpers.site import recap

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

pytestmark = [pytest.mark.e2e, pytest.mark.slow]




def pid_alive(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text().split()[0])
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ValueError, IndexError):
        return False
    return state != "Z"


class Site:
    def __init__(self, tmp_path: Path) -> None:
        self.state = tmp_path / "state"
        self.frontend = free_port()
        self.stats = free_port()
        self.webs = {"web1": free_port(), "web2": free_port()}
        self.inventory = tmp_path / "webs.yml"
        self.inventory.write_text(
            json.dumps(
                {
                    "all": {
                        "children": {
                            "web": {
                                "hosts": {
                                    name: {"hapool_address": "127.0.0.1", "hapool_port": port}
                                    for name, port in self.webs.items()
                                }
                            }
                        }
                    }
                }
            )
        )
        self.state_root = tmp_path / "root"
        self.extra_vars = json.dumps(
            {
                # A static pool: only the hosts of this inventory, no provider launches any.
                "hapool_pools": [{"name": "web", "balance": "roundrobin", "port": 18081,
                                  "check": {"path": "/health", "inter": "1s", "rise": 1, "fall": 2}}],
                "hapool_state_dir": str(self.state),
                "hapool_frontend_port": self.frontend,
                "hapool_stats_port": self.stats,
            }
        )

    @property
    def pid_files(self) -> list[Path]:
        return [self.state / "haproxy" / "run" / "haproxy.pid"] + [
            self.state / "web" / name / "run" / "nginx.pid" for name in self.webs
        ]

    def play(self, playbook: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                str(BIN / "ansible-playbook"),
                "-i",
                str(ROOT / "inventories" / "local"),
                "-i",
                str(self.inventory),
                str(ROOT / "playbooks" / playbook),
                "-e",
                self.extra_vars,
            ],
            cwd=ROOT,
            env={
                **os.environ,
                "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
                "ANSIBLE_NOCOLOR": "1",
                "HAPOOL_STATE_DIR": str(self.state_root),
                "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            },
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def get(self, port: int, path: str = "/", auth: tuple[str, str] | None = None) -> tuple[int, str]:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
        if auth:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(errors="replace")


@pytest.fixture
def site() -> Iterator[Site]:
    # A short root: HAProxy refuses a stats socket path over 97 characters, and pytest's tmp_path
    # is long (under pytest-xdist it gains a popen-gwN/ level).
    root = Path(tempfile.mkdtemp(prefix="hp-site-", dir="/tmp"))
    site = Site(root)
    yield site
    # teardown.yml is under test too; whatever it left running is stopped here.
    site.play("teardown.yml")
    for pid_file in site.pid_files:
        if pid_alive(pid_file):
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
    shutil.rmtree(root, ignore_errors=True)




def test_site_registers_local_web_hosts_and_teardown_stops_them(site: Site) -> None:
    first = site.play("site.yml")
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]

    answers = [site.get(site.frontend) for _ in range(6)]
    assert sorted({body.strip() for _, body in answers}) == ["Hello web1!", "Hello web2!"], answers

    status, body = site.get(site.frontend, "/hello.json")
    assert status == 200
    assert json.loads(body)["address"] == "127.0.0.1"

    password = (site.state / "secrets" / "haproxy-stats-password").read_text().strip()
    assert (site.state / "secrets" / "haproxy-stats-password").stat().st_mode & 0o777 == 0o600
    assert site.get(site.stats, "/stats")[0] == 401
    assert site.get(site.stats, "/stats", ("admin", password))[0] == 200

    # HAProxy's Prometheus exporter on the stats listener (loopback), no credentials needed.
    status, metrics = site.get(site.stats, "/metrics")
    assert status == 200, metrics[:500]
    assert 'haproxy_backend_active_servers{proxy="web"} 2' in metrics.splitlines(), metrics[:2000]
    for name in site.webs:
        assert f'haproxy_server_status{{proxy="web",server="{name}",state="UP"}} 1' in metrics.splitlines()
        assert f'haproxy_server_check_failures_total{{proxy="web",server="{name}"}}' in metrics

    admin = site.state / "haproxy" / "run" / "admin.sock"
    assert admin.stat().st_mode & 0o777 == 0o660
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(admin))
        sock.sendall(b"show stat\n")
        stat = b""
        while chunk := sock.recv(65536):
            stat += chunk
    assert b"web,web1," in stat and b"web,web2," in stat

    second = site.play("site.yml")
    assert second.returncode == 0, second.stdout[-4000:]
    counters = recap(second.stdout)
    assert set(counters) == {"localhost", "web1", "web2"}
    assert all(c["changed"] == 0 for c in counters.values()), counters

    assert all(pid_alive(p) for p in site.pid_files)
    down = site.play("teardown.yml")
    assert down.returncode == 0, down.stdout[-4000:]
    assert not any(pid_alive(p) for p in site.pid_files)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        *[({"haproxy_prometheus_path": path}, f"haproxy_prometheus_path ({path}) must be a URL path")
          for path in ["metrics", "/stats", "/a b", "/m{x}"]],
        # No socket may give others any access (the admin socket controls the balancer).
        ({"haproxy_stats_socket_mode": "666"}, "haproxy_stats_socket_mode (666) and"),
        ({"haproxy_stats_socket_mode": "0662"}, "haproxy_stats_socket_mode (0662) and"),
        ({"haproxy_master_socket_mode": "604"}, "haproxy_master_socket_mode (604) must give others"),
        *[({"haproxy_stats_user": user}, "must be 1 to 64 letters, digits")
          for user in ["ad min", "a'b", "x\ny", ""]],
    ],
)
def test_bad_role_settings_are_refused_before_anything_is_written(tmp_path: Path, extra: dict[str, str],
                                                                   message: str) -> None:
    playbook = tmp_path / "model.yml"
    playbook.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "Model", "ansible.builtin.include_role": {"name": "haproxy", "tasks_from": "model"}}]}]))
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook),
         "-e", json.dumps(extra)],
        cwd=ROOT, env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"},
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert message in output, output[-2000:]


def test_a_reload_that_fails_is_reported_and_retried_by_the_next_run(site: Site) -> None:
    """A configuration that passes ``haproxy -c`` but cannot be loaded (its frontend port is
    taken by another process): the play fails with the role's explanation, the running worker
    goes on serving the previous configuration, and the next run, with nothing new to write,
    sees that the master never loaded it and reloads again."""
    first = site.play("site.yml")
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    hello = {"Hello web1!", "Hello web2!"}
    old_port = site.frontend
    with socket.socket() as squatter:  # no SO_REUSEPORT: HAProxy's bind fails
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        new_port = int(squatter.getsockname()[1])
        extra = json.loads(site.extra_vars)
        extra["hapool_frontend_port"] = new_port
        site.extra_vars, site.frontend = json.dumps(extra), new_port

        failed = site.play("site.yml")
        assert failed.returncode != 0, failed.stdout[-4000:]
        assert "could not load the new configuration" in failed.stdout, failed.stdout[-4000:]
        # the run wrote the configuration: its own reload is the one that failed
        assert "an earlier reload failed" not in " ".join(failed.stdout.split())
        assert site.get(old_port)[1].strip() in hello  # the previous worker still serves

    retried = site.play("site.yml")
    assert retried.returncode == 0, retried.stdout[-4000:]
    # (the YAML callback folds the message over lines)
    assert "an earlier reload failed" in " ".join(retried.stdout.split()), retried.stdout[-4000:]
    assert site.get(new_port)[1].strip() in hello
