"""The runtime command builder: exact command lines, and no way to inject a second command."""

from __future__ import annotations

import re

import pytest
from ansible.module_utils.hapool.errors import InvalidArgumentError
from ansible.module_utils.hapool.haproxy import (
    Command,
    ServerOptions,
    SocketAddress,
    check_command_line,
    cmd_add_server,
    cmd_del_server,
    cmd_disable_health,
    cmd_disable_server,
    cmd_enable_health,
    cmd_enable_server,
    cmd_set_addr,
    cmd_set_health,
    cmd_set_server_state,
    cmd_set_weight,
    cmd_show_servers_state,
    cmd_show_stat,
    cmd_shutdown_sessions,
    parse_socket_address,
    server_config_line,
    validate_address,
    validate_name,
    validate_port,
    validate_time,
    validate_weight,
)
from hypothesis import given, settings
from hypothesis import strategies as st

HOSTILE_NAMES = [
    "",
    " ",
    "web1 ",
    " web1",
    "web 1",
    "web1;show info",
    "web1; del server app/web2",
    "web1\nshow info",
    "web1\r\nshow info",
    "web1\rx",
    "web1\x00",
    "web1\t",
    "app/web1",
    "../web1",
    "#1",
    "$(id)",
    "`id`",
    "web1|x",
    "web1&x",
    "web1>x",
    "wéb1",
    "web\u20281",  # unicode line separator
    "web1\u0085",  # next line
    "x" * 129,
    "'web1'",
    '"web1"',
    "web1,x",
    "web1=x",
    "web1@x",
]


@pytest.mark.parametrize("hostile", HOSTILE_NAMES)
def test_hostile_backend_and_server_names_are_rejected(hostile):
    builders = [
        lambda b, s: cmd_add_server(b, s, "127.0.0.1", 8080),
        cmd_del_server,
        cmd_enable_server,
        cmd_disable_server,
        cmd_enable_health,
        cmd_disable_health,
        lambda b, s: cmd_set_server_state(b, s, "drain"),
        lambda b, s: cmd_set_health(b, s, "down"),
        lambda b, s: cmd_set_weight(b, s, 10),
        lambda b, s: cmd_set_addr(b, s, "127.0.0.1", 80),
        cmd_shutdown_sessions,
    ]
    for build in builders:
        with pytest.raises(InvalidArgumentError):
            build(hostile, "web1")
        with pytest.raises(InvalidArgumentError):
            build("app", hostile)
    with pytest.raises(InvalidArgumentError):
        cmd_show_servers_state(hostile)


@pytest.mark.parametrize("name", ["FRONTEND", "BACKEND"])
def test_reserved_server_names(name):
    with pytest.raises(InvalidArgumentError, match="reserved"):
        cmd_del_server("app", name)


@pytest.mark.parametrize(
    "hostile",
    [
        "127.0.0.1 port 80",
        "127.0.0.1;show info",
        "127.0.0.1\n",
        "127.0.0.1:80",
        "[::1]",
        "fe80::1%eth0",
        "999.1.1.1",
        "1.2.3",
        "-host",
        "host-.example",
        "a..b",
        "a" * 64 + ".example",
        "",
        "host name",
        "http://x",
    ],
)
def test_hostile_addresses_are_rejected(hostile):
    with pytest.raises(InvalidArgumentError):
        cmd_add_server("app", "web1", hostile, 80)
    with pytest.raises(InvalidArgumentError):
        cmd_set_addr("app", "web1", hostile, 80)


@pytest.mark.parametrize("port", [0, -1, 65536, True, "80", 80.0, None])
def test_bad_ports(port):
    with pytest.raises(InvalidArgumentError):
        cmd_add_server("app", "web1", "127.0.0.1", port)


@pytest.mark.parametrize("weight", [-1, 257, True, "10", "50%", 1.5])
def test_bad_weights(weight):
    with pytest.raises(InvalidArgumentError):
        cmd_set_weight("app", "web1", weight)


