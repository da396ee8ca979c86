"""Alarm pages: the list with grade colours and filters, one alarm with its reading chart and trail, KPIs;
all within the user's data scope."""
from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from engine import alarms, clock
from tests.engine.alarm_helpers import LEVEL, Edge, all_alarms, open_alarms, point, point_events, register, tick


def raise_alarm(db, config):
    token, ids = register(db, [LEVEL])
    edge = Edge(db, config, token)
    edge.send("plc.level", 5.0, 6.0)
    clock.advance(timedelta(minutes=5))
    edge.send("plc.level", 8.6)
    [alarm] = open_alarms(db, ids["plc.level"])
    return alarm


def test_the_list_shows_alarms_in_scope_with_filters(web, client, db, config):
    alarm = raise_alarm(db, config)
    web.login("huang.jian")
    page = client.get("/alarms").get_data(as_text=True)
    assert alarm.title in page and "grade-3" in page and "未确认" in page
    assert alarm.title not in client.get("/alarms?grade=1").get_data(as_text=True)
    assert alarm.title not in client.get("/alarms?state=closed").get_data(as_text=True)
    assert alarm.title in client.get("/alarms?industry=危险化学品&state=all").get_data(as_text=True)

    web.login("zhao.min")
    assert alarm.title not in client.get("/alarms").get_data(as_text=True)
    assert client.get(f"/alarms/{alarm.id}").status_code == 404


def test_the_alarm_page_charts_readings_and_the_enterprise_acknowledges(web, client, db, config):
    alarm = raise_alarm(db, config)
    web.login("qiye.hg001")
    page = client.get(f"/alarms/{alarm.id}").get_data(as_text=True)
    assert "<polyline" in page and "limit-hi" in page and "3 条读数" in page
    web.post(f"/alarms/{alarm.id}/acknowledge", {"comment": "已安排人员处置"}, page=f"/alarms/{alarm.id}")
    page = client.get(f"/alarms/{alarm.id}").get_data(as_text=True)
    assert "已确认" in page and "确认报警" not in page


def test_kpis_per_enterprise_and_region(web, client, db, config):
    raise_alarm(db, config)
    web.login("huang.jian")
    by_enterprise = client.get("/alarms/kpis").get_data(as_text=True)
    assert "平均确认用时" in by_enterprise and "<td>1</td>" in by_enterprise
    assert client.get("/alarms/kpis?by=region&days=30").status_code == 200


# -- shelving the alarm's point from the alarm page ----------------------------------------------------------------
SHANGHAI = ZoneInfo("Asia/Shanghai")
NOT_FOUND_FLASH = '<div class="flash flash-error" role="status">内容不存在，或不在您的数据权限范围内。</div>'


def local_input(delta: timedelta) -> tuple[str, datetime]:
    """A datetime-local value ``delta`` from now in the platform time zone (to the minute), and the time it means."""
    local = (clock.now() + delta).astimezone(SHANGHAI).replace(second=0, microsecond=0)
    return local.strftime("%Y-%m-%dT%H:%M"), local


def point_trail(db, point_id: int) -> list[tuple[str, str | None, str]]:
    """The point's own events (not its alarms'): kind, reason, who."""
    return [(e.kind, e.reason, e.actor_name) for e in point_events(db, point_id) if e.alarm_id is None]


def shelve_forms(page: str, alarm_id: int) -> tuple[bool, bool]:
    return f'action="/alarms/{alarm_id}/shelve"' in page, f'action="/alarms/{alarm_id}/unshelve"' in page


