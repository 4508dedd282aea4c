"""testinfra checks of the haproxy role in a container without systemd."""

from __future__ import annotations

import base64
import os
import pathlib
import subprocess
import sys
import time

RUN = "/run/haproxy"
ADMIN = f"{RUN}/admin.sock"
MASTER = f"{RUN}/master.sock"
EPHEMERAL = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
SCENARIO = pathlib.Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
INVENTORY = pathlib.Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
LOAD_OUT = "/tmp/load.out"  # noqa: S108 - a path inside the container

# A keep-alive client that runs in the container during a reload and counts failed requests.
LOAD_SCRIPT = r"""
import http.client, os, time
ok = errors = 0
deadline = time.monotonic() + 240
conn = http.client.HTTPConnection("127.0.0.1", 8080, timeout=5)
while time.monotonic() < deadline and not os.path.exists("/tmp/load.stop"):
    try:
        conn.request("GET", "/")
        resp = conn.getresponse()
        resp.read()
        if resp.status == 200:
            ok += 1
        else:
            errors += 1
        if resp.will_close:
            conn.close()
    except Exception:
        errors += 1
        conn.close()
with open("/tmp/load.out.tmp", "w") as out:
    out.write(f"{ok} {errors}\n")
os.rename("/tmp/load.out.tmp", "/tmp/load.out")
"""


def cli(host, command: str, socket: str = ADMIN) -> str:
    return host.check_output(f"echo '{command}' | socat -t 5 stdio unix-connect:{socket}")


def status(host, code_of: str) -> str:
    return host.check_output(f"curl -s -o /dev/null -w '%{{http_code}}' {code_of}")


def password() -> str:
    return (EPHEMERAL / "secrets" / "haproxy-stats-password").read_text().strip()


def converge(*extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(pathlib.Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            str(INVENTORY),
            str(SCENARIO / "converge.yml"),
            *extra,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def worker_pids(host) -> list[str]:
    out = cli(host, "show proc", MASTER)
    return [line.split()[0] for line in out.splitlines() if " worker " in f" {line} "]


def test_master_worker_started_by_the_role(host):
    pid = host.file(f"{RUN}/haproxy.pid").content_string.strip()
    master = host.process.get(pid=int(pid))
    assert master.comm == "haproxy"
    assert " -W " in f" {master.args} " and " -D " in f" {master.args} "
    assert f"-S {MASTER},mode,600" in master.args
    workers = host.process.filter(comm="haproxy", ppid=pid)
    assert len(workers) == 1
    assert workers[0].user == "haproxy"


def test_configuration_files(host):
    cfg = host.file("/etc/haproxy/haproxy.cfg")
    users = host.file("/etc/haproxy/hapool-stats-users.cfg")
    assert cfg.mode == 0o644
    assert users.mode == 0o600
    assert password() in users.content_string
    assert password() not in cfg.content_string
    for line in (
        "master-worker",
        "option idle-close-on-response",
        "option redispatch 1",
        "retries 3",
        "load-server-state-from-file global",
        "server-state-file /var/lib/haproxy/server-state",
        f"stats socket {ADMIN} mode 660 level admin group haproxy expose-fd listeners",
        "default-server check inter 1s fastinter 500ms downinter 5s rise 1 fall 2",
        "http-check expect status 200",
        "server web1 127.0.0.1:9001 check",
        "balance uri",
        "hash-type consistent",
        "server web1 127.0.0.1:9001 check weight 2",
    ):
        assert line in cfg.content_string, line
    check = host.run("haproxy -c -f /etc/haproxy/hapool-stats-users.cfg -f /etc/haproxy/haproxy.cfg")
    assert check.rc == 0, check.stderr


def test_sockets_are_group_owned_and_never_world_accessible(host):
    admin = host.file(ADMIN)
    assert admin.is_socket
    assert admin.mode == 0o660
    assert admin.group == "haproxy"
    master = host.file(MASTER)
    assert master.mode == 0o600
    run = host.file(RUN)
    assert run.mode == 0o750
    assert run.group == "haproxy"


def test_socket_group_members_use_the_runtime_api_and_others_cannot(host):
    ok = host.run(f"su controller -c \"echo 'show stat' | socat stdio unix-connect:{ADMIN}\"")
    assert ok.rc == 0 and ok.stdout.startswith("# pxname,svname,")
    denied = host.run(f"su outsider -c \"echo 'show stat' | socat stdio unix-connect:{ADMIN}\"")
    assert denied.rc != 0


def test_round_robin_reaches_both_servers(host):
    bodies = [host.check_output("curl -s http://127.0.0.1:8080/") for _ in range(6)]
    assert bodies.count("Hello web1!") == 3
    assert bodies.count("Hello web2!") == 3


def test_stats_page_requires_credentials(host):
    url = "http://127.0.0.1:8404/stats"
    assert status(host, url) == "401"
    assert status(host, f"-u admin:wrong {url}") == "401"
    assert status(host, f"-u admin:{password()} {url}") == "200"


def test_prometheus_exporter_and_stats_listen_on_loopback_only(host):
    metrics = host.check_output("curl -s http://127.0.0.1:8404/metrics")
    assert "haproxy_process_nbthread" in metrics
    listening = host.check_output("ss -Hltn")
    assert "127.0.0.1:8404" in listening
    assert "0.0.0.0:8404" not in listening and "*:8404" not in listening


def test_reload_keeps_runtime_state_and_loses_no_request(host):
    cli(host, "set server app/web2 state maint")
    cli(host, "set server app/web1 weight 50")
    before = worker_pids(host)
    script = base64.b64encode(LOAD_SCRIPT.encode()).decode()
    host.check_output(f"rm -f /tmp/load.stop /tmp/load.out && echo {script} | base64 -d > /tmp/load.py")
    host.check_output("nohup python3 /tmp/load.py > /dev/null 2>&1 &")
    time.sleep(1)
    # A configuration change (another client timeout) makes the handler reload.
    result = converge("-e", "haproxy_timeout_client=31s")
    time.sleep(1)
    host.check_output("touch /tmp/load.stop")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Ask the master to reload" in result.stdout
    after = worker_pids(host)
    assert after and after != before
    state = cli(host, "show servers state app")
    web1 = next(line.split() for line in state.splitlines() if " web1 " in line)
    web2 = next(line.split() for line in state.splitlines() if " web2 " in line)
    assert web2[6] == "1", state  # srv_admin_state: forced maintenance survived the reload
    assert web1[7] == "50", state  # srv_uweight: the runtime weight survived the reload
    for _ in range(50):
        if host.file(LOAD_OUT).exists:
            break
        time.sleep(0.2)
    ok, errors = (int(n) for n in host.check_output("cat /tmp/load.out").split())
    print(f"keep-alive client during the reload: {ok} requests, {errors} errors")
    assert ok > 50
    assert errors == 0
    cli(host, "set server app/web2 state ready")
    cli(host, "set server app/web1 weight 1")
