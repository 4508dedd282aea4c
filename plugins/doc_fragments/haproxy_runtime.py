# Copyright: hapool contributors
# Apache License 2.0 (see pyproject.toml)
"""Documentation of the options of every module that talks to HAProxy's runtime API
(haproxy_server, haproxy_stats_info, heal_plan, scale_plan). Their argument spec is
RUNTIME_ARGUMENT_SPEC in module_utils/hapool/haproxy.py; the level the socket needs (admin to
change, user to read) is in each module's requirements."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  socket:
    description:
      - HAProxy's runtime API (its stats socket) on the managed host. A unix socket path
        (C(/run/haproxy/admin.sock), also C(unix:///run/haproxy/admin.sock)) or a TCP address
        (C(127.0.0.1:9999), C(tcp://127.0.0.1:9999), C([::1]:9999)).
    type: str
    default: /run/haproxy/admin.sock
  timeout:
    description: Seconds to wait for each answer of HAProxy (connect and read).
    type: float
    default: 5.0
"""
