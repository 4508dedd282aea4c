"""One validator for the pools (``hapool_pools``) that site.yml, heal.yml and scale.yml all use
(through the ``pool_validate`` module) before they launch, destroy or render anything.

:func:`validate_pools` checks every key of a pool entry documented in docs/roles.md,
docs/providers.md, docs/healing.md and docs/scaling.md and returns the pools normalized (numbers
as numbers, sizes filled in for pools with a provider). A bad value is an
:class:`InvalidArgumentError` whose message names the pool and the key: ``"pool web: weight must
be a number, got 'abc' (expected a whole number from 0 to 256)"``. Keys it does not know are kept
as they are (users add their own). The heal settings are parsed by
:meth:`healing.HealSettings.from_pool` and the scale settings by
:meth:`scaling.ScaleSettings.from_pool`, the parsers heal_plan and scale_plan use; every number,
and the pool's sizes, by ``settings.py``.

Pure: reads nothing but its argument.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .errors import InvalidArgumentError
from .haproxy import MAX_WEIGHT, validate_address, validate_name, validate_time
from .healing import HealSettings
from .providers import POOL_RE, PROVIDER_NAMES
from .scaling import ScaleSettings
from .settings import number_setting, pool_sizes, whole_setting

#: The algorithms the haproxy role renders (``balance``).
BALANCE_ALGORITHMS: tuple[str, ...] = (
    "roundrobin", "static-rr", "leastconn", "first", "source", "uri", "url_param", "hdr", "random",
    "rdp-cookie",
)  # fmt: skip
MODES: tuple[str, ...] = ("http", "tcp")
SERVER_STATES: tuple[str, ...] = ("enabled", "disabled")
VAGRANT_BACKENDS: tuple[str, ...] = ("docker", "libvirt", "virtualbox")
#: ``http-check expect status``: a code, a range, or a comma-separated list of them.
_STATUS_RE = re.compile(r"[1-5][0-9]{2}(-[1-5][0-9]{2})?(,[1-5][0-9]{2}(-[1-5][0-9]{2})?)*", re.ASCII)
#: A word that goes into a configuration line: no blank, no control character.
_WORD_RE = re.compile(r"[^\s\x00-\x1f\x7f]+")
#: Docker's memory limit: bytes, or a number with b, k, m or g.
_MEMORY_RE = re.compile(r"[0-9]+[bkmg]?", re.ASCII | re.IGNORECASE)
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


# --- single values ------------------------------------------------------------------------------


def _whole(value: Any, key: str, *, minimum: int | None = 0, maximum: int | None = None) -> int:
    """``value`` as a whole number within the bounds (``3``, ``3.0`` and ``"3"`` pass)."""
    return whole_setting({key: value}, key, None, minimum=minimum, maximum=maximum)


def _number(value: Any, key: str, *, positive: bool = False) -> float:
    number = number_setting({key: value}, key, None, minimum=0.0)
    if positive and number <= 0:
        raise InvalidArgumentError(f"{key} must be > 0, got {number:g}")
    return number


def _word(value: Any, key: str, *, empty: bool = False) -> str:
    """A string that goes into one configuration line: no blank or control character."""
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{key} must be a string, got {value!r}")
    if value == "" and empty:
        return value
    if not _WORD_RE.fullmatch(value):
        raise InvalidArgumentError(f"{key} must be a non-empty string without blanks, got {value!r}")
    return value


def _line(value: Any, key: str) -> str:
    """A string that goes into a configuration line as it is: no line break or control character."""
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{key} must be a string, got {value!r}")
    if _CONTROL_RE.search(value):
        raise InvalidArgumentError(f"{key} must not contain a line break or control character, got {value!r}")
    return value


def _choice(value: Any, key: str, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise InvalidArgumentError(f"{key} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidArgumentError(f"{key} must be true or false, got {value!r}")
    return value


def _mapping(value: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidArgumentError(f"{key} must be a mapping, got {value!r}")
    return value


def _list(value: Any, key: str) -> Sequence[Any]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise InvalidArgumentError(f"{key} must be a list, got {value!r}")
    return value


def _port(value: Any, key: str) -> int:
    return _whole(value, key, minimum=1, maximum=65535)


def _weight(value: Any, key: str) -> int:
    return _whole(value, key, minimum=0, maximum=MAX_WEIGHT)


def _time(value: Any, key: str, *, allow_zero: bool = False, empty_means: str | None = None) -> str:
    """An HAProxy time: ``2s``, ``500ms``, ``1m`` or a plain number of milliseconds (``""`` too
    when ``empty_means`` says what an empty value stands for)."""
    if empty_means is not None and value == "":
        return ""
    try:
        return validate_time(value, key, allow_zero=allow_zero)
    except InvalidArgumentError as exc:
        hint = f" or '' ({empty_means})" if empty_means is not None else ""
        raise InvalidArgumentError(f"{exc}{hint}") from None


# --- parts of a pool ---------------------------------------------------------------------------------


def _check(value: Any) -> dict[str, Any]:
    check = dict(_mapping(value, "check"))
    if "enabled" in check:
        check["enabled"] = _bool(check["enabled"], "check.enabled")
    for key in ("inter", "fastinter", "downinter"):
        if key in check:
            check[key] = _time(check[key], f"check.{key}", empty_means=None if key == "inter" else "inter")
    if "slowstart" in check:
        check["slowstart"] = _time(check["slowstart"], "check.slowstart", allow_zero=True)
    for key in ("rise", "fall"):
        if key in check:
            check[key] = _whole(check[key], f"check.{key}", minimum=1)
    if "path" in check:
        path = _word(check["path"], "check.path")
        if not path.startswith("/"):
            raise InvalidArgumentError(f"check.path must start with /, got {path!r}")
        check["path"] = path
    if "method" in check:
        check["method"] = _word(check["method"], "check.method")
    if "host" in check:
        check["host"] = _word(check["host"], "check.host", empty=True)
    if "expect_status" in check:
        status = check["expect_status"]
        text = str(status) if isinstance(status, int) and not isinstance(status, bool) else status
        if not isinstance(text, str) or not _STATUS_RE.fullmatch(text):
            raise InvalidArgumentError(
                "check.expect_status must be an HTTP status such as 200, '200-399' or '200,302', "
                f"got {status!r}"
            )
        check["expect_status"] = text
    return check


def _weights(value: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for host, weight in _mapping(value, "weights").items():
        if not isinstance(host, str) or not host:
            raise InvalidArgumentError(f"weights: keys must be inventory host names, got {host!r}")
        out[host] = _weight(weight, f"weights.{host}")
    return out


def _server(value: Any, index: int) -> dict[str, Any]:
    where = f"servers[{index}]"
    server = dict(_mapping(value, where))
    for key in ("name", "address"):
        if key not in server:
            raise InvalidArgumentError(f"{where}.{key} is required")
    try:
        server["name"] = validate_name(server["name"], "server name")
        server["address"] = validate_address(server["address"])
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"{where}: {exc}") from None
    if "port" in server:
        server["port"] = _port(server["port"], f"{where}.port")
    if server.get("weight") is not None:
        server["weight"] = _weight(server["weight"], f"{where}.weight")
    if "state" in server:
        server["state"] = _choice(server["state"], f"{where}.state", SERVER_STATES)
    if "backup" in server:
        server["backup"] = _bool(server["backup"], f"{where}.backup")
    if "extra" in server:
        server["extra"] = _line(server["extra"], f"{where}.extra")
    return server


def _servers(value: Any) -> list[dict[str, Any]]:
    servers = [_server(entry, i) for i, entry in enumerate(_list(value, "servers"))]
    names = [s["name"] for s in servers]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidArgumentError(f"servers: names must be unique in the pool, got {', '.join(twice)} twice")
    return servers


def _memory(value: Any, key: str) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and _MEMORY_RE.fullmatch(value.strip()):
        return value.strip()
    raise InvalidArgumentError(
        f"{key} must be bytes or a number with b, k, m or g (e.g. 256m), got {value!r}"
    )


def _network(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{key} must be a network such as 127.0.0.1/32, got {value!r}")
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise InvalidArgumentError(f"{key} must be a network such as 127.0.0.1/32, got {value!r}") from None
    return value


_LAUNCH: dict[str, Callable[[Any, str], Any]] = {
    "image": _word,
    "network": _word,
    "docker_host": _word,
    "box": _word,
    "vm_network": _word,
    "vagrant_dir": _line,
    "vagrantfile": _line,
    "cpus": lambda v, k: _number(v, k, positive=True),
    "memory": _memory,
    "bind_network": _network,
    "port": _port,
    "vagrant_backend": lambda v, k: _choice(v, k, VAGRANT_BACKENDS),
    "start_timeout": lambda v, k: _number(v, k, positive=True),
}


def _launch(value: Any) -> dict[str, Any]:
    launch = dict(_mapping(value, "launch"))
    for key, check in _LAUNCH.items():
        if launch.get(key) is not None:
            launch[key] = check(launch[key], f"launch.{key}")
    return launch


#: The providers whose pools launch from a baked template (hapool.baking.BAKE_PROVIDERS; vagrant:
#: with its docker backend only).
TEMPLATE_PROVIDERS: tuple[str, ...] = ("local", "docker", "vagrant")
_TEMPLATE_KEYS = ("enabled", "variables", "keep")

_PER_HOST = "each host's own name: the bake renders the placeholder @@HAPOOL_HOST@@"
_JSON_EXTRA = "set by the bake to the pool's name ({'pools': [<pool>]})"
_LISTEN = "each host's address and port, which the provider allocates at launch"
_LOCAL_PATH = "a path under each host's own directory (@@HAPOOL_PREFIX@@), which the launch personalizes"
#: The nginx_web_* variables a bake sets itself, per provider, with why: they are never template
#: inputs (hapool.baking.template_variables drops them from the variables the controller sees) and
#: a pool's ``template.variables`` cannot set them. Every provider: the host's name and the JSON
#: page's pools; docker (and vagrant's docker backend, which bakes the same image): the listen
#: address and port (every container listens on *:80); local:
#: also the paths of the build directory the launch copies into the host's prefix and the worker
#: user (the provider's).
TEMPLATE_BUILD_OWNED: dict[str, dict[str, str]] = {
    "docker": {
        "nginx_web_hostname": _PER_HOST,
        "nginx_web_json_extra": _JSON_EXTRA,
        "nginx_web_listen_address": "the address a container listens on (every address)",
        "nginx_web_port": "the port a container listens on (80)",
    },
    "local": {
        "nginx_web_hostname": _PER_HOST,
        "nginx_web_json_extra": _JSON_EXTRA,
        "nginx_web_listen_address": _LISTEN,
        "nginx_web_port": _LISTEN,
        "nginx_web_prefix": _LOCAL_PATH,
        "nginx_web_conf_file": _LOCAL_PATH,
        "nginx_web_pid_file": _LOCAL_PATH,
        "nginx_web_root": _LOCAL_PATH,
        "nginx_web_log_dir": _LOCAL_PATH,
        "nginx_web_temp_dir": _LOCAL_PATH,
        "nginx_web_user": "the local provider's worker user (its 'user' setting)",
    },
}
TEMPLATE_BUILD_OWNED["vagrant"] = TEMPLATE_BUILD_OWNED["docker"]


def _template(value: Any, provider: Any, backend: Any = None) -> dict[str, Any]:
    """The pool's launch template settings: ``enabled`` (default false: hosts are launched bare
    and provisioned; true bakes and launches from templates: local, docker, and vagrant with its
    docker backend - ``backend``, the pool's ``launch.vagrant_backend``, default docker),
    ``variables`` (``nginx_web_*`` values of this pool's template) and ``keep`` (baked versions
    kept besides those live hosts run, default 2)."""
    template = dict(_mapping({} if value is None else value, "template"))
    unknown = sorted(set(template) - set(_TEMPLATE_KEYS))
    if unknown:
        raise InvalidArgumentError(
            f"template: unknown key(s) {', '.join(map(str, unknown))} (known: {', '.join(_TEMPLATE_KEYS)})"
        )
    enabled = _bool(template.get("enabled", False), "template.enabled")
    if enabled and provider is None:
        raise InvalidArgumentError(
            "template.enabled: a pool without a provider (static servers) has no launch template"
        )
    if enabled and provider not in TEMPLATE_PROVIDERS:
        raise InvalidArgumentError(
            f"template.enabled: the {provider} provider does not launch from baked templates "
            f"({', '.join(TEMPLATE_PROVIDERS)} do); set it to false"
        )
    if enabled and provider == "vagrant" and backend not in (None, "docker"):
        raise InvalidArgumentError(
            f"template.enabled: the vagrant {backend} backend does not launch from baked templates "
            "(the docker backend does); set it to false"
        )
    raw = template.get("variables")
    variables = dict(_mapping({} if raw is None else raw, "template.variables"))
    # A vagrant VM backend bakes nothing: the local list, as for any provider without templates.
    vm = provider == "vagrant" and backend not in (None, "docker")
    owned = TEMPLATE_BUILD_OWNED.get("local" if vm else str(provider), TEMPLATE_BUILD_OWNED["local"])
    for key in variables:
        if not isinstance(key, str) or not key.startswith("nginx_web_"):
            raise InvalidArgumentError(f"template.variables: {key!r} is not an nginx_web_* variable")
        if key in owned:
            raise InvalidArgumentError(
                f"template.variables: {key} cannot be part of a {provider or 'local'} pool's template: "
                f"it is {owned[key]}"
            )
    keep = _whole(template.get("keep", 2), "template.keep", minimum=1)
    return {"enabled": enabled, "variables": variables, "keep": keep}


def _warm(value: Any, pool: Mapping[str, Any]) -> dict[str, Any]:
    """The pool's warm pool (``hapool.warm``): ``size`` warm hosts launched from its template."""
    warm = dict(_mapping({} if value is None else value, "warm"))
    unknown = sorted(set(warm) - {"size"})
    if unknown:
        raise InvalidArgumentError(f"warm: unknown key(s) {', '.join(map(str, unknown))} (known: size)")
    size = _whole(warm.get("size", 0), "warm.size", minimum=0)
    if size and not (pool.get("template") or {}).get("enabled"):
        raise InvalidArgumentError(
            "warm.size: a warm pool is launched from the pool's baked template: set template.enabled: true"
        )
    return {"size": size}


