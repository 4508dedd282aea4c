"""Parsers of ``show stat`` / ``show servers state`` on output captured from HAProxy 2.6.12.

The fixtures come from tests/unit/fixtures/haproxy/capture.py: backend ``app`` with web1 UP
(runtime weight 50), web2 DRAIN, web3 MAINT, web4 DOWN (nothing listens), ``nocheck`` without
health checks, ``dyn1`` added at runtime (weight 20) with one slow request in flight, and
backend ``empty`` without servers.
"""

from __future__ import annotations

import contextlib
import random
import re
from pathlib import Path

import pytest
from ansible.module_utils.hapool.errors import HapoolError, ParseError
from ansible.module_utils.hapool.stats import (
    AVAILABLE_STATUSES,
    FAILED_STATUSES,
    SERVING_STATUSES,
    STANDBY_STATUSES,
    AdminState,
    OpState,
    ProxyType,
    backend_summary,
    normalize_status,
    parse_servers_state,
    parse_show_stat,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FIXTURES = Path(__file__).parent / "fixtures" / "haproxy"
SHOW_STAT = (FIXTURES / "show_stat.csv").read_text()
SERVERS_STATE = (FIXTURES / "show_servers_state.txt").read_text()
SERVERS_STATE_APP = (FIXTURES / "show_servers_state_app.txt").read_text()


def by_name(rows):
    return {(row.proxy, row.server): row for row in rows}


# --- show stat ---------------------------------------------------------------------------------


def test_show_stat_fixture_rows_and_types():
    rows = parse_show_stat(SHOW_STAT)
    assert [(r.proxy, r.server) for r in rows] == [
        ("fe", "FRONTEND"),
        ("app", "web1"),
        ("app", "web2"),
        ("app", "web3"),
        ("app", "web4"),
        ("app", "nocheck"),
        ("app", "dyn1"),
        ("app", "BACKEND"),
        ("empty", "BACKEND"),
    ]
    rows_by = by_name(rows)
    assert rows_by["fe", "FRONTEND"].type is ProxyType.FRONTEND
    assert rows_by["app", "BACKEND"].type is ProxyType.BACKEND
    assert all(rows_by["app", s].type is ProxyType.SERVER for s in ("web1", "web4", "dyn1"))


def test_show_stat_fixture_typed_fields():
    rows = by_name(parse_show_stat(SHOW_STAT))
    web1, web2, web3, web4 = (rows["app", f"web{i}"] for i in (1, 2, 3, 4))
    nocheck, dyn1 = rows["app", "nocheck"], rows["app", "dyn1"]

    assert (web1.status, web1.weight, web1.uweight) == ("UP", 50, 50)
    assert (web1.check_status, web1.check_code, web1.check_desc) == ("L7OK", 200, "Layer7 check passed")
    assert web1.addr is not None and web1.addr.startswith("127.0.0.1:")
    assert isinstance(web1.lastchg, int) and web1.lastchg >= 0
    assert web1.downtime == 0
    assert web2.status == "DRAIN" and web2.status_class == "DRAIN"
    assert web3.status == "MAINT" and web3.check_status is None and web3.check_code is None
    assert web4.status == "DOWN" and web4.check_status == "L4CON" and web4.check_code is None
    assert web4.addr == "127.0.0.1:1"
    assert web4.chkdown is not None and web4.chkdown >= 1
    assert nocheck.status == "no check" and nocheck.status_class == "NO CHECK" and nocheck.available
    assert (dyn1.status, dyn1.weight, dyn1.scur) == ("UP", 20, 1)
    assert [r.server for r in rows.values() if r.is_server and r.available] == ["web1", "nocheck", "dyn1"]
    # Counters HAProxy leaves empty for a row type read as 0, optional values as None.
    fe = rows["fe", "FRONTEND"]
    assert fe.qcur == 0 and fe.weight is None and fe.scur == 1 and fe.req_tot >= 13
    assert fe.columns["pxname"] == "fe" and "h1_bytes_out" in fe.columns


def test_backend_summary_aggregates():
    summary = backend_summary(parse_show_stat(SHOW_STAT))
    assert list(summary) == ["app", "empty"]  # frontends are left out
    app = summary["app"]
    assert app.status == "UP" and app.algo == "roundrobin" and app.mode == "http"
    assert dict(app.counts) == {"UP": 2, "DRAIN": 1, "MAINT": 1, "DOWN": 1, "NO CHECK": 1}
    assert (app.total, app.available) == (6, 3)
    assert app.scur == 1 and app.server_sessions == 1
    # The backend's request rate (HAProxy's own BACKEND row) and its servers' share of it.
    assert (app.stot, app.rate) == (13, 13)
    assert {r.server: r.rate for r in app.servers if r.rate} == {"web1": 9, "dyn1": 4}
    assert all(r.qcur == 0 for r in app.servers)
    assert app.server("dyn1") is not None and app.server("nope") is None
    empty = summary["empty"]
    assert (empty.total, empty.available, dict(empty.counts), empty.scur) == (0, 0, {}, 0)
    data = app.as_dict()
    assert data["servers_total"] == 6 and data["counts"]["DOWN"] == 1
    assert [s["name"] for s in data["servers"]] == ["web1", "web2", "web3", "web4", "nocheck", "dyn1"]
    assert "servers" not in app.as_dict(include_servers=False)


def test_backend_summary_without_backend_row_sums_servers():
    rows = [r for r in parse_show_stat(SHOW_STAT) if not r.is_backend]
    app = backend_summary(rows)["app"]
    assert app.status is None and app.scur == 1 and app.total == 6


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("UP", "UP"),
        ("UP 1/3", "UP"),
        ("DOWN 1/2", "DOWN"),
        ("MAINT (via app/web1)", "MAINT"),
        ("MAINT (resolution)", "MAINT"),
        ("no check", "NO CHECK"),
        ("DRAIN", "DRAIN"),
        ("NOLB", "NOLB"),
        ("", "UNKNOWN"),
    ],
)
def test_normalize_status(status, expected):
    assert normalize_status(status) == expected


