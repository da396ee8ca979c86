"""The engine's clock: real UTC time, with an offset that tests can move forward.

SpiffWorkflow's timers call ``datetime.now(timezone.utc)`` inside their own module, with no hook;
we point that module at this clock so timers, the scheduler and timestamps all agree.
"""
from __future__ import annotations

import datetime as _dt
from datetime import UTC, timedelta

_offset = timedelta(0)


def now() -> _dt.datetime:
    """Current time, UTC-aware."""
    return _dt.datetime.now(UTC) + _offset


def advance(delta: timedelta) -> None:
    """Move the clock forward (tests and demos only)."""
    global _offset
    _offset += delta


def reset() -> None:
    """Return to real time."""
    global _offset
    _offset = timedelta(0)


class _AnyDatetime(type):
    # SpiffWorkflow's timer module also uses the name in isinstance() checks on plain datetimes.
    def __instancecheck__(cls, obj):
        return isinstance(obj, _dt.datetime)


class _SpiffDatetime(_dt.datetime, metaclass=_AnyDatetime):
    @classmethod
    def now(cls, tz=None):
        current = now()
        return current.astimezone(tz) if tz is not None else current.astimezone().replace(tzinfo=None)


def install() -> None:
    """Make SpiffWorkflow's timer module read this clock."""
    from SpiffWorkflow.bpmn.specs.event_definitions import timer

    timer.datetime = _SpiffDatetime
