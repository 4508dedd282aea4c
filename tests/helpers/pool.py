"""A small HAProxy pool under test: the processes, a runtime client and helpers to look at it."""

from __future__ import annotations

import http.client
import time
from dataclasses import dataclass

from ansible.module_utils.hapool.haproxy import RuntimeClient
from ansible.module_utils.hapool.stats import StatRow

from helpers.procs import HAProxy, Nginx, wait_until


@dataclass
class Pool:
    lb: HAProxy
    webs: dict[str, Nginx]
    client: RuntimeClient

    @property
    def socket(self) -> str:
        return str(self.lb.admin_socket)

    @property
    def operator_socket(self) -> str:
        return str(self.lb.directory / "operator.sock")

    @property
    def user_socket(self) -> str:
        return str(self.lb.directory / "user.sock")

    @property
    def tcp_socket(self) -> str:
        return f"tcp://127.0.0.1:{self.lb.stats_tcp_port}"

    def row(self, server: str, backend: str = "app") -> StatRow | None:
        for row in self.client.show_stat(backend):
            if row.is_server and row.server == server:
                return row
        return None

    def statuses(self, backend: str = "app") -> dict[str, str]:
        return {r.server: r.status for r in self.client.show_stat(backend) if r.is_server}

    def snapshot(self) -> list[tuple[str, ...]]:
        """``show servers state`` without the time-since-last-change column, then each server's
        status class (a check in progress aside), weight and address in ``show stat``: equal
        while nothing changed."""
        return [
            (s.backend, s.server, s.addr, str(s.port), str(int(s.admin_state)), str(s.uweight))
            for s in self.client.show_servers_state()
        ] + [
            (r.proxy, r.server, r.status_class, str(r.weight), str(r.addr))
            for r in self.client.show_stat() if r.is_server
        ]

    def wait_status(self, server: str, status: str, timeout: float = 10.0, backend: str = "app") -> None:
        def reached() -> bool:
            row = self.row(server, backend)
            return row is not None and row.status == status

        wait_until(reached, timeout, f"{backend}/{server} to be {status} (now {self.statuses(backend)})")

    def wait_until_sessions(
        self, server: str, count: int, timeout: float = 5.0, backend: str = "app"
    ) -> None:
        def reached() -> bool:
            row = self.row(server, backend)
            return row is not None and row.scur >= count

        wait_until(reached, timeout, f"{count} session(s) on {backend}/{server}")

    def get(self, path: str = "/", timeout: float = 10.0) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.lb.frontend_port, timeout=timeout)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()


def wait_served(pool: Pool, server: str, timeout: float = 10.0) -> None:
    """Until a request through HAProxy is answered by ``server``."""
    expected = f"Hello {server}!".encode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pool.get()[1].strip() == expected:
            return
        time.sleep(0.02)
    raise TimeoutError(f"{server} never answered through haproxy")
