"""engine/mqttbridge.handle_message: the gateway token in the body authenticates like the HTTP bearer token; the
topic's gateway and the body's must both be the credential's; refusals are logged (never the token), counted and
not ingested; a redelivered message is deduplicated by reading id."""
from __future__ import annotations

import json
import logging
from collections import Counter

import pytest
from sqlalchemy import func, select

from engine.models.monitoring import Reading
from engine.mqttbridge import check_filter, gateway_in_topic, handle_message
from tests.engine.alarm_helpers import LEVEL, Edge, open_alarms, register


@pytest.fixture
def edge(db, config):
    token, ids = register(db, [LEVEL], code="gw-01")
    register(db, [LEVEL], code="gw-02")
    e = Edge(db, config, token)
    e.ids = ids
    return e


def message(edge: Edge, readings: list[dict], *, gateway: str = "gw-01", token: str | None = None) -> bytes:
    body = {"gateway": gateway, "readings": readings, "token": edge.token if token is None else token,
            "status": {"devices": {"plc": "online"}, "dropped": 0, "backlog": 0}}
    return json.dumps(body).encode()


def count(db) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(Reading))


def test_a_message_is_ingested_once_and_raises_the_alarm(db, config, edge):
    stats = Counter()
    first, high = edge.reading("plc.level", 5.0), edge.reading("plc.level", 8.75)
    payload = message(edge, [first, high])
    answer = handle_message(db, config, "emflow/gw-01/telemetry", payload, stats=stats)
    assert answer["accepted"] == [first["id"], high["id"]] and answer["duplicates"] == []
    again = handle_message(db, config, "emflow/gw-01/telemetry", payload, stats=stats)  # a redelivery
    assert again["duplicates"] == [first["id"], high["id"]] and again["accepted"] == []
    assert count(db) == 2
    [raised] = open_alarms(db, edge.ids["plc.level"])
    assert (raised.condition, raised.value) == ("hi", 8.75)
    assert (stats["messages"], stats["ingested"], stats["accepted"], stats["duplicates"], stats["refused"]) == \
        (2, 2, 2, 2, 0)


@pytest.mark.parametrize(("topic", "gateway", "token", "reason"), [
    ("emflow/gw-01/telemetry", "gw-01", "gw_wrong", "bad_token"),
    ("emflow/gw-01/telemetry", "gw-01", "", "token_missing"),
    ("emflow/gw-02/telemetry", "gw-01", None, "topic_mismatch"),
    ("emflow/gw-01/telemetry", "gw-02", None, "gateway_mismatch"),
    ("emflow/gw-02/telemetry", "gw-02", None, "topic_mismatch"),  # gw-01's token used for gw-02
    ("other/gw-01/telemetry", "gw-01", None, "topic"),
    ("emflow/gw-01/telemetry/x", "gw-01", None, "topic"),
])
def test_refused_messages_are_logged_counted_and_not_ingested(db, config, edge, caplog, topic, gateway, token,
                                                              reason):
    stats = Counter()
    payload = message(edge, [edge.reading("plc.level", 9.5)], gateway=gateway, token=token)
    with caplog.at_level(logging.WARNING, logger="engine.mqttbridge"):
        assert handle_message(db, config, topic, payload, stats=stats) is None
    assert count(db) == 0 and open_alarms(db) == []
    assert stats == Counter({"messages": 1, "refused": 1, f"refused.{reason}": 1})
    assert reason in caplog.text and edge.token not in caplog.text


@pytest.mark.parametrize(("payload", "reason"), [
    (b"{not json", "malformed"),
    (b"\xff\xfe", "malformed"),
    (b"[1, 2]", "malformed"),
    (b'{"gateway": "gw-01", "readings": []}', "token_missing"),
    (b'{"gateway": "gw-01", "readings": [], "token": 42}', "token_missing"),
])
def test_malformed_messages_are_dropped(db, config, edge, payload, reason):
    stats = Counter()
    assert handle_message(db, config, "emflow/gw-01/telemetry", payload, stats=stats) is None
    assert stats[f"refused.{reason}"] == 1


