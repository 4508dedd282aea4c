"""baking.py without a Docker engine or an Ansible run: artefact names, the plan, the local build
directory, finishing a hand-made build, publishing, recording with GC, removing artefacts, the
current template of a pool, the served check against a tiny HTTP server, the docker start script.

Providers are fakes (a :class:`Provider` subclass whose ``template_base`` is a fixed string);
trees are built in ``tmp_path``; time is a number passed in.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.hapool import baking
from ansible.module_utils.hapool.baking import (
    BAKE_CODE_KEY,
    RENDERED,
    START_SCRIPT,
    START_SCRIPT_PATH,
    BakePlan,
    artifact_name,
    bake_code_digest,
    bake_kind,
    check_served,
    current_template,
    finish_build,
    owner,
    plan,
    prepare_build,
    publish,
    record,
    refuse_pool,
    remove_all,
    remove_artifact,
    sweep,
    template_inputs,
    template_variables,
    templates_dir,
)
from ansible.module_utils.hapool.errors import InvalidNameError, ProviderError, TemplateError
from ansible.module_utils.hapool.providers import (
    Instance,
    LaunchSpec,
    LaunchTemplate,
    LocalProvider,
    Provider,
    get_provider,
)
from ansible.module_utils.hapool.templates import (
    ADDRESS,
    HOST,
    PORT,
    PREFIX,
    TemplateInputs,
    TemplateVersion,
    index_path,
    read_index,
    record_bake,
    template_version,
    write_index,
)

V1, V2, V3, V4 = (f"{n:012x}" for n in (0xA1, 0xB2, 0xC3, 0xD4))
BASE = "nginx /usr/sbin/nginx sha256:" + "0b" * 32


class FakeProvider(Provider):
    """A provider that launches nothing; its template base is a fixed string."""

    name = "local"

    def __init__(self, state_dir: Path, name: str = "local", **attrs: Any) -> None:
        super().__init__(state_dir)
        self.name = name  # type: ignore[misc]
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        for key, value in attrs.items():
            setattr(self, key, value)

    @property
    def bake_kind(self) -> str | None:
        return str(getattr(self, "kind", "")) or {"docker": "docker", "local": "local"}.get(self.name)

    def template_base(self, spec: LaunchSpec | None = None) -> str:
        return BASE

    def list(self, pool: str | None = None) -> list[Instance]:
        return []

    def launch(self, pool: str, spec: LaunchSpec | None = None) -> Instance:
        raise AssertionError("the fake provider launches nothing")

    def destroy(self, pool: str, instance: Instance | str) -> Instance | None:
        return None

    # the docker build steps, recorded
    def start_build(self, pool: str, version: str, base_image: str) -> str:
        self.calls.append(("start_build", (pool, version, base_image), {}))
        return f"hapool-bake-{pool}-{version}"

    def commit_build(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append(("commit_build", args, kwargs))

    def remove_build(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append(("remove_build", args, kwargs))

    def remove_image(self, reference: str) -> bool:
        self.calls.append(("remove_image", (reference,), {}))
        return bool(getattr(self, "image_removable", True))

    def artifact_exists(self, artifact: str) -> bool:
        return artifact not in getattr(self, "missing", ())


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def dead_pid() -> int:
    """The pid of a process that has exited (and was reaped)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


# --- artefact names -------------------------------------------------------------------------------


def test_artifact_name_per_provider(tmp_path: Path) -> None:
    assert artifact_name("docker", tmp_path, "web", V1) == f"hapool/web:{V1}"
    assert artifact_name("docker", tmp_path, "api_v2", V1) == f"hapool/api_v2:{V1}"
    assert artifact_name("docker", tmp_path, "a__b", V1) == f"hapool/a__b:{V1}"  # docker allows "__"
    assert artifact_name("local", tmp_path, "web", V1) == str(tmp_path / "templates" / "web" / V1)
    assert templates_dir(tmp_path, "web") == tmp_path / "templates" / "web"


@pytest.mark.parametrize("pool", ["web_", "a___b", "Web", "web.", "_web"])
def test_artifact_name_refuses_a_pool_docker_cannot_name(tmp_path: Path, pool: str) -> None:
    with pytest.raises(
        TemplateError, match=rf"pool {re.escape(pool)}: a docker image cannot be named hapool/"
    ):
        artifact_name("docker", tmp_path, pool, V1)


def test_artifact_name_refuses_other_providers_and_bad_local_pools(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="no baked artefact of kind 'vagrant'"):
        artifact_name("vagrant", tmp_path, "web", V1)  # a kind (hapool.baking.bake_kind), not a provider
    with pytest.raises(InvalidNameError):
        artifact_name("local", tmp_path, "../web", V1)  # the pool makes a path: validated


# --- plan -------------------------------------------------------------------------------------------


def inputs(variables: dict[str, Any], files: dict[str, str], pool: str = "web") -> TemplateInputs:
    return TemplateInputs(pool, "local", BASE, variables, files)


