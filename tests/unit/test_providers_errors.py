"""Docker and vagrant providers without engines: missing SDKs and binaries, state-file handling,
parsing, and the inventory plugin's host variables."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import sys

import pytest
from ansible.module_utils.hapool.providers import (
    MISSING,
    Instance,
    ProviderError,
    ProviderUnavailableError,
    get_provider,
)
from ansible.module_utils.hapool.providers.docker import DockerProvider, container_name, parse_memory
from ansible.module_utils.hapool.providers.vagrant import VagrantProvider, allocate_vm_address, memory_mb

# --- docker ---------------------------------------------------------------------------------------


def test_missing_docker_sdk_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "docker", None)  # makes `import docker` fail
    provider = get_provider("docker", state_root=tmp_path)
    with pytest.raises(ProviderUnavailableError, match="needs the Python Docker SDK"):
        provider.list("web")
    with pytest.raises(ProviderUnavailableError):
        provider.launch("web")
    assert not (tmp_path / "docker" / "pools").exists()


def test_unreachable_engine_is_a_clear_error_before_anything_is_recorded(tmp_path):
    provider = get_provider("docker", state_root=tmp_path, base_url="unix:///nonexistent/hapool-test.sock")
    with pytest.raises(
        ProviderUnavailableError, match=r"Docker engine at unix:///nonexistent/hapool-test.sock"
    ):
        provider.launch("web")
    assert not (tmp_path / "docker" / "pools").exists()


@pytest.mark.parametrize(
    ("given", "expected"), [(None, None), (1024, 1024), ("256m", "256m"), ("1G", "1g"), ("4096", 4096)]
)
def test_parse_memory(given, expected):
    assert parse_memory(given) == expected


@pytest.mark.parametrize("bad", ["lots", "12x", "m", "-5m"])
def test_parse_memory_refuses_nonsense(bad):
    with pytest.raises(ProviderError, match="invalid memory limit"):
        parse_memory(bad)


def test_container_name():
    assert container_name("web", "web-3f9a2c") == "hapool-web-web-3f9a2c"


def test_docker_provider_close_is_idempotent(tmp_path):
    provider = DockerProvider(tmp_path)
    provider.close()
    provider.close()


# --- vagrant --------------------------------------------------------------------------------------


def vagrant(tmp_path, **settings) -> VagrantProvider:
    vf = tmp_path / "Vagrantfile"
    vf.write_text("# test\n")
    p = get_provider("vagrant", state_root=tmp_path, vagrantfile=str(vf), **settings)
    assert isinstance(p, VagrantProvider)
    return p


def test_missing_vagrant_binary_is_a_clear_error_and_records_nothing(tmp_path):
    provider = vagrant(tmp_path, env={"PATH": str(tmp_path / "empty-bin")})
    with pytest.raises(
        ProviderUnavailableError, match="needs the 'vagrant' executable, which is not on PATH"
    ):
        provider.launch("web")
    assert provider.read_state()["machines"] == {}
    assert not (tmp_path / "vagrant" / "pools").exists()


def test_missing_python_vagrant_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "vagrant", None)
    with pytest.raises(ProviderUnavailableError, match="needs python-vagrant"):
        vagrant(tmp_path).launch("web")


def test_missing_vagrantfile_is_a_clear_error(tmp_path):
    provider = get_provider(
        "vagrant", state_root=tmp_path, vagrantfile=str(tmp_path / "nope" / "Vagrantfile")
    )
    with pytest.raises(ProviderUnavailableError, match="no Vagrantfile at"):
        provider.launch("web")


def test_vm_backend_needs_a_box(tmp_path):
    with pytest.raises(ProviderError, match="needs a box"):
        vagrant(tmp_path, backend="libvirt").launch("web")


def test_state_file_is_created_on_first_change_and_read_back(tmp_path):
    provider = vagrant(tmp_path)
    assert provider.read_state() == {"version": 1, "machines": {}}

    def add(machines):
        machines["web-000001"] = {"pool": "web", "created": 1.0, "backend": "libvirt", "ip": "192.168.56.10"}

    provider._update_state(add)
    data = json.loads(provider.state_file.read_text())
    assert data["machines"]["web-000001"]["ip"] == "192.168.56.10"
    # a new provider object (another process) reads the same machines
    assert vagrant(tmp_path).read_state() == data


def test_corrupt_state_file_is_a_clear_error(tmp_path):
    provider = vagrant(tmp_path)
    provider.state_file.parent.mkdir(parents=True)
    provider.state_file.write_text('{"machines": [1, 2]}')
    with pytest.raises(ProviderError, match="has no 'machines' object"):
        provider.list()
    provider.state_file.write_text("{broken")
    with pytest.raises(ProviderError, match="cannot read state file"):
        provider.list()


def test_docker_machine_without_a_container_id_is_listed_missing(tmp_path):
    """A machine recorded but never created (controller died during `vagrant up`) is listed, not
    dropped, so that it can be destroyed or replaced."""
    provider = vagrant(tmp_path)
    provider._update_state(
        lambda m: m.update(
            {"web-00000a": {"pool": "web", "created": 2.0, "backend": "docker", "network": "n"}}
        )
    )
    (found,) = provider.list("web")
    assert (found.name, found.state, found.alive, found.address) == ("web-00000a", MISSING, False, "")
    assert provider.list("api") == []
    assert provider.get("web", "web-00000a") == found
    assert provider.get("api", "web-00000a") is None


def test_environment_points_vagrant_at_our_files_and_disables_phone_home(tmp_path):
    provider = vagrant(tmp_path, env={"X": "1"})
    env = provider.environment()
    assert env["HAPOOL_VAGRANT_STATE"] == str(tmp_path / "vagrant" / "machines.json")
    assert env["VAGRANT_DOTFILE_PATH"] == str(tmp_path / "vagrant" / ".vagrant")
    assert env["VAGRANT_CWD"] == str(tmp_path) and env["VAGRANT_VAGRANTFILE"] == "Vagrantfile"
    assert env["VAGRANT_CHECKPOINT_DISABLE"] == "1" and env["X"] == "1"


def test_vm_address_allocation():
    assert allocate_vm_address("192.168.56.0/24", set()) == "192.168.56.10"
    assert allocate_vm_address("192.168.56.0/24", {"192.168.56.10"}) == "192.168.56.11"
    with pytest.raises(ProviderError, match="no free address"):
        allocate_vm_address("192.168.56.0/29", set())
    with pytest.raises(ProviderError, match="invalid vm_network"):
        allocate_vm_address("nope", set())


@pytest.mark.parametrize(("given", "mb"), [(None, None), ("512m", 512), ("1g", 1024), (1 << 30, 1024)])
def test_memory_mb(given, mb):
    assert memory_mb(given) == mb


# --- inventory host variables --------------------------------------------------------------------


@pytest.fixture(scope="module")
def inventory_plugin():
    path = pathlib.Path(__file__).resolve().parents[2] / "plugins" / "inventory" / "hapool.py"
    spec = importlib.util.spec_from_file_location("hapool_inventory_plugin", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hostvars_local(inventory_plugin):
    inst = Instance("web-1", "web", "local", "127.0.0.1", 8081, 3.0, "running", {"prefix": "/s/web-1"})
    hv = inventory_plugin.host_vars(inst)
    assert hv["ansible_connection"] == "local"
    assert hv["ansible_python_interpreter"] == "{{ ansible_playbook_python }}"
    assert hv["nginx_web_prefix"] == "/s/web-1"
    assert hv["nginx_web_conf_file"] == "/s/web-1/conf/nginx.conf"
    assert hv["nginx_web_pid_file"] == "/s/web-1/logs/nginx.pid"
    assert (hv["nginx_web_listen_address"], hv["nginx_web_port"], hv["nginx_web_user"]) == (
        "127.0.0.1",
        8081,
        "",
    )
    assert (hv["hapool_address"], hv["hapool_port"], hv["hapool_created"]) == ("127.0.0.1", 8081, 3.0)


def test_hostvars_docker_and_vagrant(inventory_plugin):
    d = Instance(
        "web-2", "web", "docker", "172.18.0.2", 80, 3.0, "running", {"container": "hapool-web-web-2"}
    )
    hv = inventory_plugin.host_vars(d, docker_host="tcp://h:2375")
    assert hv["ansible_connection"] == "community.docker.docker"
    assert hv["ansible_host"] == "hapool-web-web-2" and hv["ansible_docker_host"] == "tcp://h:2375"
    v = Instance(
        "web-3", "web", "vagrant", "172.18.0.3", 80, 3.0, "running", {"backend": "docker", "container": "c"}
    )
    assert inventory_plugin.host_vars(v)["ansible_host"] == "c"
    vm = Instance(
        "web-4",
        "web",
        "vagrant",
        "192.168.56.10",
        80,
        3.0,
        "running",
        {"backend": "libvirt", "ip": "192.168.56.10", "private_key": "/k"},
    )
    hv = inventory_plugin.host_vars(vm)
    assert (hv["ansible_connection"], hv["ansible_host"], hv["ansible_user"]) == (
        "ssh",
        "192.168.56.10",
        "vagrant",
    )
    assert hv["ansible_ssh_private_key_file"] == "/k"