def test_the_duty_person_shelves_the_point_until_a_local_time_and_unshelves_it(web, client, db, config):
    alarm = raise_alarm(db, config)
    web.login("qiye.hg001")
    latest = [(clock.now() + timedelta(days=7)).astimezone(SHANGHAI)]
    page = client.get(f"/alarms/{alarm.id}").get_data(as_text=True)
    latest.append((clock.now() + timedelta(days=7)).astimezone(SHANGHAI))  # a minute may have turned meanwhile
    assert shelve_forms(page, alarm.id) == (True, False)
    assert "搁置报警" in page and "搁置至" in page and 'type="datetime-local"' in page and "原因" in page
    assert any(f'max="{t:%Y-%m-%dT%H:%M}"' in page and f"按中国标准时间填写，最晚至 {t:%Y-%m-%d %H:%M}。" in page
               for t in latest)

    value, until = local_input(timedelta(hours=3))
    shown = until.strftime("%Y-%m-%d %H:%M")
    page = web.post(f"/alarms/{alarm.id}/shelve", {"until": value, "reason": "液位计标定"}, page=f"/alarms/{alarm.id}",
                    follow_redirects=True).get_data(as_text=True)
    assert f"该测点的报警已搁置至 {shown}。" in page
    assert point(db, alarm.point_id).shelved_until == until  # the local wall-clock time, as an instant
    assert f"已搁置至 {shown}" in page and "取消搁置" in page
    assert shelve_forms(page, alarm.id) == (False, True)
    assert point_trail(db, alarm.point_id) == [("shelved", "液位计标定", "黄海")]

    page = web.post(f"/alarms/{alarm.id}/unshelve", {"reason": "标定完成"}, page=f"/alarms/{alarm.id}",
                    follow_redirects=True).get_data(as_text=True)
    assert "已取消该测点的报警搁置。" in page and "已搁置至" not in page
    assert shelve_forms(page, alarm.id) == (True, False)
    assert point(db, alarm.point_id).shelved_until is None
    assert point_trail(db, alarm.point_id) == [("shelved", "液位计标定", "黄海"), ("unshelved", "标定完成", "黄海")]

    page = web.post(f"/alarms/{alarm.id}/unshelve", {}, page=f"/alarms/{alarm.id}",
                    follow_redirects=True).get_data(as_text=True)
    assert "该测点的报警未被搁置。" in page and len(point_trail(db, alarm.point_id)) == 2  # nothing recorded twice


def test_a_shelve_can_end_just_under_seven_days_from_now_and_the_reason_is_optional_to_unshelve(web, client, db,
                                                                                                  config):
    alarm = raise_alarm(db, config)
    web.login("huang.jian")  # the county regulator
    value, until = local_input(timedelta(days=7, minutes=-2))
    web.post(f"/alarms/{alarm.id}/shelve", {"until": value, "reason": "停产检修"}, page=f"/alarms/{alarm.id}")
    assert point(db, alarm.point_id).shelved_until == until
    web.post(f"/alarms/{alarm.id}/unshelve", {"reason": "  "}, page=f"/alarms/{alarm.id}")
    assert point(db, alarm.point_id).shelved_until is None
    assert point_trail(db, alarm.point_id) == [("shelved", "停产检修", "黄健"), ("unshelved", None, "黄健")]


@pytest.mark.parametrize(("until", "reason", "message"), [
    (timedelta(hours=2), "", "请填写搁置原因。"),
    (timedelta(hours=2), "   ", "请填写搁置原因。"),
    (timedelta(hours=-1), "检修", "搁置截止时间须晚于当前时间，且距今不超过 7 天。"),
    (timedelta(days=7, hours=1), "检修", "搁置截止时间须晚于当前时间，且距今不超过 7 天。"),
    ("明天下午", "检修", "请填写搁置截止的日期和时间。"),
    ("2030-02-30T10:00", "检修", "请填写搁置截止的日期和时间。"),
    ("", "检修", "请填写搁置截止的日期和时间。"),
], ids=["no-reason", "blank-reason", "past", "beyond-7-days", "garbage", "no-such-day", "empty"])
def test_bad_shelve_input_flashes_an_error_and_changes_nothing(web, client, db, config, until, reason, message):
    alarm = raise_alarm(db, config)
    web.login("qiye.hg001")
    value = local_input(until)[0] if isinstance(until, timedelta) else until
    page = web.post(f"/alarms/{alarm.id}/shelve", {"until": value, "reason": reason}, page=f"/alarms/{alarm.id}",
                    follow_redirects=True).get_data(as_text=True)
    assert 'class="flash flash-error"' in page and message in page
    assert point(db, alarm.point_id).shelved_until is None and point_trail(db, alarm.point_id) == []
    assert shelve_forms(page, alarm.id) == (True, False)