def test_plan_bakes_a_new_version_and_reuses_a_usable_one(tmp_path: Path) -> None:
    provider = FakeProvider(tmp_path / "local")
    variables = {"nginx_web_hostname": HOST, "nginx_web_workers": 2}
    files = {"role/tasks/main.yml": "ab" * 32}
    state = str(tmp_path / "state")
    expected = template_version(TemplateInputs("web", "local", BASE, variables, files))

    first = plan(provider, inputs(variables, files), state_root=state)
    assert first == BakePlan("web", "local", expected, BASE, "bake", None, None, "first bake", variables)
    assert not Path(index_path(state, "web")).exists()  # plan writes nothing

    path = index_path(state, "web")
    os.makedirs(os.path.dirname(path))
    index = record_bake(read_index(path, "web"), V1, "/old", 1.0, usable=True)
    index = record_bake(index, expected, "/artefact", 2.0, usable=True)
    write_index(path, index)
    again = plan(provider, inputs(variables, files), state_root=state)
    assert again == BakePlan("web", "local", expected, BASE, "reuse", expected, "/artefact", "", variables)

    other = plan(provider, inputs({}, files), state_root=state)
    assert other.version != expected and other.action == "bake" and other.artifact is None
    assert other.current == expected and other.reason == "template changed"


def test_plan_bakes_again_after_a_failed_bake(tmp_path: Path) -> None:
    provider = FakeProvider(tmp_path / "local")
    state = str(tmp_path / "state")
    version = template_version(TemplateInputs("web", "local", BASE, {}, {}))
    path = index_path(state, "web")
    os.makedirs(os.path.dirname(path))
    write_index(path, record_bake(read_index(path, "web"), version, "/x", 1.0, usable=False, reason="boom"))
    result = plan(provider, inputs({}, {}), state_root=state)
    assert (result.version, result.action, result.artifact, result.current) == (version, "bake", None, None)
    assert result.reason == "its last bake failed: boom"


def test_plan_bakes_again_a_current_version_whose_artefact_is_gone(tmp_path: Path) -> None:
    """A usable, current version whose artefact was deleted (docker image rm, rm -rf of the tree)
    is baked again, saying why: reusing it would make every launch fail."""
    state = str(tmp_path / "state")
    version = template_version(TemplateInputs("web", "local", BASE, {}, {}))
    path = index_path(state, "web")
    os.makedirs(os.path.dirname(path))
    write_index(
        path, record_bake(read_index(path, "web"), version, f"hapool/web:{version}", 1.0, usable=True)
    )
    there = plan(FakeProvider(tmp_path, "docker"), inputs({}, {}), state_root=state)
    assert (there.action, there.artifact) == ("reuse", f"hapool/web:{version}")
    gone = plan(
        FakeProvider(tmp_path, "docker", missing={f"hapool/web:{version}"}), inputs({}, {}), state_root=state
    )
    assert (gone.action, gone.artifact, gone.current) == ("bake", None, version)
    assert gone.reason == f"the artefact hapool/web:{version} of version {version} is missing"
    assert read_index(path, "web").current == version  # plan writes nothing


def test_plan_with_a_real_local_provider_sees_a_deleted_template_tree(tmp_path: Path) -> None:
    provider = LocalProvider(tmp_path / "local")
    state = str(tmp_path / "state")
    made = TemplateInputs("web", "local", BASE, {}, {})
    version = template_version(made)
    tree = Path(artifact_name("local", state, "web", version))
    write(tree / "conf" / "nginx.conf", "events {}\n")
    path = index_path(state, "web")
    write_index(path, record_bake(read_index(path, "web"), version, str(tree), 1.0, usable=True))
    assert plan(provider, made, state_root=state).action == "reuse"
    (tree / "conf" / "nginx.conf").unlink()  # a tree without its configuration is no artefact
    assert plan(provider, made, state_root=state).action == "bake"
    shutil.rmtree(tree)
    missing = plan(provider, made, state_root=state)
    assert missing.action == "bake" and "is missing" in missing.reason


def test_plan_names_a_corrupt_index(tmp_path: Path) -> None:
    state = tmp_path / "state"
    write(Path(index_path(state, "web")), "{not json")
    with pytest.raises(TemplateError, match="is not JSON"):
        plan(FakeProvider(tmp_path), inputs({}, {}), state_root=str(state))


# --- the template's inputs ------------------------------------------------------------------------

SEEN = {
    "nginx_web_index_content": "Hello @@HAPOOL_HOST@@!\n",
    "nginx_web_worker_processes": "1",
    "nginx_web_prefix": "/state/web/localhost",
    "nginx_web_root": "/state/web/localhost/html",
    "nginx_web_user": "root",
    "nginx_web_port": 8080,
    "nginx_web_listen_address": "127.0.0.1",
    "nginx_web_hostname": "localhost",
    "nginx_web_json_extra": {"pools": ["web", "api"]},
}


def test_template_variables_drop_what_the_build_host_sets_per_provider() -> None:
    entry = {"name": "web", "template": {"variables": {"nginx_web_keepalive_timeout": 5}}}
    forced = {"nginx_web_hostname": HOST, "nginx_web_json_extra": {"pools": ["web"]}}
    common = {"nginx_web_index_content": "Hello @@HAPOOL_HOST@@!\n", "nginx_web_worker_processes": "1"}
    local = template_variables(entry, "local", SEEN)
    assert local == {**common, "nginx_web_keepalive_timeout": 5, **forced}
    docker = template_variables(entry, "docker", SEEN)
    # a docker build container takes the paths and the user: they are part of its template
    assert docker == {
        **common,
        "nginx_web_prefix": "/state/web/localhost",
        "nginx_web_root": "/state/web/localhost/html",
        "nginx_web_user": "root",
        "nginx_web_keepalive_timeout": 5,
        **forced,
    }
    with pytest.raises(TemplateError, match="the cloud provider does not launch from baked templates"):
        template_variables(entry, "cloud", SEEN)