# The status classes: which sets each ``show stat`` status is in (A: available, takes new
# load-balanced sessions; S: serving, takes traffic; B: standing by; F: failed).
@pytest.mark.parametrize(
    ("status", "sets"),
    [
        ("UP", "AS"),
        ("UP 1/3", "AS"),  # going down: still UP
        ("no check", "AS"),
        ("NOLB", "S"),  # disable-on-404: no new load-balanced sessions, persistent ones still
        ("DOWN", "F"),
        ("DOWN 1/2", "F"),  # going up: still DOWN
        ("DRAIN", "B"),
        ("MAINT", "B"),
        ("MAINT (via app/web1)", "B"),
        ("MAINT (resolution)", "B"),
        ("", ""),
    ],
)
def test_status_classes(status: str, sets: str) -> None:
    cls = normalize_status(status)
    member = {
        "A": cls in AVAILABLE_STATUSES,
        "S": cls in SERVING_STATUSES,
        "B": cls in STANDBY_STATUSES,
        "F": cls in FAILED_STATUSES,
    }
    assert "".join(k for k, inside in member.items() if inside) == sets


def test_each_server_says_which_class_sets_it_is_in() -> None:
    """haproxy_stats_info's servers carry ``serving``, ``available`` and ``failed`` (from the sets
    above), so playbooks test ``item.available`` instead of naming status classes."""
    servers = backend_summary(parse_show_stat(SHOW_STAT))["app"].as_dict()["servers"]
    flags = {s["name"]: (s["serving"], s["available"], s["failed"]) for s in servers}  # type: ignore[index]
    assert flags == {
        "web1": (True, True, False),  # UP
        "web2": (False, False, False),  # DRAIN
        "web3": (False, False, False),  # MAINT
        "web4": (False, False, True),  # DOWN
        "nocheck": (True, True, False),  # no check
        "dyn1": (True, True, False),  # UP
    }


def test_status_classes_have_one_home() -> None:
    """The planners name no status class themselves: they use the sets of stats.py."""
    core = Path(__file__).resolve().parents[2] / "plugins" / "module_utils" / "hapool"
    for name in ("healing.py", "scaling.py", "sizing.py", "pools.py"):
        text = (core / name).read_text()
        found = re.findall(r"""["'](UP|DOWN|NOLB|DRAIN|MAINT|NO CHECK)["']""", text)
        assert not found, f"{name} names status classes {found}: use the sets of stats.py"


def _split(text):
    lines = text.rstrip("\n").split("\n")
    header = lines[0][2:].split(",")
    return header, [line.split(",") for line in lines[1:]]


def _join(header, rows):
    return "# " + ",".join(header) + "\n" + "".join(",".join(r) + "\n" for r in rows) + "\n"


