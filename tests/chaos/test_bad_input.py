"""Bad input (issue #8): each one is a clear error that names the problem, and nothing is
destroyed or changed: the provider's hosts and HAProxy's servers are the same afterwards.

Module level (run the way Ansible runs a module) against a real HAProxy and two real local
hosts (nginx processes), like tests/integration/test_scale_plan.py; plus site.yml's own pool
validation. Fast: a few seconds per case.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.hapool.providers import get_provider
from ansible.module_utils.hapool.providers.local import LocalProvider
from helpers.chaos import garbage_socket
from helpers.modules import run_module
from helpers.procs import HAProxy, start_haproxy, unix_cli, wait_until
from helpers.site import Deployment

pytestmark = pytest.mark.chaos

GARBAGE = b"\x00\xffthis is not HAProxy\n# not,a,stat,header\n1,2,3\n\n"


@dataclass
class Scene:
    provider: LocalProvider
    lb: HAProxy
    state: Path

    @property
    def socket(self) -> str:
        return str(self.lb.admin_socket)

    @property
    def user_socket(self) -> str:
        return str(self.lb.directory / "user.sock")

    def snapshot(self) -> tuple[list[tuple[str, bool]], list[tuple[str, ...]]]:
        """The hosts (name, alive) and HAProxy's servers (name, address, admin state, weight)."""
        hosts = sorted((i.name, i.alive) for i in self.provider.list("web"))
        state = unix_cli(self.lb.admin_socket, "show servers state web").splitlines()[2:]
        servers = sorted((c[3], c[4], c[6], c[7]) for c in (line.split() for line in state) if len(c) > 7)
        return hosts, servers


@pytest.fixture(scope="module")
def scene() -> Iterator[Scene]:
    state = Path(tempfile.mkdtemp(prefix="hp-ch-", dir="/tmp"))  # short: socket paths <= 97 chars
    provider = get_provider("local", state_root=state)
    assert isinstance(provider, LocalProvider)
    lb = None
    try:
        hosts = [provider.launch("web") for _ in range(2)]
        lines = ["option httpchk GET /index.html"] + [f"server {h.name} {h.endpoint} check" for h in hosts]
        lb = start_haproxy(state / "lb", {"web": lines},
                           extra_sockets=["{dir}/user.sock mode 600 level user"])
        result = Scene(provider, lb, state)
        wait_until(lambda: all(s[2] == "0" for s in result.snapshot()[1]) and len(result.snapshot()[1]) == 2,
                   15, "both servers ready")
        yield result
    finally:
        if lb is not None:
            lb.stop()
        for inst in provider.list("web"):
            provider.destroy("web", inst)
        shutil.rmtree(state, ignore_errors=True)


def unchanged(
    scene: Scene, module: str, args: dict[str, Any], error: str | None, *needles: str
) -> dict[str, Any]:
    """Run ``module``; it must fail with a message naming every needle (and the error class
    ``error`` when the module returns one: heal_plan, scale_plan and pool_instance_info do,
    haproxy_server and haproxy_stats_info do not), and leave the hosts and servers as they were."""
    before = scene.snapshot()
    result = run_module(module, args)
    assert result.get("failed"), result
    if error is not None:
        assert result.get("error") == error, result
    for needle in needles:
        assert needle in result["msg"], (needle, result["msg"])
    assert scene.snapshot() == before
    assert all(alive for _, alive in before[0])
    return result


POOL = {"name": "web", "min": 1, "max": 4, "desired": 2}


def plans(scene: Scene, socket: str, **over: Any) -> list[tuple[str, dict[str, Any]]]:
    """heal_plan and scale_plan with the same inputs."""
    base = {"pool": POOL, "socket": socket, "provider": "local", "state_dir": str(scene.state), **over}
    return [("heal_plan", base), ("scale_plan", base)]


def test_a_socket_that_answers_garbage(scene: Scene) -> None:
    path = scene.state / "garbage.sock"
    with garbage_socket(path, GARBAGE) as received:
        unchanged(scene, "haproxy_stats_info", {"socket": str(path)}, None, "show stat", "header")
        for module, args in plans(scene, str(path)):
            unchanged(scene, module, args, "ParseError", "show stat")
        # haproxy_server asks the socket's level first: the garbage stops it before any change
        unchanged(scene, "haproxy_server", {"socket": str(path), "backend": "web",
                                            "name": scene.snapshot()[1][0][0], "state": "maint"},
                  None, str(path), "'admin' is needed")
    sent = {line.strip() for line in received}
    assert sent and all(line.startswith(b"show ") for line in sent), sent  # only reads were sent


