"""Baking a pool's launch template: the steps around the nginx_web role that turn a build host into
a versioned artefact new hosts launch from (``playbooks/bake.yml`` runs them through the
``pool_template`` module; the version and the index are ``hapool.templates``').

A bake has three steps; the role runs between the first two, on the build host:

1. :func:`plan` - the template's version from its inputs (the provider's base, the pool's
   ``nginx_web_*`` variables, the role's files); ``reuse`` when the pool's index has it usable,
   else ``bake``, and :func:`prepare_build` makes the build host:

   - ``local``: a build directory ``<state_root>/templates/<pool>/build-<version>-<pid>`` with the
     provider's layout (``conf/nginx.conf``, ``logs/nginx.pid``, ``html``, ``tmp``) and a free
     loopback port; the role renders into it and starts its nginx there;
   - ``docker``: a build container from the base image (nginx in the foreground), reached with
     the docker connection.

   Per-host values are rendered as placeholders (``nginx_web_hostname: "@@HAPOOL_HOST@@"``,
   valid nginx text, so the role's ``nginx -t`` still runs).
2. :func:`finish_build` - ``local``: stop the build nginx, empty ``logs/`` and ``tmp/``, turn the
   build directory's path and its listen address into placeholders (:func:`templates.templatize_tree`);
   ``docker``: write the start script (:data:`START_SCRIPT`: placeholders from the container's
   name and address, then nginx in the foreground), commit ``hapool/<pool>:<version>-<docker scope>`` with
   ``CMD`` and labels, remove the build container.
3. :func:`validate_artifact` - launch a throw-away host from the artefact through the provider, in
   a scratch state root (so no pool, heal or scale run ever sees it), ask its health check and its
   page, destroy it. Then :func:`record` writes the outcome to the index under its lock: a usable
   version becomes current and the versions nobody runs are garbage-collected
   (:func:`templates.plan_gc`); a failed one is recorded with its reason and ``current`` stays.

Stdlib only; the providers do the engine work.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pathlib
import re
import shutil
import signal
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from . import files, templates
from .errors import HapoolError, OrphanError, ProviderError, TemplateError
from .pools import TEMPLATE_BUILD_OWNED
from .providers import LaunchSpec, LaunchTemplate, Provider, get_provider
from .providers.local import can_bind
from .providers.procfs import children, cmdline, pid_alive, read_pid, read_stat
from .providers.state import file_lock

#: The placeholders a bake renders into the build host on purpose (nginx_web_hostname).
RENDERED = frozenset({templates.HOST})

#: The providers whose pools can have a baked template (vagrant: its docker backend).
BAKE_PROVIDERS = ("local", "docker", "vagrant")

#: Where the start script of a baked docker image goes, and the script (``str.format`` fields:
#: pool, version, port, dirs, nginx, conf).
START_SCRIPT_PATH = "/usr/local/sbin/hapool-start"
START_SCRIPT = """\
#!/bin/sh
# hapool-start: the entry point of the baked image of pool {pool}, template version {version}.
# Puts this container's values in place of the placeholders the bake left in the configuration
# and the pages (its hostname is the instance name), then runs nginx in the foreground.
set -eu
host=$(hostname)
address=$(hostname -i 2>/dev/null | cut -d' ' -f1)
for dir in {dirs}; do
    [ -d "$dir" ] || continue
    grep -rlF '@@HAPOOL_' "$dir" | while IFS= read -r file; do
        sed -i -e "s|@@HAPOOL_HOST@@|$host|g" -e "s|@@HAPOOL_POOL@@|{pool}|g" \\
            -e "s|@@HAPOOL_ADDRESS@@|$address|g" -e "s|@@HAPOOL_PORT@@|{port}|g" "$file"
    done
