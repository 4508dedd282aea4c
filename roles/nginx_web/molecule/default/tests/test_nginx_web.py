"""testinfra checks of the nginx_web role in a container without systemd."""

from __future__ import annotations

import json
import time


def test_nginx_runs_as_a_process_with_the_role_config(host):
    master = host.process.get(comm="nginx", ppid="1")
    assert master.user == "root"
    assert host.file("/run/nginx.pid").content_string.strip() == str(master.pid)
    workers = host.process.filter(comm="nginx", ppid=str(master.pid))
    assert workers and all(w.user == "www-data" for w in workers)
    conf = host.file("/etc/nginx/nginx.conf")
    assert conf.mode == 0o644
    assert "server_tokens off;" in conf.content_string
    assert host.run("nginx -t -q -c /etc/nginx/nginx.conf").rc == 0


def test_page_names_the_host(host):
    out = host.check_output("curl -s -i http://127.0.0.1/")
    assert "Hello web1!" in out
    assert "X-Served-By: web1" in out
    # server_tokens off: no version in the Server header
    assert "Server: nginx\r" in out


def test_any_path_serves_the_page(host):
    assert host.check_output("curl -s http://127.0.0.1/some/path").strip() == "Hello web1!"


def test_json_variant_names_host_and_address(host):
    address = host.check_output("hostname -i").split()[0]
    doc = json.loads(host.check_output(f"curl -s http://{address}/hello.json"))
    assert doc == {"host": "web1", "address": address, "port": 80}


def test_health_endpoint_follows_the_health_file(host):
    url = "http://127.0.0.1/health"
    assert host.check_output(f"curl -s -o /dev/null -w '%{{http_code}}' {url}") == "200"
    host.check_output("mv /var/www/hapool/hapool-health.txt /var/www/hapool/away.txt")
    try:
        assert host.check_output(f"curl -s -o /dev/null -w '%{{http_code}}' {url}") == "503"
    finally:
        host.check_output("mv /var/www/hapool/away.txt /var/www/hapool/hapool-health.txt")
    assert host.check_output(f"curl -s -o /dev/null -w '%{{http_code}}' {url}") == "200"


def test_slow_endpoint_is_slow(host):
    started = time.monotonic()
    size = host.check_output("curl -s http://127.0.0.1/slow | wc -c")
    elapsed = time.monotonic() - started
    assert int(size) == 3072
    assert 1.5 < elapsed < 10
