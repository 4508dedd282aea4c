"""The one pool validator (module_utils/hapool/pools.py, module pool_validate) that site.yml,
heal.yml and scale.yml run before anything else: good values pass (normalized), bad ones are an
InvalidArgumentError whose message names the pool and the key."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
import yaml
from ansible.module_utils.hapool.errors import InvalidArgumentError
from ansible.module_utils.hapool.pools import validate_pool, validate_pools
from helpers.modules import ROOT, run_module

BASE: dict[str, Any] = {"name": "web", "provider": "local", "min": 1, "desired": 2, "max": 3}


def with_key(path: str, value: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """``base`` (default BASE) with ``value`` at ``path`` (``check.inter``, ``launch.cpus``)."""
    pool = copy.deepcopy(BASE if base is None else base)
    node = pool
    *parents, leaf = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return pool


def dig(pool: dict[str, Any], path: str) -> Any:
    node: Any = pool
    for part in path.split("."):
        node = node[part]
    return node


# (key, value, normalized value)
GOOD: list[tuple[str, Any, Any]] = [
    ("min", 0, 0),
    ("min", "1", 1),
    ("desired", 3.0, 3),
    ("max", "10", 10),
    ("port", 80, 80),
    ("port", "65535", 65535),
    ("port", 1, 1),
    ("weight", 0, 0),
    ("weight", "256", 256),
    ("weight", 10, 10),
    ("weight", None, None),
    ("weights", {"web1": 3, "web2": "0"}, {"web1": 3, "web2": 0}),
    ("balance", "roundrobin", "roundrobin"),
    ("balance", "leastconn", "leastconn"),
    ("balance", "rdp-cookie", "rdp-cookie"),
    ("balance_args", "(2)", "(2)"),
    ("hash_type", "consistent", "consistent"),
    ("mode", "tcp", "tcp"),
    ("group", "webs", "webs"),
    ("retries", "3", 3),
    ("redispatch", -1, -1),
    ("extra", ["http-reuse safe"], ["http-reuse safe"]),
    ("timeout_server", "5s", "5s"),
    ("timeout_server", 3000, "3000"),
    ("timeout_server", "", ""),
    ("check.inter", "2s", "2s"),
    ("check.inter", 2000, "2000"),
    ("check.fastinter", "500ms", "500ms"),
    ("check.fastinter", "", ""),
    ("check.downinter", "1m", "1m"),
    ("check.slowstart", "0s", "0s"),
    ("check.slowstart", "10s", "10s"),
    ("check.rise", "2", 2),
    ("check.fall", 1, 1),
    ("check.path", "/health", "/health"),
    ("check.expect_status", 200, "200"),
    ("check.expect_status", "200-399", "200-399"),
    ("check.expect_status", "200,302", "200,302"),
    ("check.enabled", False, False),
    ("check.method", "HEAD", "HEAD"),
    ("check.host", "", ""),
    ("grace_period", "5", "5"),  # the heal settings are checked, and kept as given
    ("heal.max_replace_per_run", 2, 2),
    ("heal.circuit_threshold", 1, 1),
    ("scale.scale_out_cooldown", "30", "30"),
    ("scale.policies", [{"type": "target", "metric": "request_rate", "target": 100}],
     [{"type": "target", "metric": "request_rate", "target": 100}]),
    ("launch.image", "hapool/base:bookworm", "hapool/base:bookworm"),
    ("launch.cpus", "0.5", 0.5),
    ("launch.memory", "256m", "256m"),
    ("launch.memory", 268435456, 268435456),
    ("launch.bind_network", "127.0.1.0/24", "127.0.1.0/24"),
    ("launch.port", "8080", 8080),
    ("launch.vagrant_backend", "docker", "docker"),
    ("launch.box", "debian/bookworm64", "debian/bookworm64"),
    ("servers", [{"name": "s1", "address": "127.0.0.1", "port": "8080", "weight": "3", "state": "disabled",
                  "backup": True, "extra": "maxconn 10"}],
     [{"name": "s1", "address": "127.0.0.1", "port": 8080, "weight": 3, "state": "disabled", "backup": True,
       "extra": "maxconn 10"}]),
    ("my_own_key", {"anything": ["goes"]}, {"anything": ["goes"]}),
]  # fmt: skip


@pytest.mark.parametrize(("key", "value", "normalized"), GOOD, ids=[f"{k}={v!r}" for k, v, _ in GOOD])
def test_a_good_value_passes_normalized(key: str, value: Any, normalized: Any) -> None:
    (pool,) = validate_pools([with_key(key, value)])
    assert dig(pool, key) == normalized
    assert type(dig(pool, key)) is type(normalized)


# (key, value, words the message must carry besides "pool web" and the key)
BAD: list[tuple[str, Any, str]] = [
    ("min", "abc", "'abc'"),
    ("min", -1, ">= 0"),
    ("min", 1.5, "whole"),
    ("min", True, "number"),
    ("desired", "abc", "'abc'"),
    ("max", "many", "'many'"),
    ("port", 0, "1 to 65535"),
    ("port", 65536, "65535"),
    ("port", "http", "'http'"),
    ("port", None, "required"),
    ("weight", "abc", "0 to 256"),
    ("weight", -1, "0 to 256"),
    ("weight", 257, "<= 256"),
    ("weight", 2.5, "whole"),
    ("weight", "", "''"),
    ("weights.web1", "abc", "0 to 256"),
    ("weights.web1", 300, "<= 256"),
    ("weights", ["web1"], "mapping"),
    ("balance", "round-robin", "roundrobin, static-rr, leastconn"),
    ("balance", None, "None"),
    ("mode", "udp", "http, tcp"),
    ("retries", "x", "'x'"),
    ("redispatch", "yes", "'yes'"),
    ("group", "two words", "blanks"),
    ("extra", "http-reuse safe", "list"),
    ("hash_type", "consistent\nbackend evil", "line break"),
    ("timeout_server", "5 s", "time"),
    ("timeout_server", None, "time"),
    ("check", "yes", "mapping"),
    ("check.inter", "2x", "'2s'"),
    ("check.inter", "", "time"),
    ("check.inter", 0, "greater than 0"),
    ("check.fastinter", "fast", "'500ms'"),
    ("check.fastinter", None, "time"),
    ("check.downinter", "1.5s", "time"),
    ("check.slowstart", "soon", "time"),
    ("check.rise", 0, ">= 1"),
    ("check.rise", "abc", "'abc'"),
    ("check.fall", -2, ">= 1"),
    ("check.path", "health", "start with /"),
    ("check.path", "/a b", "blanks"),
    ("check.expect_status", "OK", "HTTP status"),
    ("check.expect_status", 42, "HTTP status"),
    ("check.enabled", "false", "true or false"),
    ("check.method", "GET /x", "blanks"),
    ("servers", {"name": "s1"}, "list"),
    ("servers", [{"address": "127.0.0.1"}], "servers[0].name"),
    ("servers", [{"name": "s1", "address": "127.0.0.1", "weight": "abc"}], "servers[0].weight"),
    ("servers", [{"name": "s1", "address": "127.0.0.1", "port": 0}], "servers[0].port"),
    ("servers", [{"name": "s 1", "address": "127.0.0.1"}], "server name"),
    ("servers", [{"name": "s1", "address": "not an address"}], "servers[0]"),
    ("servers", [{"name": "s1", "address": "127.0.0.1", "state": "up"}], "servers[0].state"),
    ("servers", [{"name": "s1", "address": "127.0.0.1"}, {"name": "s1", "address": "127.0.0.2"}], "unique"),
    ("provider", "aws", "local, docker, vagrant"),
    ("provider", None, "None"),
    ("grace_period", "abc", "'abc'"),
    ("max_replace_per_run", "abc", "'abc'"),
    ("heal.backoff", -5, ">= 0"),
    ("heal.circuit_threshold", 2, "share"),
    ("heal", [1], "mapping"),
    ("scale.scale_out_cooldown", "abc", "'abc'"),
    ("scale.max_step_out", 0, ">= 1"),
    ("scale.termination_order", "random", "oldest_first"),
    ("scale.policies", [{"type": "magic"}], "type"),
    ("scale.bogus", 1, "unknown"),
    ("launch.cpus", "lots", "'lots'"),
    ("launch.cpus", 0, "> 0"),
    ("launch.memory", "1 GB", "256m"),
    ("launch.bind_network", "10.0.0.300/8", "network"),
    ("launch.port", 70000, "65535"),
    ("launch.vagrant_backend", "hyperv", "libvirt"),
    ("launch.image", "", "non-empty"),
    ("launch", "local", "mapping"),
]  # fmt: skip


@pytest.mark.parametrize(("key", "value", "words"), BAD, ids=[f"{k}={v!r}" for k, v, _ in BAD])
def test_a_bad_value_names_the_pool_and_the_key(key: str, value: Any, words: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        validate_pools([{**BASE, "name": "api"}, with_key(key, value)])
    message = str(caught.value)
    assert message.startswith("pool web: "), message
    assert shown(key) in message, message
    assert words in message, message


def shown(key: str) -> str:
    """How a message names ``key``: by its path, but the heal and scale parsers name the key
    inside ``heal:`` / ``scale:`` alone (``backoff``), and a policy by its index."""
    special = {"scale.policies": "policy 0", "scale.bogus": "scale: unknown key(s) bogus"}
    if key in special:
        return special[key]
    return key.split(".", 1)[1] if key.startswith(("heal.", "scale.")) else key


@pytest.mark.parametrize(
    ("sizes", "words"),
    [
        ({"min": 3, "desired": 2, "max": 4}, "min=3, desired=2, max=4"),
        ({"min": 1, "desired": 5, "max": 4}, "min=1, desired=5, max=4"),
        ({"min": 5, "desired": 5, "max": 2}, "min=5, desired=5, max=2"),
        ({"min": None, "desired": 3, "max": None}, "min=1, desired=3, max=1"),  # documented defaults
        ({"min": None, "desired": 0, "max": None}, "min=1, desired=0, max=1"),
    ],
)
def test_sizes_out_of_order(sizes: dict[str, Any], words: str) -> None:
    pool = {"name": "web", "provider": "docker", **{k: v for k, v in sizes.items() if v is not None}}
    with pytest.raises(
        InvalidArgumentError,
        match=re.escape(f"pool web: sizes must satisfy 0 <= min <= desired <= max, got {words}"),
    ):
        validate_pools([pool])


@pytest.mark.parametrize(
    ("given", "sizes"),
    [
        ({}, (1, 1, 1)),
        ({"min": 0}, (0, 0, 1)),
        ({"min": 2}, (2, 2, 2)),
        ({"min": 1, "max": 5}, (1, 1, 5)),
        ({"desired": 2, "max": 4}, (1, 2, 4)),
        ({"min": "0", "desired": "0", "max": "0"}, (0, 0, 0)),
    ],
)
def test_a_provider_pool_gets_its_sizes_filled_in(given: dict[str, Any], sizes: tuple[int, int, int]) -> None:
    (pool,) = validate_pools([{"name": "web", "provider": "local", **given}])
    assert (pool["min"], pool["desired"], pool["max"]) == sizes


def test_a_static_pool_is_validated_and_gets_no_sizes() -> None:
    (pool,) = validate_pools([{"name": "web", "port": "8080", "weight": "2"}])
    assert pool == {"name": "web", "port": 8080, "weight": 2}
    with pytest.raises(InvalidArgumentError, match="pool web: weight must be a number, got 'abc'"):
        validate_pools([{"name": "web", "weight": "abc"}])


@pytest.mark.parametrize(
    ("pools", "words"),
    [
        ("web", "hapool_pools must be a list"),
        ({"name": "web"}, "hapool_pools must be a list"),
        (["web"], "pool #0: must be a mapping"),
        ([{"provider": "local"}], "pool #0: name must be"),
        ([{"name": "Web"}], "pool Web: name must be"),
        ([{"name": "1web"}], "pool 1web: name must be"),
        ([{"name": "web\n"}], "name must be"),
        ([{"name": "w" * 33}], "name must be"),
        ([{"name": "web-1"}], "pool web-1: name must be"),
        ([{"name": 7}], "pool #0: name must be"),
        ([{"name": "web"}, {"name": "api"}, {"name": "web"}], "pool web: name is used by more than one pool"),
    ],
)
def test_bad_pool_lists_and_names(pools: Any, words: str) -> None:
    with pytest.raises(InvalidArgumentError, match=re.escape(words)):
        validate_pools(pools)


def test_no_pools() -> None:
    assert validate_pools(None) == []
    assert validate_pools([]) == []


def test_the_input_is_not_changed_and_unknown_keys_are_kept() -> None:
    given = {
        "name": "web",
        "provider": "local",
        "weight": "3",
        "check": {"rise": "2"},
        "team": "blue",
        "launch": {"cpus": "0.5", "my_label": "x"},
    }
    before = copy.deepcopy(given)
    pool = validate_pool(given)
    assert given == before
    assert pool["team"] == "blue" and pool["launch"] == {"cpus": 0.5, "my_label": "x"}
    assert pool["weight"] == 3 and pool["check"] == {"rise": 2}


def test_the_inventories_pools_pass() -> None:
    """The pools the shipped inventories declare (their Jinja timings as the numbers they render to)."""
    for inventory in ("local", "docker", "vagrant"):
        group_vars = ROOT / "inventories" / inventory / "group_vars"
        files = sorted((group_vars / "all").glob("*.yml")) or [group_vars / "all.yml"]
        found: dict[str, Any] = {}
        for path in files:  # group_vars/all/*.yml, merged as Ansible does (later files win)
            text = re.sub(r'"\{\{ [^}]*default\((\d+)\) \}\}"', r"\1", path.read_text())
            found.update(yaml.safe_load(text) or {})
        pools = found["hapool_pools"]
        assert pools, inventory
        normalized = validate_pools(pools)
        assert [p["name"] for p in normalized] == [p["name"] for p in pools], inventory


def test_the_module_returns_the_pools_normalized_and_fails_clearly() -> None:
    pools = [
        {"name": "web", "provider": "local", "min": "1", "desired": 2, "max": 3, "weight": "5"},
        {"name": "static", "servers": [{"name": "s1", "address": "127.0.0.1"}]},
    ]
    for check_mode in (False, True):
        result = run_module("pool_validate", {"pools": pools}, check_mode=check_mode)
        assert not result.get("failed") and result["changed"] is False, result
        assert result["count"] == 2
        assert result["pools"][0] == {
            "name": "web",
            "provider": "local",
            "min": 1,
            "desired": 2,
            "max": 3,
            "weight": 5,
            "template": {"enabled": False, "variables": {}, "keep": 2},
        }
        assert result["pools"][1] == pools[1]
    bad = run_module("pool_validate", {"pools": [{**pools[0], "weight": "abc"}]})
    assert bad["failed"] and bad["error"] == "InvalidArgumentError", bad
    assert bad["msg"] == (
        "pool web: weight must be a number, got 'abc' (expected a whole number from 0 to 256)"
    )


# --- template: the pool's launch template settings ----------------------------------------------------

TEMPLATE_ON = {"enabled": True, "variables": {}, "keep": 2}
TEMPLATE_OFF = {"enabled": False, "variables": {}, "keep": 2}


@pytest.mark.parametrize(
    ("pool", "template"),
    [
        # off by default (hosts launched bare and provisioned) until it is benchmarked
        ({"name": "web", "provider": "local"}, TEMPLATE_OFF),
        ({"name": "web", "provider": "docker"}, TEMPLATE_OFF),
        ({"name": "web", "provider": "vagrant"}, TEMPLATE_OFF),
        ({"name": "web", "provider": "local", "template": None}, TEMPLATE_OFF),
        ({"name": "web", "provider": "docker", "template": {"enabled": True}}, TEMPLATE_ON),
        ({"name": "web", "template": {}}, TEMPLATE_OFF),  # static (no provider)
        ({"name": "web", "provider": "local", "template": {"enabled": False}}, TEMPLATE_OFF),
        (
            {"name": "web", "provider": "vagrant", "template": {"enabled": False, "keep": 1}},
            {**TEMPLATE_OFF, "keep": 1},
        ),
        (
            {
                "name": "web",
                "provider": "docker",
                "template": {
                    "enabled": True,
                    "variables": {"nginx_web_workers": 2, "nginx_web_root": "/srv/www"},
                    "keep": "3",
                },
            },
            {
                "enabled": True,
                "variables": {"nginx_web_workers": 2, "nginx_web_root": "/srv/www"},
                "keep": 3,
            },
        ),
    ],
)
def test_template_defaults_and_normalization(pool: dict[str, Any], template: dict[str, Any]) -> None:
    (normalized,) = validate_pools([pool])
    assert normalized["template"] == template
    assert type(normalized["template"]["keep"]) is int


def test_a_static_pool_without_template_gets_none() -> None:
    (pool,) = validate_pools([{"name": "web", "servers": [{"name": "s1", "address": "127.0.0.1"}]}])
    assert "template" not in pool


@pytest.mark.parametrize(
    ("pool", "words"),
    [
        (
            {"provider": "local", "template": {"enabled": True, "bake": "yes"}},
            "template: unknown key(s) bake (known: enabled, variables, keep)",
        ),
        ({"provider": "local", "template": {"zz": 1, "aa": 2}}, "template: unknown key(s) aa, zz"),
        (
            {"provider": "vagrant", "launch": {"vagrant_backend": "libvirt"}, "template": {"enabled": True}},
            "template.enabled: the vagrant libvirt backend does not launch from baked templates "
            "(the docker backend does); set it to false",
        ),
        (
            {"provider": "local", "template": {"enabled": "yes"}},
            "template.enabled must be true or false, got 'yes'",
        ),
        ({"provider": "local", "template": "on"}, "template must be a mapping, got 'on'"),
        (
            {"provider": "local", "template": {"variables": "nginx_web_x"}},
            "template.variables must be a mapping",
        ),
        (
            {"provider": "local", "template": {"variables": {"workers": 2}}},
            "template.variables: 'workers' is not an nginx_web_* variable",
        ),
        (
            {"provider": "docker", "template": {"variables": {"nginx_web_x": 1, "haproxy_port": 80}}},
            "template.variables: 'haproxy_port' is not an nginx_web_* variable",
        ),
        (
            {"provider": "local", "template": {"variables": {1: 2}}},
            "template.variables: 1 is not an nginx_web_*",
        ),
        ({"provider": "local", "template": {"keep": 0}}, "template.keep"),
        ({"provider": "local", "template": {"keep": -1}}, "template.keep"),
        ({"provider": "local", "template": {"keep": "many"}}, "template.keep"),
        ({"provider": "local", "template": {"keep": 1.5}}, "template.keep"),
    ],
)
def test_a_bad_template_names_the_pool_and_the_key(pool: dict[str, Any], words: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        validate_pools([{"name": "web", **pool}])
    message = str(caught.value)
    assert message.startswith("pool web: template"), message
    assert words in message, message


def test_template_keep_must_be_at_least_one() -> None:
    with pytest.raises(InvalidArgumentError, match=r"pool web: template\.keep .*>= 1"):
        validate_pools([{"name": "web", "provider": "local", "template": {"keep": 0}}])
    (pool,) = validate_pools([{"name": "web", "provider": "local", "template": {"keep": 1}}])
    assert pool["template"]["keep"] == 1


@pytest.mark.parametrize(
    ("provider", "key", "why"),
    [
        ("docker", "nginx_web_hostname", "each host's own name"),
        ("local", "nginx_web_hostname", "each host's own name"),
        ("docker", "nginx_web_json_extra", "set by the bake to the pool's name"),
        ("local", "nginx_web_json_extra", "set by the bake to the pool's name"),
        ("docker", "nginx_web_port", "the port a container listens on"),
        ("docker", "nginx_web_listen_address", "the address a container listens on"),
        ("local", "nginx_web_port", "each host's address and port"),
        ("local", "nginx_web_listen_address", "each host's address and port"),
        ("local", "nginx_web_prefix", "each host's own directory"),
        ("local", "nginx_web_root", "each host's own directory"),
        ("local", "nginx_web_conf_file", "each host's own directory"),
        ("local", "nginx_web_pid_file", "each host's own directory"),
        ("local", "nginx_web_log_dir", "each host's own directory"),
        ("local", "nginx_web_temp_dir", "each host's own directory"),
        ("local", "nginx_web_user", "the local provider's worker user"),
    ],
)
def test_template_variables_refuse_what_the_bake_sets_per_host(provider: str, key: str, why: str) -> None:
    """A variable the bake sets itself (per host, or per provider) cannot be a template input:
    the error names the key, the provider and why; nothing else is set."""
    with pytest.raises(InvalidArgumentError) as caught:
        validate_pools(
            [{"name": "web", "provider": provider, "template": {"enabled": True, "variables": {key: "x"}}}]
        )
    message = str(caught.value)
    assert message.startswith(f"pool web: template.variables: {key} cannot be part of a {provider} pool's"), (
        message
    )
    assert why in message, message


@pytest.mark.parametrize(
    "key", ["nginx_web_root", "nginx_web_user", "nginx_web_prefix", "nginx_web_conf_file"]
)
def test_docker_template_variables_may_set_the_paths_and_the_user(key: str) -> None:
    """A docker build container takes the pool's paths and user (the image carries them): they are
    template inputs there, unlike the local provider's per-host paths."""
    (pool,) = validate_pools(
        [{"name": "web", "provider": "docker", "template": {"enabled": True, "variables": {key: "/srv/x"}}}]
    )
    assert pool["template"]["variables"] == {key: "/srv/x"}