done
exec {nginx} -c {conf} -g 'daemon off;'
"""

#: Docker's repository path component (``hapool/<pool>`` must be one).
_REPO_COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_SAFE_PATH_RE = re.compile(r"^/[A-Za-z0-9._/-]+$")


#: The key of the bake code among a template's files (this module's source: a new way of baking
#: gives new versions).
BAKE_CODE_KEY = "extra/baking.py"

#: A build's directory (local: the build host; docker: the ticket of its build container) in the
#: pool's templates directory: ``build-<version>-<owner pid>-<owner start time>``, and a
#: validation's scratch state root ``.check-<owner pid>-<owner start time>-<random>``.
_BUILD_RE = re.compile(r"^build-(?P<version>[0-9a-f]{12})-(?P<pid>\d+)(?:-(?P<start>\d+))?$")
_CHECK_RE = re.compile(r"^\.check-(?:(?P<pid>\d+)-(?P<start>\d+)-)?")
_VERSION_DIR_RE = re.compile(r"^[0-9a-f]{12}$")


@dataclass(frozen=True)
class BakePlan:
    """Where a pool stands against the version its inputs make now."""

    pool: str
    provider: str
    version: str
    base: str
    action: str  # "reuse" or "bake"
    current: str | None
    artifact: str | None  # the artefact to reuse
    reason: str = ""  # why it is baked: never baked, its last bake failed, its artefact is missing
    variables: Mapping[str, Any] | None = None  # the template's variables (what the build host gets)


def bake_code_digest() -> str:
    """The sha256 of this module's source (read through its loader: inside an AnsiballZ zip too)."""
    loader = globals().get("__loader__")
    get_data = getattr(loader, "get_data", None)
    try:
        data = get_data(__file__) if callable(get_data) else pathlib.Path(__file__).read_bytes()
    except OSError as exc:
        raise TemplateError(f"cannot read the bake code {__file__}: {exc}") from exc
    return hashlib.sha256(data).hexdigest()


def template_variables(
    entry: Mapping[str, Any], provider: str, variables: Mapping[str, Any]
) -> dict[str, Any]:
    """The variables of a pool's template: ``variables`` (the ``nginx_web_*`` variables the
    controller sees) without the ones the bake sets itself on a ``provider`` build host
    (:data:`hapool.pools.TEMPLATE_BUILD_OWNED`), then the pool entry's ``template.variables``
    (validated: none of those), then the per-host values as placeholders: the host's name
    (``@@HAPOOL_HOST@@``) and the JSON page's pools (the pool's name)."""
    owned = TEMPLATE_BUILD_OWNED.get(provider)
    if owned is None:
        raise TemplateError(
            f"the {provider} provider does not launch from baked templates ({', '.join(BAKE_PROVIDERS)} do)"
        )
    settings = entry.get("template")
    own = settings.get("variables") if isinstance(settings, Mapping) else None
    result = {str(k): v for k, v in variables.items() if k not in owned}
    result.update(dict(own or {}))
    result.update(nginx_web_hostname=templates.HOST, nginx_web_json_extra={"pools": [str(entry.get("name"))]})
    return result


def template_inputs(
    entry: Mapping[str, Any],
    provider: str,
    *,
    base: str,
    variables: Mapping[str, Any],
    role_dir: str,
    extra: Iterable[str] = (),
) -> templates.TemplateInputs:
    """The inputs of a pool's launch template - the one definition ``pool_template`` (which bakes)
    and ``pool_template_info`` (which reports) both hash: the pool entry's name, ``provider``, the
    provider's ``base``, :func:`template_variables`, the role's files, the ``extra`` files and the
    bake code (:data:`BAKE_CODE_KEY`)."""
    files_ = templates.template_files(role_dir, list(extra))
    if BAKE_CODE_KEY in files_:
        raise TemplateError(
            f"an extra file named {BAKE_CODE_KEY.split('/', 1)[1]} would hide the bake code "
            "in the version: rename it"
        )
    files_[BAKE_CODE_KEY] = bake_code_digest()
    return templates.TemplateInputs(
        str(entry.get("name")), provider, base, template_variables(entry, provider, variables), files_
    )


def bake_kind(provider: Provider) -> str:
    """How ``provider``'s pools bake (the provider's ``bake_kind``): ``"docker"`` - a build
    container committed to an image (the docker provider, and vagrant's docker backend, whose
    machines run the same image) - or ``"local"`` - a rendered host tree. Any other provider is an
    error."""
    kind = provider.bake_kind
    if kind not in ("docker", "local"):
        backend = getattr(provider, "backend", None)
        raise TemplateError(
            f"the {provider.name} provider{f' ({backend} backend)' if backend else ''} does not launch "
            "from baked templates (local, docker and vagrant's docker backend do)"
        )
    return str(kind)


