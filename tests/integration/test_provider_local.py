"""The local provider with real nginx processes on loopback.

Every test uses its own state directory (tmp_path) and destroys every instance it launched
at teardown, also when it fails. Ports are chosen by the kernel or, for the per-address mode,
on a random 127.x.y.0/28 network, so parallel suites do not collide.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import _core_path
import pytest
from ansible.module_utils.hapool.providers import (
    DESTROYED,
    RUNNING,
    STOPPED,
    LaunchSpec,
    NameReusedError,
    OrphanError,
    ProviderError,
    get_provider,
    sample_cpu_percent,
)
from ansible.module_utils.hapool.providers.local import LocalProvider, pid_alive, proc_table

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def get(url: str, timeout: float = 5) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        assert resp.status == 200
        return resp.read().decode()


def refused(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1):
            return False
    except OSError:
        return True


def random_subnet() -> str:
    rng = random.Random()
    return f"127.{rng.randint(2, 250)}.{rng.randint(0, 255)}.0/28"


def nginx_pids_of(prefix: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if prefix in cmd and pid_alive(int(entry)):
                found.append(int(entry))
    return found


@pytest.fixture
def state_root(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    # Clean up whatever a test left, also after a failure.
    provider = LocalProvider(tmp_path / "local")
    for instance in provider.list():
        provider.destroy(instance.pool, instance)
    assert provider.list() == []


@pytest.fixture
def provider(state_root: Path) -> LocalProvider:
    p = get_provider("local", state_root=state_root)
    assert isinstance(p, LocalProvider)
    return p


def test_launch_serves_its_page_then_destroy_removes_everything(provider: LocalProvider):
    inst = provider.launch("web")
    assert inst.state == RUNNING and inst.alive and inst.provider == "local" and inst.pool == "web"
    assert inst.address == "127.0.0.1" and inst.port > 0
    assert abs(inst.created - time.time()) < 30
    assert f"Hello {inst.name}!" in get(f"http://{inst.endpoint}/")

    prefix = Path(inst.extra["prefix"])
    assert (prefix / "logs" / "nginx.pid").read_text().strip() == str(inst.extra["pid"])
    meta = json.loads((prefix / "instance.json").read_text())
    assert {k: meta[k] for k in ("name", "pool", "address", "port", "created")} == {
        "name": inst.name,
        "pool": "web",
        "address": inst.address,
        "port": inst.port,
        "created": inst.created,
    }

    gone = provider.destroy("web", inst.name)
    assert gone is not None and gone.state == DESTROYED and gone.name == inst.name
    assert provider.list("web") == [] and provider.get("web", inst.name) is None
    assert not prefix.exists()
    assert refused(inst.address, inst.port)
    assert nginx_pids_of(str(prefix)) == []
    assert provider.destroy("web", inst.name) is None  # idempotent


def test_new_provider_object_and_new_process_find_the_hosts(provider: LocalProvider, state_root: Path):
    launched = sorted(
        (provider.launch("web"), provider.launch("web"), provider.launch("api")), key=lambda i: i.name
    )

    again = get_provider("local", state_root=state_root)
    assert sorted(i.name for i in again.list()) == [i.name for i in launched]
    assert {i.name for i in again.list("api")} == {i.name for i in launched if i.pool == "api"}
    assert all(i.alive for i in again.list())

    code = (
        f"{_core_path.SNIPPET}import json\n"
        "from ansible.module_utils.hapool.providers import get_provider\n"
        f"provider = get_provider('local', state_root={str(state_root)!r})\n"
        "print(json.dumps([i.to_dict() for i in provider.list()]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    listed = {i["name"]: i for i in json.loads(out)}
    assert set(listed) == {i.name for i in launched}
    for inst in launched:
        assert (listed[inst.name]["address"], listed[inst.name]["port"]) == (inst.address, inst.port)
        assert listed[inst.name]["created"] == inst.created
        assert listed[inst.name]["alive"]


def test_instances_get_distinct_endpoints_and_names(provider: LocalProvider):
    instances = [provider.launch("web") for _ in range(4)]
    assert len({i.endpoint for i in instances}) == 4
    assert len({i.name for i in instances}) == 4
    assert [i.name for i in provider.list("web")] == [
        i.name for i in sorted(instances, key=lambda i: i.created)
    ]
    bodies = {get(f"http://{i.endpoint}/") for i in instances}
    assert len(bodies) == 4  # each page names its host


def test_one_loopback_address_per_instance_on_a_fixed_port(state_root: Path):
    subnet = random_subnet()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    provider = get_provider("local", state_root=state_root, bind_network=subnet, port=port)
    a, b = provider.launch("web"), provider.launch("web")
    assert a.address != b.address and a.port == b.port == port
    assert a.address.startswith(subnet.rsplit(".", 1)[0])
    for inst in (a, b):
        assert f"Hello {inst.name}!" in get(f"http://{inst.endpoint}/")


def test_concurrent_launches_do_not_collide(state_root: Path):
    subnet = random_subnet()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results: list[object] = []

    def launch() -> None:
        try:
            p = get_provider("local", state_root=state_root, bind_network=subnet, port=port)
            results.append(p.launch("web"))
        except Exception as exc:  # reported by the assertion below
            results.append(exc)

    threads = [threading.Thread(target=launch) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not [r for r in results if isinstance(r, Exception)], results
    assert len({r.endpoint for r in results}) == 4  # type: ignore[attr-defined]


def test_a_host_whose_nginx_died_is_listed_dead_and_destroy_kills_stray_workers(provider: LocalProvider):
    inst = provider.launch("web")
    prefix = inst.extra["prefix"]
    master = inst.extra["pid"]
    os.kill(master, signal.SIGKILL)  # the master dies; its worker keeps serving
    deadline = time.time() + 5
    while pid_alive(master) and time.time() < deadline:
        time.sleep(0.05)

    (listed,) = get_provider("local", state_root=provider.state_dir.parent).list("web")
    assert listed.name == inst.name and listed.state == STOPPED and not listed.alive
    assert listed.address == inst.address  # still reported, so the healer can replace it

    workers = [p for p in os.listdir("/proc") if p.isdigit() and _holds(int(p), prefix)]
    provider.destroy("web", listed)
    assert not Path(prefix).exists()
    assert all(not pid_alive(int(w)) for w in workers)
    assert refused(inst.address, inst.port)


def _holds(pid: int, prefix: str) -> bool:
    try:
        return any(
            os.readlink(f"/proc/{pid}/fd/{fd}").startswith(prefix) for fd in os.listdir(f"/proc/{pid}/fd")
        )
    except OSError:
        return False


def test_reload_by_the_nginx_web_role_keeps_the_host_alive(provider: LocalProvider):
    """The nginx_web role rewrites <prefix>/conf/nginx.conf and reloads with the same command."""
    inst = provider.launch("web")
    prefix = Path(inst.extra["prefix"])
    (prefix / "html" / "index.html").write_text("configured by the role\n")
    conf = prefix / "conf" / "nginx.conf"
    conf.write_text(conf.read_text().replace("index index.html;", "index index.html;\n        etag off;"))
    subprocess.run([*inst.extra["nginx_command"], "-s", "reload"], check=True, capture_output=True)
    assert get(f"http://{inst.endpoint}/") == "configured by the role\n"
    (again,) = provider.list("web")
    assert again.alive and again.extra["pid"] == inst.extra["pid"]


def test_names_are_never_reused(provider: LocalProvider):
    inst = provider.launch("web", LaunchSpec(name="web-given1"))
    assert inst.name == "web-given1"
    provider.destroy("web", inst)
    with pytest.raises(NameReusedError):
        provider.launch("web", LaunchSpec(name="web-given1"))
    assert provider.list() == []


def _failing_nginx(tmp_path: Path) -> str:
    fake = tmp_path / "bin" / "nginx"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'nginx: [emerg] simulated failure' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return str(fake)


def test_nginx_that_fails_to_start_is_a_clear_error_and_leaves_nothing(
    provider: LocalProvider, tmp_path: Path
):
    broken = LocalProvider(provider.state_dir, nginx=_failing_nginx(tmp_path))
    with pytest.raises(ProviderError, match=r"did not start: .*simulated failure"):
        broken.launch("web")
    assert broken.list() == []
    assert [p.name for p in (provider.state_dir / "pools" / "web").iterdir()] == ["names"]


def test_a_failed_launch_whose_clean_up_fails_too_names_what_is_left(
    provider: LocalProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The one case where a launch leaves something: its clean-up failed as well (here the
    file system refuses to remove the prefix). The error names the leftover, which is listed
    (not alive) and goes with destroy."""
    broken = LocalProvider(provider.state_dir, nginx=_failing_nginx(tmp_path))

    def refuse(path: object, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied (simulated)", str(path))

    with monkeypatch.context() as patch:
        patch.setattr(shutil, "rmtree", refuse)
        with pytest.raises(OrphanError, match=r"simulated failure.*clean-up failed too") as info:
            broken.launch("web")
    orphan = Path(info.value.orphan)
    assert orphan.is_dir() and orphan.parent == provider.state_dir / "pools" / "web", orphan
    assert "pool_instance module (state=absent)" in str(info.value)
    (listed,) = provider.list("web")
    assert listed.name == orphan.name and not listed.alive
    assert provider.destroy("web", listed.name) is not None
    assert not orphan.exists() and provider.list("web") == []


def test_a_busy_fixed_port_is_a_clear_error_and_leaves_nothing(provider: LocalProvider):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        blocked = LocalProvider(provider.state_dir, port=port)
        with pytest.raises(
            ProviderError, match=re.escape(f"no free address in 127.0.0.1/32 for port {port}")
        ):
            blocked.launch("web")
    assert blocked.list() == []


# --- CPU usage ----------------------------------------------------------------------------------


def hammer(address: str, port: int, until: float, served: list[int]) -> None:
    """Keep nginx busy until ``until``: keep-alive connections, 50 pipelined GETs per write, so
    the client spends little CPU per request and nginx a lot. Bounded by ``until`` and timeouts."""
    batch = 50
    request = b"GET / HTTP/1.1\r\nHost: cpu\r\n\r\n" * batch
    while time.monotonic() < until:
        try:
            with socket.create_connection((address, port), timeout=2) as conn:
                conn.settimeout(2)
                for _ in range(100):
                    if time.monotonic() >= until:
                        break
                    conn.sendall(request)
                    data = b""
                    while data.count(b"HTTP/1.1 200") < batch:
                        chunk = conn.recv(1 << 16)
                        if not chunk:
                            raise OSError("closed by nginx")
                        data += chunk
                    served.append(batch)
        except OSError:
            pass


def test_cpu_percent_of_an_idle_and_a_busy_host(provider: LocalProvider):
    idle, busy = provider.launch("web"), provider.launch("web")
    first = provider.cpu_seconds("web", [idle.name, busy.name, "web-000000"])
    assert first["web-000000"] is None
    assert all(isinstance(first[i.name], float) and first[i.name] >= 0 for i in (idle, busy))

    served: list[int] = []
    until = time.monotonic() + 4.0
    threads = [
        threading.Thread(target=hammer, args=(busy.address, busy.port, until, served)) for _ in range(3)
    ]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)  # load running
        percent = sample_cpu_percent(provider, "web", [idle.name, busy.name], 2.0)
    finally:
        for t in threads:
            t.join(10)
    assert not any(t.is_alive() for t in threads)
    assert sum(served) > 1000, "the load generator did not get answers"
    assert percent[idle.name] is not None and percent[idle.name] < 5.0, percent
    assert percent[busy.name] is not None and percent[busy.name] > max(20.0, percent[idle.name] + 15), percent
    assert percent[busy.name] < 100.0 * (os.cpu_count() or 1) + 10  # one worker process: at most ~a core

    # the counter only grows, and a destroyed host cannot be read any more
    later = provider.cpu_seconds("web", [busy.name])
    assert later[busy.name] is not None and later[busy.name] >= first[busy.name]  # type: ignore[operator]
    provider.destroy("web", busy)
    assert provider.cpu_seconds("web", [busy.name]) == {busy.name: None}
    assert sample_cpu_percent(provider, "web", [busy.name], 5.0) == {busy.name: None}  # no wait


def test_cpu_counter_survives_a_reload(provider: LocalProvider):
    """A reload replaces the workers; their time moves to the master's reaped-children counter,
    so the host's counter does not drop."""
    inst = provider.launch("web")
    master = inst.extra["pid"]

    def workers() -> set[int]:
        return {s.pid for s in proc_table().values() if s.ppid == master}  # zombies included

    served: list[int] = []
    hammer(inst.address, inst.port, time.monotonic() + 1.0, served)
    before = provider.cpu_seconds("web", [inst.name])[inst.name]
    assert before is not None and before > 0
    old_workers = workers()
    assert old_workers
    subprocess.run([*inst.extra["nginx_command"], "-s", "reload"], check=True, capture_output=True)
    deadline = time.monotonic() + 10
    while workers() & old_workers and time.monotonic() < deadline:  # until reaped by the master
        time.sleep(0.05)
    assert not workers() & old_workers and workers()
    after = provider.cpu_seconds("web", [inst.name])[inst.name]
    assert after is not None and after >= before