def test_a_docker_pools_root_and_user_change_its_version_a_local_pools_do_not(tmp_path: Path) -> None:
    role = write(tmp_path / "role" / "tasks" / "main.yml", "- ansible.builtin.meta: noop\n").parents[1]
    entry = {"name": "web"}

    def version(provider: str, **changed: Any) -> str:
        made = template_inputs(entry, provider, base=BASE, variables={**SEEN, **changed}, role_dir=str(role))
        return template_version(made)

    for key, value in (("nginx_web_root", "/srv/www"), ("nginx_web_user", "nginx")):
        assert version("docker", **{key: value}) != version("docker"), key
        assert version("local", **{key: value}) == version("local"), key
    for key, value in (("nginx_web_port", 81), ("nginx_web_hostname", "other")):
        assert version("docker", **{key: value}) == version("docker"), key


def test_template_inputs_hash_the_bake_code_and_refuse_an_extra_file_hiding_it(tmp_path: Path) -> None:
    role = write(tmp_path / "role" / "tasks" / "main.yml", "- ansible.builtin.meta: noop\n").parents[1]
    made = template_inputs({"name": "web"}, "local", base=BASE, variables={}, role_dir=str(role))
    source = Path(baking.__file__).read_bytes()
    assert made.files[BAKE_CODE_KEY] == hashlib.sha256(source).hexdigest() == bake_code_digest()
    assert made.files["role/tasks/main.yml"]
    hiding = write(tmp_path / "baking.py", "# not the bake code\n")
    with pytest.raises(TemplateError, match="would hide the bake code"):
        template_inputs(
            {"name": "web"}, "local", base=BASE, variables={}, role_dir=str(role), extra=[str(hiding)]
        )


# --- the local build host ---------------------------------------------------------------------------


def bake_plan(provider: str = "local", version: str = V1) -> BakePlan:
    return BakePlan("web", provider, version, BASE, "bake", None, None)


def build_dir(state: str | Path, version: str = V1) -> Path:
    """The build directory this process owns (no ansible-playbook above the test run)."""
    pid, start = owner()
    assert pid == os.getpid()
    return Path(state) / "templates" / "web" / f"build-{version}-{pid}-{start}"