def test_invalid_readings_are_refused_as_a_whole(db, config, edge, caplog):
    stats = Counter()
    good, bad = edge.reading("plc.level", 5.0), {**edge.reading("plc.level", 6.0), "seq": -1}
    with caplog.at_level(logging.WARNING, logger="engine.mqttbridge"):
        assert handle_message(db, config, "emflow/gw-01/telemetry", message(edge, [good, bad]), stats=stats) is None
    assert stats["refused.invalid"] == 1 and "readings[1].seq" in caplog.text and count(db) == 0


def test_a_disabled_gateway_is_refused(db, config, edge):
    from engine.models.monitoring import Gateway

    with db.transaction() as s:
        s.scalar(select(Gateway).where(Gateway.code == "gw-01")).enabled = False
    stats = Counter()
    assert handle_message(db, config, "emflow/gw-01/telemetry", message(edge, [edge.reading("plc.level", 5.0)]),
                          stats=stats) is None
    assert stats["refused.bad_token"] == 1 and count(db) == 0


def test_a_custom_topic_filter_names_the_gateway_at_its_plus_level(db, config, edge):
    payload = message(edge, [edge.reading("plc.level", 5.0)])
    assert handle_message(db, config, "site/a/gw-01/up", payload, topic_filter="site/a/+/up")["accepted"]
    assert gateway_in_topic("emflow/gw-01/telemetry") == "gw-01"
    assert gateway_in_topic("emflow//telemetry") is None
    check_filter("emflow/+/telemetry")
    for bad in ("emflow/#", "emflow/+/+/telemetry", "emflow/gw-01/telemetry", "emflow/x+/telemetry"):
        with pytest.raises(ValueError, match="exactly one"):
            check_filter(bad)


@pytest.fixture
def bridge(db, config, monkeypatch):
    """A Bridge that is never connected: its ingest loop only."""
    from engine import mqttbridge

    b = mqttbridge.Bridge(db, config, "mqtt://127.0.0.1:1", client_id="unit-test")
    b.retry_initial = 0.01
    calls = []

    def fake(*args, **kw):
        calls.append(args)
        outcome = b.outcomes.pop(0)
        if callable(outcome):
            outcome = outcome()
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(mqttbridge, "handle_message", fake)
    b.calls = calls
    return b


class Message:
    topic, payload, mid, qos = "emflow/gw-01/telemetry", b"{}", 1, 1


def test_a_database_error_keeps_the_message_until_it_is_ingested(bridge):
    from sqlalchemy.exc import OperationalError

    down = OperationalError("SELECT 1", {}, Exception("connection refused"))
    bridge.outcomes = [down, down, {"accepted": []}]
    assert bridge._ingest(Message()) is True and len(bridge.calls) == 3 and bridge.stats["db_errors"] == 2


def test_an_unexpected_error_drops_the_message_after_three_tries(bridge):
    bridge.outcomes = [TypeError("bug")] * 3
    assert bridge._ingest(Message()) is True and bridge.stats["failed"] == 1


def test_stopping_during_a_retry_leaves_the_message_unacknowledged(bridge):
    from sqlalchemy.exc import OperationalError

    def stop_while_down():
        bridge.stop.set()  # SIGTERM arrives while the database is down
        return OperationalError("SELECT 1", {}, Exception("down"))

    bridge.outcomes = [stop_while_down, {"accepted": []}]
    assert bridge._ingest(Message()) is False and len(bridge.calls) == 1


def test_the_broker_url_carries_no_credentials_and_the_filter_names_the_gateway(db, config):
    from engine.mqttbridge import Bridge

    with pytest.raises(ValueError, match="no credentials"):
        Bridge(db, config, "mqtt://user:secret@127.0.0.1:1883")
    with pytest.raises(ValueError, match="mqtt://host"):
        Bridge(db, config, "http://127.0.0.1:1883")
    with pytest.raises(ValueError, match="exactly one"):
        Bridge(db, config, "mqtt://127.0.0.1:1883", topic_filter="emflow/#")
