"""Provider core: names, the name ledger, state files, defaults, the factory, module options."""

from __future__ import annotations

import ast
import json
import pathlib
import random
import sys
import threading

import ansible.module_utils.hapool.providers as providers_pkg
import pytest
from ansible.module_utils.hapool.errors import HapoolError
from ansible.module_utils.hapool.providers import (
    PROVIDER_NAMES,
    Instance,
    InvalidNameError,
    LaunchSpec,
    NameLedger,
    NameReusedError,
    Provider,
    ProviderError,
    default_project_dir,
    default_state_root,
    file_lock,
    get_provider,
    new_instance_name,
    read_json,
    validate_instance_name,
    validate_pool,
    write_json_atomic,
)
from ansible.module_utils.hapool.providers.docker import DockerProvider
from ansible.module_utils.hapool.providers.local import LocalProvider
from ansible.module_utils.hapool.providers.options import (
    PROVIDER_ARGUMENT_SPEC,
    launch_spec,
    provider_settings,
    view,
)
from ansible.module_utils.hapool.providers.vagrant import VagrantProvider
from hypothesis import given, settings
from hypothesis import strategies as st

# --- names ---------------------------------------------------------------------------------------


def test_new_name_is_pool_dash_six_hex_and_reproducible_with_a_seeded_rng():
    a = new_instance_name("web", random.Random(7))
    b = new_instance_name("web", random.Random(7))
    assert a == b
    assert a.startswith("web-") and len(a) == len("web-") + 6
    int(a[4:], 16)


def test_new_name_skips_taken_names():
    taken = {new_instance_name("web", random.Random(1))}
    assert new_instance_name("web", random.Random(1), taken) not in taken


def test_new_name_gives_up_when_the_space_is_used_up():
    class Stuck(random.Random):
        def getrandbits(self, k: int) -> int:
            return 0

    with pytest.raises(ProviderError, match="unused instance name"):
        new_instance_name("web", Stuck(), {"web-000000"})


@settings(max_examples=50, deadline=None)
@given(
    pool=st.from_regex(r"[a-z][a-z0-9_]{0,31}", fullmatch=True),
    seed=st.integers(0, 2**32),
    taken=st.sets(st.integers(0, 2**24 - 1), max_size=20),
)
def test_generated_names_are_valid_and_never_taken(pool, seed, taken):
    taken_names = {f"{pool}-{n:06x}" for n in taken}
    name = new_instance_name(pool, random.Random(seed), taken_names)
    assert validate_instance_name(name) == name
    assert name not in taken_names


@pytest.mark.parametrize("pool", ["web", "a", "api_v2", "x" * 32])
def test_valid_pools(pool):
    assert validate_pool(pool) == pool


@pytest.mark.parametrize(
    "pool", ["", "Web", "1web", "web-blue", "web blue", "web;rm", "../web", "x" * 33, "wéb", None, 3]
)
def test_invalid_pools_are_refused(pool):
    with pytest.raises(InvalidNameError, match="invalid pool name"):
        validate_pool(pool)


@pytest.mark.parametrize("name", ["", "-web", "Web-1", "web/1", "web 1", "a" * 64, "web\n1", "..", None])
def test_invalid_instance_names_are_refused(name):
    with pytest.raises(InvalidNameError, match="invalid instance name"):
        validate_instance_name(name)


def test_invalid_name_is_a_hapool_error_and_a_value_error():
    with pytest.raises(HapoolError):
        validate_pool("NO")
    with pytest.raises(ValueError):
        validate_pool("NO")


# --- the ledger ----------------------------------------------------------------------------------


def test_ledger_records_and_never_hands_a_name_out_twice(tmp_path):
    ledger = NameLedger(tmp_path)
    rng = random.Random(3)
    first = ledger.reserve("web", rng)
    assert ledger.used("web") == {first}
    # a new ledger object (another process) sees it; the same seed cannot reuse it
    again = NameLedger(tmp_path).reserve("web", random.Random(3))
    assert again != first
    assert NameLedger(tmp_path).used("web") == {first, again}
    assert (tmp_path / "pools" / "web" / "names").read_text().split() == [first, again]


