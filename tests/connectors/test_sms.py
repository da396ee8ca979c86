"""The sms connector against a real local gateway: templates, numbers, rate limits, retries and receipts."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from connectors.base import ConnectorError
from connectors.sms import SmsConnector, render, signature
from engine import clock, connectors, jobs, messaging, secrets
from engine.connectors import EngineContext
from engine.models import Incident, Job, SmsMessage
from tests.engine.helpers import load_user
from tests.outside import OutsideSystem
from webapp import create_app
from webapp.platform import Platform

API_KEY = "sms-key-5f2c9a71"
TEMPLATES = {"notice": "{title}：{body}", "alarm": "{site}监测点{item}超限，当前值{value}，请立即处置。"}


@pytest.fixture
def gateway():
    """The local stand-in for the SMS gateway: accepts every number except 13900000000, with stable ids."""
    with OutsideSystem() as server:
        def answer(request):
            sent = json.loads(request["body"])
            return {"results": [{"mobile": m, "id": f"gw-{sent['out_id'][:8]}-{m}",
                                 "status": "rejected" if m == "13900000000" else "accepted",
                                 "reason": "blacklisted" if m == "13900000000" else None} for m in sent["mobiles"]]}
        server.answers["/sms/send"] = answer
        yield server


@pytest.fixture
def sms_registry(registry):
    registry.register(SmsConnector)
    return registry


def settings(gateway, **extra) -> dict:
    return {"endpoint": f"{gateway.url}/sms/send", "allowed_hosts": [gateway.host], "account": "gxyj",
            "api_key": API_KEY, "sign": "【广西应急】", "templates": TEMPLATES, **extra}


def send(db, gateway, key: str = "key-0001", config_extra: dict | None = None, **params):
    """One direct call of sms/Send, as a worker would make it."""
    context = EngineContext(db, key, None, 5.0)
    return SmsConnector(settings(gateway, **(config_extra or {}))).call("Send", params, context)


def statuses(result) -> list[tuple[str, str]]:
    return [(m["to"], m["status"]) for m in result["messages"]]


def test_render_fills_plain_placeholders_only():
    assert render("{site}：{value}米", {"site": "平果尾矿库", "value": 3.2}) == "平果尾矿库：3.2米"
    with pytest.raises(ConnectorError) as missing:
        render("{site}{value}", {"site": "x"})
    assert (missing.value.code, missing.value.retryable, "value" in str(missing.value)) == ("sms.values", False, True)
    with pytest.raises(ConnectorError) as attribute:
        render("{site.__class__}", {"site": "x"})
    assert attribute.value.code == "sms.template"


def test_a_send_renders_chinese_text_signs_the_request_and_reports_each_number(db, gateway):
    result = send(db, gateway, to=["13800000001", "138 0000 0002", "13800000001", "13900000000"], template="alarm",
                  values={"site": "平果铝尾矿库", "item": "库水位", "value": "3.2米"})

    assert statuses(result) == [("13800000001", "sent"), ("13800000002", "sent"), ("13900000000", "rejected")]
    assert result["messages"][0]["gateway_id"] == "gw-key-0001-13800000001"
    assert result["messages"][2]["reason"] == "blacklisted"
    [seen] = gateway.requests
    body = json.loads(seen["body"])
    assert body["content"] == "【广西应急】平果铝尾矿库监测点库水位超限，当前值3.2米，请立即处置。"
    assert (body["out_id"], body["account"], body["mobiles"]) == (
        "key-0001", "gxyj", ["13800000001", "13800000002", "13900000000"])
    headers = seen["headers"]
    assert headers["idempotency-key"] == "key-0001"
    assert headers["x-sms-signature"] == signature(API_KEY, headers["x-sms-timestamp"], seen["body"].encode())
    assert API_KEY not in json.dumps(seen)


@pytest.mark.parametrize("number", ["12800000000", "1380000000", "+8613800000000", "138000000001", "abc"])
def test_a_number_that_is_not_a_mainland_mobile_is_refused_before_anything_is_sent(db, gateway, number):
    with pytest.raises(ConnectorError) as caught:
        send(db, gateway, to=["13800000001", number], template="notice", values={"title": "t", "body": "b"})
    assert (caught.value.code, caught.value.retryable) == ("sms.bad_number", False)
    assert number not in str(caught.value) and "#2" in str(caught.value)
    assert gateway.requests == []


def test_an_unknown_template_or_a_missing_value_is_refused(db, gateway):
    with pytest.raises(ConnectorError) as unknown:
        send(db, gateway, to=["13800000001"], template="nope")
    assert (unknown.value.code, unknown.value.retryable) == ("sms.unknown_template", False)
    with pytest.raises(ConnectorError) as missing:
        send(db, gateway, to=["13800000001"], template="alarm", values={"site": "平果"})
    assert (missing.value.code, missing.value.retryable) == ("sms.values", False)
    assert "item" in str(missing.value) and "value" in str(missing.value)
    assert gateway.requests == []


def test_a_gateway_host_outside_the_allow_list_is_never_contacted(db, gateway):
    with pytest.raises(ConnectorError) as caught:
        send(db, gateway, config_extra={"allowed_hosts": ["sms.gxzf.gov.cn"]}, to=["13800000001"], template="notice",
             values={"title": "t", "body": "b"})
    assert (caught.value.code, caught.value.retryable) == ("sms.forbidden_host", False)
    assert gateway.requests == []


def test_the_per_recipient_limit_counts_each_number_in_its_window(db, gateway):
    limit = {"per_recipient_limit": {"count": 2, "minutes": 60}}
    notice = {"template": "notice", "values": {"title": "值班提醒", "body": "今晚值班"}}

    assert statuses(send(db, gateway, "k1", limit, to=["13800000001"], **notice)) == [("13800000001", "sent")]
    assert statuses(send(db, gateway, "k2", limit, to=["13800000001"], **notice)) == [("13800000001", "sent")]
    third = send(db, gateway, "k3", limit, to=["13800000001", "13800000002"], **notice)
    assert statuses(third) == [("13800000001", "rate_limited"), ("13800000002", "sent")]
    assert third["messages"][0]["gateway_id"] is None
    assert json.loads(gateway.requests[-1]["body"])["mobiles"] == ["13800000002"]
    assert statuses(send(db, gateway, "k4", limit, to=["13800000001"], **notice)) == [("13800000001", "rate_limited")]
    assert len(gateway.requests) == 3  # everyone limited: the gateway is not called at all

    clock.advance(timedelta(minutes=61))
    assert statuses(send(db, gateway, "k5", limit, to=["13800000001"], **notice)) == [("13800000001", "sent")]


def test_a_retry_with_the_same_idempotency_key_is_not_counted_twice(db, gateway):
    limit = {"per_recipient_limit": {"count": 1, "minutes": 30}}
    notice = {"template": "notice", "values": {"title": "t", "body": "b"}}

    assert statuses(send(db, gateway, "job-a", limit, to=["13800000001"], **notice)) == [("13800000001", "sent")]
    assert statuses(send(db, gateway, "job-a", limit, to=["13800000001"], **notice)) == [("13800000001", "sent")]
    assert statuses(send(db, gateway, "job-b", limit, to=["13800000001"], **notice)) == [
        ("13800000001", "rate_limited")]
    assert gateway.keys("/sms/send") == ["job-a", "job-a"]


# -- through the platform: a message queued by engine.messaging, run by the job path -------------------------


@pytest.fixture
def configured(db, config, sms_registry, gateway):
    """The sms connector set up with its key as a secret, and wang.fang with a mobile number."""
    with db.transaction() as s:
        secrets.put(s, config, "sms_api_key", API_KEY)
        connectors.configure(s, config, sms_registry, load_user(s, "admin"), "sms",
                             {**settings(gateway), "api_key": {"$secret": "sms_api_key"}}, retries=2)
        load_user(s, "wang.fang").phone = "138-0000-0001"


def queue_alarm(db, config) -> str:
    """An alarm for wang.fang (SMS on by default for alarms): returns the SMS job's id."""
    with db.transaction() as s:
        messaging.send(s, config, [load_user(s, "wang.fang")], "alarm", "尾矿库水位超限", "平果铝尾矿库 3.2米")
    with db.session() as s:
        [job] = s.scalars(select(Job).where(Job.instance_id.is_(None))).all()
        return job.id


