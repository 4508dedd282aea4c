"""The vagrant provider for real: Vagrant 2.3.4's docker provider (``has_ssh = false``) with the
repository's Vagrantfile and the local base image, driven through python-vagrant.

Everything lives in a temporary vagrant_dir (machine list, Vagrant's .vagrant data, logs) and
a unique Docker network; teardown destroys leftover machines with Vagrant, removes any
container labelled with the test pools, and the network. `vagrant up` / `destroy` take about
3 s each, so the lifecycle is one test.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import _core_path
import docker
import pytest
from ansible.module_utils.hapool.providers import (
    DESTROYED,
    MISSING,
    ImageNotFoundError,
    LaunchSpec,
    ProviderError,
    ProviderUnavailableError,
    get_provider,
    sample_cpu_percent,
)
from ansible.module_utils.hapool.providers.vagrant import VagrantProvider

pytestmark = [pytest.mark.vagrant, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
VAGRANTFILE = ROOT / "Vagrantfile"


def get(url: str) -> str:
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture
def pool(client: docker.DockerClient) -> Iterator[str]:
    name = f"v{uuid.uuid4().hex[:8]}"
    yield name
    for c in client.containers.list(all=True, filters={"label": f"io.hapool.pool={name}"}):
        c.remove(force=True)


@pytest.fixture
def provider(tmp_path: Path, network: str, pool: str) -> Iterator[VagrantProvider]:
    p = get_provider("vagrant", state_root=tmp_path, network=network, vagrantfile=str(VAGRANTFILE))
    assert isinstance(p, VagrantProvider)
    yield p
    # leftovers (a failed test): destroy through Vagrant so its global index stays clean
    for machine in p.read_state()["machines"]:
        subprocess.run(
            ["vagrant", "destroy", "-f", machine], env=p.environment(), capture_output=True, check=False
        )


def containers_of(client: docker.DockerClient, pool: str) -> list[object]:
    return client.containers.list(all=True, filters={"label": f"io.hapool.pool={pool}"})


def test_launch_serve_list_again_destroy_gone(provider, pool, client, network, tmp_path):
    inst = provider.launch(pool, LaunchSpec(cpus=0.5, memory="64m"))
    assert inst.alive and inst.provider == "vagrant" and inst.pool == pool and inst.port == 80
    assert "nginx" in get(f"http://{inst.endpoint}/").lower()

    # the container Vagrant made: its id is in .vagrant/machines/<name>/docker/id
    cid = (provider.dotfile_path / "machines" / inst.name / "docker" / "id").read_text().strip()
    container = client.containers.get(cid)
    assert inst.extra["container_id"] == cid and inst.extra["container"] == f"hapool-vg-{pool}-{inst.name}"
    assert container.labels["io.hapool.provider"] == "vagrant"
    assert container.labels["io.hapool.instance"] == inst.name
    assert container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"] == inst.address
    assert container.attrs["HostConfig"]["NanoCpus"] == 500_000_000
    assert container.attrs["Config"]["Hostname"] == inst.name
    machines = json.loads(provider.state_file.read_text())["machines"]
    assert machines[inst.name]["pool"] == pool and machines[inst.name]["created"] == inst.created

    # a new provider object, and a new process, find it again
    again = get_provider("vagrant", state_root=tmp_path, network=network, vagrantfile=str(VAGRANTFILE))
    assert [(i.name, i.address, i.alive) for i in again.list(pool)] == [(inst.name, inst.address, True)]
    code = (
        f"{_core_path.SNIPPET}import json\n"
        "from ansible.module_utils.hapool.providers import get_provider\n"
        f"p = get_provider('vagrant', state_root={str(tmp_path)!r}, vagrantfile={str(VAGRANTFILE)!r})\n"
        f"print(json.dumps([i.to_dict() for i in p.list({pool!r})]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    (listed,) = json.loads(out)
    assert (listed["name"], listed["address"], listed["alive"]) == (inst.name, inst.address, True)

    # vagrant itself agrees (the Vagrantfile reads the machine list from the state file)
    status = subprocess.run(
        ["vagrant", "status", "--machine-readable", inst.name],
        env=provider.environment(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"{inst.name},state,running" in status

    gone = provider.destroy(pool, inst)
    assert gone is not None and gone.state == DESTROYED
    assert containers_of(client, pool) == []
    assert provider.list(pool) == [] and provider.read_state()["machines"] == {}
    assert provider.destroy(pool, inst.name) is None


def test_a_failed_vagrant_up_is_a_clear_error_and_leaves_no_machine(provider, pool, client):
    with pytest.raises(ProviderError, match=r"vagrant up .* failed .*Range of CPUs"):
        provider.launch(pool, LaunchSpec(cpus=512))  # docker run refuses it
    assert containers_of(client, pool) == []
    assert provider.read_state()["machines"] == {}
    assert provider.list(pool) == []


def test_a_machine_whose_container_vanished_is_listed_missing_then_destroyed(provider, pool, client):
    provider._update_state(
        lambda m: m.update(
            {f"{pool}-0000ab": {"pool": pool, "created": 1.0, "backend": "docker", "network": "x"}}
        )
    )  # as if the controller died during `vagrant up`
    (listed,) = provider.list(pool)
    assert listed.state == MISSING and not listed.alive
    assert provider.destroy(pool, listed) is not None
    assert provider.read_state()["machines"] == {}


def test_vagrant_missing_from_path_is_a_clear_error(provider, tmp_path, pool, client, network):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    p = get_provider(
        "vagrant",
        state_root=tmp_path,  # the same directory as `provider`, whose teardown cleans up
        network=network,
        vagrantfile=str(VAGRANTFILE),
        env={"PATH": str(empty)},
    )
    with pytest.raises(ProviderUnavailableError, match="'vagrant' executable, which is not on PATH"):
        p.launch(pool)
    assert p.read_state()["machines"] == {}
    assert containers_of(client, pool) == []


def vagrant_spy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `vagrant` first on PATH that logs its arguments to the returned file, then runs the real one."""
    spy = tmp_path / "spy-bin"
    spy.mkdir()
    calls = tmp_path / "vagrant-calls"
    (spy / "vagrant").write_text(
        f'#!/bin/sh\necho "$*" >> {calls}\nPATH=${{PATH#*:}}; export PATH; exec vagrant "$@"\n'
    )
    (spy / "vagrant").chmod(0o755)
    monkeypatch.setenv("PATH", str(spy), prepend=":")
    return calls