def test_prepare_build_local_makes_the_layout_a_free_port_and_the_host_vars(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    build = prepare_build(FakeProvider(tmp_path / "local"), LaunchSpec(), bake_plan(), state)
    directory = build_dir(state)
    assert build["dir"] == str(directory)
    assert {k: build[k] for k in ("provider", "pool", "version", "address")} == {
        "provider": "local",
        "pool": "web",
        "version": V1,
        "address": "127.0.0.1",
    }
    assert sorted(p.name for p in directory.iterdir()) == ["conf", "html", "logs", "tmp"]
    port = build["port"]
    assert isinstance(port, int) and 0 < port < 65536
    with socket.socket() as sock:  # free: it can be bound
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
    assert build["host_vars"] == {
        "ansible_connection": "local",
        "nginx_web_prefix": str(directory),
        "nginx_web_conf_file": str(directory / "conf" / "nginx.conf"),
        "nginx_web_pid_file": str(directory / "logs" / "nginx.pid"),
        "nginx_web_root": str(directory / "html"),
        "nginx_web_log_dir": str(directory / "logs"),
        "nginx_web_temp_dir": str(directory / "tmp"),
        "nginx_web_listen_address": "127.0.0.1",
        "nginx_web_port": port,
        "nginx_web_user": "",
    }


def test_prepare_build_local_replaces_a_leftover_and_passes_the_user(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    directory = build_dir(state)
    write(directory / "conf" / "nginx.conf", "stale\n")
    write(directory / "html" / "old" / "page.html", "stale\n")
    build = prepare_build(FakeProvider(tmp_path / "local", user="www-data"), LaunchSpec(), bake_plan(), state)
    assert build["dir"] == str(directory)
    assert [p for p in directory.rglob("*") if p.is_file()] == []
    assert build["host_vars"]["nginx_web_user"] == "www-data"


def test_prepare_build_refuses_a_provider_without_templates(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="the cloud provider does not launch from baked templates"):
        prepare_build(FakeProvider(tmp_path, "cloud"), LaunchSpec(), bake_plan("cloud"), str(tmp_path))


def test_prepare_build_docker_fails_on_a_pool_docker_cannot_name_before_any_container(tmp_path: Path) -> None:
    provider = FakeProvider(tmp_path, "docker")
    bad = BakePlan("web_", "docker", V1, BASE, "bake", None, None)
    with pytest.raises(TemplateError, match="cannot be named hapool/web_"):
        prepare_build(provider, LaunchSpec(image="hapool/base:bookworm"), bad, str(tmp_path))
    assert provider.calls == []


@pytest.mark.parametrize(
    ("name", "settings", "kind"),
    [("local", {}, "local"), ("docker", {}, "docker"), ("vagrant", {}, "docker"),
     ("vagrant", {"backend": "docker"}, "docker"), ("vagrant", {"backend": "libvirt"}, None)],
)  # fmt: skip
def test_bake_kind_of_each_provider(
    tmp_path: Path, name: str, settings: dict[str, Any], kind: str | None
) -> None:
    """Vagrant's docker backend bakes what the docker provider bakes (an image on the same engine);
    a VM backend bakes nothing yet. Making the providers touches no engine."""
    provider = get_provider(name, state_root=tmp_path, **settings)
    assert provider.bake_kind == kind
    if kind is None:
        with pytest.raises(TemplateError, match=r"the vagrant provider \(libvirt backend\) does not launch"):
            bake_kind(provider)
    else:
        assert bake_kind(provider) == kind


@pytest.mark.parametrize(
    ("entry", "words"),
    [({"name": "web", "provider": "local"}, None), ({"name": "web", "provider": "docker"}, None),
     ({"name": "web", "provider": "vagrant"}, None),
     ({"name": "web", "provider": "vagrant", "launch": {"vagrant_backend": "docker"}}, None),
     ({"name": "web", "provider": "vagrant", "launch": {"vagrant_backend": "virtualbox"}},
      "pool web: the vagrant virtualbox backend has no launch template"),
     ({"name": "web"}, "pool web: only pools of the local, docker, vagrant providers")],
)  # fmt: skip
def test_refuse_pool_names_the_pools_without_a_template(entry: dict[str, Any], words: str | None) -> None:
    refused = refuse_pool(entry)
    if words is None:
        assert refused is None
    else:
        assert refused is not None and refused.startswith(words), refused


def test_prepare_build_of_a_vagrant_docker_pool_is_a_docker_build_on_its_engine(tmp_path: Path) -> None:
    """The build host of a vagrant (docker backend) pool is a build container the provider starts
    on its engine (DOCKER_HOST of the vagrant provider's environment), reached with the docker
    connection, as for a docker pool."""
    provider = FakeProvider(tmp_path, "vagrant", kind="docker", base_url="tcp://127.0.0.1:2375", image="img")
    build = prepare_build(provider, LaunchSpec(), bake_plan("vagrant"), str(tmp_path))
    assert build["provider"] == "docker" and build["container"] == f"hapool-bake-web-{V1}"
    assert provider.calls == [("start_build", ("web", V1, "img"), {})]
    assert build["host_vars"]["ansible_connection"] == "community.docker.docker"
    assert build["host_vars"]["ansible_docker_host"] == "tcp://127.0.0.1:2375"


def hand_made_build(state: Path, port: int, version: str = V1) -> tuple[Path, dict[str, Any]]:
    """A build directory as the role leaves it: its own path, the listen endpoint, the rendered
    host placeholder, logs and temp files."""
    directory = state / "templates" / "web" / f"build-{version}-1"
    write(
        directory / "conf" / "nginx.conf",
        f"pid {directory}/logs/nginx.pid;\n"
        f"error_log {directory}/logs/error.log;\n"
        "http {\n"
        "    server {\n"
        f"        listen 127.0.0.1:{port};\n"
        "        server_name @@HAPOOL_HOST@@;\n"
        f"        root {directory}/html;\n"
        "    }\n"
        "}\n",
    )
    write(directory / "html" / "index.html", "<h1>Hello @@HAPOOL_HOST@@!</h1>\n")
    write(directory / "logs" / "error.log", "a line\n")
    write(directory / "logs" / "nginx.pid", f"{dead_pid()}\n")
    write(directory / "tmp" / "client_body" / "0000001", "body\n")
    build = {
        "provider": "local",
        "pool": "web",
        "version": version,
        "dir": str(directory),
        "address": "127.0.0.1",
        "port": port,
    }
    return directory, build


def test_finish_build_local_templatizes_the_build_directory(tmp_path: Path) -> None:
    state = tmp_path / "state"
    directory, build = hand_made_build(state, 39123)
    result = finish_build(FakeProvider(tmp_path / "local"), build, {}, str(state))
    assert result == str(directory)
    conf = (directory / "conf" / "nginx.conf").read_text()
    assert conf == (
        f"pid {PREFIX}/logs/nginx.pid;\n"
        f"error_log {PREFIX}/logs/error.log;\n"
        "http {\n"
        "    server {\n"
        f"        listen {ADDRESS}:{PORT};\n"
        f"        server_name {HOST};\n"
        f"        root {PREFIX}/html;\n"
        "    }\n"
        "}\n"
    )
    assert str(directory) not in conf and "39123" not in conf
    assert (directory / "html" / "index.html").read_text() == "<h1>Hello @@HAPOOL_HOST@@!</h1>\n"
    assert list((directory / "logs").iterdir()) == [] and list((directory / "tmp").iterdir()) == []
    assert frozenset({HOST}) == RENDERED


def test_finish_build_local_without_a_conf_is_an_error(tmp_path: Path) -> None:
    state = tmp_path / "state"
    directory, build = hand_made_build(state, 39123)
    (directory / "conf" / "nginx.conf").unlink()
    with pytest.raises(TemplateError, match=r"has no conf/nginx\.conf: the role did not render it"):
        finish_build(FakeProvider(tmp_path), build, {}, str(state))


def test_finish_build_local_with_a_conf_not_listening_on_the_endpoint_is_an_error(tmp_path: Path) -> None:
    state = tmp_path / "state"
    directory, build = hand_made_build(state, 39123)
    with pytest.raises(TemplateError, match=r"does not listen on the build host's 127\.0\.0\.1:39124"):
        finish_build(FakeProvider(tmp_path), {**build, "port": 39124}, {}, str(state))
    assert "listen 127.0.0.1:39123;" in (directory / "conf" / "nginx.conf").read_text()


def test_finish_build_local_refuses_a_placeholder_the_bake_did_not_render(tmp_path: Path) -> None:
    state = tmp_path / "state"
    directory, build = hand_made_build(state, 39123)
    write(directory / "html" / "pool.html", "@@HAPOOL_POOL@@\n")
    with pytest.raises(TemplateError, match=r"html/pool\.html: .*@@HAPOOL_POOL@@"):
        finish_build(FakeProvider(tmp_path), build, {}, str(state))


def test_finish_build_refuses_an_unknown_build(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="unknown build"):
        finish_build(FakeProvider(tmp_path), {"provider": "vagrant", "pool": "web", "version": V1}, {}, "/x")


# --- the docker start script ------------------------------------------------------------------------


def test_start_script_formats_into_a_valid_shell_script(tmp_path: Path) -> None:
    script = START_SCRIPT.format(
        pool="web", version=V1, port=80, dirs="/etc/nginx /var/www/hapool", nginx="/usr/sbin/nginx",
        conf="/etc/nginx/nginx.conf",
    )  # fmt: skip
    assert script.startswith("#!/bin/sh\n")
    assert f"pool web, template version {V1}" in script
    assert "for dir in /etc/nginx /var/www/hapool; do" in script
    assert '-e "s|@@HAPOOL_POOL@@|web|g"' in script and '-e "s|@@HAPOOL_PORT@@|80|g"' in script
    assert '-e "s|@@HAPOOL_HOST@@|$host|g"' in script and '-e "s|@@HAPOOL_ADDRESS@@|$address|g"' in script
    assert script.rstrip().endswith("exec /usr/sbin/nginx -c /etc/nginx/nginx.conf -g 'daemon off;'")
    assert "{" not in script and "}" not in script  # every field filled in
    path = write(tmp_path / "hapool-start", script)
    assert subprocess.run(["sh", "-n", str(path)], capture_output=True, check=False).returncode == 0


def test_finish_build_docker_commits_the_start_script_and_removes_the_build_container(tmp_path: Path) -> None:
    provider = FakeProvider(tmp_path, "docker")
    build = {"provider": "docker", "pool": "web", "version": V1, "container": "hapool-build-web"}
    paths = {"nginx_web_conf_file": "/etc/nginx/nginx.conf", "nginx_web_prefix": "/etc/nginx",
             "nginx_web_root": "/srv/www", "nginx_web_binary": "/usr/sbin/nginx"}  # fmt: skip
    assert finish_build(provider, build, paths, str(tmp_path)) == f"hapool/web:{V1}"
    (commit, remove) = provider.calls
    assert commit[0] == "commit_build" and commit[1] == ("hapool-build-web", "hapool/web", V1)
    script, mode = commit[2]["files"][START_SCRIPT_PATH]
    assert mode == 0o755 and "for dir in /etc/nginx /srv/www; do" in script
    assert commit[2]["changes"] == [
        "ENTRYPOINT []",  # a base image's entry point must not wrap the start script
        f'CMD ["{START_SCRIPT_PATH}"]',
        f"LABEL io.hapool.managed=true io.hapool.template={V1} io.hapool.template.pool=web",
    ]
    assert remove == ("remove_build", ("hapool-build-web",), {})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("nginx_web_conf_file", "etc/nginx.conf"),
        ("nginx_web_root", "/srv/my www"),
        ("nginx_web_prefix", "/etc/../root"),
        ("nginx_web_binary", "/usr/sbin/nginx;rm"),
    ],
)
def test_finish_build_docker_refuses_a_path_unsafe_in_the_script(
    tmp_path: Path, key: str, value: str
) -> None:
    provider = FakeProvider(tmp_path, "docker")
    build = {"provider": "docker", "pool": "web", "version": V1, "container": "c"}
    with pytest.raises(TemplateError, match=rf"{key} .* must be an absolute path"):
        finish_build(provider, build, {key: value}, str(tmp_path))
    assert provider.calls == []


