"""Alarms in Chromium: the regulator's list on a desktop, the enterprise duty person acknowledging on a phone,
shelving a point's alarms on a desktop and unshelving them on a phone.

Screenshots land in tests/artifacts/browser/alarms-*.png.
"""
from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from engine import clock
from tests.browser.conftest import PHONE, login, no_horizontal_scroll
from tests.engine.alarm_helpers import LEVEL, Edge, add_enterprise, open_alarms, point, register

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


def test_the_duty_person_shelves_the_point_on_a_desktop_and_unshelves_it_on_a_phone(browser, server, db, config,
                                                                                       shots):
    token, ids = register(db, [LEVEL])
    edge = Edge(db, config, token)
    start = clock.now() - timedelta(minutes=40)
    edge.post([edge.reading("plc.level", round(7.0 + n * 0.05, 2), ts=start + timedelta(minutes=n))
               for n in range(40)])
    [alarm] = open_alarms(db, ids["plc.level"])
    until = (clock.now() + timedelta(hours=4)).astimezone(ZoneInfo(config.timezone)).replace(second=0, microsecond=0)
    shown = f"{until:%Y-%m-%d %H:%M}"

    desk = login(browser, server, "qiye.hg001")
    desk.goto(f"{server}/alarms/{alarm.id}")
    panel = desk.locator("section.shelve-panel")
    expect(panel.get_by_role("heading", name="搁置报警")).to_be_visible()
    panel.get_by_label("搁置至").fill(until.strftime("%Y-%m-%dT%H:%M"))
    panel.get_by_role("button", name="搁置报警").click()  # no reason: the browser keeps the form here
    expect(panel.locator("input[name=reason]:invalid")).to_have_count(1)
    assert point(db, alarm.point_id).shelved_until is None
    panel.get_by_label("原因").fill("液位计标定，暂停报警")
    no_horizontal_scroll(desk)
    shots(desk, "desktop-shelve-form")
    panel.get_by_role("button", name="搁置报警").click()
    expect(desk.get_by_text(f"该测点的报警已搁置至 {shown}。")).to_be_visible()
    expect(desk.locator(".shelved-note")).to_have_text(f"已搁置至 {shown}")
    expect(desk.get_by_role("button", name="取消搁置")).to_be_visible()
    assert point(db, alarm.point_id).shelved_until == until
    shots(desk, "desktop-shelved")

    phone = login(browser, server, "qiye.hg001", viewport=PHONE)
    phone.goto(f"{server}/alarms/{alarm.id}")
    expect(phone.locator(".shelved-note")).to_have_text(f"已搁置至 {shown}")
    no_horizontal_scroll(phone)
    shots(phone, "phone-shelved")
    phone.get_by_placeholder("原因（可不填）").fill("标定完成")
    phone.get_by_role("button", name="取消搁置").click()
    expect(phone.get_by_text("已取消该测点的报警搁置。")).to_be_visible()
    expect(phone.locator("section.shelve-panel input[type=datetime-local]")).to_be_visible()
    assert point(db, alarm.point_id).shelved_until is None
    no_horizontal_scroll(phone)
    shots(phone, "phone-shelve-form")


def test_the_administrator_registers_a_gateway_and_sets_its_silence_threshold(browser, server, db, config, shots):
    token, _ = register(db, [LEVEL])
    add_enterprise(db, "平南县金矿尾矿库有限公司", "尾矿库")
    Edge(db, config, token).send("plc.level", 5.0)

    desk = login(browser, server, "admin")
    desk.goto(f"{server}/alarms")
    desk.get_by_role("link", name="网关").click()
    expect(desk.get_by_text("正常上报")).to_be_visible()
    form = desk.locator("form", has=desk.get_by_role("button", name="登记"))
    form.get_by_label("编码").fill("gw-02")
    form.get_by_label("名称").fill("二号网关（储罐区）")
    expect(desk.locator("#enterprise-options option")).to_have_count(2)  # the first suggestions: both
    picker = form.get_by_label("企业")
    picker.press_sequentially("尾矿")  # the lookup refills the datalist as one types
    expect(desk.locator("#enterprise-options option")).to_have_count(1)
    option = desk.locator("#enterprise-options option[label*=尾矿]")
    picker.fill(option.get_attribute("value"))  # what choosing the suggestion enters: the credit code
    form.get_by_role("button", name="登记").click()
    expect(desk.get_by_role("heading", name="网关 gw-02 的接入凭证")).to_be_visible()
    expect(desk.locator("code.api-key")).to_contain_text("gw_")
    expect(desk.get_by_text("从未上报")).to_be_visible()
    no_horizontal_scroll(desk)
    shots(desk, "gateways-registered")

    desk.locator("tr", has=desk.get_by_text("gw-02")).get_by_role("link", name="设置").click()
    desk.get_by_label("通信中断阈值（分钟；留空为默认值 5 分钟）").fill("0")
    desk.get_by_role("button", name="保存").click()  # the browser refuses 0 before sending
    expect(desk.locator("input[name=minutes]:invalid")).to_have_count(1)
    desk.get_by_label("通信中断阈值（分钟；留空为默认值 5 分钟）").fill("30")
    shots(desk, "gateway-settings")
    desk.get_by_role("button", name="保存").click()
    expect(desk.get_by_text("网关设置已保存。")).to_be_visible()
    expect(desk.locator("tr", has=desk.get_by_text("gw-02"))).to_contain_text("30 分钟")

    phone = login(browser, server, "admin", viewport=PHONE)
    phone.goto(f"{server}/alarms/gateways")
    expect(phone.get_by_text("二号网关（储罐区）")).to_be_visible()
    no_horizontal_scroll(phone)
    shots(phone, "gateways-phone")
