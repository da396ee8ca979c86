"""Working days: weekends and the holiday table (public holidays and make-up working days, 调休)."""
from __future__ import annotations

import threading
import time
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import clock
from .models import Holiday


class WorkCalendar:
    """Which days are working days; exceptions come from the holiday table."""

    def __init__(self, exceptions: dict[date, bool] | None = None, tz: str = "Asia/Shanghai"):
        self.exceptions = exceptions or {}
        self.tz = ZoneInfo(tz)

    def is_workday(self, day: date) -> bool:
        if day in self.exceptions:
            return self.exceptions[day]
        return day.weekday() < 5

    def add_working_days(self, start: datetime, days: int) -> datetime:
        """The same local time of day, ``days`` working days after ``start`` (UTC-aware result)."""
        local = start.astimezone(self.tz)
        day = local.date()
        remaining = days
        while remaining > 0:
            day += timedelta(days=1)
            if self.is_workday(day):
                remaining -= 1
        return datetime.combine(day, local.timetz()).astimezone(ZoneInfo("UTC"))

    def add(self, start: datetime, duration) -> datetime:
        """``start`` plus a Duration: its days are working days, its hours and minutes clock time."""
        end = self.add_working_days(start, duration.working_days) if duration.working_days else start
        return end + timedelta(hours=duration.hours, minutes=duration.minutes)

    def script_helpers(self) -> dict:
        """Functions offered to BPMN scripts and timer expressions."""

        def working_days(n: int) -> str:
            """ISO timestamp ``n`` working days from now (for timeDate timers)."""
            return self.add_working_days(clock.now(), int(n)).isoformat()

        def is_workday(iso_day: str) -> bool:
            return self.is_workday(date.fromisoformat(iso_day))

        return {"working_days": working_days, "is_workday": is_workday}


_cache: tuple[float, dict[date, bool]] | None = None
_lock = threading.Lock()


def load(session: Session, tz: str = "Asia/Shanghai", ttl: float = 60.0) -> WorkCalendar:
    """The calendar from the holiday table, re-read at most every ``ttl`` seconds."""
    global _cache
    with _lock:
        if _cache is None or time.monotonic() - _cache[0] > ttl:
            rows = session.execute(select(Holiday.day, Holiday.is_workday)).all()
            _cache = (time.monotonic(), {d: w for d, w in rows})
        return WorkCalendar(_cache[1], tz)


def invalidate() -> None:
    global _cache
    with _lock:
        _cache = None