def refuse_pool(entry: Mapping[str, Any]) -> str | None:
    """Why a validated pool entry can have no baked template (its provider bakes none: only
    local, docker, and vagrant with its docker backend do), or None when it can."""
    provider = entry.get("provider")
    if provider not in BAKE_PROVIDERS:
        return (
            f"pool {entry.get('name')}: only pools of the {', '.join(BAKE_PROVIDERS)} providers have a "
            f"launch template (provider {provider!r})"
        )
    launch = entry.get("launch")
    backend = launch.get("vagrant_backend") if isinstance(launch, Mapping) else None
    if provider == "vagrant" and backend not in (None, "docker"):
        return (
            f"pool {entry.get('name')}: the vagrant {backend} backend has no launch template "
            "(the docker backend has)"
        )
    return None


def templates_dir(state_root: str | os.PathLike[str], pool: str) -> pathlib.Path:
    """``<state_root>/templates/<pool>``: the pool's index, its lock, local artefacts, builds."""
    return pathlib.Path(templates.index_path(state_root, pool)).parent


def artifact_name(
    kind: str, state_root: str | os.PathLike[str], pool: str, version: str, *, scope: str | None = None
) -> str:
    """Where a version's artefact goes, by :func:`bake_kind`: ``hapool/<pool>:<version>-<scope>``
    (docker: ``scope`` is the deployment's docker scope, so that two deployments on one engine
    never share, nor remove, each other's images; ``hapool/<pool>:<version>`` without one), the
    directory ``<state_root>/templates/<pool>/<version>`` (local)."""
    if kind == "docker":
        if not _REPO_COMPONENT_RE.match(pool):
            raise TemplateError(
                f"pool {pool}: a docker image cannot be named hapool/{pool} (a repository name has no "
                "leading or trailing '_', nor three in a row); rename the pool to bake its template"
            )
        if scope is not None and not re.fullmatch(r"[0-9a-f]{12}", scope):
            raise TemplateError(f"a docker scope is 12 hex digits, not {scope!r}")
        return f"hapool/{pool}:{version}" + (f"-{scope}" if scope else "")
    if kind == "local":
        return str(templates_dir(state_root, pool) / version)
    raise TemplateError(f"no baked artefact of kind {kind!r} (docker or local)")


def plan(provider: Provider, inputs: templates.TemplateInputs, *, state_root: str) -> BakePlan:
    """The version ``inputs`` make and whether it must be baked (reads the index and asks the
    provider whether the artefact is still there; changes nothing): ``reuse`` a version recorded
    usable whose artefact exists, else ``bake`` with the reason - never baked, its last bake
    failed, or its artefact was deleted (``docker image rm``, ``rm -rf`` of the tree: a launch
    from it would fail until it is baked again)."""
    pool = inputs.pool
    version = templates.template_version(inputs)
    index = templates.read_index(templates.index_path(state_root, pool), pool)
    action = templates.plan_bake(index, version)
    record = index.get(version)
    artifact = record.artifact if action == "reuse" and record is not None else None
    if record is None:
        reason = "template changed" if index.current else "first bake"
    elif not record.usable:
        reason = f"its last bake failed: {record.reason}" if record.reason else "its last bake failed"
    elif artifact is not None and not artifact_exists(provider, artifact):
        action, reason, artifact = (
            "bake",
            f"the artefact {record.artifact} of version {version} is missing",
            None,
        )
    else:
        reason = ""
    return BakePlan(
        pool,
        provider.name,
        version,
        inputs.base,
        action,
        index.current,
        artifact,
        reason,
        dict(inputs.variables),
    )


def artifact_exists(provider: Provider, artifact: str) -> bool:
    """Whether a baked artefact is still there (the provider's ``artifact_exists``)."""
    check = getattr(provider, "artifact_exists", None)
    if not callable(check):
        raise TemplateError(f"the {provider.name} provider does not launch from baked templates")
    return bool(check(artifact))


# --- owners and junk ------------------------------------------------------------------------------


def _start_time(pid: int) -> str | None:
    stat = read_stat(pid)
    if stat is None or stat.state in ("Z", "X", "x") or stat.starttime is None:
        return None
    return str(stat.starttime)