def test_show_stat_tolerates_extra_and_reordered_columns():
    header, rows = _split(SHOW_STAT)
    # A future version's columns, inserted in the middle and at the end.
    header2 = [*header[:5], "future_metric", *header[5:], "another_one"]
    rows2 = [[*r[:5], "42", *r[5:], "x"] for r in rows]
    parsed = parse_show_stat(_join(header2, rows2))
    assert parsed == parse_show_stat(SHOW_STAT)
    assert parsed[0].columns["future_metric"] == "42"
    # Columns in another order map to the same fields.
    order = list(range(len(header)))
    random.Random(4).shuffle(order)
    shuffled = _join([header[i] for i in order], [[r[i] for i in order] for r in rows])
    assert parse_show_stat(shuffled) == parse_show_stat(SHOW_STAT)


def test_show_stat_without_optional_columns():
    text = "# pxname,svname,type,status\napp,web1,2,UP\napp,BACKEND,1,UP\n"
    rows = parse_show_stat(text)
    assert rows[0].scur == 0 and rows[0].weight is None and rows[0].check_status is None


def test_show_stat_quoted_fields():
    text = '# pxname,svname,type,status,check_desc\napp,web1,2,UP,"a, quoted ""desc"""\n'
    assert parse_show_stat(text)[0].check_desc == 'a, quoted "desc"'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("\n\n", "empty"),
        ("Permission denied\n", "header"),
        ("Unknown command, but maybe ...\n", "header"),
        ("# svname,type,status\nweb1,2,UP\n", "pxname"),
        ("# pxname,svname,type,status\napp,web1,2\n", "3 columns"),
        ("# pxname,svname,type,status\napp,web1,2,UP,extra\n", "5 columns"),
        ("# pxname,svname,type,status,scur\napp,web1,2,UP,many\n", "scur"),
        ("# pxname,svname,type,status,scur\napp,web1,2,UP,1.5\n", "scur"),
        ("# pxname,svname,type,status,scur\napp,web1,2,UP,\u0661\n", "scur"),  # Arabic-Indic 1
        ("# pxname,svname,type,status\napp,web1,7,UP\n", "row type"),
        ("# pxname,svname,type,status\napp,web1,x,UP\n", "type"),
        ("# pxname,svname,type,status\n,web1,2,UP\n", "empty pxname"),
        ('# pxname,svname,type,status\napp,"web1,2,UP\n', "CSV"),
        ("# pxname,svname,type,status,scur,scur\napp,web1,2,UP,1,2\n", "repeats column.s. scur"),
    ],
)
def test_show_stat_malformed_input_is_an_error(text, message):
    with pytest.raises(ParseError, match=message):
        parse_show_stat(text)


def test_parse_error_is_a_hapool_error():
    assert issubclass(ParseError, HapoolError)


# --- show servers state -----------------------------------------------------------------------


def test_servers_state_fixture():
    states = {s.server: s for s in parse_servers_state(SERVERS_STATE)}
    assert list(states) == ["web1", "web2", "web3", "web4", "nocheck", "dyn1"]
    web1, web2, web3, web4 = (states[f"web{i}"] for i in (1, 2, 3, 4))
    assert (web1.backend, web1.backend_id, web1.server_id, web1.addr) == ("app", 3, 1, "127.0.0.1")
    assert web1.op_state is OpState.RUNNING and web1.admin == "ready" and web1.admin_state == AdminState.NONE
    assert (web1.uweight, web1.iweight) == (50, 1)
    assert web1.checks_configured and web1.checks_enabled
    assert isinstance(web1.port, int) and web1.port > 1024 and web1.fqdn is None
    assert web2.admin == "drain" and web2.admin_state & AdminState.FDRAIN
    assert web3.admin == "maint" and web3.admin_state & AdminState.FMAINT and web3.op_state is OpState.STOPPED
    assert web4.admin == "ready" and web4.op_state is OpState.STOPPED and web4.port == 1
    assert not states["nocheck"].checks_configured and not states["nocheck"].checks_enabled
    assert (states["dyn1"].uweight, states["dyn1"].iweight) == (20, 20)
    assert states["dyn1"].as_dict()["admin"] == "ready"


def test_servers_state_of_one_backend():
    assert parse_servers_state(SERVERS_STATE_APP) == parse_servers_state(SERVERS_STATE)


def test_servers_state_config_maint_is_maint():
    text = SERVERS_STATE.replace(" 2 0 50 1 ", " 0 5 50 1 ", 1)  # 0x05: forced + config maint
    assert parse_servers_state(text)[0].admin == "maint"


