"""The gateway pages: monitoring administrators list gateways with their state, register one (its credential shown
once, never in the session cookie), change its settings, and issue a new credential; bad input changes nothing."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from engine import clock, monitoring
from engine.errors import AuthenticationFailed
from engine.models import SystemEvent
from engine.models.monitoring import Gateway
from tests.engine.alarm_helpers import LEVEL, PLANT, Edge, enterprise_id, register


def gateway(db, code: str = "gw-01") -> Gateway:
    with db.session() as s:
        return s.scalar(select(Gateway).where(Gateway.code == code))


def test_the_list_shows_each_gateways_state_and_threshold(web, client, db, config):
    token, _ = register(db, [LEVEL])
    Edge(db, config, token).send("plc.level", 5.0)
    register(db, [], code="gw-quiet")
    web.login("admin")
    page = client.get("/alarms/gateways").get_data(as_text=True)
    assert "gw-01" in page and "正常上报" in page and "gw-quiet" in page and "从未上报" in page
    assert "5 分钟" in page and "（默认）" in page
    assert 'href="/alarms/gateways"' in client.get("/alarms").get_data(as_text=True)  # the tab

    clock.advance(timedelta(minutes=6))
    assert "通信中断" in client.get("/alarms/gateways").get_data(as_text=True)


def test_registering_shows_the_credential_once_and_it_works(web, client, db, config):
    web.login("admin")
    response = web.post("/alarms/gateways", {"code": "gw-new", "name": "新网关", "enterprise": PLANT},
                        page="/alarms/gateways")
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "网关 gw-new 的接入凭证" in page
    token = page.split('<code class="api-key">')[1].split("</code>")[0]
    assert token.startswith(monitoring.TOKEN_PREFIX)
    assert token not in (response.headers.get("Set-Cookie") or "")  # rendered, not flashed into the cookie
    assert token not in client.get("/alarms/gateways").get_data(as_text=True)  # shown once
    assert gateway(db, "gw-new").enterprise_id == enterprise_id(db)
    Edge(db, config, token, code="gw-new").post([])  # the edge's heartbeat is accepted
    assert gateway(db, "gw-new").last_seen_at is not None


def test_the_enterprise_picker_finds_by_name_or_credit_code_and_a_name_registers_too(web, client, db):
    web.login("admin")
    found = client.get("/alarms/gateways/enterprises?q=鑫安").get_json()
    assert {"value": PLANT, "label": "南宁市兴宁区鑫安化工有限公司"} in found
    assert client.get(f"/alarms/gateways/enterprises?q={PLANT[:6].lower()}").get_json()[0]["value"] == PLANT
    assert client.get("/alarms/gateways/enterprises?q=%25").get_json() == []  # a LIKE wildcard is a plain character
    assert f'<option value="{PLANT}"' in client.get("/alarms/gateways").get_data(as_text=True)  # first suggestions
    response = web.post("/alarms/gateways", {"code": "gw-named", "enterprise": "南宁市兴宁区鑫安化工有限公司"},
                        page="/alarms/gateways")
    assert response.status_code == 200 and gateway(db, "gw-named").enterprise_id == enterprise_id(db)
    web.login("huang.jian")
    assert client.get("/alarms/gateways/enterprises?q=鑫安").status_code == 403


def test_bad_registrations_say_why_and_register_nothing(web, client, db):
    web.login("admin")
    register(db, [])
    for form, message in (({"code": "gw 01", "enterprise": PLANT}, "网关编码为"),
                          ({"code": "gw-01", "enterprise": PLANT}, "网关编码为"),
                          ({"code": "gw-02", "enterprise": ""}, "请从列表中选择企业"),
                          ({"code": "gw-02", "enterprise": "没有这家企业"}, "请从列表中选择企业")):
        response = web.post("/alarms/gateways", form, page="/alarms/gateways")
        assert response.status_code == 422 and message in response.get_data(as_text=True)
    with db.session() as s:
        assert s.scalars(select(Gateway.code)).all() == ["gw-01"]


def test_settings_change_the_threshold_name_and_switch_and_are_audited(web, client, db):
    register(db, [])
    gw = gateway(db)
    web.login("admin")
    page = f"/alarms/gateways/{gw.id}"
    assert "通信中断阈值" in client.get(page).get_data(as_text=True)
    response = web.post(page, {"name": "一号网关", "minutes": "30"}, page=page)  # "enabled" unticked
    assert response.status_code == 302
    changed = gateway(db)
    assert (changed.name, changed.enabled, changed.silent_after_s) == ("一号网关", False, 1800)
    listing = client.get("/alarms/gateways").get_data(as_text=True)
    assert "网关设置已保存" in listing and "已停用" in listing and "30 分钟" in listing
    web.post(page, {"name": "一号网关", "enabled": "on", "minutes": ""}, page=page)
    assert (gateway(db).enabled, gateway(db).silent_after_s) == (True, None)
    with db.session() as s:
        assert s.scalars(select(SystemEvent.kind).where(SystemEvent.kind == "gateway_updated")).all() == \
            ["gateway_updated", "gateway_updated"]


def test_bad_settings_say_why_and_change_nothing(web, client, db):
    register(db, [])
    gw = gateway(db)
    web.login("admin")
    page = f"/alarms/gateways/{gw.id}"
    for form, message in (({"name": "x", "enabled": "on", "minutes": "半小时"}, "请输入整数分钟"),
                          ({"name": "x", "enabled": "on", "minutes": "0"}, "须在 1 分钟至 10080 分钟"),
                          ({"name": "x", "enabled": "on", "minutes": "10081"}, "须在 1 分钟至 10080 分钟"),
                          ({"name": "  ", "enabled": "on", "minutes": "5"}, "名称不能为空")):
        response = web.post(page, form, page=page)
        body = response.get_data(as_text=True)
        assert response.status_code == 422 and message in body
        assert f'value="{form["minutes"]}"' in body  # what was typed is kept
    unchanged = gateway(db)
    assert (unchanged.name, unchanged.enabled, unchanged.silent_after_s) == (gw.name, True, None)


def test_a_new_credential_replaces_the_old_one(web, client, db, config):
    old, _ = register(db, [LEVEL])
    gw = gateway(db)
    web.login("admin")
    page = f"/alarms/gateways/{gw.id}"
    body = web.post(f"{page}/credential", page=page).get_data(as_text=True)
    new = body.split('<code class="api-key">')[1].split("</code>")[0]
    assert new != old and "原凭证已失效" in body
    with pytest.raises(AuthenticationFailed):
        Edge(db, config, old).post([])
    Edge(db, config, new).send("plc.level", 5.0)


def test_only_monitoring_administrators_see_the_pages(web, client, db):
    register(db, [])
    gw = gateway(db)
    web.login("huang.jian")  # a regulator on duty: alarms yes, the registry no
    assert client.get("/alarms/gateways").status_code == 403
    assert client.get(f"/alarms/gateways/{gw.id}").status_code == 403
    assert 'href="/alarms/gateways"' not in client.get("/alarms").get_data(as_text=True)
    web.login("admin")
    assert client.get("/alarms/gateways/999999").status_code == 404
