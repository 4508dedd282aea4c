"""The catalogue of event actions: every ``action`` hapool writes to its event log, named once.

The healer (``healing.py``, heal.yml, ``heal_plan``), the scaler (``scaling.py``, scale.yml),
the balancer supervision (heal.yml's first play, the heal watcher) and the log readers
(``events.py``) use these names; ``docs/observability.md`` describes each event's fields. A
constant's name is its action in capitals (``REPLACE_LAUNCH = "replace_launch"``).

``hapool_event`` accepts any action (users log their own); ``tests/unit/test_event_actions.py``
checks that every action the playbooks and roles write is in :data:`KNOWN_ACTIONS`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# --- the healer -----------------------------------------------------------------------------------
REPLACE_LAUNCH = "replace_launch"
REPLACE = "replace"
REPLACE_FAILED = "replace_failed"
REGISTER = "register"
REMOVE_SERVER = "remove_server"
CLEAN = "clean"
CIRCUIT_OPEN = "circuit_open"
BACKOFF_SKIP = "backoff_skip"

# --- the scaler -----------------------------------------------------------------------------------
SCALE_RECOMMENDATION = "scale_recommendation"
SCALE_OUT = "scale_out"
SCALE_IN = "scale_in"
SCALE_LAUNCH = "scale_launch"
SCALE_DRAIN = "scale_drain"
SCALE_REMOVE = "scale_remove"
SCALE_REGISTER = "scale_register"
SCALE_LAUNCH_FAILED = "scale_launch_failed"

# --- the balancer's supervision -------------------------------------------------------------------
BALANCER_RESTART = "balancer_restart"
BALANCER_RESTART_FAILED = "balancer_restart_failed"

# --- the log itself -------------------------------------------------------------------------------
EVENT_LOG_CORRUPT = "event_log_corrupt"

#: Every action hapool writes, with what it means (one line each; the fields of each event are
#: in docs/observability.md).
KNOWN_ACTIONS: Mapping[str, str] = {
    REPLACE_LAUNCH: "a replacement (named by the plan) is about to be launched for a failed host",
    REPLACE: "a failed host was replaced: destroyed, its replacement launched, registered and UP",
    REPLACE_FAILED: "a replacement step failed (when the launch failed, the host is still there)",
    REGISTER: "a live host that was not in the balancer was registered",
    REMOVE_SERVER: "a server without a host behind it was removed from the balancer",
    CLEAN: "a dead host was destroyed without a replacement (one would exceed the pool's max)",
    CIRCUIT_OPEN: "too many servers of live hosts are DOWN: no live host was replaced",
    BACKOFF_SKIP: "a crash-looping host is not replaced before its not_before",
    SCALE_RECOMMENDATION: "the policies' recommendation changed (the scale-in stabilization reads it)",
    SCALE_OUT: "the decision to grow the pool",
    SCALE_IN: "the decision to shrink the pool",
    SCALE_LAUNCH: "a host launched by a scale-out serves",
    SCALE_DRAIN: "a host is marked as leaving, before a scale-in does anything to it",
    SCALE_REMOVE: "a drained host was deleted from the balancer and destroyed",
    SCALE_REGISTER: "the watcher's scale-out took a host (launched or promoted) into the balancer at runtime",
    SCALE_LAUNCH_FAILED: "the launch of a host of the watcher's scale-out failed",
    BALANCER_RESTART: "the balancer was down and was started (or reloaded) again",
    BALANCER_RESTART_FAILED: "the balancer is down and could not be started",
    EVENT_LOG_CORRUPT: "lines of the event log could not be read and were skipped",
}


def unknown_actions(actions: Iterable[str]) -> list[str]:
    """The names in ``actions`` that are not in the catalogue, sorted."""
    return sorted(set(actions) - set(KNOWN_ACTIONS))


__all__ = [
    "BACKOFF_SKIP",
    "BALANCER_RESTART",
    "BALANCER_RESTART_FAILED",
    "CIRCUIT_OPEN",
    "CLEAN",
    "EVENT_LOG_CORRUPT",
    "KNOWN_ACTIONS",
    "REGISTER",
    "REMOVE_SERVER",
    "REPLACE",
    "REPLACE_FAILED",
    "REPLACE_LAUNCH",
    "SCALE_DRAIN",
    "SCALE_IN",
    "SCALE_LAUNCH",
    "SCALE_LAUNCH_FAILED",
    "SCALE_OUT",
    "SCALE_RECOMMENDATION",
    "SCALE_REGISTER",
    "SCALE_REMOVE",
    "unknown_actions",
]
