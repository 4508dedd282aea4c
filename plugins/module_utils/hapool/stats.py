"""Parsers for HAProxy's ``show stat`` and ``show servers state``, and per-backend aggregates.

Stdlib only (it is shipped to targets with the modules). Both parsers are driven by the header
line HAProxy prints, so columns added by other HAProxy versions are tolerated (and kept in
``columns``), while malformed input — a missing header, a row whose length differs from the
header, a non-integer in an integer column — raises :class:`ParseError` instead of guessing.

Verified against HAProxy 2.6.12 (fixtures in ``tests/unit/fixtures/haproxy``).
"""

from __future__ import annotations

import collections
import csv
import enum
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from .errors import ParseError

__all__ = [
    "AVAILABLE_STATUSES",
    "DOWN",
    "DRAIN",
    "DRAIN_MASK",
    "FAILED_STATUSES",
    "MAINT",
    "MAINT_MASK",
    "NOLB",
    "NO_CHECK",
    "SERVING_STATUSES",
    "STANDBY_STATUSES",
    "UNKNOWN",
    "UP",
    "AdminState",
    "AdminStateName",
    "BackendSummary",
    "OpState",
    "ParseError",
    "ProxyType",
    "ServerState",
    "StatRow",
    "backend_summary",
    "normalize_status",
    "parse_servers_state",
    "parse_show_stat",
]

AdminStateName = Literal["ready", "drain", "maint"]

_INT_RE = re.compile(r"-?[0-9]{1,19}", re.ASCII)


class ProxyType(enum.IntEnum):
    """``type`` column of ``show stat``."""

    FRONTEND = 0
    BACKEND = 1
    SERVER = 2
    LISTENER = 3


class OpState(enum.IntEnum):
    """``srv_op_state`` of ``show servers state``."""

    STOPPED = 0
    STARTING = 1
    RUNNING = 2
    STOPPING = 3


class AdminState(enum.IntFlag):
    """``srv_admin_state`` bits of ``show servers state`` (``enum srv_admin`` in HAProxy)."""

    NONE = 0
    FMAINT = 0x01  # forced into maintenance (runtime API or state file)
    IMAINT = 0x02  # maintenance inherited from a tracked server
    CMAINT = 0x04  # ``disabled`` in the configuration
    FDRAIN = 0x08  # forced into drain
    IDRAIN = 0x10  # drain inherited from a tracked server
    RMAINT = 0x20  # maintenance because the address could not be resolved
    HMAINT = 0x40  # FQDN set from the runtime API


MAINT_MASK = AdminState.FMAINT | AdminState.IMAINT | AdminState.CMAINT | AdminState.RMAINT
DRAIN_MASK = AdminState.FDRAIN | AdminState.IDRAIN

# --- status classes ---------------------------------------------------------------------------
# :func:`normalize_status` maps a ``show stat`` status to its class (``StatRow.status_class``):
# ``"UP 1/3"`` (going down) is UP, ``"DOWN 1/2"`` (going up) is DOWN, ``"MAINT (via x/y)"`` is
# MAINT. The sets below are the only place the healer, the scaler and the stats module name them.
UP = "UP"
DOWN = "DOWN"
NOLB = "NOLB"  # UP, but ``http-check disable-on-404`` holds it out of load balancing
DRAIN = "DRAIN"
MAINT = "MAINT"
NO_CHECK = "NO CHECK"
UNKNOWN = "UNKNOWN"  # an empty status

#: Servers that take new load-balanced sessions (``StatRow.available``; not NOLB).
AVAILABLE_STATUSES = frozenset({UP, NO_CHECK})
#: Servers that take traffic: the available ones and NOLB (no new load-balanced sessions, but
#: persistent ones); the scaler counts their hosts as serving capacity.
SERVING_STATUSES = frozenset({UP, NOLB, NO_CHECK})
#: Servers an operator (or the scaler) set aside: standing by, never picked by a scale-in.
STANDBY_STATUSES = frozenset({DRAIN, MAINT})
#: Servers the checks hold DOWN: the healer replaces their hosts after the grace period, the
#: breaker counts them, a scale-in drains them first (MAINT, DRAIN and NOLB are not failures).
FAILED_STATUSES = frozenset({DOWN})

