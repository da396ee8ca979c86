"""engine/telemetry: readings stored once, latest by seq (not arrival), a late backlog stored but not evaluated, unknown
points acknowledged and reported, the status block kept as gateway health, credentials by hash only."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event, func, select

from engine import clock, monitoring
from engine.errors import AuthenticationFailed, Forbidden, ValidationFailed
from engine.models.monitoring import Gateway, Reading
from tests.engine.alarm_helpers import LEVEL, Edge, gateway, open_alarms, point, register


@pytest.fixture
def edge(db, config):
    token, ids = register(db, [LEVEL, {**LEVEL, "name": "plc.pressure", "unit": "MPa"}])
    return Edge(db, config, token)


def readings(db) -> list[tuple[int, float]]:
    with db.session() as s:
        return [(r.seq, r.value) for r in s.scalars(select(Reading).order_by(Reading.id))]


def test_the_credential_is_stored_as_its_hash_only(db, edge):
    row = gateway(db)
    assert row.token_hash == monitoring.hash_token(edge.token) and edge.token not in row.token_hash
    with db.session() as s, pytest.raises(AuthenticationFailed):
        monitoring.gateway_by_token(s, "gw_guess")
    with db.transaction() as s:
        s.scalar(select(Gateway)).enabled = False
    with pytest.raises(AuthenticationFailed):
        edge.post([])


def test_each_reading_is_stored_once_even_when_resent_in_one_batch(db, edge):
    first = edge.reading("plc.level", 5.0)
    answer = edge.post([first, dict(first), edge.reading("plc.level", 5.1)])
    assert (len(answer["accepted"]), answer["duplicates"]) == (2, [first["id"]])
    assert edge.post([first])["duplicates"] == [first["id"]]
    assert readings(db) == [(1, 5.0), (2, 5.1)]


def test_a_resent_reading_changes_nothing_even_with_other_content(db, edge):
    pid = point(db, 1).id
    first = edge.reading("plc.level", 5.0)
    edge.post([first])
    answer = edge.post([{**first, "value": 9.5}, edge.reading("plc.level", 5.2)])
    assert answer["duplicates"] == [first["id"]] and len(answer["accepted"]) == 1
    assert readings(db) == [(1, 5.0), (2, 5.2)]
    assert (point(db, pid).last_value, open_alarms(db)) == (5.2, [])  # 9.5 was neither stored nor evaluated


def test_a_large_resend_mixes_stored_and_new_readings(db, edge):
    sent = [edge.reading("plc.level", 5.0) for _ in range(3000)]
    edge.post(sent[::2])
    answer = edge.post(sent)
    assert answer["duplicates"] == [r["id"] for r in sent[::2]]
    assert answer["accepted"] == [r["id"] for r in sent[1::2]]
    assert sorted(seq for seq, _ in readings(db)) == list(range(1, 3001))


def test_latest_is_by_seq_and_a_late_backlog_is_stored_but_not_evaluated(db, edge):
    pid = point(db, 1).id
    now = clock.now()
    edge.post([edge.reading("plc.level", 6.0, seq=101, ts=now)])  # live first
    backlog = [edge.reading("plc.level", 9.5, seq=s, ts=now - timedelta(minutes=101 - s), historical=True)
               for s in range(1, 101)]
    assert len(edge.post(backlog)["accepted"]) == 100
    row = point(db, pid)
    assert (row.last_seq, row.last_value, row.evaluated_seq) == (101, 6.0, 101)
    assert open_alarms(db) == []  # 9.5 would be hihi, but those readings are older than what was evaluated
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Reading)) == 101


def test_a_batch_is_evaluated_in_seq_order(db, edge):
    pid = point(db, 1).id
    edge.post([edge.reading("plc.level", 5.0, seq=3), edge.reading("plc.level", 8.5, seq=2)])
    [raised] = open_alarms(db, pid)  # 8.5 (seq 2) raised it, then 5.0 (seq 3) returned it
    assert raised.state == "rtn_unack" and point(db, pid).last_value == 5.0


def test_unknown_points_are_acknowledged_not_stored(db, edge):
    stranger = edge.reading("plc.nowhere", 1.0)
    answer = edge.post([stranger, edge.reading("plc.level", 5.0)])
    assert answer["unknown"] == [stranger["id"]] and stranger["id"] in answer["accepted"]
    assert readings(db) == [(1, 5.0)]


def test_the_status_block_is_the_gateways_health(db, edge):
    edge.post([], devices={"plc": "online", "gas": "offline"})
    row = gateway(db)
    assert row.health["devices"] == {"plc": "online", "gas": "offline"} and row.last_seen_at is not None
    assert [a.condition for a in open_alarms(db)] == ["offline"]


def test_bodies_are_checked(db, edge):
    with pytest.raises(Forbidden), db.transaction() as s:
        from engine import telemetry
        telemetry.ingest(s, edge.config, monitoring.gateway_by_token(s, edge.token), {"gateway": "other"})
    with pytest.raises(ValidationFailed) as info:
        edge.post([{**edge.reading("plc.level", 1.0), "seq": -1}])
    assert "readings[0].seq" in info.value.errors


def test_an_unchanged_device_block_is_not_looked_up_again_and_a_change_is_seen(db, edge):
    edge.post([], devices={"plc": "online", "gas": "online"})
    seen = []

    def listen(_conn, _cursor, statement, *_args):
        seen.append(statement)

    event.listen(db.write_engine, "before_cursor_execute", listen)
    try:
        edge.post([], devices={"plc": "online", "gas": "online"})
        assert not [s for s in seen if "FROM device" in s]
        edge.post([], devices={"plc": "online", "gas": "offline"})
        assert [s for s in seen if "FROM device" in s]
    finally:
        event.remove(db.write_engine, "before_cursor_execute", listen)
    assert [a.condition for a in open_alarms(db)] == ["offline"]
    edge.post([], devices={"plc": "online", "gas": "online"})
    assert open_alarms(db)[0].active is False
