"""The one wrapper every hapool module's ``main()`` uses.

A module builds its ``AnsibleModule`` and hands this wrapper a ``run`` function that returns the
result dictionary. A :class:`~.errors.HapoolError` becomes ``fail_json`` with the message, the
error class's name and the traceback, so no module repeats the ``except`` block; the exceptions
a run function wants to turn into a result of its own (for instance ``changed`` with a
``drained: false``) it catches itself. Anything else is a bug and keeps Ansible's own traceback.

Stdlib-only: the module is described by a protocol, not by importing ``AnsibleModule``.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping
from typing import Any, NoReturn, Protocol

from .errors import HapoolError


class ModuleLike(Protocol):
    """What the wrapper needs of ``AnsibleModule``."""

    def exit_json(self, **kwargs: Any) -> NoReturn: ...

    def fail_json(self, msg: str, **kwargs: Any) -> NoReturn: ...


def fail(module: ModuleLike, exc: HapoolError, **extra: Any) -> NoReturn:
    """``fail_json`` for a hapool error: message, error class name, traceback, ``extra``."""
    module.fail_json(msg=str(exc), error=type(exc).__name__, exception=traceback.format_exc(), **extra)


def run_module(module: ModuleLike, run: Callable[[], Mapping[str, Any]]) -> NoReturn:
    """Call ``run()``, exit with its result, or fail with the hapool error it raised."""
    try:
        result = dict(run())
    except HapoolError as exc:
        fail(module, exc)
    module.exit_json(**result)
