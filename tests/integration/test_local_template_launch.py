"""The local provider launching from a baked template tree, with a real nginx on loopback.

The template tree is made by hand the way a bake leaves it (placeholders for the prefix, the
listen address and port, and the host name); no Ansible run. Every test uses its own state
directory (tmp_path) and destroys what it launched, also when it fails.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from ansible.module_utils.hapool.providers import RUNNING, LaunchSpec, LaunchTemplate, ProviderError
from ansible.module_utils.hapool.providers.local import LocalProvider

pytestmark = pytest.mark.integration

VERSION = "0123456789ab"

# modelled on local.NGINX_CONF, with the placeholders a bake leaves
TEMPLATE_CONF = """\
# nginx.conf of a host of pool @@HAPOOL_POOL@@ baked from a template.
{user_line}worker_processes 1;
pid logs/nginx.pid;
error_log logs/error.log warn;

events {
    worker_connections 512;
}

http {
    default_type application/octet-stream;
    types {
        text/html html htm;
        text/plain txt;
    }
    access_log @@HAPOOL_PREFIX@@/logs/access.log;
    client_body_temp_path tmp/client_body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;

    server {
        listen @@HAPOOL_ADDRESS@@:@@HAPOOL_PORT@@;
        server_name @@HAPOOL_HOST@@;
        root html;
        index index.html;
        location = /health {
            default_type text/plain;
            return 200 "ok @@HAPOOL_HOST@@\\n";
        }
    }
}
"""


def get(url: str, timeout: float = 5) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        assert resp.status == 200
        return resp.read().decode()


def template_tree(root: Path, user: str | None) -> Path:
    """A template tree as a bake leaves it; ``user`` as the bake renders the provider's
    (nginx_web_user: as root, nginx's default worker user cannot read a private tmp_path)."""
    for sub in ("conf", "html", "logs", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    user_line = f"user {user};\n" if user else ""
    (root / "conf" / "nginx.conf").write_text(
        TEMPLATE_CONF.replace("{user_line}", user_line), encoding="utf-8"
    )
    (root / "html" / "index.html").write_text("<h1>Hello @@HAPOOL_HOST@@!</h1>\n", encoding="utf-8")
    return root


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[LocalProvider]:
    p = LocalProvider(tmp_path / "local")
    yield p
    for instance in p.list():
        p.destroy(instance.pool, instance)
    assert p.list() == []


def test_a_host_launched_from_a_template_serves_its_own_values(
    provider: LocalProvider, tmp_path: Path
) -> None:
    tree = template_tree(tmp_path / "templates" / "web" / VERSION, provider.user)
    before = {p.relative_to(tree): p.read_bytes() for p in tree.rglob("*") if p.is_file()}

    inst = provider.launch("web", LaunchSpec(template=LaunchTemplate(str(tree), VERSION)))
    assert inst.state == RUNNING and inst.alive and inst.pool == "web"
    assert inst.extra["template"] == VERSION

    assert get(f"http://{inst.endpoint}/") == f"<h1>Hello {inst.name}!</h1>\n"
    assert get(f"http://{inst.endpoint}/health") == f"ok {inst.name}\n"

    prefix = Path(inst.extra["prefix"])
    meta = json.loads((prefix / "instance.json").read_text())
    assert meta["template"] == VERSION and meta["name"] == inst.name and meta["port"] == inst.port
    conf = (prefix / "conf" / "nginx.conf").read_text()
    assert "@@HAPOOL_" not in conf
    assert f"listen {inst.address}:{inst.port};" in conf
    assert f"access_log {prefix}/logs/access.log;" in conf
    assert "# nginx.conf of a host of pool web baked from a template." in conf
    assert (prefix / "logs" / "access.log").is_file()  # the personalized prefix is the one nginx uses
    assert not (prefix / ".template").exists()  # the staging directory is gone

    again = provider.get("web", inst.name)
    assert again is not None and again.extra["template"] == VERSION  # read back from instance.json
    # the template tree is untouched: the next host copies it again
    assert {p.relative_to(tree): p.read_bytes() for p in tree.rglob("*") if p.is_file()} == before

    gone = provider.destroy("web", inst)
    assert gone is not None and gone.extra["template"] == VERSION
    assert not prefix.exists() and provider.list("web") == []


def test_two_hosts_from_one_template_get_their_own_names_and_ports(
    provider: LocalProvider, tmp_path: Path
) -> None:
    template = LaunchTemplate(str(template_tree(tmp_path / "tree", provider.user)), VERSION)
    a, b = (
        provider.launch("web", LaunchSpec(template=template)),
        provider.launch("web", LaunchSpec(template=template)),
    )
    assert a.name != b.name and a.endpoint != b.endpoint
    assert get(f"http://{a.endpoint}/") == f"<h1>Hello {a.name}!</h1>\n"
    assert get(f"http://{b.endpoint}/") == f"<h1>Hello {b.name}!</h1>\n"
    bare = provider.launch("web")
    assert bare.extra["template"] is None  # a launch without a template records none
    for inst in (a, b, bare):
        provider.destroy("web", inst)
    assert provider.list("web") == []


def test_a_missing_template_tree_is_a_provider_error_and_leaves_nothing(
    provider: LocalProvider, tmp_path: Path
) -> None:
    missing = tmp_path / "templates" / "web" / VERSION
    with pytest.raises(
        ProviderError,
        match=rf"the template tree {missing} of pool web's template version {VERSION} is missing .*"
        r"bake the pool's template again - ansible-playbook playbooks/bake.yml",
    ):
        provider.launch("web", LaunchSpec(template=LaunchTemplate(str(missing), VERSION)))
    assert provider.list("web") == []
    pool_dir = tmp_path / "local" / "pools" / "web"
    assert not pool_dir.exists() or [p for p in pool_dir.iterdir() if p.is_dir()] == []


def test_a_template_with_an_unknown_placeholder_is_a_provider_error_and_leaves_nothing(
    provider: LocalProvider, tmp_path: Path
) -> None:
    tree = template_tree(tmp_path / "tree", provider.user)
    (tree / "html" / "zone.html").write_text("@@HAPOOL_ZONE@@\n", encoding="utf-8")
    with pytest.raises(
        ProviderError, match=rf"cannot launch from template version {VERSION}: .*@@HAPOOL_ZONE@@"
    ):
        provider.launch("web", LaunchSpec(template=LaunchTemplate(str(tree), VERSION)))
    assert provider.list("web") == []
    pool_dir = tmp_path / "local" / "pools" / "web"
    assert [p for p in pool_dir.iterdir() if p.is_dir()] == []
