#!/usr/bin/python
# Copyright: hapool contributors
# Apache License 2.0 (see pyproject.toml)
"""Ansible module: add, remove, drain, put in maintenance and re-weight HAProxy servers at runtime."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: haproxy_server
short_description: Add, remove, drain, enable and re-weight servers of a running HAProxy
description:
  - Manages one server of one backend through HAProxy's runtime API (the stats socket), without
    a reload. Unlike C(community.general.haproxy) it can add and delete servers, change their
    address, port and weight, supports check mode and diff, and returns what it did.
  - "O(state=present) adds the server if it is missing (C(add server) with the address, port
    and health-check settings, then C(enable health)), leaving an existing server's
    administrative state alone. O(state=ready), O(state=drain) and O(state=maint) set that
    state (adding the server first if it is missing). O(state=absent) puts the server in
    maintenance, waits until it has no session left and deletes it (C(del server)); with
    O(force) and O(drain_timeout=0) it takes the server out at once instead (maintenance,
    C(shutdown sessions server), C(del server)), which is what a server HAProxy holds DOWN
    needs."
  - Dynamic servers do not inherit C(default-server), so give the check settings here
    (O(inter), O(rise), O(fall), ...). The HTTP check request itself comes from the backend's
    C(option httpchk).
  - The check settings, O(check_port), O(slowstart), O(maxconn) and O(backup) apply when the
    server is added; HAProxy 2.6 cannot change them on an existing server at runtime, so they
    are not compared with it (a run with other values reports no change). To change them,
    remove the server (O(state=absent)) and add it again, or change the configuration.
  - When a server with health checks leaves maintenance (it is added, or goes from maint to
    ready or drain), HAProxy would assume it UP before its first check. With O(health_gate)
    (the default) the module forces its health down in the same command line, so it takes
    traffic only after O(rise) successful checks, like a new target of an AWS target group.
  - The module is idempotent. It reads C(show servers state) and C(show stat) first and sends
    only the commands that change something (C(changed) is false otherwise). In check mode it
    sends nothing and returns the commands it would send.
  - Needs a stats socket with C(level admin). Python standard library only on the target.
version_added: "0.1.0"
author:
  - hapool contributors
extends_documentation_fragment:
  - haproxy_runtime
options:
  backend:
    description: Name of the backend.
    type: str
    required: true
  name:
    description:
      - Name of the server in the backend. Letters, digits, C(_), C(.), C(:) and C(-) only;
        anything else (spaces, C(;), newlines, C(/)) is refused before HAProxy is contacted.
    type: str
    required: true
    aliases: [server]
  state:
    description:
      - V(present) makes sure the server exists (a new one becomes ready); V(ready), V(drain)
        and V(maint) set the administrative state; V(absent) removes the server.
      - V(drain) keeps existing sessions (and persistent clients) but sends no new session.
        V(maint) sends no new session at all; existing sessions go on until they end.
      - V(absent) also closes the server's idle (reusable) connections, which HAProxy 2.6
        would keep for seconds and which make it refuse C(del server).
    type: str
    choices: [present, ready, drain, maint, absent]
    default: present
  address:
    description:
      - IP address of the server (or a hostname, resolved once when the server is added).
      - Needed to add a server. For an existing server, a different address is set with
        C(set server ... addr) (IP addresses only).
    type: str
  port:
    description: TCP port of the server. Needed to add a server; changed on an existing one.
    type: int
  weight:
    description:
      - Weight from 0 to 256. Given when the server is added, else set with C(set server ... weight).
      - HAProxy restores a runtime weight from the server-state-file only while the weight in
        the configuration stays the one the server had when it was added (its initial weight).
    type: int
  check:
    description: Enable health checks on a server that is added.
    type: bool
    default: true
  inter:
    description: Interval between two checks, in ms (V(2000)) or with a unit (V(2s)). HAProxy's default is 2s.
    type: str
  fastinter:
    description:
      - Check interval while the server changes state (after a first failure until O(fall),
        after a first success until O(rise)).
    type: str
  downinter:
    description: Check interval while the server is DOWN.
    type: str
  rise:
    description: Consecutive successful checks to consider the server UP (HAProxy's default is 2).
    type: int
  fall:
    description: Consecutive failed checks to consider the server DOWN (HAProxy's default is 3).
    type: int
  check_port:
    description: Port to send health checks to, if not the server's port.
    type: int
  slowstart:
    description: Ramp the weight up over this time after the server comes UP (V(30s)); V(0) disables it.
    type: str
  maxconn:
    description: Maximum concurrent connections to the server (0 means no limit); queued above it.
    type: int
  backup:
    description: Add the server as a backup server.
    type: bool
    default: false
  health_gate:
    description:
      - When a server with health checks leaves maintenance, force its health down so that it
        takes traffic only after O(rise) successful checks. With V(false) HAProxy's own
        behaviour applies (the server is assumed UP until O(fall) failed checks).
    type: bool
    default: true
  wait:
    description:
      - With O(state=drain) or O(state=maint), wait until the server has no current session and
        no queued request (returns as soon as it is so), failing after O(drain_timeout) with the
        number of sessions still open. O(state=absent) always waits, since HAProxy deletes only
        servers without connections.
    type: bool
    default: false
  drain_timeout:
    description:
      - Seconds to wait for sessions to end (O(wait), O(state=absent)).
      - With O(state=absent) and O(force), V(0) takes the server out at once, without waiting
        at all (see O(force)).
    type: float
    default: 300.0
  force:
    description:
      - With O(state=absent), when sessions are still open after O(drain_timeout), close them
        (C(shutdown sessions server)) and delete the server anyway, like a load balancer's
        deregistration delay. RV(forced_sessions) says how many were closed.
      - With O(drain_timeout=0) the server is taken out at once - C(set server ... state
        maint), C(shutdown sessions server), C(del server) (retried for up to 10 s while HAProxy
        closes the sessions and connections) - with no wait. This is for a server HAProxy holds
        DOWN (a hung or dead host), whose sessions wait for answers that will not come, so
        that draining only delays. HAProxy 2.6 retries on another server the requests whose
        server side was shut down, when its C(retry-on) and C(option redispatch) allow it and
        the request was not excluded with C(http-request disable-l7-retry) (the haproxy role
        excludes methods other than GET, HEAD and OPTIONS); so clients of idempotent requests
        get their answer from another server, the others get an error.
      - Without it, the module fails after O(drain_timeout) and leaves the server in MAINT.
    type: bool
    default: false
  poll_interval:
    description: Seconds between two looks at the session count while waiting.
    type: float
    default: 0.2
  state_file:
    description:
      - Path of HAProxy's C(server-state-file) on the managed host. After a change, the module
        writes C(show servers state) to it (atomically), so that a reload with
        C(load-server-state-from-file global) keeps the servers' administrative state
        (drain, maint), weight and address. See the notes about membership.
    type: path
notes:
  - "Persistence across reloads: runtime changes live in the running process only. Two things
    carry them over a reload: (1) membership: a server added at runtime disappears on reload
    unless it is also in the configuration; the configuration generated by the haproxy role is
    the source of truth for membership, so playbooks that add a server here also write it into
    the configuration (the returned RV(server_line) is the matching C(server) line) and remove
    it from there when they remove it; (2) state: with O(state_file) set and
    C(server-state-file <path>) + C(load-server-state-from-file global) in the configuration,
    HAProxy restores each server's drain or maintenance state and runtime weight on reload.
    Dump the state again right before a reload (the haproxy role's reload handler does), since
    health and other changes happen between two module runs."
  - Verified with HAProxy 2.6 in master-worker mode (C(reload) on the master CLI). C(add server)
    needs a backend with a dynamic algorithm (not static-rr, not a hash without
    C(hash-type consistent)). A server other servers C(track) cannot be deleted.
  - Supports check mode and diff mode.
seealso:
  - module: haproxy_stats_info
requirements:
  - HAProxy 2.6 or later with a stats socket at C(level admin).
"""

