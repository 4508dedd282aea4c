"""Checks of playbooks/site.yml through the balancer: one HAProxy container in front of three
nginx containers, one pool per balancing algorithm (see molecule.yml).

Every request is made inside the balancer container to its loopback frontend
(127.0.0.1:8080, content switching on the X-Pool header; 127.0.0.1:8081 for the weighted pool)
by a small Python client that reports which web host answered (X-Served-By).
"""

from __future__ import annotations

import base64
import collections
import json
import os
import pathlib
import shlex
import subprocess
import sys
import time

import pytest
import testinfra

ROOT = pathlib.Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
EPHEMERAL = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
INVENTORY = pathlib.Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
WEB = ["hapool-mol-web1", "hapool-mol-web2", "hapool-mol-web3"]
ADMIN = "/run/haproxy/admin.sock"
MASTER = "/run/haproxy/master.sock"
CONFIG = "/etc/haproxy/haproxy.cfg"

CLIENT = r"""
import http.client, json, sys, time
args = json.loads(sys.argv[1])
paths = args.get("paths", ["/"])
answers = []
for i in range(args.get("n", 1)):
    path = paths[i % len(paths)]
    source = (args["source"], 0) if args.get("source") else None
    conn = http.client.HTTPConnection("127.0.0.1", args.get("port", 8080), timeout=30, source_address=source)
    conn.request("GET", path, headers=args.get("headers", {}))
    resp = conn.getresponse()
    resp.read()
    answers.append([path, resp.getheader("X-Served-By") if resp.status == 200 else f"status {resp.status}"])
    conn.close()
    time.sleep(args.get("pause", 0))
print(json.dumps(answers))
"""


@pytest.fixture(scope="module", autouse=True)
def client(host):
    script = base64.b64encode(CLIENT.encode()).decode()
    host.check_output(f"echo {script} | base64 -d > /tmp/hapool-client.py")


def requests(host, *, n=1, pool=None, port=8080, paths=None, source=None,
             pause: float = 0) -> list[tuple[str, str]]:
    """Make n requests through the balancer, one after the other (``pause`` seconds apart);
    return (path, host that answered) pairs."""
    args: dict[str, object] = {"n": n, "port": port, "pause": pause}
    if pool:
        args["headers"] = {"X-Pool": pool}
    if paths:
        args["paths"] = paths
    if source:
        args["source"] = source
    out = host.check_output(f"python3 /tmp/hapool-client.py {shlex.quote(json.dumps(args))}")
    return [tuple(pair) for pair in json.loads(out)]


def served_by(answers) -> collections.Counter[str]:
    return collections.Counter(who for _, who in answers)


def cli(host, command: str, socket: str = ADMIN) -> str:
    return host.check_output(f"echo {shlex.quote(command)} | socat -t 5 stdio unix-connect:{socket}")


def stat_rows(host) -> list[dict[str, str]]:
    lines = cli(host, "show stat").splitlines()
    header = lines[0].lstrip("# ").split(",")
    return [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]