def test_ledger_refuses_a_requested_name_used_before(tmp_path):
    ledger = NameLedger(tmp_path)
    assert ledger.reserve("web", random.Random(), requested="web-aaaaaa") == "web-aaaaaa"
    with pytest.raises(NameReusedError, match="never reused"):
        ledger.reserve("web", random.Random(), requested="web-aaaaaa")


def test_ledger_refuses_a_requested_name_that_is_live(tmp_path):
    with pytest.raises(NameReusedError):
        NameLedger(tmp_path).reserve("web", random.Random(), requested="web-1", live=["web-1"])


def test_ledger_pools_are_separate(tmp_path):
    ledger = NameLedger(tmp_path)
    ledger.reserve("web", random.Random(), requested="x-1")
    assert ledger.reserve("api", random.Random(), requested="x-1") == "x-1"


def test_file_lock_serialises_threads(tmp_path):
    lock = tmp_path / "lock"
    events: list[str] = []

    def worker(tag: str) -> None:
        with file_lock(lock):
            events.append(f"{tag}+")
            events.append(f"{tag}-")

    threads = [threading.Thread(target=worker, args=(str(i),)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pairs = [events[i : i + 2] for i in range(0, len(events), 2)]
    assert all(a[:-1] == b[:-1] and a.endswith("+") and b.endswith("-") for a, b in pairs)


# --- state files ---------------------------------------------------------------------------------


def test_write_json_atomic_round_trip_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "sub" / "state.json"
    write_json_atomic(path, {"b": 1, "a": [1, 2]})
    assert read_json(path) == {"a": [1, 2], "b": 1}
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]


def test_write_json_atomic_keeps_the_old_file_when_serialising_fails(tmp_path):
    path = tmp_path / "state.json"
    write_json_atomic(path, {"ok": True})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"bad": object()})
    assert read_json(path) == {"ok": True}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_read_json_default_and_corrupt(tmp_path):
    assert read_json(tmp_path / "missing.json", default={"x": 1}) == {"x": 1}
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ProviderError, match="cannot read state file"):
        read_json(bad)


# --- defaults ------------------------------------------------------------------------------------


def test_default_state_root_prefers_the_environment(tmp_path):
    assert default_state_root({"HAPOOL_STATE_DIR": str(tmp_path)}) == tmp_path


def test_default_project_dir_from_ansible_config(tmp_path):
    cfg = tmp_path / "ansible.cfg"
    cfg.write_text("[defaults]\n")
    assert default_project_dir({"ANSIBLE_CONFIG": str(cfg)}, cwd="/") == tmp_path
    assert default_state_root({"ANSIBLE_CONFIG": str(cfg)}, cwd="/") == tmp_path / ".state"


def test_default_project_dir_walks_up_to_an_ansible_cfg(tmp_path):
    (tmp_path / "ansible.cfg").write_text("")
    deep = tmp_path / "playbooks" / "sub"
    deep.mkdir(parents=True)
    assert default_project_dir({}, cwd=str(deep)) == tmp_path


def test_default_project_dir_falls_back_to_the_working_directory(tmp_path):
    assert default_project_dir({}, cwd=str(tmp_path)) == tmp_path


def test_default_project_dir_explicit_variable_wins(tmp_path):
    env = {"HAPOOL_PROJECT_DIR": str(tmp_path), "ANSIBLE_CONFIG": "/elsewhere/ansible.cfg"}
    assert default_project_dir(env) == tmp_path


# --- the factory ---------------------------------------------------------------------------------


def test_factory_makes_each_provider_with_its_state_under_the_root(tmp_path):
    local = get_provider("local", state_root=tmp_path)
    docker = get_provider("docker", state_root=tmp_path)
    vagrant = get_provider("vagrant", state_root=tmp_path, vagrantfile=str(tmp_path / "Vagrantfile"))
    assert isinstance(local, LocalProvider) and local.state_dir == tmp_path / "local"
    assert isinstance(docker, DockerProvider) and docker.state_dir == tmp_path / "docker"
    assert isinstance(vagrant, VagrantProvider) and vagrant.vagrant_dir == tmp_path / "vagrant"
    assert {p.name for p in (local, docker, vagrant)} == set(PROVIDER_NAMES)
    assert all(isinstance(p, Provider) for p in (local, docker, vagrant))