def drain(db, config, registry, job_id: str) -> list[str]:
    outcomes = []
    while not outcomes or outcomes[-1] == "retry":
        clock.advance(timedelta(minutes=10))
        outcomes.append(jobs.execute(db, config, registry, job_id))
    return outcomes


def sms_rows(db) -> list[SmsMessage]:
    with db.session() as s:
        return list(s.scalars(select(SmsMessage).order_by(SmsMessage.id)))


def test_gateway_500s_are_retried_through_the_job_path_with_one_key(db, config, sms_registry, gateway, configured):
    gateway.plan["/sms/send"] = ["500", "503"]
    job_id = queue_alarm(db, config)
    assert [(r.to, r.status, r.user_id is not None) for r in sms_rows(db)] == [("13800000001", "queued", True)]

    assert drain(db, config, sms_registry, job_id) == ["retry", "retry", "done"]

    assert gateway.keys("/sms/send") == [job_id] * 3
    assert json.loads(gateway.requests[-1]["body"])["content"] == "【广西应急】尾矿库水位超限：平果铝尾矿库 3.2米"
    [row] = sms_rows(db)
    assert (row.status, row.gateway_id, row.category, row.template) == (
        "sent", f"gw-{job_id[:8]}-13800000001", "alarm", "notice")
    assert row.sent_at is not None