_SIMPLE: dict[str, Callable[[Any, str], Any]] = {
    "group": _word,
    "port": _port,
    "weight": _weight,
    "balance": lambda v, k: _choice(v, k, BALANCE_ALGORITHMS),
    "balance_args": _line,
    "hash_type": _line,
    "mode": lambda v, k: _choice(v, k, MODES),
    "retries": _whole,
    "redispatch": lambda v, k: _whole(v, k, minimum=None),
    "timeout_server": lambda v, k: _time(v, k, allow_zero=True, empty_means="haproxy_timeout_server"),
}


def _pool_body(entry: Mapping[str, Any]) -> dict[str, Any]:
    """Every key but the name, checked; raises with the key (the caller adds the pool)."""
    pool = copy.deepcopy(dict(entry))
    if "provider" in pool:
        pool["provider"] = _choice(pool["provider"], "provider", PROVIDER_NAMES)
    for key, check in _SIMPLE.items():
        if key in pool and not (key == "weight" and pool[key] is None):  # no weight: HAProxy's 1
            pool[key] = check(pool[key], key)
    if "weights" in pool:
        pool["weights"] = _weights(pool["weights"])
    if "check" in pool:
        pool["check"] = _check(pool["check"])
    if "servers" in pool:
        pool["servers"] = _servers(pool["servers"])
    if "extra" in pool:
        pool["extra"] = [_line(line, f"extra[{i}]") for i, line in enumerate(_list(pool["extra"], "extra"))]
    if "launch" in pool:
        pool["launch"] = _launch(pool["launch"])
    if "provider" in pool or "template" in pool:
        launch = pool.get("launch")
        backend = launch.get("vagrant_backend") if isinstance(launch, Mapping) else None
        pool["template"] = _template(pool.get("template"), pool.get("provider"), backend)
    pool.update({"warm": _warm(pool["warm"], pool)} if "warm" in pool else {})
    low, desired, high = pool_sizes(pool)
    for key, size in (("min", low), ("desired", desired), ("max", high)):
        if key in pool or "provider" in pool:
            pool[key] = size
    if pool.get("heal") is not None:
        _mapping(pool["heal"], "heal")
    HealSettings.from_pool(pool)
    ScaleSettings.from_pool(pool)
    return pool