def owner() -> tuple[int, str]:
    """The process a bake belongs to, (pid, start time): the ``ansible-playbook`` run that drives
    it (the topmost ancestor of this process running ansible-playbook: the modules of one run are
    short-lived children of it), else this process. Its build directory, build container and
    scratch hosts are junk once it is gone (:func:`sweep`)."""
    found = os.getpid()
    pid = os.getpid()
    for _ in range(64):
        stat = read_stat(pid)
        if stat is None or stat.ppid <= 1:
            break
        pid = stat.ppid
        if any(os.path.basename(arg) == "ansible-playbook" for arg in cmdline(pid).split()[:2]):
            found = pid
    return found, _start_time(found) or "0"


def _owner_alive(pid: str | None, start: str | None) -> bool:
    if not pid:
        return False
    now = _start_time(int(pid))
    return now is not None and (start is None or now == start)


def _engine_like(provider: Provider, state_root: str) -> Provider:
    """A provider of the same kind and engine as ``provider`` in another state root."""
    settings: dict[str, Any] = {}
    if provider.name == "docker":
        settings = {
            "base_url": getattr(provider, "base_url", None),
            "network": getattr(provider, "network", None),
        }
    elif provider.name == "vagrant":
        settings = {
            key: getattr(provider, attr, None)
            for key, attr in (("vagrantfile", "vagrantfile"), ("backend", "backend"), ("image", "image"),
                              ("network", "network"), ("env", "extra_env"))
        }
    elif provider.name == "local":
        settings = {"nginx": getattr(provider, "nginx", None), "user": getattr(provider, "user", None)}
    return get_provider(provider.name, state_root=state_root, **settings)


def _sweep_scratch(provider: Provider, scratch: pathlib.Path, pool: str) -> None:
    """Destroy the throw-away hosts of an interrupted validation, then its scratch state root."""
    if (scratch / provider.name).is_dir():
        with _engine_like(provider, str(scratch)) as checker:
            for host in checker.list(pool):
                checker.destroy(pool, host)
    shutil.rmtree(scratch, ignore_errors=True)


def _sweep_dirs(provider: Provider, tdir: pathlib.Path, pool: str) -> tuple[list[str], set[str]]:
    """The build directories and scratch state roots in ``tdir`` whose owner is gone, removed;
    returns them and the versions live builds (of running owners) make."""
    swept: list[str] = []
    live: set[str] = set()
    for entry in sorted(tdir.iterdir()) if tdir.is_dir() else []:
        if not entry.is_dir() or entry.is_symlink():
            continue
        build = _BUILD_RE.match(entry.name)
        check = _CHECK_RE.match(entry.name)
        if build:
            if _owner_alive(build["pid"], build["start"]):
                live.add(build["version"])
                continue
            _stop_nginx(entry)
            shutil.rmtree(entry, ignore_errors=True)
            swept.append(str(entry))
        elif check and not _owner_alive(check["pid"], check["start"]):
            _sweep_scratch(provider, entry, pool)
            swept.append(str(entry))
    return swept, live


def sweep(provider: Provider, state_root: str, pool: str) -> list[str]:
    """Remove what interrupted bakes of ``pool`` left, and return it: build directories and build
    containers whose owner (:func:`owner`) is gone, the scratch state roots of validations whose
    owner is gone (their throw-away hosts destroyed), temporary files of index writes, and version
    trees (local) the index does not record as usable (published, never recorded). What a live
    bake owns is kept; with an index that cannot be read, no version tree is touched."""
    tdir = templates_dir(state_root, pool)
    swept, live = _sweep_dirs(provider, tdir, pool)
    list_builds = getattr(provider, "build_containers", None)
    if provider.bake_kind == "docker" and callable(list_builds):
        for name, version in list_builds(pool):
            if version not in live:
                provider.remove_build(name)  # type: ignore[attr-defined]
                swept.append(name)
    if not tdir.is_dir():
        return swept
    with file_lock(tdir / ".lock"):
        path = pathlib.Path(templates.index_path(state_root, pool))
        for entry in sorted(tdir.glob(f".{path.name}.*")):
            entry.unlink(missing_ok=True)  # an index write killed before its rename
            swept.append(str(entry))
        if provider.bake_kind != "local":
            return swept
        try:
            index = templates.read_index(path, pool)
        except TemplateError:
            return swept
        usable = {r.version for r in index.versions if r.usable}
        for entry in sorted(tdir.iterdir()):
            if _VERSION_DIR_RE.match(entry.name) and entry.name not in usable and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
                swept.append(str(entry))
    return swept


