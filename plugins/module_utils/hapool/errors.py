"""Exceptions raised by hapool's module_utils. Modules turn them into ``fail_json``."""

from __future__ import annotations


class HapoolError(Exception):
    """Base class of every error hapool raises on purpose."""


# --- input validation -------------------------------------------------------------------------


class InvalidArgumentError(HapoolError, ValueError):
    """A name, address, port or option would not make a safe, valid runtime command."""


# --- parsing ----------------------------------------------------------------------------------


class ParseError(HapoolError):
    """Output of HAProxy (``show stat``, ``show servers state``) is not what was expected."""


# --- HAProxy runtime API ----------------------------------------------------------------------


class RuntimeApiError(HapoolError):
    """Base class of the errors of the HAProxy runtime API client."""


class SocketNotFoundError(RuntimeApiError):
    """The unix socket does not exist (HAProxy not running, or a wrong path)."""


class SocketPermissionError(RuntimeApiError):
    """The operating system refused access to the unix socket (file mode or owner)."""


class ConnectError(RuntimeApiError):
    """Nothing accepts connections at the address (refused, reset, unreachable)."""


class RuntimeTimeoutError(RuntimeApiError):
    """HAProxy did not answer within the timeout."""


class NotAdminError(RuntimeApiError):
    """The socket's level is below ``admin``: HAProxy answered ``Permission denied``."""


class UnknownBackendError(RuntimeApiError):
    """The backend does not exist in the running HAProxy."""


class UnknownServerError(RuntimeApiError):
    """The server does not exist in the backend."""


class CommandError(RuntimeApiError):
    """HAProxy refused a command; the message is HAProxy's answer."""

    def __init__(self, command: str, response: str) -> None:
        self.command = command
        self.response = response.strip()
        super().__init__(f"HAProxy refused {command!r}: {self.response or '(empty answer)'}")


class DrainTimeoutError(RuntimeApiError):
    """A server still had sessions when the drain timeout ran out."""

    def __init__(self, backend: str, server: str, sessions: int, queued: int, timeout: float) -> None:
        self.backend = backend
        self.server = server
        self.sessions = sessions
        self.queued = queued
        self.timeout = timeout
        super().__init__(
            f"{backend}/{server} still has {sessions} current session(s) and {queued} queued "
            f"request(s) after {timeout:g} s"
        )


# --- files hapool keeps or reads -------------------------------------------------------------


class LockError(HapoolError):
    """The pool lock's file cannot be used (permissions, a directory in the way) or a lease was
    asked for with a bad owner or ttl (lock.py)."""


class EventLogError(HapoolError):
    """The event log cannot be written or read (events.py)."""


class MetricFileError(HapoolError):
    """A metric file holds something other than a whole number of hosts, or cannot be read
    (scaling.py, scale_plan)."""


class TemplateError(HapoolError):
    """A launch template cannot be hashed, personalized or recorded: an unreadable file, a
    variable that is not JSON, a placeholder without a value, a corrupt template index
    (templates.py)."""


# --- providers (plugins/module_utils/hapool/providers) ----------------------------------------


class ProviderError(HapoolError):
    """A provider could not do what was asked (the message says what and what to do)."""


class ProviderUnavailableError(ProviderError):
    """The provider cannot work at all here: engine down, binary or Python SDK missing."""


class ImageNotFoundError(ProviderError):
    """The image of a pool is not on the engine (hapool never pulls: build it locally)."""


class InstanceNotFoundError(ProviderError):
    """No instance of that name in the pool."""


class InvalidNameError(ProviderError, ValueError):
    """A pool or instance name is not safe for every provider (files, containers, Ruby)."""


class NameReusedError(ProviderError):
    """An instance name was used before in the pool; names are never reused."""


class OrphanError(ProviderError):
    """A launch failed *and* its clean-up failed: something is left; the message names it."""

    def __init__(self, message: str, orphan: str) -> None:
        self.orphan = orphan
        super().__init__(message)