def test_command_lines():
    assert cmd_show_stat().text == "show stat"
    assert cmd_show_servers_state().text == "show servers state"
    assert cmd_show_servers_state("app").text == "show servers state app"
    assert cmd_add_server("app", "web1", "10.0.0.1", 8080).text == "add server app/web1 10.0.0.1:8080 check"
    assert cmd_add_server("be_1", "web-1.a:b", "::1", 80).text == "add server be_1/web-1.a:b [::1]:80 check"
    assert cmd_add_server("app", "w", "web.example", 80).text == "add server app/w web.example:80 check"
    assert cmd_del_server("app", "web1").text == "del server app/web1"
    assert cmd_enable_server("app", "web1").text == "enable server app/web1"
    assert cmd_disable_server("app", "web1").text == "disable server app/web1"
    assert cmd_enable_health("app", "web1").text == "enable health app/web1"
    assert cmd_disable_health("app", "web1").text == "disable health app/web1"
    assert cmd_set_server_state("app", "web1", "drain").text == "set server app/web1 state drain"
    assert cmd_set_health("app", "web1", "down").text == "set server app/web1 health down"
    assert cmd_set_weight("app", "web1", 0).text == "set server app/web1 weight 0"
    assert cmd_set_weight("app", "web1", 256).text == "set server app/web1 weight 256"
    assert cmd_set_addr("app", "web1", "10.0.0.2").text == "set server app/web1 addr 10.0.0.2"
    assert cmd_set_addr("app", "web1", "::1", 81).text == "set server app/web1 addr ::1 port 81"
    assert cmd_shutdown_sessions("app", "web1").text == "shutdown sessions server app/web1"


def test_expected_answers():
    assert cmd_add_server("app", "w", "10.0.0.1", 1).accepts("New server registered.\n\n")
    assert not cmd_add_server("app", "w", "10.0.0.1", 1).accepts("Already exists a server with the same name")
    assert cmd_del_server("app", "w").accepts("Server deleted.\n")
    assert not cmd_del_server("app", "w").accepts("Only servers in maintenance mode can be deleted.\n")
    assert cmd_set_weight("app", "w", 1).accepts("\n")
    assert not cmd_set_weight("app", "w", 1).accepts("Backend is using a static LB algorithm ...\n")


def test_set_addr_refuses_hostnames():
    with pytest.raises(InvalidArgumentError, match="IP address"):
        cmd_set_addr("app", "web1", "web.example")


def test_state_and_health_choices():
    with pytest.raises(InvalidArgumentError):
        cmd_set_server_state("app", "web1", "up")
    with pytest.raises(InvalidArgumentError):
        cmd_set_server_state("app", "web1", "drain; show info")
    with pytest.raises(InvalidArgumentError):
        cmd_set_health("app", "web1", "ready")


def test_server_options_keywords():
    options = ServerOptions(
        inter="2s",
        fastinter=500,
        downinter="1m",
        rise=2,
        fall=3,
        check_port=8081,
        slowstart="30s",
        weight=20,
        maxconn=100,
        backup=True,
    )
    assert cmd_add_server("app", "web1", "127.0.0.1", 80, options).text == (
        "add server app/web1 127.0.0.1:80 check inter 2s fastinter 500 downinter 1m rise 2 fall 3 "
        "port 8081 slowstart 30s weight 20 maxconn 100 backup"
    )
    assert ServerOptions(check=False).keywords() == []
    assert ServerOptions(check=False, weight=5, slowstart=0).keywords() == ["slowstart", "0", "weight", "5"]
    assert server_config_line("web1", "10.0.0.1", 80, ServerOptions(inter=300, rise=2)) == (
        "server web1 10.0.0.1:80 check inter 300 rise 2"
    )


