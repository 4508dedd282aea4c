"""Fixtures with real HAProxy and nginx processes on loopback (free ports, stopped at teardown).

* ``nginx_factory(name)`` starts one nginx serving ``Hello <name>!`` (and ``/slow``).
* ``haproxy_factory(backends, ...)`` starts HAProxy in master-worker mode.
* ``pool``: web1..web3 (nginx), HAProxy with backend ``app`` = web1 + web2 (web3 is free to
  be added at runtime) and backend ``fixed`` (``static-rr``: no dynamic servers), an admin
  unix socket, a TCP admin socket, and sockets at operator and user level.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for helpers

from ansible.module_utils.hapool.haproxy import RuntimeClient
from helpers.pool import Pool
from helpers.procs import HAProxy, Nginx, start_haproxy, start_nginx, wait_until


@pytest.fixture
def nginx_factory(tmp_path: Path) -> Iterator[Callable[..., Nginx]]:
    started: list[Nginx] = []

    def start(name: str, **kwargs: object) -> Nginx:
        server = start_nginx(tmp_path / name, name, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture
def haproxy_factory(tmp_path: Path) -> Iterator[Callable[..., HAProxy]]:
    started: list[HAProxy] = []

    def start(backends: Mapping[str, Sequence[str]], **kwargs: object) -> HAProxy:
        lb = start_haproxy(tmp_path / f"lb{len(started)}", backends, **kwargs)  # type: ignore[arg-type]
        started.append(lb)
        return lb

    yield start
    for lb in reversed(started):
        lb.stop()


@pytest.fixture
def pool(nginx_factory: Callable[..., Nginx], haproxy_factory: Callable[..., HAProxy]) -> Pool:
    webs = {name: nginx_factory(name) for name in ("web1", "web2", "web3")}
    lb = haproxy_factory(
        {
            "app": [
                f"server web1 {webs['web1'].address} check",
                f"server web2 {webs['web2'].address} check",
            ],
            "fixed": ["balance static-rr", f"server f1 {webs['web1'].address} check"],
        },
        stats_tcp=True,
        extra_sockets=[
            "{dir}/operator.sock mode 600 level operator",
            "{dir}/user.sock mode 600 level user",
        ],
    )
    result = Pool(lb=lb, webs=webs, client=RuntimeClient(str(lb.admin_socket), timeout=5))
    for name in ("web1", "web2"):
        wait_until(
            lambda name=name: (row := result.row(name)) is not None and row.check_status == "L7OK",
            10,
            f"first good check of {name}",
        )
    return result
