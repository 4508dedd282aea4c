#!/usr/bin/python
# Copyright: hapool contributors
# Apache License 2.0 (see pyproject.toml)
"""Ansible module: HAProxy backends, their servers and aggregates, from the runtime API."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: haproxy_stats_info
short_description: Read the backends and servers of a running HAProxy, with aggregates
description:
  - Reads C(show stat) from HAProxy's runtime API (the stats socket) and returns each backend
    with its servers and aggregates, the number of servers per status, the servers that take
    new sessions, the current and queued sessions, and the request rate.
  - Read-only; supports check mode (it reads in check mode too). A socket at C(level user) is
    enough.
  - The parser maps the columns by the header HAProxy prints, so columns of other HAProxy
    versions are tolerated; output that is not C(show stat) makes the module fail instead of
    returning guesses.
version_added: "0.1.0"
author:
  - hapool contributors
extends_documentation_fragment:
  - haproxy_runtime
options:
  backend:
    description:
      - Only these backends. The module fails if one of them does not exist.
      - All backends when omitted.
    type: list
    elements: str
  include_servers:
    description: Return the servers of each backend, not only the aggregates.
    type: bool
    default: true
notes:
  - Supports check mode. Changes nothing.
  - "In HTTP mode every request is a stream, so a backend's C(rate) (new sessions per second
    over the last second) is its request rate. C(req_rate) of C(show stat) exists for
    frontends only."
seealso:
  - module: haproxy_server
requirements:
  - HAProxy 2.6 or later with a stats socket.
"""

EXAMPLES = r"""
- name: Read every backend
  haproxy_stats_info:
    socket: /run/haproxy/admin.sock
  register: lb

- name: Servers that take traffic in backend app
  ansible.builtin.debug:
    msg: "{{ lb.backends.app.servers_available }} of {{ lb.backends.app.servers_total }} up"

- name: Names of the DOWN servers of app (to heal them)
  ansible.builtin.set_fact:
    down: "{{ lb.backends.app.servers | selectattr('status_class', 'eq', 'DOWN') | map(attribute='name') }}"

- name: Only the aggregates of two backends, over TCP
  haproxy_stats_info:
    socket: tcp://127.0.0.1:9999
    backend: [app, api]
    include_servers: false
"""