def test_factory_explicit_directory_wins(tmp_path):
    p = get_provider("local", state_root=tmp_path, state_dir=str(tmp_path / "elsewhere"))
    assert isinstance(p, LocalProvider) and p.state_dir == tmp_path / "elsewhere"


def test_factory_passes_settings_and_drops_none(tmp_path):
    p = get_provider("docker", state_root=tmp_path, network="n1", image=None, base_url="tcp://127.0.0.1:1")
    assert isinstance(p, DockerProvider)
    assert (p.network, p.image, p.base_url) == ("n1", "hapool/base:bookworm", "tcp://127.0.0.1:1")


def test_factory_refuses_unknown_providers_and_settings(tmp_path):
    with pytest.raises(ProviderError, match="unknown provider 'ec2'"):
        get_provider("ec2", state_root=tmp_path)
    with pytest.raises(ProviderError, match=r"unknown setting\(s\) for the local provider: imagee"):
        get_provider("local", state_root=tmp_path, imagee="x")


def test_factory_does_not_import_the_sdks(tmp_path):
    before = {m for m in ("docker", "vagrant") if m in sys.modules}
    get_provider("docker", state_root=tmp_path)
    get_provider("vagrant", state_root=tmp_path, vagrantfile="/nonexistent")
    assert {m for m in ("docker", "vagrant") if m in sys.modules} == before


def test_provider_package_imports_only_the_standard_library():
    """module_utils must stay stdlib-only at import time (AnsiballZ ships it to targets)."""
    root = pathlib.Path(providers_pkg.__file__).parent
    allowed_roots = set(sys.stdlib_module_names) | {"ansible", "__future__"}
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level only: lazy imports inside functions are fine
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in allowed_roots, f"{path.name} imports {name} at module level"


def test_unknown_vagrant_backend(tmp_path):
    with pytest.raises(ProviderError, match="unknown vagrant backend 'kvm'"):
        get_provider("vagrant", state_root=tmp_path, backend="kvm")


# --- data and options ----------------------------------------------------------------------------


def test_instance_dict_is_json_safe_and_alive_follows_state():
    inst = Instance("web-1", "web", "local", "127.0.0.1", 8080, 12.5, "running", {"pid": 3})
    data = inst.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["alive"] is True and inst.endpoint == "127.0.0.1:8080"
    assert Instance("web-1", "web", "local", "", 0, 1.0, "stopped").alive is False


def test_provider_settings_map_module_options_per_provider():
    params = {
        "docker_host": "tcp://h:2375",
        "network": "n",
        "image": "i",
        "bind_network": "127.0.1.0/24",
        "port": 80,
        "vagrant_backend": "libvirt",
        "box": "debian/bookworm64",
        "start_timeout": None,
    }
    assert provider_settings("local", params) == {"bind_network": "127.0.1.0/24", "port": 80}
    assert provider_settings("docker", params) == {"base_url": "tcp://h:2375", "network": "n", "image": "i"}
    assert provider_settings("vagrant", params) == {
        "network": "n",
        "image": "i",
        "backend": "libvirt",
        "box": "debian/bookworm64",
        "env": {"DOCKER_HOST": "tcp://h:2375"},
    }


def test_every_mapped_option_is_a_real_setting(tmp_path):
    params = {k: None for k in PROVIDER_ARGUMENT_SPEC}
    for option, spec in PROVIDER_ARGUMENT_SPEC.items():
        params[option] = {"int": 1, "float": 1.0}.get(spec["type"], str(tmp_path / option))
    params["vagrant_backend"] = "docker"
    for name in PROVIDER_NAMES:
        # raises on a setting name the provider does not accept
        get_provider(name, state_root=tmp_path, **provider_settings(name, params))


def test_launch_spec_and_view():
    spec = launch_spec({"name": "web-1", "cpus": 0.5, "memory": "64m"})
    assert spec == LaunchSpec(name="web-1", cpus=0.5, memory="64m")
    assert view(None) == {}
    assert view({"name": "a", "extra": {"x": 1}, "port": 1})["name"] == "a"
    assert "extra" not in view({"name": "a", "extra": {}})