def validate_pool(entry: Any, index: int = 0) -> dict[str, Any]:
    """One ``hapool_pools`` entry, normalized; :class:`InvalidArgumentError` naming the pool (its
    name, or ``#index`` when it has none) and the key."""
    if not isinstance(entry, Mapping):
        raise InvalidArgumentError(f"pool #{index}: must be a mapping of settings, got {entry!r}")
    name = entry.get("name")
    if not isinstance(name, str) or not POOL_RE.fullmatch(name):
        label = name if isinstance(name, str) and name else f"#{index}"
        raise InvalidArgumentError(
            f"pool {label}: name must be 1-32 characters, a lowercase letter first, then lowercase "
            f"letters, digits or _ (it names groups, containers and directories), got {name!r}"
        )
    try:
        return _pool_body(entry)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"pool {name}: {exc}") from None


def validate_pools(pools: Any) -> list[dict[str, Any]]:
    """Every pool of ``hapool_pools`` (None: no pool), normalized, in order."""
    if pools is None:
        return []
    if isinstance(pools, str | bytes | Mapping) or not isinstance(pools, Sequence):
        raise InvalidArgumentError(f"hapool_pools must be a list of pools, got {pools!r}")
    out = [validate_pool(entry, i) for i, entry in enumerate(pools)]
    names = [p["name"] for p in out]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidArgumentError(
            f"pool {twice[0]}: name is used by more than one pool (names are backends)"
        )
    return out


__all__ = ["BALANCE_ALGORITHMS", "validate_pool", "validate_pools"]