# --- publish ------------------------------------------------------------------------------------------


def test_publish_renames_the_build_to_its_version_and_replaces_a_leftover(tmp_path: Path) -> None:
    state = tmp_path / "state"
    directory, build = hand_made_build(state, 39123)
    write(directory / "html" / "index.html", "new\n")
    final = state / "templates" / "web" / V1
    write(final / "html" / "index.html", "leftover of a failed bake\n")
    write(final / "html" / "stale.html", "stale\n")
    assert publish(build, str(directory), str(state)) == str(final)
    assert not directory.exists()
    assert (final / "html" / "index.html").read_text() == "new\n"
    assert not (final / "html" / "stale.html").exists()


def test_publish_leaves_a_docker_image_where_it_is(tmp_path: Path) -> None:
    build = {"provider": "docker", "pool": "web", "version": V1}
    assert publish(build, f"hapool/web:{V1}", str(tmp_path)) == f"hapool/web:{V1}"
    assert list(tmp_path.iterdir()) == []


# --- record and GC ------------------------------------------------------------------------------------


def local_artifact(state: Path, version: str) -> str:
    path = Path(artifact_name("local", state, "web", version))
    write(path / "conf" / "nginx.conf", "x\n")
    return str(path)


def test_record_a_usable_bake_becomes_current_and_gc_removes_old_versions(tmp_path: Path) -> None:
    state = tmp_path / "state"
    provider = FakeProvider(tmp_path / "local")
    asked: list[str] = []

    def remove(old: TemplateVersion) -> bool:
        asked.append(old.version)
        return remove_artifact(provider, old, str(state), "web")

    artifacts = {v: local_artifact(state, v) for v in (V1, V2, V3)}
    for now, version in enumerate((V1, V2), 1):
        index, removed = record(str(state), "web", version, artifacts[version], float(now), usable=True,
                                remove=remove)  # fmt: skip
        assert index.current == version and removed == []
    index, removed = record(str(state), "web", V3, artifacts[V3], 3.0, usable=True, remove=remove, keep=2)
    assert index.current == V3 and removed == [V1] and asked == [V1]
    assert [r.version for r in index.versions] == [V2, V3]
    assert not Path(artifacts[V1]).exists() and Path(artifacts[V2]).exists() and Path(artifacts[V3]).exists()
    assert read_index(index_path(state, "web"), "web") == index  # written
    assert (state / "templates" / "web" / ".lock").exists()  # under the index's lock


