"""Incidents and the service bus in Chromium: an admin skips a failed call and reads the usage chart.

Screenshots land in tests/artifacts/browser/integration-*.png.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import expect

from engine import bus, clock, connectors
from engine.models import BusCall, Incident
from tests.browser.conftest import PHONE, login, no_horizontal_scroll
from tests.engine.helpers import bpmn, deploy_bundle, flows, load_user, only_task, poll, service_task, start, user_task
from tests.outside import OutsideSystem

pytestmark = pytest.mark.browser


def incident_count(db) -> int:
    with db.session() as s:
        return s.query(Incident).count()


def test_an_admin_skips_a_failed_call_and_reads_the_bus_usage(browser, server, db, config, registry, shots):
    with OutsideSystem() as outside:
        with db.transaction() as s:
            admin = load_user(s, "admin")
            connectors.configure(s, config, registry, admin, "http",
                                 {"allowed_hosts": [outside.host], "base_url": outside.url}, retries=0)
            bus.save_service(s, registry, admin, "duty", "省应急值班系统", "rest",
                             {"base_url": outside.url, "operations": {"QueryDuty": {"method": "GET", "path": "/duty"},
                                                                      "Report": {"method": "POST", "path": "/r"}}})
            consumer, _key = bus.save_consumer(s, admin, "南宁市应急管理局", ["duty/*"])
            now = clock.now()
            for day in range(14):  # two weeks of logged calls for the chart
                for n in range(5 + 3 * (day % 5)):
                    s.add(BusCall(at=now - timedelta(days=day, minutes=n), service="duty",
                                  operation="QueryDuty" if n % 3 else "Report", consumer_id=consumer.id,
                                  ok=n % 7 != 6, status=200 if n % 7 != 6 else 502, latency_ms=20.0 + 4 * n + day,
                                  request='{"region": "450100"}', response="{}"))
        body = ('<bpmn:startEvent id="start"/>' + service_task("report", "http/Request", "reply", {"url": "'/x'"})
                + user_task("check", "核对报送结果") + '<bpmn:endEvent id="end"/>'
                + flows(("start", "report"), ("report", "check"), ("check", "end")))
        deploy_bundle(db, "report_once", bpmn("report_once", body), registry=registry)
        outside.plan["/x"] = ["404"]
        instance_id = start(db, config, "zhang.wei", "report_once")  # the server's worker runs the call
        poll(lambda: incident_count(db), timeout=20)

    page = login(browser, server, "admin")
    page.goto(f"{server}/admin/incidents")
    expect(page.get_by_text("http/Request")).to_be_visible()
    shots(page, "incidents")
    page.get_by_placeholder("原因（跳过时必填）").fill("已电话报送省厅")
    page.get_by_role("button", name="跳过").click()
    expect(page.get_by_text("该步骤已跳过。")).to_be_visible()
    assert only_task(db, instance_id).bpmn_id == "check"

    page.goto(f"{server}/admin/bus")
    expect(page.get_by_role("heading", name="近 14 天调用情况")).to_be_visible()
    assert page.locator("svg.chart rect.bar-calls").count() == 14
    shots(page, "bus-desktop")

    phone = login(browser, server, "admin", viewport=PHONE)
    phone.goto(f"{server}/admin/bus")
    no_horizontal_scroll(phone)
    shots(phone, "bus-phone")
