"""Alarms in Chromium: the regulator's list on a desktop, the enterprise duty person acknowledging on a phone.

Screenshots land in tests/artifacts/browser/alarms-*.png.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import expect

from engine import clock
from tests.browser.conftest import PHONE, login, no_horizontal_scroll
from tests.engine.alarm_helpers import LEVEL, Edge, open_alarms, register

pytestmark = pytest.mark.browser


def test_a_regulator_reads_the_list_and_the_duty_person_acknowledges_on_a_phone(browser, server, db, config, shots):
    token, ids = register(db, [LEVEL])
    edge = Edge(db, config, token)
    start = clock.now() - timedelta(minutes=90)
    for n in range(90):  # an hour and a half of readings creeping up through the high limit
        edge.post([edge.reading("plc.level", round(5.2 + n * 0.04 + (0.15 if n % 7 == 0 else 0), 2),
                                ts=start + timedelta(minutes=n))])
    [alarm] = open_alarms(db, ids["plc.level"])

    desk = login(browser, server, "huang.jian")
    desk.goto(f"{server}/alarms")
    expect(desk.get_by_text(alarm.title)).to_be_visible()
    shots(desk, "regulator-list")
    desk.goto(f"{server}/alarms/kpis")
    shots(desk, "kpis")

    phone = login(browser, server, "qiye.hg001", viewport=PHONE)
    phone.goto(f"{server}/alarms/{alarm.id}")
    expect(phone.locator("svg.reading-chart polyline")).to_be_visible()
    no_horizontal_scroll(phone)
    shots(phone, "phone-alarm")
    phone.get_by_role("button", name="确认报警").click()
    expect(phone.get_by_text("报警已确认。")).to_be_visible()
    no_horizontal_scroll(phone)
    shots(phone, "phone-acknowledged")