EXAMPLES = r"""
- name: Add web4 to the pool; it takes traffic after 2 good checks
  haproxy_server:
    socket: /run/haproxy/admin.sock
    backend: app
    name: web4
    address: 10.0.0.14
    port: 8080
    inter: 2s
    rise: 2
    fall: 3
    slowstart: 30s
    state_file: /var/lib/haproxy/server-state
  register: added

- name: Keep the configuration the source of membership
  ansible.builtin.debug:
    msg: "write '{{ added.server_line }}' into backend app of haproxy.cfg"

- name: Drain web2 and wait until its last session has ended (at most 5 minutes)
  haproxy_server:
    backend: app
    name: web2
    state: drain
    wait: true
    drain_timeout: 300

- name: Remove web2 (maintenance, wait for connections to end, delete)
  haproxy_server:
    backend: app
    name: web2
    state: absent
    drain_timeout: 60

- name: Take web3, which HAProxy holds DOWN (a hung host), out at once without draining
  haproxy_server:
    backend: app
    name: web3
    state: absent
    force: true
    drain_timeout: 0

- name: Halve the traffic of web1 and move it to a new port
  haproxy_server:
    socket: tcp://127.0.0.1:9999
    backend: app
    name: web1
    weight: 50
    address: 10.0.0.11
    port: 8081

- name: Put web3 back into service
  haproxy_server:
    backend: app
    name: web3
    state: ready
"""

