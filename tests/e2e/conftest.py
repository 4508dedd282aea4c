"""Fixtures shared by the end-to-end tests of the docker and vagrant providers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import docker
import pytest


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