def test_a_missing_socket(scene: Scene) -> None:
    missing = str(scene.state / "nowhere" / "admin.sock")
    unchanged(scene, "haproxy_stats_info", {"socket": missing}, None, missing)
    server = scene.snapshot()[1][0][0]
    unchanged(scene, "haproxy_server",
              {"socket": missing, "backend": "web", "name": server, "state": "absent"}, None, missing)
    for module, args in plans(scene, missing):
        unchanged(scene, module, args, "SocketNotFoundError", missing)


def test_a_socket_without_admin_level(scene: Scene) -> None:
    server = scene.snapshot()[1][0][0]
    for state in ("maint", "absent"):
        unchanged(scene, "haproxy_server", {"socket": scene.user_socket, "backend": "web", "name": server,
                                            "state": state}, None, "'admin' is needed")


def test_a_garbage_metric_file(scene: Scene) -> None:
    metric = scene.state / "web.desired"
    metric.write_text("\x00\x01 lots of hosts\n")
    pool = {**POOL, "scale": {"policies": [{"type": "file", "path": str(metric)}]}}
    unchanged(scene, "scale_plan", {"pool": pool, "socket": scene.socket, "state_dir": str(scene.state)},
              "MetricFileError", str(metric), "expected a whole number")


def test_min_above_max(scene: Scene, tmp_path: Path) -> None:
    bad = {"name": "web", "min": 5, "max": 2, "desired": 3}
    unchanged(scene, "scale_plan", {"pool": bad, "socket": scene.socket, "state_dir": str(scene.state)},
              "InvalidArgumentError", "min <= desired <= max")
    # site.yml validates its pools before it launches or renders anything
    dep = Deployment(tmp_path, "local", [{**bad, "provider": "local", "port": 80}])
    try:
        run = dep.play("site.yml")
        assert run.returncode != 0
        assert re.search(r"min.*max|max.*min", run.stdout), run.stdout[-3000:]
        assert "web" in run.stdout
        left = [p for p in dep.root.rglob("*") if p.is_file()]
        assert not (dep.root / "local" / "haproxy" / "haproxy.cfg").exists(), left
        with get_provider("local", state_root=str(dep.root)) as prov:
            assert prov.list() == []
    finally:
        dep.remove_state()


def test_hostile_names(scene: Scene) -> None:
    """Nothing is sent for a name that could inject a second runtime command or leave the
    backend: a newline, ``;``, a space, a ``/`` or ``..``."""
    host = scene.provider.list("web")[0]
    address, port = host.endpoint.rsplit(":", 1)
    for name in ("web1;shutdown sessions server web/x", "x\nshow stat", "a b", "../etc", "web/other"):
        unchanged(scene, "haproxy_server", {"socket": scene.socket, "backend": "web", "name": name,
                                            "address": address, "port": int(port), "state": "present"},
                  None, "name")
    server = scene.snapshot()[1][0][0]
    unchanged(scene, "haproxy_server", {"socket": scene.socket, "backend": "web;disable server web/" + server,
                                        "name": server, "state": "maint"}, None, "backend")


def test_an_unreachable_provider(scene: Scene) -> None:
    """The docker provider on an engine that does not answer: a socket that does not exist,
    a TCP port that refuses."""
    remote = {"provider": "docker", "docker_host": "unix:///nonexistent.sock", "state_dir": str(scene.state)}
    unchanged(scene, "pool_instance_info", {"pool": "web", **remote}, "ProviderUnavailableError",
              "unix:///nonexistent.sock")
    for module in ("heal_plan", "scale_plan"):
        unchanged(scene, module, {"pool": POOL, "socket": scene.socket, **remote},
                  "ProviderUnavailableError", "unix:///nonexistent.sock")
    unchanged(scene, "pool_instance_info", {**remote, "pool": "web", "docker_host": "tcp://127.0.0.1:1"},
              "ProviderUnavailableError", "tcp://127.0.0.1:1")