# Check state bits (``srv_check_state``), from HAProxy's check-t.h.
_CHK_ST_CONFIGURED = 0x02
_CHK_ST_ENABLED = 0x04


def normalize_status(status: str) -> str:
    """Map a ``show stat`` status to its class: ``"UP 1/3"`` → ``UP``, ``"MAINT (via x/y)"`` →
    ``MAINT``, ``"no check"`` → ``NO CHECK``. Empty → ``UNKNOWN``."""
    text = status.strip()
    if not text:
        return UNKNOWN
    if text.lower() == "no check":
        return NO_CHECK
    return text.split()[0].upper()


def _int(name: str, value: str, *, line: int) -> int:
    if not _INT_RE.fullmatch(value):
        raise ParseError(f"line {line}: column {name!r} is not an integer: {value[:40]!r}")
    return int(value)


def _opt_int(cols: Mapping[str, str], name: str, *, line: int) -> int | None:
    value = cols.get(name, "")
    if value == "":
        return None
    return _int(name, value, line=line)


def _counter(cols: Mapping[str, str], name: str, *, line: int) -> int:
    value = _opt_int(cols, name, line=line)
    return 0 if value is None else value


def _split_check_status(raw: str | None) -> tuple[str | None, bool]:
    """HAProxy prefixes ``check_status`` with ``"* "`` while a check is running."""
    if raw is not None and raw.startswith("* "):
        return raw[2:] or None, True
    return raw, False


def _opt_str(cols: Mapping[str, str], name: str) -> str | None:
    value = cols.get(name, "")
    return value if value != "" else None