def test_servers_state_tolerates_extra_columns():
    lines = SERVERS_STATE.rstrip("\n").split("\n")
    extended = [lines[0], lines[1] + " srv_future"] + [line + " 7" for line in lines[2:]]
    states = parse_servers_state("\n".join(extended) + "\n")
    assert states == parse_servers_state(SERVERS_STATE)
    assert states[0].columns["srv_future"] == "7"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("2\n# be_id\n", "version"),
        ("Can't find backend.\n", "version"),
        ("1\n", "header"),
        ("1\n3 app 1 web1\n", "header"),
        ("1\n# be_id be_name srv_id\n", "lacks"),
        (SERVERS_STATE.replace(" 2 0 50 1 ", " 2 0 50 ", 1), "fields"),
        (SERVERS_STATE.replace(" 2 0 50 1 ", " 9 0 50 1 ", 1), "srv_op_state"),
        (SERVERS_STATE.replace(" 2 0 50 1 ", " 2 x 50 1 ", 1), "srv_admin_state"),
        (SERVERS_STATE.replace(" 2 0 50 1 ", " 2 4096 50 1 ", 1), "out of range"),
        (SERVERS_STATE.replace("3 app 1 web1", "three app 1 web1", 1), "be_id"),
        ("1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state"
         " srv_uweight srv_iweight srv_uweight\n", "repeats column.s. srv_uweight"),
    ],
)
def test_servers_state_malformed_input_is_an_error(text, message):
    with pytest.raises(ParseError, match=message):
        parse_servers_state(text)


# --- property tests: the parsers never crash except with their own error ------------------------

fuzz = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@fuzz
@given(st.text())
def test_show_stat_arbitrary_text(text):
    try:
        rows = parse_show_stat(text)
    except ParseError:
        return
    assert isinstance(rows, list)


@fuzz
@given(st.text())
def test_servers_state_arbitrary_text(text):
    try:
        states = parse_servers_state(text)
    except ParseError:
        return
    assert isinstance(states, list)


_FIELD = st.one_of(
    st.text(max_size=12), st.sampled_from(["", "-1", "0", "2", "99999999999999999999", '"', "a,b"])
)


@fuzz
@given(st.data())
def test_show_stat_mutated_fixture(data):
    """Real output with random cells replaced: parsed or ParseError, nothing else."""
    header, rows = _split(SHOW_STAT)
    for _ in range(data.draw(st.integers(1, 4))):
        r = data.draw(st.integers(0, len(rows) - 1))
        c = data.draw(st.integers(0, len(header) - 1))
        rows[r][c] = data.draw(_FIELD)
    with contextlib.suppress(ParseError):
        parse_show_stat(_join(header, rows))


@fuzz
@given(st.data())
def test_servers_state_mutated_fixture(data):
    lines = SERVERS_STATE.rstrip("\n").split("\n")
    cells = [line.split(" ") for line in lines[2:]]
    for _ in range(data.draw(st.integers(1, 4))):
        r = data.draw(st.integers(0, len(cells) - 1))
        c = data.draw(st.integers(0, len(cells[r]) - 1))
        cells[r][c] = data.draw(_FIELD)
    text = "\n".join(lines[:2] + [" ".join(c) for c in cells]) + "\n"
    with contextlib.suppress(ParseError):
        parse_servers_state(text)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[A-Za-z0-9_.:-]{1,20}", fullmatch=True),
            st.integers(0, 10**6),
            st.integers(0, 256),
            st.sampled_from(["UP", "DOWN", "MAINT", "DRAIN", "no check", "UP 1/3"]),
        ),
        max_size=8,
    )
)
def test_show_stat_round_trip(servers):
    header = ["pxname", "svname", "qcur", "scur", "status", "weight", "type", ""]
    rows = [
        ["app", name, "0", str(scur), status, str(weight), "2", ""] for name, scur, weight, status in servers
    ]
    parsed = parse_show_stat(_join(header, rows))
    assert [(r.server, r.scur, r.weight, r.status) for r in parsed] == [
        (name, scur, weight, status) for name, scur, weight, status in servers
    ]
    summary = backend_summary(parsed)
    if servers:
        assert summary["app"].scur == sum(s[1] for s in servers)
        assert sum(summary["app"].counts.values()) == len(servers)


@pytest.mark.parametrize(
    ("raw", "status", "running"),
    [("* L7OK", "L7OK", True), ("L7OK", "L7OK", False), ("* L4CON", "L4CON", True), ("", None, False)],
)
def test_check_status_in_progress_prefix(raw: str, status: str | None, running: bool) -> None:
    # HAProxy writes "* " before check_status while a check is running.
    text = f"# pxname,svname,type,status,check_status\napp,web1,2,UP,{raw}\n"
    row = parse_show_stat(text)[0]
    assert (row.check_status, row.check_running) == (status, running)
    assert row.as_dict()["check_status"] == status