def prepare_build(provider: Provider, spec: LaunchSpec, bake: BakePlan, state_root: str) -> dict[str, Any]:
    """Make the build host of ``bake``; what the playbook needs to reach it (``host_vars``) and
    what :func:`finish_build` needs back."""
    kind = bake_kind(provider)
    if kind == "docker":
        artifact_name("docker", state_root, bake.pool, bake.version)  # a pool docker cannot name: fail first
    swept = sweep(provider, state_root, bake.pool)
    pid, start = owner()
    ticket = templates_dir(state_root, bake.pool) / f"build-{bake.version}-{pid}-{start}"
    if kind == "local":
        build = ticket
        if build.exists():
            shutil.rmtree(build)
        for sub in ("conf", "html", "logs", "tmp"):
            (build / sub).mkdir(parents=True, exist_ok=True)
        address = "127.0.0.1"
        port = can_bind(address, 0)
        if port is None:
            raise TemplateError("no free loopback port for the build host")
        user = str(getattr(provider, "user", "") or "")
        host_vars = {
            "ansible_connection": "local",
            "nginx_web_prefix": str(build),
            "nginx_web_conf_file": str(build / "conf" / "nginx.conf"),
            "nginx_web_pid_file": str(build / "logs" / "nginx.pid"),
            "nginx_web_root": str(build / "html"),
            "nginx_web_log_dir": str(build / "logs"),
            "nginx_web_temp_dir": str(build / "tmp"),
            "nginx_web_listen_address": address,
            "nginx_web_port": port,
            "nginx_web_user": user,
        }
        return {
            "provider": "local",
            "pool": bake.pool,
            "version": bake.version,
            "reason": bake.reason,
            "dir": str(build),
            "address": address,
            "port": port,
            "host_vars": host_vars,
            "swept": swept,
        }
    if kind == "docker":
        base_image = spec.image or str(getattr(provider, "image", ""))
        # The build container's ticket: its owner's name, so a sweep keeps a live bake's container.
        ticket.mkdir(parents=True, exist_ok=True)
        try:
            name = provider.start_build(bake.pool, bake.version, base_image)  # type: ignore[attr-defined]
        except BaseException:
            shutil.rmtree(ticket, ignore_errors=True)
            raise
        host_vars = {
            "ansible_connection": "community.docker.docker",
            "ansible_host": name,
            "ansible_python_interpreter": "/usr/bin/python3",
            "nginx_web_listen_address": "",
            "nginx_web_port": 80,
        }
        docker_host = getattr(provider, "base_url", None)
        if docker_host:
            host_vars["ansible_docker_host"] = docker_host
        return {
            "provider": "docker",
            "pool": bake.pool,
            "version": bake.version,
            "reason": bake.reason,
            "container": name,
            "ticket": str(ticket),
            "base_image": base_image,
            "host_vars": host_vars,
            "swept": swept,
        }
    raise TemplateError(f"the {bake.provider} provider does not launch from baked templates")  # not reached


def _stop_nginx(prefix: pathlib.Path, timeout: float = 10.0) -> None:
    """Stop the nginx the role started in a local build directory (QUIT, then KILL)."""
    pid = read_pid(prefix / "logs" / "nginx.pid")
    if pid is None or not pid_alive(pid, marker=str(prefix)):
        return
    tree = [pid, *children(pid)]
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGQUIT)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    for member in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)


def _empty(directory: pathlib.Path) -> None:
    if directory.is_dir():
        for entry in directory.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


def discard_build(provider: Provider, build: Mapping[str, Any]) -> None:
    """Remove a build host (its nginx stopped, its directory or container gone)."""
    if build.get("provider") == "local" and build.get("dir"):
        prefix = pathlib.Path(str(build["dir"]))
        _stop_nginx(prefix)
        shutil.rmtree(prefix, ignore_errors=True)
    elif build.get("provider") == "docker" and build.get("container"):
        provider.remove_build(str(build["container"]))  # type: ignore[attr-defined]
        _drop_ticket(build)


