"""Unified messages: channel preferences, in-app always, SMS queued as one job by preference, dedupe, rate limits."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from connectors.sms import SmsConnector
from engine import clock, connectors, messaging, operations, secrets
from engine.connectors import EngineContext
from engine.errors import ValidationFailed
from engine.models import Job, Notification, SmsMessage, UserChannelPref
from tests.engine.helpers import load_user, only_task, start
from tests.engine.test_operations import KEY, approve, deploy_chain, task


@pytest.fixture
def sms(db, config, registry):
    """The sms connector configured (its gateway is never called here); wang.fang has a mobile number."""
    registry.register(SmsConnector)
    with db.transaction() as s:
        secrets.put(s, config, "sms_api_key", "sms-key-0001")
        connectors.configure(s, config, registry, load_user(s, "admin"), "sms", {
            "endpoint": "https://sms.gxzf.gov.cn/send", "allowed_hosts": ["sms.gxzf.gov.cn"], "account": "gxyj",
            "api_key": {"$secret": "sms_api_key"}, "sign": "【广西应急】", "templates": {"notice": "{title}：{body}"}})
        load_user(s, "wang.fang").phone = "+86 138 0000 0001"
    return registry


def sms_jobs(db) -> list[Job]:
    with db.session() as s:
        return list(s.scalars(select(Job).where(Job.instance_id.is_(None)).order_by(Job.created_at)))


def notes(db, username: str) -> list[Notification]:
    with db.session() as s:
        return list(s.scalars(select(Notification).where(Notification.user_id == load_user(s, username).id)))


def send(db, config, usernames: list[str], category: str, dedupe_key: str | None = None) -> int:
    with db.transaction() as s:
        users = [load_user(s, u) for u in usernames]
        return messaging.send(s, config, users, category, "汛期值班提醒", "今晚 20:00 到岗", "/inbox", None, dedupe_key)


def test_defaults_turn_sms_on_for_alarms_and_urges_only_with_a_mobile_number(db, sms):
    with db.session() as s:
        with_phone = messaging.preferences(s, load_user(s, "wang.fang"))
        without = messaging.preferences(s, load_user(s, "li.na"))
    assert with_phone == {"reminder": ["inapp"], "urge": ["inapp", "sms"], "alarm": ["inapp", "sms"],
                          "cc": ["inapp"], "message": ["inapp"], "system": ["inapp"]}
    assert set(map(tuple, without.values())) == {("inapp",)}


def test_overrides_are_stored_per_category_and_in_app_stays_on(db, sms):
    with db.transaction() as s:
        user = load_user(s, "wang.fang")
        chosen = messaging.set_preferences(s, user, {"urge": [], "reminder": ["sms"], "cc": ["sms", "inapp"]})
    assert (chosen["urge"], chosen["reminder"], chosen["cc"], chosen["alarm"]) == (
        ["inapp"], ["inapp", "sms"], ["inapp", "sms"], ["inapp", "sms"])
    with db.transaction() as s:
        with pytest.raises(ValidationFailed) as bad:
            messaging.set_preferences(s, load_user(s, "wang.fang"), {"weather": ["sms"], "alarm": ["wechat"]})
        assert set(bad.value.errors) == {"preferences.weather", "preferences.alarm"}
    with db.session() as s:
        assert s.scalar(select(UserChannelPref.channels).where(UserChannelPref.category == "alarm")) is None


def test_in_app_is_always_written_and_sms_only_by_preference(db, config, sms):
    assert send(db, config, ["wang.fang", "li.na"], "message") == 2
    assert sms_jobs(db) == []  # messages: in-app only by default

    assert send(db, config, ["wang.fang", "li.na"], "alarm") == 2
    [job] = sms_jobs(db)
    assert (job.kind, job.status, job.task_id) == ("service", "pending", None)
    assert job.payload["operation"] == "sms/Send" and job.payload["category"] == "alarm"
    assert job.payload["params"] == {"to": ["13800000001"], "template": "notice",
                                     "values": {"title": "汛期值班提醒", "body": "今晚 20:00 到岗"}}
    with db.session() as s:
        [row] = s.scalars(select(SmsMessage)).all()
        assert (row.job_id, row.to, row.status, row.user_id) == (job.id, "13800000001", "queued",
                                                                load_user(s, "wang.fang").id)
    assert [n.category for n in notes(db, "li.na")] == ["message", "alarm"]

    with db.transaction() as s:
        messaging.set_preferences(s, load_user(s, "wang.fang"), {"alarm": ["inapp"]})
    send(db, config, ["wang.fang"], "alarm")
    assert len(sms_jobs(db)) == 1 and len(notes(db, "wang.fang")) == 3


def test_without_a_configured_sms_connector_nothing_is_queued(db, config):
    with db.transaction() as s:
        load_user(s, "wang.fang").phone = "13800000001"
    assert send(db, config, ["wang.fang"], "alarm") == 1
    assert sms_jobs(db) == []


def test_a_dedupe_key_writes_each_message_and_each_text_once(db, config, sms):
    assert send(db, config, ["wang.fang"], "alarm", dedupe_key="job-42") == 1
    assert send(db, config, ["wang.fang", "li.na"], "alarm", dedupe_key="job-42") == 1  # only li.na is new
    assert len(notes(db, "wang.fang")) == 1 and len(sms_jobs(db)) == 1


def test_an_urge_to_a_user_with_sms_queues_exactly_one_text(db, config, sms):
    deploy_chain(db, task("a", buttons="approve,urge"), task("b", 'user("wang.fang")', buttons="approve,urge"))
    instance_id = start(db, config, "zhang.wei", KEY)
    approve(db, config, "zhang.wei", only_task(db, instance_id).id)

    with db.transaction() as s:
        assert operations.urge(s, config, load_user(s, "zhang.wei"), instance_id, "请尽快审核") == 1

    [job] = sms_jobs(db)
    assert job.payload["params"]["to"] == ["13800000001"]
    assert job.payload["params"]["values"]["body"] == "请尽快审核"
    assert job.payload["instance_id"] == instance_id
    [note] = notes(db, "wang.fang")
    assert (note.category, note.body) == ("urge", "请尽快审核")


def test_the_notify_connector_honours_preferences(db, config, sms):
    EngineContext(db, "job-notify-1", None).notify(["wang.fang", "li.na"], "化工园区告警", "氨气浓度超限",
                                                   category="alarm")
    EngineContext(db, "job-notify-1", None).notify(["wang.fang", "li.na"], "化工园区告警", "氨气浓度超限",
                                                   category="alarm")  # the job's retry
    assert len(sms_jobs(db)) == 1
    assert [n.title for n in notes(db, "li.na")] == ["化工园区告警"]


def test_the_rate_limit_counts_a_key_once_and_forgets_after_the_window(db):
    def take(idempotency_key: str) -> bool:
        return EngineContext(db, idempotency_key, None).rate_limit("sms:13800000001", 2, 600)

    assert [take("a"), take("a"), take("b"), take("c"), take("b")] == [True, True, True, False, True]
    clock.advance(timedelta(seconds=601))
    assert take("c") is True


def test_the_rate_limit_holds_under_concurrent_callers(db):
    results: list[bool] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        allowed = EngineContext(db, f"job-{i}", None).rate_limit("sms:13800000009", 5, 3600)
        with lock:
            results.append(allowed)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True] * 5
