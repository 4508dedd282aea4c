"""Local provider, without starting nginx: addresses, config, liveness, on-disk listing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from ansible.module_utils.hapool.providers import BROKEN, STOPPED, ProviderError, ProviderUnavailableError
from ansible.module_utils.hapool.providers.local import (
    LocalProvider,
    allocate_address,
    pid_alive,
    read_pid,
    render_index,
    render_nginx_conf,
)


def binder_for(busy: set[tuple[str, int]], next_port: int = 40000):
    """A fake bind(): fixed ports are busy if listed; port 0 hands out increasing ports."""
    counter = iter(range(next_port, next_port + 1000))

    def bind(address: str, port: int) -> int | None:
        if port == 0:
            return next(counter)
        return None if (address, port) in busy else port

    return bind


def test_default_allocation_is_127_0_0_1_with_a_kernel_port():
    assert allocate_address("127.0.0.1/32", 0, set(), binder=binder_for(set())) == ("127.0.0.1", 40000)


def test_subnet_allocation_gives_each_instance_its_own_address():
    used = {("127.0.1.1", 80), ("127.0.1.2", 80)}
    assert allocate_address("127.0.1.0/24", 80, used, binder=binder_for(set())) == ("127.0.1.3", 80)


def test_subnet_allocation_skips_pairs_bound_by_someone_else_and_tried_ones():
    bind = binder_for({("127.0.1.1", 80)})
    assert allocate_address("127.0.1.0/29", 80, set(), avoid={("127.0.1.2", 80)}, binder=bind) == (
        "127.0.1.3",
        80,
    )


def test_free_ports_reuse_addresses_once_every_address_is_used():
    used = {("127.0.1.1", 1), ("127.0.1.2", 2)}
    address, port = allocate_address("127.0.1.0/30", 0, used, binder=binder_for(set()))
    assert address == "127.0.1.1" and port == 40000


def test_allocation_fails_clearly_when_full():
    used = {("127.0.1.1", 80), ("127.0.1.2", 80)}
    with pytest.raises(ProviderError, match=r"no free address in 127.0.1.0/30 for port 80"):
        allocate_address("127.0.1.0/30", 80, used, binder=binder_for(set()))


@pytest.mark.parametrize("network", ["10.0.0.0/24", "::1/128", "not-a-network"])
def test_allocation_refuses_non_loopback_networks(network):
    with pytest.raises(ProviderError, match="bind_network"):
        allocate_address(network, 0, set())


def test_real_bind_on_loopback_gives_a_free_port():
    address, port = allocate_address("127.0.0.1/32", 0, set())
    assert address == "127.0.0.1" and 0 < port < 65536


def test_nginx_conf_keeps_the_pid_file_in_the_prefix_and_listens_where_told():
    conf = render_nginx_conf(
        name="web-1", pool="web", prefix="/p", address="127.0.1.5", port=8081, user="root"
    )
    assert "pid logs/nginx.pid;" in conf
    assert "listen 127.0.1.5:8081;" in conf
    assert conf.startswith("# nginx.conf of the hapool local host web-1")
    assert "user root;" in conf
    assert "user " not in render_nginx_conf(
        name="w", pool="p", prefix="/p", address="127.0.0.1", port=1, user=None
    ).replace("# nginx.conf", "")


def test_nginx_conf_is_valid_for_the_real_nginx(tmp_path):
    prefix = tmp_path / "p"
    for sub in ("conf", "logs", "html", "tmp"):
        (prefix / sub).mkdir(parents=True)
    conf = prefix / "conf" / "nginx.conf"
    conf.write_text(
        render_nginx_conf(name="w", pool="p", prefix=str(prefix), address="127.0.0.1", port=1, user=None)
    )
    proc = subprocess.run(
        ["nginx", "-t", "-p", f"{prefix}/", "-c", str(conf)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr


def test_index_names_the_instance():
    assert "Hello web-1!" in render_index(name="web-1", pool="web", address="127.0.0.1", port=1)


def test_pid_alive_for_this_process_and_with_a_marker():
    assert pid_alive(os.getpid())
    assert pid_alive(os.getpid(), marker="python")
    assert not pid_alive(os.getpid(), marker="no-such-marker-xyz")


def test_pid_alive_false_for_a_finished_process():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not pid_alive(proc.pid)


def test_pid_alive_false_for_a_zombie():
    """PID 1 may not reap nginx daemons: a zombie is dead, not alive."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        for _ in range(200):  # exited but not reaped by us yet: a zombie
            with open(f"/proc/{proc.pid}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            time.sleep(0.01)
        assert not pid_alive(proc.pid)
    finally:
        proc.wait()


def test_read_pid(tmp_path):
    assert read_pid(tmp_path / "none") is None
    (tmp_path / "pid").write_text("123\n")
    assert read_pid(tmp_path / "pid") == 123
    (tmp_path / "bad").write_text("x")
    assert read_pid(tmp_path / "bad") is None


def test_listing_reads_state_from_disk_and_reports_dead_and_broken_hosts(tmp_path):
    provider = LocalProvider(tmp_path)
    pool_dir = tmp_path / "pools" / "web"
    dead = pool_dir / "web-dead01"
    (dead / "logs").mkdir(parents=True)
    (dead / "instance.json").write_text(
        json.dumps(
            {"name": "web-dead01", "pool": "web", "address": "127.0.0.1", "port": 1234, "created": 5.0}
        )
    )
    (dead / "logs" / "nginx.pid").write_text("999999999\n")
    broken = pool_dir / "web-brk001"
    broken.mkdir()
    (broken / "instance.json").write_text("{half")

    found = {i.name: i for i in LocalProvider(tmp_path).list("web")}
    assert found["web-dead01"].state == STOPPED and not found["web-dead01"].alive
    assert found["web-dead01"].endpoint == "127.0.0.1:1234" and found["web-dead01"].created == 5.0
    assert found["web-brk001"].state == BROKEN
    assert [i.name for i in provider.list()] == [i.name for i in provider.list("web")]
    assert provider.list("api") == []
    assert provider.get("web", "web-nope00") is None


def test_destroy_of_a_dead_or_broken_host_removes_it(tmp_path):
    pool_dir = tmp_path / "pools" / "web"
    (pool_dir / "web-brk001").mkdir(parents=True)
    provider = LocalProvider(tmp_path)
    destroyed = provider.destroy("web", "web-brk001")
    assert destroyed is not None and destroyed.state == "destroyed"
    assert not (pool_dir / "web-brk001").exists()
    assert provider.destroy("web", "web-brk001") is None


def test_missing_nginx_is_a_clear_error_and_creates_nothing(tmp_path):
    provider = LocalProvider(tmp_path, nginx="no-such-nginx-binary")
    with pytest.raises(ProviderUnavailableError, match="needs nginx"):
        provider.launch("web")
    assert provider.list() == []
    assert not (tmp_path / "pools" / "web" / "names").exists()
