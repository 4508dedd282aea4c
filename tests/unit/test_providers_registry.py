"""The provider registry (providers.PROVIDERS): the factory, the module options and the
provider choices all read it, so a new provider registers in one place."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import pytest
from ansible.module_utils.hapool import providers
from ansible.module_utils.hapool.errors import HapoolError, ProviderError
from ansible.module_utils.hapool.providers import (
    PROVIDER_NAMES,
    PROVIDERS,
    DockerProvider,
    Instance,
    LaunchSpec,
    LocalProvider,
    Provider,
    VagrantProvider,
    get_provider,
    provider_class,
)
from ansible.module_utils.hapool.providers.options import (
    PROVIDER_ARGUMENT_SPEC,
    provider_from_params,
    provider_settings,
)


class Fake(Provider):
    """A provider registered by a test, as a new provider file would register itself."""

    name = "fake"
    OPTIONS: ClassVar[dict[str, str]] = {"image": "flavour", "start_timeout": "start_timeout"}

    def __init__(self, state_dir: str, *, flavour: str = "plain", start_timeout: float = 1.0) -> None:
        super().__init__(state_dir)
        self.flavour = flavour
        self.start_timeout = start_timeout

    def list(self, pool: str | None = None) -> list[Instance]:
        return []

    def launch(self, pool: str, spec: LaunchSpec | None = None) -> Instance:
        raise NotImplementedError

    def destroy(self, pool: str, instance: Instance | str) -> Instance | None:
        return None

    def cpu_seconds(self, pool: str, names: Sequence[str]) -> dict[str, float | None]:
        return super().cpu_seconds(pool, names)


def test_the_registry_holds_the_three_providers_by_their_names():
    assert dict(PROVIDERS) == {"local": LocalProvider, "docker": DockerProvider, "vagrant": VagrantProvider}
    assert PROVIDER_NAMES == ("local", "docker", "vagrant")
    assert PROVIDER_ARGUMENT_SPEC["provider"]["choices"] == list(PROVIDER_NAMES)
    for name, cls in PROVIDERS.items():
        assert cls.name == name and issubclass(cls, Provider)


@pytest.mark.parametrize("name", ["ec2", "Local", "local ", "", "docker.DockerProvider", "__init__"])
def test_an_unknown_provider_name_is_a_clear_error(tmp_path, name):
    message = f"unknown provider {name!r}: choose one of local, docker, vagrant"
    with pytest.raises(ProviderError) as caught:
        get_provider(name, state_root=tmp_path)
    assert str(caught.value) == message
    assert isinstance(caught.value, HapoolError)  # modules turn it into fail_json
    with pytest.raises(ProviderError, match="unknown provider"):
        provider_class(name)
    with pytest.raises(ProviderError, match="unknown provider"):
        provider_settings(name, {})
    if name:  # an empty provider option means the default, local
        with pytest.raises(ProviderError, match="unknown provider"):
            provider_from_params({"provider": name, "state_dir": str(tmp_path)})
    assert list(tmp_path.iterdir()) == []  # nothing made on disk


def test_a_name_that_is_not_a_string_is_a_clear_error():
    with pytest.raises(ProviderError, match="unknown provider None"):
        provider_class(None)  # type: ignore[arg-type]


def test_a_registered_provider_is_made_by_the_factory_and_the_module_options(tmp_path, monkeypatch):
    monkeypatch.setitem(PROVIDERS, "fake", Fake)
    made = get_provider("fake", state_root=tmp_path, flavour="spicy")
    assert isinstance(made, Fake)
    assert made.state_dir == tmp_path / "fake" and made.ledger.directory == tmp_path / "fake"
    assert made.flavour == "spicy"
    params = {"provider": "fake", "state_dir": str(tmp_path), "image": "salty", "port": 80}
    assert provider_settings("fake", params) == {"flavour": "salty"}  # port: not a fake option
    via_options = provider_from_params(params)
    assert isinstance(via_options, Fake) and via_options.flavour == "salty"
    with pytest.raises(ProviderError, match=r"unknown setting\(s\) for the fake provider: port"):
        get_provider("fake", state_root=tmp_path, port=80)
    assert made.cpu_seconds("web", ["web-000001"]) == {"web-000001": None}


def test_unregistered_it_is_unknown_again(tmp_path):
    assert "fake" not in PROVIDERS  # monkeypatch undid the registration
    with pytest.raises(ProviderError, match="unknown provider 'fake'"):
        get_provider("fake", state_root=tmp_path)


def test_each_provider_places_its_state_under_the_root_by_its_own_setting(tmp_path):
    settings = [PROVIDERS[n].state_dir_setting for n in PROVIDER_NAMES]
    assert settings == ["state_dir", "state_dir", "vagrant_dir"]
    for name in PROVIDER_NAMES:
        made = get_provider(name, state_root=tmp_path)
        assert made.state_dir == tmp_path / name


def test_the_package_re_exports_what_callers_import():
    # healing.py, pools.py, library modules, the inventory plugin, tests and bench import these
    for name in (
        "new_instance_name", "validate_pool", "validate_instance_name", "POOL_RE", "PROVIDER_NAMES",
        "Instance", "LaunchSpec", "get_provider", "sample_cpu_percent", "cpu_percent", "OrphanError",
        "ProviderUnavailableError", "ImageNotFoundError", "NameReusedError", "DESTROYED", "MISSING",
        "STOPPED", "RUNNING", "BROKEN", "write_json_atomic", "read_json", "file_lock", "NameLedger",
        "default_project_dir", "default_state_root", "DEFAULT_IMAGE", "DEFAULT_NETWORK",
    ):  # fmt: skip
        assert name in providers.__all__ and hasattr(providers, name), name
