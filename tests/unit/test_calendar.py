"""The working-day calendar: weekends, public holidays, make-up working days (调休), local time of day."""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from engine import calendar, clock
from engine.calendar import WorkCalendar
from engine.models import Holiday

SHANGHAI = ZoneInfo("Asia/Shanghai")

# National Day 2025: 1-8 October off; Sunday 28 September and Saturday 11 October are make-up working days.
NATIONAL_DAY_2025 = {**{date(2025, 10, d): False for d in range(1, 9)},
                     date(2025, 9, 28): True, date(2025, 10, 11): True}


@pytest.fixture
def cal():
    return WorkCalendar(NATIONAL_DAY_2025)


def local(*args) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)


def test_the_default_time_zone_is_shanghai():
    assert WorkCalendar().tz == SHANGHAI


def test_weekdays_work_and_weekends_do_not():
    cal = WorkCalendar()
    assert [cal.is_workday(date(2026, 1, d)) for d in range(5, 12)] == [True] * 5 + [False] * 2


def test_holidays_and_make_up_days_override_the_weekday(cal):
    assert cal.is_workday(date(2025, 10, 1)) is False  # a Wednesday
    assert cal.is_workday(date(2025, 9, 28)) is True  # a Sunday
    assert cal.is_workday(date(2025, 10, 11)) is True  # a Saturday


def test_friday_plus_one_working_day_is_monday_same_local_time():
    assert WorkCalendar().add_working_days(local(2026, 1, 9, 9, 30), 1) == local(2026, 1, 12, 9, 30)


def test_weekends_are_skipped_over_several_days():
    assert WorkCalendar().add_working_days(local(2026, 1, 8, 17, 0), 3) == local(2026, 1, 13, 17, 0)


def test_a_holiday_week_is_skipped(cal):
    assert cal.add_working_days(local(2025, 9, 30, 10, 0), 1) == local(2025, 10, 9, 10, 0)


def test_a_make_up_sunday_is_counted(cal):
    assert cal.add_working_days(local(2025, 9, 26, 15, 0), 1) == local(2025, 9, 28, 15, 0)


def test_a_make_up_saturday_is_counted(cal):
    assert cal.add_working_days(local(2025, 10, 9, 8, 45), 2) == local(2025, 10, 11, 8, 45)


def test_the_result_is_utc():
    result = WorkCalendar().add_working_days(local(2026, 1, 9, 9, 30), 1)
    assert result.tzinfo == ZoneInfo("UTC")
    assert result.replace(tzinfo=None) == datetime(2026, 1, 12, 1, 30)


def test_days_count_in_local_time_not_utc():
    """20:00 UTC on Friday is already Saturday 04:00 in Shanghai: the next working day is Monday."""
    start = datetime(2026, 1, 9, 20, 0, tzinfo=UTC)
    assert WorkCalendar().add_working_days(start, 1) == local(2026, 1, 12, 4, 0)


def test_zero_days_is_the_same_instant():
    start = datetime(2026, 1, 10, 3, 0, tzinfo=UTC)
    assert WorkCalendar().add_working_days(start, 0) == start


def test_the_local_time_of_day_survives_a_daylight_saving_change():
    berlin = ZoneInfo("Europe/Berlin")
    result = WorkCalendar(tz="Europe/Berlin").add_working_days(datetime(2026, 3, 27, 9, 0, tzinfo=berlin), 1)
    assert result.astimezone(berlin).replace(tzinfo=None) == datetime(2026, 3, 30, 9, 0)
    assert result == datetime(2026, 3, 30, 7, 0, tzinfo=UTC)


def test_script_helper_working_days_counts_from_the_engine_clock(cal, monkeypatch):
    monkeypatch.setattr(clock, "now", lambda: datetime(2025, 9, 30, 2, 0, tzinfo=UTC))  # 10:00 in Shanghai
    helpers = cal.script_helpers()
    assert datetime.fromisoformat(helpers["working_days"](1)) == local(2025, 10, 9, 10, 0)
    assert datetime.fromisoformat(helpers["working_days"]("2")) == local(2025, 10, 10, 10, 0)


def test_script_helper_is_workday(cal):
    is_workday = cal.script_helpers()["is_workday"]
    assert is_workday("2025-10-02") is False and is_workday("2025-09-28") is True


def test_load_reads_the_holiday_table(db):
    with db.transaction() as s:
        s.add_all([Holiday(day=day, is_workday=work, name="国庆节") for day, work in NATIONAL_DAY_2025.items()])
    calendar.invalidate()
    with db.session() as s:
        cal = calendar.load(s)
    assert cal.exceptions == NATIONAL_DAY_2025
    assert cal.add_working_days(local(2025, 9, 30, 10, 0), 1) == local(2025, 10, 9, 10, 0)


def test_load_caches_until_invalidated(db):
    calendar.invalidate()
    with db.session() as s:
        assert date(2026, 1, 1) not in calendar.load(s).exceptions
    with db.transaction() as s:
        s.add(Holiday(day=date(2026, 1, 1), is_workday=False, name="元旦"))
    with db.session() as s:
        assert date(2026, 1, 1) not in calendar.load(s).exceptions
        calendar.invalidate()
        assert calendar.load(s).exceptions[date(2026, 1, 1)] is False


def test_a_long_stretch_of_days_stays_consistent(cal):
    """Adding n days in one go equals adding one day n times."""
    start = local(2025, 9, 20, 11, 0)
    stepwise = start
    for _ in range(15):
        stepwise = cal.add_working_days(stepwise, 1)
    assert cal.add_working_days(start, 15) == stepwise
    assert stepwise - start > timedelta(days=15)