RETURN = r"""
backend:
  description: The backend.
  returned: always
  type: str
  sample: app
name:
  description: The server.
  returned: always
  type: str
  sample: web4
state:
  description: The server's administrative state after the run (predicted in check mode), or C(absent).
  returned: always
  type: str
  sample: drain
commands:
  description:
    - Runtime API commands sent (in check mode, the ones that would be sent).
    - Commands applied back to back are joined with C(; ) on one line.
    - With O(force), a C(shutdown sessions server) sent after O(drain_timeout) is listed
      before the C(del server); with O(drain_timeout=0) it is always planned and sent (taken
      out at once).
  returned: always
  type: list
  elements: str
  sample:
    - add server app/web4 10.0.0.14:8080 check inter 2s rise 2
    - enable health app/web4
    - set server app/web4 state ready; set server app/web4 health down
server:
  description:
    - The server after the run; null when it is absent.
    - In check mode a prediction in which only state, weight, address and port are updated.
  returned: always
  type: dict
  contains:
    address:
      description:
        - IP address (empty while a hostname is not resolved).
      type: str
      returned: success
      sample: 10.0.0.14
    port:
      description:
        - Port.
      type: int
      returned: success
      sample: 8080
    fqdn:
      description:
        - Hostname the server was added with, if any.
      type: str
      returned: success
    state:
      description:
        - Administrative state, C(ready), C(drain) or C(maint).
      type: str
      returned: success
      sample: ready
    admin_state:
      description:
        - HAProxy's administrative bit mask (0x01 forced maint, 0x04 maint from the configuration,
          0x08 forced drain, 0x20 resolution maint).
      type: int
      returned: success
      sample: 0
    op_state:
      description:
        - Operational state, C(stopped), C(starting), C(running) or C(stopping).
      type: str
      returned: success
      sample: running
    status:
      description:
        - Status as C(show stat) prints it (C(UP), C(DOWN 1/2), C(DRAIN), C(MAINT), C(no check),
          ...).
      type: str
      returned: success
      sample: UP
    weight:
      description:
        - Current (user) weight.
      type: int
      returned: success
      sample: 1
    initial_weight:
      description:
        - Weight from the configuration or from the C(add server) line.
      type: int
      returned: success
      sample: 1
    checks_enabled:
      description:
        - Whether health checks run.
      type: bool
      returned: success
      sample: true
    scur:
      description:
        - Current sessions.
      type: int
      returned: success
      sample: 0
    qcur:
      description:
        - Queued requests.
      type: int
      returned: success
      sample: 0
    check_status:
      description:
        - Result of the last check (C(L7OK), C(L4CON), ...).
      type: str
      returned: success
      sample: L7OK
    backend:
      description:
        - The backend.
      type: str
      returned: success
      sample: app
    name:
      description:
        - The server.
      type: str
      returned: success
      sample: web4
before:
  description: The server before the run, same keys as RV(server); null if it did not exist.
  returned: always
  type: dict
sessions:
  description:
    - Current sessions of the server at the end (0 after a successful wait).
    - When a wait timed out, the sessions still open.
  returned: always
  type: int
  sample: 0
forced_sessions:
  description:
    - Sessions closed by O(force) after O(drain_timeout) (0 when none had to be).
    - With O(drain_timeout=0), the sessions the server had when they were shut down.
  returned: always
  type: int
  sample: 0
waited:
  description: Seconds spent waiting for sessions to end.
  returned: always
  type: float
  sample: 1.8
server_line:
  description:
    - The C(server) line for haproxy.cfg that matches the server as the module adds it.
    - Write it into the configuration to keep the server across reloads.
  returned: when address and port are given
  type: str
  sample: server web4 10.0.0.14:8080 check inter 2s rise 2 fall 3 slowstart 30s
state_file_written:
  description: Whether O(state_file) was written.
  returned: always
  type: bool
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.hapool.errors import HapoolError
from ansible.module_utils.hapool.haproxy import RUNTIME_ARGUMENT_SPEC, RuntimeClient
from ansible.module_utils.hapool.module import fail, run_module
from ansible.module_utils.hapool.server_change import (
    SERVER_ARGUMENT_SPEC,
    WantedServer,
    execute_plan,
    failure_result,
    plan_server_change,
)


def run(module: AnsibleModule) -> dict[str, Any]:
    wanted = WantedServer.from_params(module.params)  # refuses bad input before HAProxy is contacted
    client = RuntimeClient(module.params["socket"], timeout=module.params["timeout"])
    client.require_admin()
    before = client.get_server(wanted.backend, wanted.name)
    try:
        plan = plan_server_change(before, wanted)
    except HapoolError as exc:  # a missing server without address or port
        fail(module, exc, **failure_result(wanted, exc))
    result = plan.result(diff=module._diff)
    if module.check_mode:
        return result

    sent: list[str] = []
    try:
        result.update(execute_plan(client, plan, sent=sent).result())
    except HapoolError as exc:
        fail(module, exc, **failure_result(wanted, exc, sent))

    after = client.get_server(wanted.backend, wanted.name)
    result["server"] = after.as_dict() if after else None
    result["state"] = after.admin if after else "absent"
    result["sessions"] = after.scur if after else 0
    if plan.changed and wanted.state_file:
        client.dump_servers_state(wanted.state_file)
        result["state_file_written"] = True
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={**RUNTIME_ARGUMENT_SPEC, **SERVER_ARGUMENT_SPEC},
        supports_check_mode=True,
    )
    run_module(module, lambda: run(module))


if __name__ == "__main__":
    main()
