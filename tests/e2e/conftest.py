"""Fixtures shared by the end-to-end tests: the docker client and network of the docker and
vagrant provider tests, and one local-provider deployment for the heal, heal timer and status
tests."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator

import docker
import pytest
from helpers.heal import fresh_pool, shared_deployment
from helpers.site import Deployment


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    c = docker.from_env()
    yield c
    c.close()


@pytest.fixture(scope="module")
def network(client: docker.DockerClient) -> Iterator[str]:
    """A private network name for the module's containers; removed afterwards if it was created."""
    name = f"hapool-test-{uuid.uuid4().hex[:8]}"
    yield name
    for net in client.networks.list(names=[name]):
        if net.name == name:
            net.remove()


@pytest.fixture(scope="session")
def _local_deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """site.yml on the local provider (pool web, 2 hosts), once for the whole session: a local
    site.yml takes 30-55 s and teardown.yml 15-25 s on the 2-core CI machine."""
    yield from shared_deployment(tmp_path_factory.mktemp("local-pool"), "local")


@pytest.fixture
def local_pool(_local_deployment: Deployment) -> Iterator[Deployment]:
    """The shared local deployment as a fresh site.yml leaves it: 2 hosts alive and UP in
    HAProxy, an empty event log (see helpers.heal.fresh_pool). A test may kill hosts, drain
    them or change the pool's settings in ``extra_vars``; the settings are restored afterwards
    and the next test starts from a converged pool again."""
    dep = _local_deployment
    pools = copy.deepcopy(dep.extra_vars["hapool_pools"])
    fresh_pool(dep)
    try:
        yield dep
    finally:
        dep.extra_vars["hapool_pools"] = pools