# --------------------------------------------------------------------------------------------
# show stat
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatRow:
    """One line of ``show stat``: a frontend, a backend, a server or a listener.

    Counters that HAProxy leaves empty for a row type are ``0``; values whose absence means
    something (no check, no weight, ...) are ``None``. Every column, also the ones without a
    field here, is kept as text in ``columns``.
    """

    proxy: str
    server: str
    type: ProxyType
    status: str
    scur: int = 0
    qcur: int = 0
    smax: int = 0
    slim: int | None = None
    stot: int = 0
    rate: int = 0
    rate_max: int = 0
    req_rate: int = 0
    req_tot: int = 0
    weight: int | None = None
    uweight: int | None = None
    act: int | None = None
    bck: int | None = None
    chkfail: int | None = None
    chkdown: int | None = None
    lastchg: int | None = None
    downtime: int | None = None
    check_status: str | None = None
    check_running: bool = False
    check_code: int | None = None
    check_duration: int | None = None
    check_desc: str | None = None
    last_chk: str | None = None
    addr: str | None = None
    mode: str | None = None
    algo: str | None = None
    econ: int = 0
    eresp: int = 0
    wretr: int = 0
    wredis: int = 0
    hrsp_5xx: int = 0
    qtime: int | None = None
    ctime: int | None = None
    rtime: int | None = None
    ttime: int | None = None
    iid: int | None = None
    sid: int | None = None
    columns: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def is_server(self) -> bool:
        return self.type is ProxyType.SERVER

    @property
    def is_backend(self) -> bool:
        return self.type is ProxyType.BACKEND

    @property
    def is_frontend(self) -> bool:
        return self.type is ProxyType.FRONTEND

    @property
    def status_class(self) -> str:
        return normalize_status(self.status)

    @property
    def available(self) -> bool:
        """True when the server takes new sessions (UP, also while going down, or no check)."""
        return self.status_class in AVAILABLE_STATUSES

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly view (without the raw ``columns``)."""
        return {
            "proxy": self.proxy,
            "name": self.server,
            "type": self.type.name.lower(),
            "status": self.status,
            "status_class": self.status_class,
            # the class sets, so that playbooks name no status class
            "serving": self.status_class in SERVING_STATUSES,
            "available": self.available,
            "failed": self.status_class in FAILED_STATUSES,
            "scur": self.scur,
            "qcur": self.qcur,
            "smax": self.smax,
            "stot": self.stot,
            "rate": self.rate,
            "rate_max": self.rate_max,
            "weight": self.weight,
            "uweight": self.uweight,
            "check_status": self.check_status,
            "check_running": self.check_running,
            "check_code": self.check_code,
            "check_duration": self.check_duration,
            "check_desc": self.check_desc,
            "last_chk": self.last_chk,
            "lastchg": self.lastchg,
            "downtime": self.downtime,
            "chkfail": self.chkfail,
            "chkdown": self.chkdown,
            "addr": self.addr,
            "econ": self.econ,
            "eresp": self.eresp,
            "hrsp_5xx": self.hrsp_5xx,
            "qtime": self.qtime,
            "ctime": self.ctime,
            "rtime": self.rtime,
            "ttime": self.ttime,
        }


_STAT_REQUIRED = ("pxname", "svname", "type", "status")


def _stat_header(line: str) -> list[str]:
    if not line.startswith("#"):
        raise ParseError(f"show stat: the first line is not the '# pxname,...' header: {line[:60]!r}")
    names = [name.strip() for name in line.lstrip("#").split(",")]
    missing = [name for name in _STAT_REQUIRED if name not in names]
    if missing:
        raise ParseError(f"show stat: header lacks column(s) {', '.join(missing)}")
    _refuse_duplicate_columns("show stat", names)
    return names


def _refuse_duplicate_columns(what: str, names: list[str]) -> None:
    """Two columns of one name: which one holds the value would be a guess."""
    # HAProxy's own header has unnamed columns ('' after the trailing comma) and '-' placeholders.
    counts = collections.Counter(n for n in names if n not in ("", "-"))
    duplicates = sorted(n for n, count in counts.items() if count > 1)
    if duplicates:
        raise ParseError(f"{what}: header repeats column(s) {', '.join(duplicates)}")


def parse_show_stat(text: str) -> list[StatRow]:
    """Parse the CSV answer of ``show stat`` into typed rows, in HAProxy's order.

    Raises :class:`ParseError` for anything that is not ``show stat`` output.
    """
    body = text.lstrip("\r\n")
    if not body.strip():
        raise ParseError("show stat: empty answer")
    first, _, rest = body.partition("\n")
    names = _stat_header(first.rstrip("\r"))
    rows: list[StatRow] = []
    try:
        reader = csv.reader(io.StringIO(rest, newline=""), strict=True)
        for values in reader:
            line = reader.line_num + 1
            if not values or (len(values) == 1 and not values[0].strip()):
                continue
            if len(values) != len(names):
                raise ParseError(
                    f"show stat: line {line} has {len(values)} columns, the header has {len(names)}"
                )
            cols = {name: value for name, value in zip(names, values, strict=True) if name not in ("", "-")}
            rows.append(_stat_row(cols, line=line))
    except csv.Error as exc:
        raise ParseError(f"show stat: malformed CSV: {exc}") from exc
    return rows


def _stat_row(cols: dict[str, str], *, line: int) -> StatRow:
    type_number = _int("type", cols["type"], line=line)
    try:
        row_type = ProxyType(type_number)
    except ValueError:
        raise ParseError(f"line {line}: unknown row type {type_number}") from None
    if not cols["pxname"] or not cols["svname"]:
        raise ParseError(f"line {line}: empty pxname or svname")

    def count(name: str) -> int:
        return _counter(cols, name, line=line)

    def opt(name: str) -> int | None:
        return _opt_int(cols, name, line=line)

    check_status, check_running = _split_check_status(_opt_str(cols, "check_status"))
    return StatRow(
        proxy=cols["pxname"],
        server=cols["svname"],
        type=row_type,
        status=cols["status"],
        scur=count("scur"),
        qcur=count("qcur"),
        smax=count("smax"),
        slim=opt("slim"),
        stot=count("stot"),
        rate=count("rate"),
        rate_max=count("rate_max"),
        req_rate=count("req_rate"),
        req_tot=count("req_tot"),
        weight=opt("weight"),
        uweight=opt("uweight"),
        act=opt("act"),
        bck=opt("bck"),
        chkfail=opt("chkfail"),
        chkdown=opt("chkdown"),
        lastchg=opt("lastchg"),
        downtime=opt("downtime"),
        check_status=check_status,
        check_running=check_running,
        check_code=opt("check_code"),
        check_duration=opt("check_duration"),
        check_desc=_opt_str(cols, "check_desc"),
        last_chk=_opt_str(cols, "last_chk"),
        addr=_opt_str(cols, "addr"),
        mode=_opt_str(cols, "mode"),
        algo=_opt_str(cols, "algo"),
        econ=count("econ"),
        eresp=count("eresp"),
        wretr=count("wretr"),
        wredis=count("wredis"),
        hrsp_5xx=count("hrsp_5xx"),
        qtime=opt("qtime"),
        ctime=opt("ctime"),
        rtime=opt("rtime"),
        ttime=opt("ttime"),
        iid=opt("iid"),
        sid=opt("sid"),
        columns=cols,
    )


# --------------------------------------------------------------------------------------------
# Aggregates per backend
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackendSummary:
    """A backend, its servers and aggregates, built by :func:`backend_summary`.

    ``scur``/``qcur``/``rate``/``stot`` come from the BACKEND row when it is there (the
    backend's own totals; in HTTP mode every request is a stream, so ``rate`` is the request
    rate over the last second), else they are summed over the servers.
    """

    name: str
    status: str | None
    servers: tuple[StatRow, ...]
    counts: Mapping[str, int]
    scur: int
    qcur: int
    rate: int
    rate_max: int
    stot: int
    hrsp_5xx: int
    algo: str | None = None
    mode: str | None = None

    @property
    def total(self) -> int:
        return len(self.servers)

    @property
    def available(self) -> int:
        """Servers that take new sessions (UP, going down, or no check)."""
        return sum(1 for server in self.servers if server.available)

    @property
    def server_sessions(self) -> int:
        return sum(server.scur for server in self.servers)

    def server(self, name: str) -> StatRow | None:
        for row in self.servers:
            if row.server == name:
                return row
        return None

    def as_dict(self, *, include_servers: bool = True) -> dict[str, object]:
        data: dict[str, object] = {
            "name": self.name,
            "status": self.status,
            "algo": self.algo,
            "mode": self.mode,
            "servers_total": self.total,
            "servers_available": self.available,
            "counts": dict(self.counts),
            "scur": self.scur,
            "qcur": self.qcur,
            "rate": self.rate,
            "rate_max": self.rate_max,
            "stot": self.stot,
            "hrsp_5xx": self.hrsp_5xx,
        }
        if include_servers:
            data["servers"] = [server.as_dict() for server in self.servers]
        return data


def backend_summary(rows: Iterable[StatRow]) -> dict[str, BackendSummary]:
    """Group ``show stat`` rows per backend (frontend-only proxies are left out)."""
    servers: dict[str, list[StatRow]] = {}
    backend_rows: dict[str, StatRow] = {}
    order: list[str] = []
    for row in rows:
        if row.type not in (ProxyType.BACKEND, ProxyType.SERVER):
            continue
        if row.proxy not in servers:
            servers[row.proxy] = []
            order.append(row.proxy)
        if row.type is ProxyType.BACKEND:
            backend_rows[row.proxy] = row
        else:
            servers[row.proxy].append(row)
    result: dict[str, BackendSummary] = {}
    for name in order:
        members = tuple(servers[name])
        counts: dict[str, int] = {}
        for member in members:
            counts[member.status_class] = counts.get(member.status_class, 0) + 1
        be = backend_rows.get(name)
        result[name] = BackendSummary(
            name=name,
            status=be.status if be else None,
            servers=members,
            counts=counts,
            scur=be.scur if be else sum(m.scur for m in members),
            qcur=be.qcur if be else sum(m.qcur for m in members),
            rate=be.rate if be else sum(m.rate for m in members),
            rate_max=be.rate_max if be else max((m.rate_max for m in members), default=0),
            stot=be.stot if be else sum(m.stot for m in members),
            hrsp_5xx=be.hrsp_5xx if be else sum(m.hrsp_5xx for m in members),
            algo=be.algo if be else None,
            mode=be.mode if be else None,
        )
    return result


# --------------------------------------------------------------------------------------------
# show servers state
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerState:
    """One line of ``show servers state`` (format version 1), i.e. of a server-state-file."""

    backend_id: int
    backend: str
    server_id: int
    server: str
    addr: str
    op_state: OpState
    admin_state: AdminState
    uweight: int
    iweight: int
    time_since_last_change: int | None = None
    check_status: int | None = None
    check_result: int | None = None
    check_health: int | None = None
    check_state: int | None = None
    agent_state: int | None = None
    fqdn: str | None = None
    port: int | None = None
    columns: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def admin(self) -> AdminStateName:
        """``maint`` if any maintenance bit is set, else ``drain`` if any drain bit, else ``ready``."""
        if self.admin_state & MAINT_MASK:
            return "maint"
        if self.admin_state & DRAIN_MASK:
            return "drain"
        return "ready"

    @property
    def checks_configured(self) -> bool:
        return bool((self.check_state or 0) & _CHK_ST_CONFIGURED)

    @property
    def checks_enabled(self) -> bool:
        return bool((self.check_state or 0) & _CHK_ST_ENABLED)

    def as_dict(self) -> dict[str, object]:
        return {
            "backend": self.backend,
            "name": self.server,
            "addr": self.addr,
            "port": self.port,
            "fqdn": self.fqdn,
            "op_state": self.op_state.name.lower(),
            "admin_state": int(self.admin_state),
            "admin": self.admin,
            "uweight": self.uweight,
            "iweight": self.iweight,
            "checks_enabled": self.checks_enabled,
        }


_SS_REQUIRED = (
    "be_id", "be_name", "srv_id", "srv_name", "srv_addr", "srv_op_state", "srv_admin_state",
    "srv_uweight", "srv_iweight",
)  # fmt: skip
_SS_OPT_INTS = {
    "srv_time_since_last_change": "time_since_last_change",
    "srv_check_status": "check_status",
    "srv_check_result": "check_result",
    "srv_check_health": "check_health",
    "srv_check_state": "check_state",
    "srv_agent_state": "agent_state",
    "srv_port": "port",
}
SERVERS_STATE_VERSION = "1"


def parse_servers_state(text: str) -> list[ServerState]:
    """Parse ``show servers state`` output (also the content of a server-state-file)."""
    lines = [line.rstrip("\r") for line in text.split("\n")]
    lines = [line for line in lines if line.strip()]
    if not lines:
        raise ParseError("show servers state: empty answer")
    version = lines[0].strip()
    if version != SERVERS_STATE_VERSION:
        raise ParseError(f"show servers state: unsupported format version {version[:20]!r}")
    if len(lines) < 2 or not lines[1].startswith("#"):
        raise ParseError("show servers state: missing the '# be_id be_name ...' header")
    names = lines[1].lstrip("#").split()
    missing = [name for name in _SS_REQUIRED if name not in names]
    if missing:
        raise ParseError(f"show servers state: header lacks column(s) {', '.join(missing)}")
    _refuse_duplicate_columns("show servers state", names)
    result: list[ServerState] = []
    for number, line in enumerate(lines[2:], start=3):
        values = line.split()
        if len(values) != len(names):
            raise ParseError(
                f"show servers state: line {number} has {len(values)} fields, the header has {len(names)}"
            )
        cols = dict(zip(names, values, strict=True))
        result.append(_server_state(cols, line=number))
    return result


def _dash(value: str) -> str | None:
    return None if value in ("-", "") else value


def _server_state(cols: dict[str, str], *, line: int) -> ServerState:
    op_number = _int("srv_op_state", cols["srv_op_state"], line=line)
    try:
        op_state = OpState(op_number)
    except ValueError:
        raise ParseError(f"line {line}: unknown srv_op_state {op_number}") from None
    admin_number = _int("srv_admin_state", cols["srv_admin_state"], line=line)
    if not 0 <= admin_number <= 0xFF:
        raise ParseError(f"line {line}: srv_admin_state out of range: {admin_number}")
    extra: dict[str, int | None] = {}
    for column, attribute in _SS_OPT_INTS.items():
        value = _dash(cols.get(column, "-"))
        extra[attribute] = None if value is None else _int(column, value, line=line)
    return ServerState(
        backend_id=_int("be_id", cols["be_id"], line=line),
        backend=cols["be_name"],
        server_id=_int("srv_id", cols["srv_id"], line=line),
        server=cols["srv_name"],
        addr=cols["srv_addr"],
        op_state=op_state,
        admin_state=AdminState(admin_number),
        uweight=_int("srv_uweight", cols["srv_uweight"], line=line),
        iweight=_int("srv_iweight", cols["srv_iweight"], line=line),
        fqdn=_dash(cols.get("srv_fqdn", "-")),
        columns=cols,
        **extra,
    )