def test_record_keeps_a_version_in_use_and_one_remove_refuses(tmp_path: Path) -> None:
    state = tmp_path / "state"
    for now, version in enumerate((V1, V2, V3), 1):
        record(str(state), "web", version, f"hapool/web:{version}", float(now), usable=True)
    asked: list[str] = []

    def remove(old: TemplateVersion) -> bool:
        asked.append(old.version)
        return old.version != V2  # V2's image is still run by a container

    index, removed = record(str(state), "web", V4, f"hapool/web:{V4}", 4.0, usable=True, keep=1,
                            in_use=lambda: [V1], remove=remove)  # fmt: skip
    assert asked == [V2, V3] and removed == [V3]
    assert index.current == V4
    assert [r.version for r in index.versions] == [V1, V2, V4]
    assert read_index(index_path(state, "web"), "web") == index


def test_record_a_failed_bake_keeps_current_and_removes_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    for now, version in enumerate((V1, V2, V3), 1):
        record(str(state), "web", version, f"hapool/web:{version}", float(now), usable=True)
    asked: list[str] = []

    def remove(old: TemplateVersion) -> bool:
        asked.append(old.version)
        return True

    index, removed = record(str(state), "web", V4, f"hapool/web:{V4}", 4.0, usable=False,
                            reason="health check 503", remove=remove, keep=1)  # fmt: skip
    assert removed == [] and asked == []
    assert index.current == V3
    failed = index.get(V4)
    assert failed is not None and not failed.usable and failed.reason == "health check 503"
    assert [r.version for r in index.versions] == [V1, V2, V3, V4]
    assert read_index(index_path(state, "web"), "web") == index


def test_record_without_remove_collects_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    for now, version in enumerate((V1, V2, V3, V4), 1):
        index, removed = record(str(state), "web", version, f"a{version}", float(now), usable=True, keep=1)
        assert removed == []
    assert [r.version for r in index.versions] == [V1, V2, V3, V4]


# --- remove_artifact ------------------------------------------------------------------------------------


def test_remove_artifact_deletes_a_local_tree_of_the_pool(tmp_path: Path) -> None:
    state = tmp_path / "state"
    tree = local_artifact(state, V1)
    gone = remove_artifact(FakeProvider(tmp_path), TemplateVersion(V1, tree, 1.0, True), str(state), "web")
    assert gone is True and not Path(tree).exists()
    assert (state / "templates" / "web").is_dir()


@pytest.mark.parametrize(
    "where",
    [
        "templates/api/{v}",  # another pool's
        "elsewhere/{v}",
        "templates/web/{v}/conf",  # inside a version, not a version
        "templates",
    ],
)
def test_remove_artifact_refuses_a_path_outside_the_pools_templates_dir(tmp_path: Path, where: str) -> None:
    state = tmp_path / "state"
    target = state / where.format(v=V1)
    write(target / "keep.txt", "x\n")
    record_ = TemplateVersion(V1, str(target), 1.0, True)
    with pytest.raises(TemplateError, match=r"refusing to delete .*: not a template tree of pool web"):
        remove_artifact(FakeProvider(tmp_path), record_, str(state), "web")
    assert (target / "keep.txt").exists()


def test_remove_artifact_refuses_a_dot_dot_artifact(tmp_path: Path) -> None:
    state = tmp_path / "state"
    other = write(state / "templates" / "api" / V1 / "conf" / "nginx.conf", "x\n")
    record_ = TemplateVersion(V1, str(state / "templates" / "web" / ".."), 1.0, True)
    (state / "templates" / "web").mkdir(parents=True)
    try:
        with pytest.raises(TemplateError, match="refusing to delete"):
            remove_artifact(FakeProvider(tmp_path), record_, str(state), "web")
    finally:
        assert other.exists(), "another pool's template tree was deleted"


def test_remove_artifact_docker_asks_the_provider_and_others_keep(tmp_path: Path) -> None:
    record_ = TemplateVersion(V1, f"hapool/web:{V1}", 1.0, True)
    docker = FakeProvider(tmp_path, "docker")
    assert remove_artifact(docker, record_, str(tmp_path), "web") is True
    busy = FakeProvider(tmp_path, "docker", image_removable=False)
    assert remove_artifact(busy, record_, str(tmp_path), "web") is False
    assert docker.calls == busy.calls == [("remove_image", (f"hapool/web:{V1}",), {})]
    assert remove_artifact(FakeProvider(tmp_path, "cloud"), record_, str(tmp_path), "web") is False


# --- current_template ---------------------------------------------------------------------------------