RETURN = r"""
backends:
  description: The backends, by name, in the order of the configuration.
  returned: always
  type: dict
  contains:
    name:
      description: Name of the backend.
      type: str
      returned: always
      sample: app
    status:
      description: Status of the backend (C(UP) while one server at least is usable, else C(DOWN)).
      type: str
      returned: always
      sample: UP
    algo:
      description: Load-balancing algorithm.
      type: str
      returned: always
      sample: roundrobin
    mode:
      description: C(http) or C(tcp).
      type: str
      returned: always
      sample: http
    servers_total:
      description: Number of servers.
      type: int
      returned: always
      sample: 3
    servers_available:
      description: Servers that take new sessions (status C(UP), also while going down, or C(no check)).
      type: int
      returned: always
      sample: 2
    counts:
      description:
        - Servers per status class. C(UP 1/3) counts as C(UP), C(DOWN 1/2) as C(DOWN),
          C(MAINT (via x/y)) as C(MAINT), C(no check) as C(NO CHECK).
      type: dict
      returned: always
      sample: {"UP": 2, "DRAIN": 1, "DOWN": 1}
    scur:
      description: Current sessions of the backend.
      type: int
      returned: always
      sample: 12
    qcur:
      description: Requests waiting in the backend's queue.
      type: int
      returned: always
      sample: 0
    rate:
      description: New sessions per second over the last second (the request rate in HTTP mode).
      type: int
      returned: always
      sample: 340
    rate_max:
      description: Highest value of RV(backends.rate) seen.
      type: int
      returned: always
    stot:
      description: Total sessions since start.
      type: int
      returned: always
    hrsp_5xx:
      description: HTTP responses with a 5xx status.
      type: int
      returned: always
    servers:
      description: The servers, in the order of the configuration (dynamic ones last).
      type: list
      elements: dict
      returned: when O(include_servers) is true
      contains:
        name:
          description: Server name.
          type: str
          returned: always
          sample: web1
        status:
          description:
            - Status as HAProxy prints it (C(UP), C(UP 1/3), C(DOWN), C(DRAIN), C(MAINT), C(no check), ...).
          type: str
          returned: always
          sample: UP
        status_class:
          description: Status without its details (C(UP), C(DOWN), C(DRAIN), C(MAINT), C(NOLB), C(NO CHECK)).
          type: str
          returned: always
          sample: UP
        serving:
          description:
            - Whether the server takes traffic - C(UP), C(NOLB) or C(no check) (the scaler counts
              its host as serving capacity). Test this rather than RV(backends.servers.status_class).
          type: bool
          returned: always
          sample: true
        available:
          description:
            - Whether the server takes new load-balanced sessions - C(UP) (also while going down)
              or C(no check); C(NOLB) is not.
          type: bool
          returned: always
          sample: true
        failed:
          description:
            - Whether the checks hold the server C(DOWN) (also while going up); C(DRAIN) and
              C(MAINT) are not failures.
          type: bool
          returned: always
          sample: false
        scur:
          description: Current sessions.
          type: int
          returned: always
        qcur:
          description: Queued requests.
          type: int
          returned: always
        rate:
          description: New sessions per second over the last second.
          type: int
          returned: always
        weight:
          description: Effective weight.
          type: int
          returned: always
        uweight:
          description: Weight set by the user (configuration or runtime API).
          type: int
          returned: always
        check_status:
          description:
            - Result of the last health check (C(L7OK), C(L4CON), C(L7STS), ...), null without checks.
            - HAProxy's C(* ) prefix (a check is running) is removed; see RV(backends.servers.check_running).
          type: str
          returned: always
        check_running:
          description: True while a health check of this server is in progress.
          type: bool
          returned: always
        check_code:
          description: HTTP status of the last layer-7 check.
          type: int
          returned: always
        check_desc:
          description: Description of the last check result.
          type: str
          returned: always
        lastchg:
          description: Seconds since the last status change.
          type: int
          returned: always
        downtime:
          description: Total seconds the server was down.
          type: int
          returned: always
        chkfail:
          description: Failed checks.
          type: int
          returned: always
        chkdown:
          description: UP to DOWN transitions.
          type: int
          returned: always
        addr:
          description: Address and port.
          type: str
          returned: always
          sample: 10.0.0.11:8080
        hrsp_5xx:
          description: Responses with a 5xx status.
          type: int
          returned: always
backend_names:
  description: Names of the returned backends.
  returned: always
  type: list
  elements: str
  sample: [app, api]
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.hapool.errors import UnknownBackendError
from ansible.module_utils.hapool.haproxy import RUNTIME_ARGUMENT_SPEC, RuntimeClient, validate_name
from ansible.module_utils.hapool.module import run_module
from ansible.module_utils.hapool.stats import backend_summary


def run(module: AnsibleModule) -> dict[str, Any]:
    wanted = [validate_name(name, "backend name") for name in module.params["backend"] or []]
    client = RuntimeClient(module.params["socket"], timeout=module.params["timeout"])
    summaries = backend_summary(client.show_stat())
    missing = [name for name in wanted if name not in summaries]
    if missing:
        raise UnknownBackendError(f"no backend named {', '.join(repr(m) for m in missing)}")
    selected = {name: s for name, s in summaries.items() if not wanted or name in wanted}
    include = module.params["include_servers"]
    return {
        "changed": False,
        "backends": {name: s.as_dict(include_servers=include) for name, s in selected.items()},
        "backend_names": list(selected),
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            **RUNTIME_ARGUMENT_SPEC,
            "backend": {"type": "list", "elements": "str"},
            "include_servers": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    run_module(module, lambda: run(module))


if __name__ == "__main__":
    main()