def test_docker_engine_down_is_a_clear_error_before_vagrant_runs(
    tmp_path, pool, client, network, monkeypatch
):
    with socket.socket() as sock:  # a port where no engine listens
        sock.bind(("127.0.0.1", 0))
        bogus = f"tcp://127.0.0.1:{sock.getsockname()[1]}"
    calls = vagrant_spy(tmp_path, monkeypatch)
    p = get_provider("vagrant", state_root=tmp_path, network=network, vagrantfile=str(VAGRANTFILE),
                     env={"DOCKER_HOST": bogus})
    assert p._which("vagrant") == str(tmp_path / "spy-bin" / "vagrant")  # the spy is what it would run
    with pytest.raises(ProviderUnavailableError, match="Docker engine does not answer"):
        p.launch(pool)
    assert not calls.exists(), calls.read_text()  # vagrant never ran (no `vagrant up`)
    assert p.read_state()["machines"] == {}
    assert containers_of(client, pool) == []


def test_missing_image_is_a_clear_error_before_vagrant_runs(provider, pool, client, tmp_path, monkeypatch):
    calls = vagrant_spy(tmp_path, monkeypatch)  # the provider's environment is read at each command
    assert provider._which("vagrant") == str(tmp_path / "spy-bin" / "vagrant")
    with pytest.raises(ImageNotFoundError, match="never pulls"):
        provider.launch(pool, LaunchSpec(image=f"hapool/no-such-image:{uuid.uuid4().hex[:6]}"))
    assert not calls.exists(), calls.read_text()  # vagrant never ran (no `vagrant up`)
    assert provider.read_state()["machines"] == {}
    assert containers_of(client, pool) == []


def test_cpu_percent_of_the_container_vagrant_made(provider, pool, client):
    """The docker backend reads CPU time like the docker provider: idle, a bounded busy loop in
    the container (`docker exec`), idle again; then destroyed, it cannot be read."""
    inst = provider.launch(pool)
    assert provider.cpu_seconds(pool, [inst.name, f"{pool}-000000"])[f"{pool}-000000"] is None
    idle = sample_cpu_percent(provider, pool, [inst.name], 0.5)[inst.name]
    assert idle is not None and idle < 10, idle

    busy_loop = subprocess.Popen(
        ["docker", "exec", inst.extra["container_id"], "timeout", "3", "sh", "-c", "while :; do :; done"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.3)
        busy = sample_cpu_percent(provider, pool, [inst.name], 1.5)[inst.name]
    finally:
        busy_loop.wait(15)
    # Busy, at most one core; other tests may share the 2 cores (see test_provider_docker).
    assert busy is not None and 20 < busy < 110, busy
    idle_again = sample_cpu_percent(provider, pool, [inst.name], 0.5)[inst.name]
    assert idle_again is not None and idle_again < 10, idle_again

    provider.destroy(pool, inst)
    assert provider.cpu_seconds(pool, [inst.name]) == {inst.name: None}