def test_current_template(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    enabled = {"name": "web", "provider": "local", "template": {"enabled": True, "variables": {}, "keep": 2}}
    assert current_template(enabled, state) is None  # no index yet
    record(state, "web", V1, "/srv/t/v1", 1.0, usable=True)
    record(state, "web", V2, "/srv/t/v2", 2.0, usable=False, reason="boom")
    assert current_template(enabled, state) == LaunchTemplate("/srv/t/v1", V1)
    record(state, "web", V3, "/srv/t/v3", 3.0, usable=True)
    assert current_template(enabled, state) == LaunchTemplate("/srv/t/v3", V3)
    for entry in (
        {**enabled, "template": {"enabled": False}},
        {**enabled, "template": {"enabled": "true"}},  # not validated: not enabled
        {"name": "web", "provider": "local"},
        {**enabled, "template": None},
    ):
        assert current_template(entry, state) is None, entry


def test_current_template_with_no_current_version(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    record(state, "web", V1, "/srv/t/v1", 1.0, usable=False, reason="boom")
    assert current_template({"name": "web", "template": {"enabled": True}}, state) is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "is not JSON"),
        (json.dumps({"schema": 1, "pool": "web", "current": V1, "versions": []}), "is corrupt"),
        (json.dumps({"schema": 1, "pool": "api", "current": None, "versions": []}), "pool 'api'"),
    ],
)
def test_current_template_of_a_corrupt_index_is_an_error(tmp_path: Path, content: str, message: str) -> None:
    state = tmp_path / "state"
    write(Path(index_path(state, "web")), content)
    with pytest.raises(TemplateError, match=message):
        current_template({"name": "web", "template": {"enabled": True}}, str(state))
    # a disabled template does not read the index
    assert current_template({"name": "web", "template": {"enabled": False}}, str(state)) is None


# --- check_served ---------------------------------------------------------------------------------------


class Routes:
    """What the tiny server answers: path -> (status, body, headers); a callable is called."""

    def __init__(self, routes: dict[str, Any]) -> None:
        self.routes = routes
        self.hits: list[str] = []


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(routes: dict[str, Any]) -> tuple[int, Routes]:
        state = Routes(routes)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                state.hits.append(self.path)
                answer = state.routes.get(self.path, (404, "not found", {}))
                status, body, headers = answer() if callable(answer) else answer
                data = body.encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server.server_address[1], state

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


class CheckProvider(FakeProvider):
    """Launches a host that is the ``serve`` fixture's server; its destroy may fail."""

    def __init__(self, state_dir: Path, port: int, *, destroy_fails: bool = False) -> None:
        super().__init__(state_dir)
        self.port, self.destroy_fails = port, destroy_fails

    def launch(self, pool: str, spec: LaunchSpec | None = None) -> Instance:
        self.calls.append(("launch", (pool,), {}))
        return Instance("web-3f9a2c", pool, "local", "127.0.0.1", self.port, 1.0, "running", {})

    def destroy(self, pool: str, instance: Instance | str) -> Instance | None:
        self.calls.append(("destroy", (pool,), {}))
        if self.destroy_fails:
            raise ProviderError("the engine refused to remove web-3f9a2c")
        return None


@pytest.mark.parametrize("destroy_fails", [False, True], ids=["destroyed", "destroy failed"])
def test_validate_artifact_keeps_its_scratch_root_only_while_a_host_is_left_in_it(
    serve: Any, tmp_path: Path, destroy_fails: bool
) -> None:
    """The throw-away host's scratch state root goes with it; one whose host could not be
    destroyed stays (named after the bake's owner) for the next bake's sweep to destroy it."""
    port, _ = serve({"/health": (200, "ok", {}), "/": (200, "<h1>Hello web-3f9a2c!</h1>", {})})
    made: list[CheckProvider] = []

    def factory(root: str) -> Provider:
        made.append(CheckProvider(Path(root), port, destroy_fails=destroy_fails))
        return made[-1]

    def check() -> str:
        return baking.validate_artifact(
            factory, "web", template=LaunchTemplate("/t", V1), spec=LaunchSpec(), health_path="/health",
            scratch_parent=str(tmp_path),
        )  # fmt: skip

    if destroy_fails:
        with pytest.raises(ProviderError, match="refused to remove web-3f9a2c"):
            check()
    else:
        assert check() == "web-3f9a2c"
    left = [p.name for p in tmp_path.iterdir()]
    assert [c[0] for c in made[0].calls] == ["launch", "destroy"]
    if destroy_fails:
        assert len(left) == 1 and left[0].startswith(f".check-{os.getpid()}-"), left
    else:
        assert left == []


def test_check_served_passes_a_host_that_serves(serve: Any) -> None:
    port, state = serve({"/health": (200, "ok", {}), "/": (200, "<h1>Hello web-3f9a2c!</h1>", {})})
    check_served("127.0.0.1", port, "web-3f9a2c", "/health", timeout=2)
    assert state.hits == ["/health", "/"]


def test_check_served_retries_the_health_check_until_it_passes(serve: Any) -> None:
    answers = iter([(503, "starting", {}), (503, "starting", {})])
    port, state = serve({"/health": lambda: next(answers, (200, "ok", {})), "/": (200, "page", {})})
    check_served("127.0.0.1", port, "web-3f9a2c", "/health", timeout=5)
    assert state.hits == ["/health", "/health", "/health", "/"]


@pytest.mark.parametrize(
    "routes",
    [
        {"/health": (200, "ok", {}), "/": (200, "<h1>Hello @@HAPOOL_HOST@@!</h1>", {})},
        {"/health": (200, "ok @@HAPOOL_HOST@@", {}), "/": (200, "page", {})},
        {"/health": (200, "ok", {}), "/": (200, "page", {"X-Served-By": "@@HAPOOL_HOST@@"})},
    ],
    ids=["page", "health", "header"],
)
def test_check_served_fails_on_a_placeholder(serve: Any, routes: dict[str, Any]) -> None:
    port, _ = serve(routes)
    with pytest.raises(TemplateError, match="web-3f9a2c serves the placeholder @@HAPOOL_HOST@@ unreplaced"):
        check_served("127.0.0.1", port, "web-3f9a2c", "/health", timeout=2)