def test_a_gateway_that_stays_down_fails_the_message_without_an_incident(db, config, sms_registry, gateway,
                                                                         configured):
    gateway.plan["/sms/send"] = ["502"] * 5
    job_id = queue_alarm(db, config)

    assert drain(db, config, sms_registry, job_id) == ["retry", "retry", "failed"]
    [row] = sms_rows(db)
    assert row.status == "failed" and "answered 502" in row.error
    with db.session() as s:
        assert s.get(Job, job_id).status == "failed"
        assert s.scalars(select(Incident)).all() == []


def post_receipt(client, receipt: dict, key: str = API_KEY, age: int = 0):
    body = json.dumps(receipt).encode()
    stamp = str(int(clock.now().timestamp()) - age)
    return client.post("/api/v1/sms/receipts", data=body, content_type="application/json",
                       headers={"X-Sms-Timestamp": stamp, "X-Sms-Signature": signature(key, stamp, body)})


@pytest.fixture
def client(config):
    platform = Platform(config)
    app = create_app(config, platform=platform, overrides={"TESTING": True})
    yield app.test_client()
    platform.stop()


def test_receipts_are_checked_applied_once_and_unknown_ids_refused(db, config, sms_registry, gateway, configured,
                                                                   client):
    job_id = queue_alarm(db, config)
    assert drain(db, config, sms_registry, job_id) == ["done"]
    gateway_id = f"gw-{job_id[:8]}-13800000001"

    forged = post_receipt(client, {"id": gateway_id, "status": "failed"}, key="guessed-key")
    assert forged.status_code == 401 and sms_rows(db)[0].status == "sent"
    stale = post_receipt(client, {"id": gateway_id, "status": "failed"}, age=3600)
    assert stale.status_code == 401
    assert post_receipt(client, {"id": "gw-unknown", "status": "delivered"}).status_code == 404

    delivered = post_receipt(client, {"id": gateway_id, "status": "delivered"})
    assert delivered.status_code == 200 and delivered.get_json() == {"id": gateway_id, "status": "delivered"}
    [row] = sms_rows(db)
    first_receipt = row.receipt_at
    assert row.status == "delivered" and first_receipt is not None

    clock.advance(timedelta(minutes=1))
    replay = post_receipt(client, {"id": gateway_id, "status": "delivered"})
    late_failure = post_receipt(client, {"id": gateway_id, "status": "failed", "error": "UNDELIV"})
    assert (replay.status_code, late_failure.status_code) == (200, 200)
    [row] = sms_rows(db)
    assert (row.status, row.receipt_at, row.error) == ("delivered", first_receipt, None)

    assert client.post("/api/v1/sms/receipts", data=b"{}").status_code == 401