def test_users_who_may_not_manage_the_point_get_no_forms_and_forged_posts_change_nothing(web, client, db, config):
    alarm = raise_alarm(db, config)
    value, until = local_input(timedelta(hours=3))

    web.login("zhang.wei")  # provincial office staff: sees the alarm, but no monitoring right or regulator role
    page = client.get(f"/alarms/{alarm.id}").get_data(as_text=True)
    assert alarm.title in page and shelve_forms(page, alarm.id) == (False, False) and "搁置报警" not in page
    page = web.post(f"/alarms/{alarm.id}/shelve", {"until": value, "reason": "伪造"}, page=f"/alarms/{alarm.id}",
                    follow_redirects=True).get_data(as_text=True)
    assert "您无权搁置或取消搁置该测点的报警。" in page
    assert point(db, alarm.point_id).shelved_until is None and point_trail(db, alarm.point_id) == []

    web.login("zhao.min")  # 柳州: the alarm is outside the data scope
    assert client.get(f"/alarms/{alarm.id}").status_code == 404
    page = web.post(f"/alarms/{alarm.id}/shelve", {"until": value, "reason": "伪造"},
                    follow_redirects=True).get_data(as_text=True)
    assert NOT_FOUND_FLASH in page and alarm.title not in page
    assert point(db, alarm.point_id).shelved_until is None and point_trail(db, alarm.point_id) == []

    web.login("qiye.hg001")
    web.post(f"/alarms/{alarm.id}/shelve", {"until": value, "reason": "液位计标定"}, page=f"/alarms/{alarm.id}")
    assert point(db, alarm.point_id).shelved_until == until

    web.login("zhang.wei")  # sees that the point is shelved, but cannot unshelve it
    page = client.get(f"/alarms/{alarm.id}").get_data(as_text=True)
    assert f"已搁置至 {until:%Y-%m-%d %H:%M}" in page and shelve_forms(page, alarm.id) == (False, False)
    page = web.post(f"/alarms/{alarm.id}/unshelve", {"reason": "伪造"}, page=f"/alarms/{alarm.id}",
                    follow_redirects=True).get_data(as_text=True)
    assert "您无权搁置或取消搁置该测点的报警。" in page

    web.login("zhao.min")
    page = web.post(f"/alarms/{alarm.id}/unshelve", {"reason": "伪造"}, follow_redirects=True).get_data(as_text=True)
    assert NOT_FOUND_FLASH in page
    assert point(db, alarm.point_id).shelved_until == until
    assert [kind for kind, _, _ in point_trail(db, alarm.point_id)] == ["shelved"]


# -- a gateway gone silent (loss of monitoring) --------------------------------------------------------------------
def test_a_silent_gateway_alarm_is_listed_and_shown_with_its_label_in_scope(web, client, db, config):
    token, _ = register(db, [LEVEL])
    Edge(db, config, token).post([])  # a heartbeat, then nothing
    clock.advance(timedelta(seconds=alarms.SILENT_AFTER_S + 1))
    tick(db, config)
    [alarm] = all_alarms(db)
    for username in ("huang.jian", "qiye.hg001"):  # the county regulator, the plant's duty person
        web.login(username)
        page = client.get("/alarms").get_data(as_text=True)
        assert alarm.title in page and "网关通信中断" in page and "gateway_silent" not in page and "grade-3" in page
        page = client.get(f"/alarms/{alarm.id}").get_data(as_text=True)
        assert "网关通信中断" in page and "gateway_silent" not in page and "未确认" in page
        assert "<polyline" not in page and f'action="/alarms/{alarm.id}/shelve"' not in page  # no point, no chart
    web.login("zhao.min")
    assert alarm.title not in client.get("/alarms").get_data(as_text=True)
    assert client.get(f"/alarms/{alarm.id}").status_code == 404
