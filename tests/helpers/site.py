"""Run the project's playbooks against one of its inventories in isolation.

Everything the playbooks write goes below a temporary state root ($HAPOOL_STATE_DIR, which the
inventories and the hapool inventory plugin follow) and the balancer listens on free ports, so a
Deployment runs next to `make demo` and other tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from helpers.procs import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent




def recap(output: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP counters of an ansible-playbook run, per host."""
    result = {}
    for host, counters in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", output, re.MULTILINE):
        result[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counters)}
    return result


class Deployment:
    def __init__(self, tmp_path: Path, inventory: str, pools: list[dict[str, Any]]) -> None:
        # Short: HAProxy refuses unix socket paths over 97 characters (pytest's tmp_path is long).
        self.root = Path(tempfile.mkdtemp(prefix="hp-", dir="/tmp"))
        (tmp_path / "state-root").write_text(str(self.root))
        self.inventory = ROOT / "inventories" / inventory
        self.frontend = free_port()
        self.stats = free_port()
        self.extra_vars: dict[str, Any] = {
            "hapool_pools": pools,
            "hapool_frontend_port": self.frontend,
            "hapool_stats_port": self.stats,
        }
        self.env = {
            **os.environ,
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "ANSIBLE_NOCOLOR": "1",
            "HAPOOL_STATE_DIR": str(self.root),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }

    def remove_state(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def play(self, playbook: str, *args: str, **extra: Any) -> subprocess.CompletedProcess[str]:
        """Run a playbook with the deployment's vars (and ``extra``); ``args`` go to ansible-playbook."""
        return subprocess.run(
            [str(BIN / "ansible-playbook"), "-i", str(self.inventory), str(ROOT / "playbooks" / playbook),
             "-e", json.dumps({**self.extra_vars, **extra}), *args],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=600, check=False,
        )

    def get(self, path: str = "/", timeout: float = 5) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.frontend}{path}", timeout=timeout) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(errors="replace")

    def hosts_answering(self, want: int, deadline_s: float = 30, tries: int = 40) -> set[str]:
        """Bodies of `tries` requests, retried until `want` distinct 200 answers (or the deadline)."""
        deadline = time.monotonic() + deadline_s
        bodies: set[str] = set()
        while time.monotonic() < deadline:
            bodies = set()
            for _ in range(tries):
                status, body = self.get()
                if status == 200:
                    bodies.add(body.strip())
            if len(bodies) >= want:
                return bodies
            time.sleep(0.5)
        return bodies

    def admin_socket(self, balancer_dir: str) -> Path:
        return self.root / balancer_dir / "haproxy" / "run" / "admin.sock"

    @staticmethod
    def runtime(sock_path: Path, command: str) -> str:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(sock_path))
            sock.sendall(command.encode() + b"\n")
            sock.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        return data.decode()