def test_check_served_fails_a_health_check_that_keeps_answering_503(serve: Any) -> None:
    port, state = serve({"/health": (503, "down", {}), "/": (200, "page", {})})
    started = time.monotonic()
    with pytest.raises(
        TemplateError, match="web-3f9a2c does not pass its health check: /health answered 503"
    ):
        check_served("127.0.0.1", port, "web-3f9a2c", "/health", timeout=0.6)
    elapsed = time.monotonic() - started
    assert 0.6 <= elapsed < 5
    assert len(state.hits) >= 2 and "/" not in state.hits  # retried, the page never asked


def test_check_served_fails_a_page_answering_500_and_a_closed_port(serve: Any) -> None:
    port, _ = serve({"/health": (200, "ok", {}), "/": (500, "oops", {})})
    with pytest.raises(TemplateError, match="web-3f9a2c answers / with 500"):
        check_served("127.0.0.1", port, "web-3f9a2c", "/health", timeout=2)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    with pytest.raises(TemplateError, match=r"does not pass its health check: /health: .*(refused|Errno)"):
        check_served("127.0.0.1", closed, "web-3f9a2c", "/health", timeout=0.3)


# --- junk of interrupted bakes ----------------------------------------------------------------------


def junk(state: Path) -> dict[str, Path]:
    """What interrupted bakes leave in the pool's templates directory, and what a live bake owns."""
    tdir = state / "templates" / "web"
    gone = dead_pid()
    pid, start = owner()
    made = {
        "dead build": write(tdir / f"build-{V1}-{gone}-77" / "conf" / "nginx.conf", "x\n").parents[1],
        "old-style dead build": write(tdir / f"build-{V2}-{gone}" / "html" / "index.html", "x\n").parents[1],
        "reused pid": write(tdir / f"build-{V4}-{pid}-1" / "conf" / "nginx.conf", "x\n").parents[1],
        "dead check": write(tdir / f".check-{gone}-77-abcd1234" / "x", "x\n").parent,
        "old-style check": write(tdir / ".check-abcd1234" / "x", "x\n").parent,
        "index temp": write(tdir / ".index.json.k2j3h4", "{"),
        "unrecorded version": write(tdir / V2 / "conf" / "nginx.conf", "x\n").parents[1],
        "live build": write(build_dir(state, V3) / "conf" / "nginx.conf", "x\n").parents[1],
        "live check": write(tdir / f".check-{pid}-{start}-efgh5678" / "x", "x\n").parent,
        "current version": write(tdir / V1 / "conf" / "nginx.conf", "x\n").parents[1],
    }
    path = index_path(state, "web")
    write_index(path, record_bake(read_index(path, "web"), V1, str(tdir / V1), 1.0, usable=True))
    return made


LIVE = ("live build", "live check", "current version")


def test_sweep_removes_what_dead_bakes_left_and_keeps_a_live_bakes_files(tmp_path: Path) -> None:
    state = tmp_path / "state"
    made = junk(state)
    swept = sweep(FakeProvider(tmp_path / "local"), str(state), "web")
    assert {name for name, path in made.items() if not path.exists()} == set(made) - set(LIVE)
    assert sorted(swept) == sorted(str(p) for name, p in made.items() if name not in LIVE)
    assert read_index(index_path(state, "web"), "web").current == V1  # the index is untouched
    assert sweep(FakeProvider(tmp_path / "local"), str(state), "web") == []  # nothing left to sweep


def test_sweep_with_a_corrupt_index_touches_no_version_tree(tmp_path: Path) -> None:
    state = tmp_path / "state"
    made = junk(state)
    write(Path(index_path(state, "web")), "{not json")
    sweep(FakeProvider(tmp_path / "local"), str(state), "web")
    assert made["unrecorded version"].exists() and made["current version"].exists()
    assert not made["dead build"].exists()


def test_sweep_removes_the_build_containers_no_live_bake_owns(tmp_path: Path) -> None:
    state = tmp_path / "state"
    write(build_dir(state, V3) / ".keep", "")  # the ticket of a live bake of V3
    builds = [("hapool-bake-s-web-" + V1, V1), ("hapool-bake-s-web-" + V3, V3)]
    provider = FakeProvider(tmp_path, "docker", build_containers=lambda pool: builds)
    assert sweep(provider, str(state), "web") == ["hapool-bake-s-web-" + V1]
    assert provider.calls == [("remove_build", ("hapool-bake-s-web-" + V1,), {})]


def test_prepare_build_and_remove_all_sweep_first(tmp_path: Path) -> None:
    state = tmp_path / "state"
    made = junk(state)
    build = prepare_build(FakeProvider(tmp_path / "local"), LaunchSpec(), bake_plan(version=V2), str(state))
    assert not made["dead build"].exists() and not made["dead check"].exists()
    assert made["live build"].exists() and build["swept"]
    assert build["dir"] == str(build_dir(state, V2))
    removed, kept = remove_all(FakeProvider(tmp_path / "local"), str(state), "web")
    assert (removed, kept) == ([V1], [])
    assert made["live build"].exists()  # teardown sweeps only what dead bakes left, too
    assert not made["current version"].exists()