def wait_until_up(host, backend: str, servers: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = [
            r
            for r in stat_rows(host)
            if r["pxname"] == backend and r["svname"] not in ("FRONTEND", "BACKEND")
        ]
        if sum(r["status"].startswith("UP") for r in rows) == servers:
            return
        time.sleep(0.5)
    raise AssertionError(f"{backend}: not {servers} servers UP within {timeout}s: {rows}")


def password() -> str:
    return (EPHEMERAL / "secrets" / "haproxy-stats-password").read_text().strip()


def test_pools_are_registered_from_the_inventory(host):
    cfg = host.file(CONFIG).content_string
    for line in (
        "backend rr",
        "backend sticky",
        "balance source",
        "hash-type consistent",
        "balance leastconn",
        "balance uri",
        "balance random",
        "server hapool-mol-web1 ",
        "server hapool-mol-web3 ",
        "use_backend lc if { req.hdr(x-pool) -m str lc }",
        "slowstart 5s",
    ):
        assert line in cfg, line
    weighted = cfg.split("\nbackend weighted\n", 1)[1].split("\nbackend ", 1)[0]
    assert "server hapool-mol-web1 " in weighted and " weight 3" in weighted
    assert "server hapool-mol-web2 " in weighted and " weight 1" in weighted
    assert "hapool-mol-web3" not in weighted
    for backend, servers in (
        ("rr", 3),
        ("sticky", 3),
        ("weighted", 2),
        ("lc", 3),
        ("urlhash", 3),
        ("rand", 3),
    ):
        wait_until_up(host, backend, servers)


def test_round_robin_reaches_all_three(host):
    counts = served_by(requests(host, n=30))
    assert set(counts) == set(WEB), counts
    assert min(counts.values()) >= 9, counts


def test_source_sends_one_client_to_one_host(host):
    chosen = {}
    for last in range(1, 9):
        source = f"127.0.0.{last}"
        counts = served_by(requests(host, n=10, pool="sticky", source=source))
        assert len(counts) == 1, (source, counts)
        chosen[source] = next(iter(counts))
    assert set(chosen.values()) <= set(WEB)
    assert len(set(chosen.values())) >= 2, chosen


def test_weights_three_to_one(host):
    counts = served_by(requests(host, n=400, port=8081))
    assert set(counts) == {"hapool-mol-web1", "hapool-mol-web2"}, counts
    assert 270 <= counts["hapool-mol-web1"] <= 330, counts
    assert 70 <= counts["hapool-mol-web2"] <= 130, counts


def test_uri_hash_keeps_a_url_on_one_host(host):
    paths = [f"/item/{n}" for n in range(12)]
    answers = requests(host, n=48, pool="urlhash", paths=paths)
    by_path = collections.defaultdict(set)
    for path, who in answers:
        by_path[path].add(who)
    assert all(len(hosts) == 1 for hosts in by_path.values()), by_path
    assert len(set().union(*by_path.values())) >= 2, by_path


def test_random_spreads(host):
    counts = served_by(requests(host, n=30, pool="rand"))
    assert set(counts) <= set(WEB) and len(counts) >= 2, counts


def test_leastconn_prefers_the_idle_host(host):
    slow = shlex.quote(json.dumps({"n": 1, "paths": ["/slow"], "headers": {"X-Pool": "lc"}}))
    for n in (1, 2):
        host.check_output(f"nohup python3 /tmp/hapool-client.py {slow} > /tmp/slow{n}.out 2>&1 &")
        # wait for the slow request to be in flight before sending the next one
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            busy = [
                r["svname"]
                for r in stat_rows(host)
                if r["pxname"] == "lc" and r["svname"] in WEB and int(r["scur"] or 0) > 0
            ]
            if len(busy) == n:
                break
            time.sleep(0.1)
        assert len(busy) == n, busy
    idle = set(WEB) - set(busy)
    assert len(idle) == 1
    # 0.2 s apart: HAProxy has ended the previous request's stream on the idle host (its count
    # back to 0) before the next one comes; back to back, a request could find the idle host
    # still at 1, tied with the busy ones.
    counts = served_by(requests(host, n=12, pool="lc", pause=0.2))
    assert dict(counts) == {idle.pop(): 12}, (busy, counts)


def test_stats_socket_answers_show_stat(host):
    out = cli(host, "show stat")
    assert out.startswith("# pxname,svname,qcur,qmax,scur,")
    rows = stat_rows(host)
    assert {r["pxname"] for r in rows} >= {
        "main",
        "weighted",
        "stats",
        "rr",
        "sticky",
        "lc",
        "urlhash",
        "rand",
    }
    assert any(
        r["pxname"] == "rr" and r["svname"] == "hapool-mol-web2" and r["status"].startswith("UP")
        for r in rows
    )


def test_stats_page_refuses_requests_without_credentials(host):
    def code(args: str) -> str:
        return host.check_output(
            f"curl -s -o /dev/null -w '%{{http_code}}' {args} http://127.0.0.1:8404/stats"
        )

    assert code("") == "401"
    assert code("-u admin:not-the-password") == "401"
    assert code(f"-u admin:{shlex.quote(password())}") == "200"
    assert "haproxy_backend_status" in host.check_output("curl -s http://127.0.0.1:8404/metrics")
    assert password() not in host.file(CONFIG).content_string


def test_socket_permissions(host):
    admin = host.file(ADMIN)
    assert admin.is_socket
    assert admin.mode == 0o660
    assert admin.user == "root"
    assert admin.group == "haproxy"
    assert host.file(MASTER).mode == 0o600
    run = host.file("/run/haproxy")
    assert run.mode == 0o750 and run.group == "haproxy"
    assert host.file("/etc/haproxy/hapool-stats-users.cfg").mode == 0o600
    assert (
        f"stats socket {ADMIN} mode 660 level admin group haproxy expose-fd listeners"
        in host.file(CONFIG).content_string
    )


def test_rejected_template_leaves_the_running_balancer_serving(host):
    before_cfg = host.file(CONFIG).md5sum
    before_workers = cli(host, "show proc", MASTER)
    result = subprocess.run(
        [
            str(pathlib.Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            str(INVENTORY),
            str(ROOT / "playbooks" / "site.yml"),
            "--limit",
            "balancers",
            "-e",
            json.dumps({"haproxy_defaults_extra": ["option http_proxy"]}),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "failed to validate" in output
    assert "option 'http_proxy' is not supported any more since HAProxy 2.5" in output
    assert host.file(CONFIG).md5sum == before_cfg
    assert "option http_proxy" not in host.file(CONFIG).content_string
    workers = cli(host, "show proc", MASTER)
    assert [line.split()[0] for line in workers.splitlines() if " worker " in line] == [
        line.split()[0] for line in before_workers.splitlines() if " worker " in line
    ]
    assert set(served_by(requests(host, n=30))) == set(WEB)


def test_a_dying_server_costs_clients_nothing(host):
    web3 = testinfra.get_host("docker://hapool-mol-web3")
    web3.check_output("nginx -s stop")
    try:
        counts = served_by(requests(host, n=30))
        assert set(counts) == {"hapool-mol-web1", "hapool-mol-web2"}, counts
    finally:
        for _ in range(20):
            if web3.run("nginx").rc == 0:
                break
            time.sleep(0.2)
    wait_until_up(host, "rr", 3)
