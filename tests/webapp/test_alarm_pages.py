"""Alarm pages: the list with grade colours and filters, one alarm with its reading chart and trail, KPIs;
all within the user's data scope."""
from __future__ import annotations

from datetime import timedelta

from engine import clock
from tests.engine.alarm_helpers import LEVEL, Edge, open_alarms, register


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