def _drop_ticket(build: Mapping[str, Any]) -> None:
    ticket = build.get("ticket")
    if isinstance(ticket, str) and _BUILD_RE.match(os.path.basename(ticket)):
        shutil.rmtree(ticket, ignore_errors=True)


def _path(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _SAFE_PATH_RE.match(value) or "/../" in f"{value}/":
        raise TemplateError(
            f"{what} {value!r} must be an absolute path of letters, digits, '.', '_', '-' and '/'"
        )
    return value


def _listen_placeholders(conf: pathlib.Path, endpoint: str) -> None:
    """Replace the build host's ``address:port`` in its configuration by the address and port
    placeholders (the provider allocates both per host at launch); it must be there."""
    text = conf.read_text(encoding="utf-8")
    if endpoint not in text:
        raise TemplateError(f"{conf} does not listen on the build host's {endpoint}: it cannot be templated")
    files.atomic_write(conf, text.replace(endpoint, f"{templates.ADDRESS}:{templates.PORT}"), mode=0o644)


def docker_scope(provider: Provider) -> str | None:
    """The deployment's docker scope (made when missing) that tags its images; None for another
    provider."""
    scope = getattr(provider, "scope", None)
    return scope(create=True) if provider.bake_kind == "docker" and callable(scope) else None


def finish_build(
    provider: Provider, build: Mapping[str, Any], paths: Mapping[str, Any], state_root: str
) -> str:
    """Turn the build host the role provisioned into the artefact; return the artefact.

    ``paths`` are the role's paths on the build host (docker: ``nginx_web_binary``,
    ``nginx_web_conf_file``, ``nginx_web_prefix``, ``nginx_web_root``)."""
    pool, version = str(build["pool"]), str(build["version"])
    if build.get("provider") == "local":
        prefix = pathlib.Path(str(build["dir"]))
        if not (prefix / "conf" / "nginx.conf").is_file():
            raise TemplateError(
                f"the build directory {prefix} has no conf/nginx.conf: the role did not render it"
            )
        _stop_nginx(prefix)
        _empty(prefix / "logs")
        _empty(prefix / "tmp")
        templates.templatize_tree(prefix, {str(prefix): templates.PREFIX}, rendered=RENDERED)
        _listen_placeholders(prefix / "conf" / "nginx.conf", f"{build['address']}:{build['port']}")
        return str(prefix)
    if build.get("provider") == "docker":
        reference = artifact_name("docker", state_root, pool, version, scope=docker_scope(provider))
        repository, tag = reference.rsplit(":", 1)
        conf = _path(paths.get("nginx_web_conf_file", "/etc/nginx/nginx.conf"), "nginx_web_conf_file")
        dirs = sorted(
            {
                _path(paths.get("nginx_web_prefix", "/etc/nginx"), "nginx_web_prefix"),
                _path(paths.get("nginx_web_root", "/var/www/hapool"), "nginx_web_root"),
                os.path.dirname(conf),
            }
        )
        script = START_SCRIPT.format(
            pool=pool,
            version=version,
            port=80,
            dirs=" ".join(dirs),
            nginx=_path(paths.get("nginx_web_binary", "/usr/sbin/nginx"), "nginx_web_binary"),
            conf=conf,
        )
        provider.commit_build(  # type: ignore[attr-defined]
            str(build["container"]),
            repository,
            tag,
            files={START_SCRIPT_PATH: (script, 0o755)},
            # ENTRYPOINT []: a base image's entry point must not wrap the start script.
            changes=[
                "ENTRYPOINT []",
                f'CMD ["{START_SCRIPT_PATH}"]',
                f"LABEL {templates_label(pool, version)}",
            ],
        )
        provider.remove_build(str(build["container"]))  # type: ignore[attr-defined]
        _drop_ticket(build)
        return reference
    raise TemplateError(f"unknown build {dict(build)!r}")


def publish(build: Mapping[str, Any], candidate: str, state_root: str) -> str:
    """The artefact of a validated build at its final place: a local build directory is renamed
    to ``<state_root>/templates/<pool>/<version>`` (replacing a leftover of an earlier, failed
    bake of the same version); a docker image is already where it goes."""
    if build.get("provider") != "local":
        return candidate
    final = pathlib.Path(artifact_name("local", state_root, str(build["pool"]), str(build["version"])))
    if final.exists():
        shutil.rmtree(final)
    os.rename(candidate, final)
    return str(final)


def templates_label(pool: str, version: str) -> str:
    """The Dockerfile ``LABEL`` arguments of a baked image."""
    return f"io.hapool.managed=true io.hapool.template={version} io.hapool.template.pool={pool}"


def _get(url: str, timeout: float) -> tuple[int, dict[str, str], str]:
    if not url.startswith("http://"):
        raise ValueError(f"not an http URL: {url}")
    request = urllib.request.Request(url, headers={"User-Agent": "hapool-bake-check"})  # noqa: S310 - http only
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http to our host
            body = response.read(1 << 16).decode("utf-8", "replace")
            return int(response.status), dict(response.headers.items()), body
    except urllib.error.HTTPError as exc:
        return int(exc.code), dict(exc.headers.items()), exc.read(1 << 16).decode("utf-8", "replace")


def check_served(address: str, port: int, name: str, health_path: str, timeout: float = 10.0) -> None:
    """A host launched from a template serves: its health check answers below 400 (retried until
    ``timeout``) and neither the page nor the health answer nor their headers hold a placeholder."""
    base = f"http://{address}:{port}"
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            status, headers, body = _get(base + health_path, timeout=2.0)
            if status < 400:
                break
            last = f"{health_path} answered {status}"
        except (OSError, ValueError) as exc:
            last = f"{health_path}: {exc}"
        if time.monotonic() >= deadline:
            raise TemplateError(f"the throw-away host {name} does not pass its health check: {last}")
        time.sleep(0.2)
    try:
        page_status, page_headers, page = _get(base + "/", timeout=2.0)
    except (OSError, ValueError) as exc:
        raise TemplateError(f"the throw-away host {name} does not serve its page: {exc}") from exc
    for text in (body, page, " ".join(f"{k}: {v}" for k, v in {**headers, **page_headers}.items())):
        found = templates.PLACEHOLDER_RE.search(text)
        if found:
            raise TemplateError(
                f"the throw-away host {name} serves the placeholder {found.group(0)} unreplaced"
            )
    if page_status >= 500:
        raise TemplateError(f"the throw-away host {name} answers / with {page_status}")


def validate_artifact(
    provider_factory: Callable[[str], Provider],
    pool: str,
    *,
    template: LaunchTemplate,
    spec: LaunchSpec,
    health_path: str,
    scratch_parent: str,
) -> str:
    """Launch a throw-away host from ``template`` with a provider made by ``provider_factory``
    (given a scratch state root: its hosts are no pool's), check it, destroy it; its name.

    The scratch state root is removed once nothing is left in it; when the throw-away host could
    not be destroyed (its destroy failed, or a failed launch could not clean up: an
    :class:`OrphanError`) it is kept, named after this bake's owner, so that the next bake's
    :func:`sweep` destroys the host through it once the owner is gone."""
    os.makedirs(scratch_parent, exist_ok=True)
    pid, start = owner()
    scratch = tempfile.mkdtemp(prefix=f".check-{pid}-{start}-", dir=scratch_parent)
    left = False
    try:
        provider = provider_factory(scratch)
        try:
            try:
                instance = provider.launch(
                    pool, LaunchSpec(cpus=spec.cpus, memory=spec.memory, template=template)
                )
            except OrphanError:
                left = True
                raise
            try:
                check_served(instance.address, instance.port, instance.name, health_path)
            finally:
                try:
                    provider.destroy(pool, instance)
                except BaseException:
                    left = True
                    raise
        finally:
            provider.close()
        return instance.name
    except (ProviderError, TemplateError):
        raise
    except HapoolError as exc:
        raise TemplateError(str(exc)) from exc
    finally:
        if not left:
            shutil.rmtree(scratch, ignore_errors=True)


def record(
    state_root: str,
    pool: str,
    version: str,
    artifact: str,
    now: float,
    *,
    usable: bool,
    reason: str = "",
    in_use: Callable[[], Iterable[str]] = tuple,
    remove: Callable[[templates.TemplateVersion], bool] | None = None,
    keep: int = 2,
) -> tuple[templates.TemplateIndex, list[str]]:
    """Record a bake in the pool's index, under the index's lock; after a usable bake, remove the
    artefacts of the versions :func:`templates.plan_gc` lets go (``remove`` returns False for one
    it must keep: still in use). Returns the index written and the versions removed."""
    path = templates.index_path(state_root, pool)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with file_lock(pathlib.Path(os.path.dirname(path)) / ".lock"):
        index = templates.read_index(path, pool)
        index = templates.record_bake(index, version, artifact, now, usable=usable, reason=reason)
        removed: list[str] = []
        if usable and remove is not None:
            for old in templates.plan_gc(index, in_use(), keep=keep):
                if remove(old):
                    removed.append(old.version)
            index = templates.drop_versions(index, removed)
        templates.write_index(path, index)
    return index, removed


def remove_artifact(
    provider: Provider, record_: templates.TemplateVersion, state_root: str, pool: str
) -> bool:
    """Delete a version's artefact: a local tree under the pool's templates directory, or a
    docker image (kept when a container still runs it)."""
    if provider.bake_kind == "local":
        target = pathlib.Path(os.path.realpath(record_.artifact))
        if target.parent != pathlib.Path(os.path.realpath(templates_dir(state_root, pool))):
            raise TemplateError(f"refusing to delete {target}: not a template tree of pool {pool}")
        shutil.rmtree(target, ignore_errors=True)
        return True
    if provider.bake_kind == "docker":
        return bool(provider.remove_image(record_.artifact))  # type: ignore[attr-defined]
    return False


def current_template(entry: Mapping[str, Any], state_root: str) -> LaunchTemplate | None:
    """The baked version new hosts of the pool ``entry`` launch from: its index's current
    version when the entry's ``template.enabled`` is true (a validated entry of ``hapool_pools``),
    else None (launch bare: the host is provisioned afterwards). An unreadable index is an error."""
    settings = entry.get("template")
    if not isinstance(settings, Mapping) or settings.get("enabled") is not True:
        return None
    pool = str(entry.get("name"))
    index = templates.read_index(templates.index_path(state_root, pool), pool)
    record_ = index.get(index.current) if index.current is not None else None
    return LaunchTemplate(record_.artifact, record_.version) if record_ is not None else None


def remove_all(provider: Provider, state_root: str, pool: str) -> tuple[list[str], list[str]]:
    """Delete every baked version of ``pool`` (teardown): each artefact, then the index, under the
    index's lock. Returns (versions removed, versions kept: a docker image still in use, whose
    records stay). An index that cannot be read is an error and nothing is deleted."""
    sweep(provider, state_root, pool)
    path = templates.index_path(state_root, pool)
    if not os.path.exists(path):
        return [], []
    with file_lock(pathlib.Path(os.path.dirname(path)) / ".lock"):
        index = templates.read_index(path, pool)
        removed: list[str] = []
        kept: list[str] = []
        for record_ in index.versions:
            if not record_.usable and not os.path.exists(record_.artifact) and provider.bake_kind == "local":
                removed.append(record_.version)  # a failed bake's artefact was never published
                continue
            (removed if remove_artifact(provider, record_, state_root, pool) else kept).append(
                record_.version
            )
        if kept:
            current = index.current if index.current in kept else None
            left = templates.TemplateIndex(
                pool, current, tuple(r for r in index.versions if r.version in kept)
            )
            templates.write_index(path, left)
        else:
            os.unlink(path)
    return removed, kept


def provider_for(name: str, settings: Mapping[str, Any]) -> Callable[[str], Provider]:
    """A factory of providers ``name`` with ``settings`` in a given state root (validation)."""
    return lambda root: get_provider(name, state_root=root, **dict(settings))


__all__ = [
    "BAKE_CODE_KEY",
    "BAKE_PROVIDERS",
    "START_SCRIPT",
    "START_SCRIPT_PATH",
    "BakePlan",
    "artifact_exists",
    "artifact_name",
    "bake_kind",
    "check_served",
    "current_template",
    "discard_build",
    "finish_build",
    "owner",
    "plan",
    "prepare_build",
    "provider_for",
    "publish",
    "record",
    "refuse_pool",
    "remove_all",
    "remove_artifact",
    "sweep",
    "template_inputs",
    "template_variables",
    "templates_dir",
    "validate_artifact",
]
