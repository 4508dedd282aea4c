"""Smoke test of the local base image that `make setup` builds (no registry involved)."""

from __future__ import annotations

import os
import time
import urllib.request
import uuid

import docker
import pytest

pytestmark = pytest.mark.docker

IMAGE = os.environ.get("HAPOOL_BASE_IMAGE", "hapool/base:bookworm")


@pytest.fixture
def container():
    client = docker.from_env()
    c = client.containers.run(IMAGE, name=f"hapool-smoke-{uuid.uuid4().hex[:8]}", detach=True)
    try:
        yield c
    finally:
        c.remove(force=True)
        client.close()


def test_base_image_serves_a_page_from_its_nginx(container):
    container.reload()
    ip = container.attrs["NetworkSettings"]["IPAddress"]
    assert ip, "container got no address on the default bridge"
    deadline = time.monotonic() + 15
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{ip}/", timeout=2) as resp:
                body = resp.read().decode()
                assert resp.status == 200
                assert "nginx" in body.lower()
                return
        except OSError as exc:  # nginx may still be starting
            last_error = exc
            time.sleep(0.2)
    pytest.fail(f"nginx in {IMAGE} did not answer on {ip}:80: {last_error}")


def test_base_image_has_what_roles_and_modules_need(container):
    script = "python3 --version && python3 -c 'import apt' && nginx -v 2>&1 && haproxy -v"
    rc, out = container.exec_run(["sh", "-c", script])
    text = out.decode()
    assert rc == 0, text
    assert "Python 3.11" in text
    assert "nginx version" in text
    assert "HAProxy version 2.6" in text