@pytest.mark.parametrize(
    "options",
    [
        ServerOptions(check=False, inter="2s"),
        ServerOptions(check=False, rise=2),
        ServerOptions(inter="2 s"),
        ServerOptions(inter="2s; show info"),
        ServerOptions(inter="0"),
        ServerOptions(inter=0),
        ServerOptions(inter=-5),
        ServerOptions(inter="1.5s"),
        ServerOptions(inter="2x"),
        ServerOptions(inter=True),
        ServerOptions(rise=0),
        ServerOptions(fall=-1),
        ServerOptions(rise="2"),  # type: ignore[arg-type]
        ServerOptions(check_port=0),
        ServerOptions(weight=300),
        ServerOptions(maxconn=-1),
        ServerOptions(check="yes"),  # type: ignore[arg-type]
        ServerOptions(slowstart="10s\n"),
    ],
)
def test_server_options_rejected(options):
    with pytest.raises(InvalidArgumentError):
        options.keywords()


def test_commands_cannot_carry_separators():
    for line in ["show stat; show info", "show stat\nshow info", "show\x00stat", "", "   "]:
        with pytest.raises(InvalidArgumentError):
            Command(line)
        with pytest.raises(InvalidArgumentError):
            check_command_line(line)
    assert check_command_line("show stat") == "show stat"


def test_validators_return_canonical_values():
    assert validate_address("::0001") == "::1"
    assert validate_address("127.000.0.1".replace("000", "0")) == "127.0.0.1"
    assert validate_address("web-1.example.org") == "web-1.example.org"
    assert validate_port(65535) == 65535
    assert validate_weight(0) == 0
    assert validate_time(2000) == "2000" and validate_time("150ms") == "150ms"
    assert validate_name("be.app:1-x_y") == "be.app:1-x_y"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("/run/haproxy/admin.sock", SocketAddress("unix", path="/run/haproxy/admin.sock")),
        ("unix:///run/h.sock", SocketAddress("unix", path="/run/h.sock")),
        ("./admin.sock", SocketAddress("unix", path="./admin.sock")),
        ("admin.sock", SocketAddress("unix", path="admin.sock")),
        ("127.0.0.1:9999", SocketAddress("tcp", host="127.0.0.1", port=9999)),
        ("tcp://127.0.0.1:9999", SocketAddress("tcp", host="127.0.0.1", port=9999)),
        ("tcp://localhost:1", SocketAddress("tcp", host="localhost", port=1)),
        ("[::1]:9999", SocketAddress("tcp", host="::1", port=9999)),
        ("tcp://[::1]:9999", SocketAddress("tcp", host="::1", port=9999)),
    ],
)
def test_socket_addresses(spec, expected):
    assert parse_socket_address(spec) == expected


@pytest.mark.parametrize(
    "spec", ["", "  ", "unix://", "tcp://", "127.0.0.1:", "127.0.0.1:0", "tcp://h:x", "h:99999"]
)
def test_bad_socket_addresses(spec):
    with pytest.raises(InvalidArgumentError):
        parse_socket_address(spec)


def test_socket_address_str():
    assert str(parse_socket_address("[::1]:9")) == "tcp://[::1]:9"
    assert str(parse_socket_address("/x.sock")) == "/x.sock"


# --- property tests ---------------------------------------------------------------------------

_TOKEN = re.compile(r"[A-Za-z0-9_.:-]+")


@settings(max_examples=400, deadline=None)
@given(backend=st.text(max_size=40), server=st.text(max_size=40))
def test_any_name_is_refused_or_yields_one_command(backend, server):
    """Whatever the names, a built command is one line of the expected words, or refused."""
    try:
        command = cmd_set_server_state(backend, server, "drain")
    except InvalidArgumentError:
        return
    assert command.text.split(" ") == ["set", "server", f"{backend}/{server}", "state", "drain"]
    assert _TOKEN.fullmatch(backend) and _TOKEN.fullmatch(server)
    assert ";" not in command.text and "\n" not in command.text and "#" not in command.text


@settings(max_examples=300, deadline=None)
@given(address=st.text(max_size=60), port=st.integers(-10, 70000))
def test_any_address_is_refused_or_yields_one_command(address, port):
    try:
        command = cmd_add_server("app", "web1", address, port)
    except InvalidArgumentError:
        return
    words = command.text.split(" ")
    assert words[:3] == ["add", "server", "app/web1"] and words[4:] == ["check"]
    assert not re.search(r"[;\s]", words[3])
