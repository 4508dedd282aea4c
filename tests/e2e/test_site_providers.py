"""site.yml and teardown.yml with each provider, end to end.

For each provider: site.yml launches the pool's hosts up to `desired`, provisions them with
nginx_web and registers them in HAProxy (requests through the balancer reach each host); a
second run changes nothing; teardown.yml drains and deletes them in the running balancer,
destroys them (gone from the provider and the balancer), then stops the balancer. A host of
the same provider and pool name that another deployment (another state root) launched
beforehand is neither counted, registered nor destroyed.
"""

from __future__ import annotations

import contextlib
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from ansible.module_utils.hapool.providers import Instance, get_provider
from helpers.site import Deployment, recap

CHECK = {"path": "/health", "expect_status": "200", "inter": "1s", "fastinter": "500ms", "rise": 1, "fall": 2}

CASES = [
    pytest.param("local", {}, id="local", marks=[pytest.mark.e2e]),
    pytest.param("docker", {"image": "hapool/base:bookworm"}, id="docker", marks=[pytest.mark.docker]),
    pytest.param("vagrant", {"vagrant_backend": "docker"}, id="vagrant",
                 marks=[pytest.mark.vagrant, pytest.mark.slow]),
]


def pool(provider: str, launch: dict[str, str], **over: object) -> dict[str, object]:
    return {"name": "web", "provider": provider, "min": 1, "desired": 2, "max": 3, "balance": "roundrobin",
            "port": 80, "launch": launch, "check": CHECK, **over}


def listed(dep: Deployment, provider: str) -> list[str]:
    with get_provider(provider, state_root=str(dep.root)) as prov:
        return sorted(i.name for i in prov.list("web"))


def web_servers(dep: Deployment, provider: str) -> set[str]:
    balancer = "local" if provider == "local" else f"balancer-{provider}"
    stat = Deployment.runtime(dep.admin_socket(balancer), "show stat")
    return {line.split(",")[1] for line in stat.splitlines()
            if line.startswith("web,") and line.split(",")[1] != "BACKEND"}


@contextlib.contextmanager
def bystander(provider: str, root: Path) -> Iterator[Instance | None]:
    """A host of pool ``web`` that another deployment launched (vagrant machines live in their
    deployment's own machine list, so none is made for vagrant)."""
    if provider == "vagrant":
        yield None
        return
    with get_provider(provider, state_root=str(root)) as prov:
        inst = prov.launch("web")
        try:
            yield inst
        finally:
            prov.destroy("web", inst)


def still_serving(provider: str, root: Path, inst: Instance) -> None:
    with get_provider(provider, state_root=str(root)) as prov:
        (again,) = prov.list("web")
    assert again.name == inst.name and again.alive, again
    with urllib.request.urlopen(f"http://{again.endpoint}/", timeout=5) as resp:
        assert resp.status == 200


@pytest.fixture
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Deployment, str]]:
    provider, launch = request.param
    dep = Deployment(tmp_path, provider, [pool(provider, launch)])
    try:
        yield dep, provider
    finally:
        dep.play("teardown.yml")
        # Whatever teardown.yml left (it is under test too) is destroyed here.
        with contextlib.suppress(Exception), get_provider(provider, state_root=str(dep.root)) as prov:
            for inst in prov.list():
                prov.destroy(inst.pool, inst)
        dep.remove_state()


@pytest.mark.parametrize("deployment", [c.values for c in CASES], indirect=True,
                         ids=[c.id for c in CASES])
def test_site_launches_registers_and_teardown_destroys(
    deployment: tuple[Deployment, str], tmp_path: Path
) -> None:
    dep, provider = deployment
    with bystander(provider, tmp_path / "other") as other:
        _site_then_teardown(dep, provider)
        if other is not None:
            still_serving(provider, tmp_path / "other", other)


def _site_then_teardown(dep: Deployment, provider: str) -> None:
    first = dep.play("site.yml")
    assert first.returncode == 0, first.stdout[-5000:] + first.stderr[-2000:]
    names = listed(dep, provider)
    assert len(names) == 2, names
    assert all(re.fullmatch(r"web-[0-9a-f]{6}", n) for n in names), names

    bodies = dep.hosts_answering(2)
    assert bodies == {f"Hello {n}!" for n in names}, bodies
    assert web_servers(dep, provider) == set(names)

    second = dep.play("site.yml")
    assert second.returncode == 0, second.stdout[-5000:]
    counters = recap(second.stdout)
    assert set(counters) == {"localhost", *names}, counters
    assert all(c["changed"] == 0 for c in counters.values()), counters
    assert listed(dep, provider) == names, "a second run must not launch more hosts"

    # Teardown with the balancer kept: the hosts leave the balancer and the provider.
    down = dep.play("teardown.yml", hapool_keep_balancer=True)
    assert down.returncode == 0, down.stdout[-5000:]
    assert listed(dep, provider) == []
    assert web_servers(dep, provider) == set()
    assert dep.get()[0] == 503  # balancer still up, pool empty

    final = dep.play("teardown.yml")
    assert final.returncode == 0, final.stdout[-5000:]
    balancer = "local" if provider == "local" else f"balancer-{provider}"
    with pytest.raises(OSError):
        Deployment.runtime(dep.admin_socket(balancer), "show info")


@pytest.mark.docker
def test_missing_image_fails_clearly_and_leaves_no_host(tmp_path: Path) -> None:
    dep = Deployment(tmp_path, "docker", [pool("docker", {"image": "hapool/no-such-image:latest"})])
    try:
        run = dep.play("site.yml")
        assert run.returncode != 0
        assert "hapool/no-such-image:latest" in run.stdout
        assert "ImageNotFoundError" in run.stdout or "not found" in run.stdout.lower()
        assert listed(dep, "docker") == []
    finally:
        dep.play("teardown.yml")
        dep.remove_state()


def test_invalid_pool_bounds_fail_before_anything_is_launched(tmp_path: Path) -> None:
    dep = Deployment(tmp_path, "local", [pool("local", {}, min=3, desired=2, max=1)])
    try:
        run = dep.play("site.yml")
        assert run.returncode != 0
        assert "0 <= min <= desired <= max" in run.stdout
        assert "Nothing was launched or destroyed" in run.stdout
        assert listed(dep, "local") == []
    finally:
        dep.play("teardown.yml")
        dep.remove_state()
