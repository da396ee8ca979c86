"""Concurrent ingests on PostgreSQL: an edge resending a batch while its first delivery is still in flight, and one
reading id arriving through two gateways at once. Each request works in its own ``db.transaction()``, as two
gunicorn workers do; neither fails, each reading is stored and evaluated once, and the answers count it once.
The scheduler's alarm tick, finishing an on-delay while an ingest of the same point is in flight, waits for it.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from engine import clock, monitoring, telemetry
from engine.errors import AuthenticationFailed
from engine.models.monitoring import Alarm, AlarmEvent, Gateway, Point, Reading
from tests.concurrency import in_threads, release_when_waiting
from tests.engine.alarm_helpers import LEVEL, Edge, point, register, tick, update_point
from tests.engine.helpers import load_user

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not os.environ.get("EMFLOW_TEST_DATABASE_URL"), reason="needs EMFLOW_TEST_DATABASE_URL"),
]


def ingest(edge: Edge, readings: list[dict], between: Callable[[], None] = lambda: None,
           after: Callable[[], None] = lambda: None) -> dict:
    """One request's ingest: ``between`` runs once its transaction has begun, ``after`` before it commits."""
    with edge.db.transaction() as s:
        gateway = monitoring.gateway_by_token(s, edge.token)
        between()
        answer = telemetry.ingest(s, edge.config, gateway, {"gateway": edge.code, "readings": readings})
        after()
    return answer






def while_held(edge: Edge, readings: list[dict], then: Callable[[], dict], rollback: bool = False) -> list[object]:
    """``edge`` ingests ``readings`` and keeps its transaction open until ``then`` (another request) waits on one
    of its locks; it then commits (or rolls back) and both results are returned."""
    inserted, release = threading.Event(), threading.Event()

    def first() -> dict:
        def hold() -> None:
            inserted.set()
            assert release.wait(30)
            if rollback:
                raise RuntimeError("the first request fails after its insert")
        return ingest(edge, readings, after=hold)

    def second() -> dict:
        assert inserted.wait(30)
        return then()

    return in_threads(first, second, lambda: release_when_waiting(edge.db, release))[:2]


def stored(db) -> list[str]:
    with db.session() as s:
        return sorted(s.scalars(select(Reading.reading_id)))


@pytest.fixture
def edge(db, config):
    token, _ = register(db, [LEVEL])
    return Edge(db, config, token)


def test_a_batch_resent_at_the_same_moment_is_stored_and_evaluated_once(db, edge):
    ids: list[str] = []
    rounds = 5
    for _ in range(rounds):
        low, high, back = (edge.reading("plc.level", v) for v in (5.0, 9.5, 5.0))  # high raises hihi, back returns
        ids += [low["id"], high["id"], back["id"]]
        barrier = threading.Barrier(2)
        results = in_threads(lambda b=[low, high], w=barrier.wait: ingest(edge, b, between=w),
                             lambda b=[high, back], w=barrier.wait: ingest(edge, b, between=w))

        assert not any(isinstance(r, Exception) for r in results), results
        accepted = [i for r in results for i in r["accepted"]]
        duplicates = [i for r in results for i in r["duplicates"]]
        assert sorted(accepted) == sorted([low["id"], high["id"], back["id"]]) and duplicates == [high["id"]]
    assert stored(db) == sorted(ids)
    with db.session() as s:
        hihi = s.scalar(select(Alarm).where(Alarm.condition == "hihi"))
        last_seq = s.scalar(select(Point.last_seq))
    assert (hihi.activations, hihi.active, last_seq) == (rounds, False, 3 * rounds)


def test_a_resend_waits_for_the_first_delivery_and_counts_its_readings_as_duplicates(db, edge):
    first = [edge.reading("plc.level", 5.0), edge.reading("plc.level", 9.5)]
    later = edge.reading("plc.level", 5.0)

    held, resent = while_held(edge, first, lambda: ingest(edge, [*first, later]))

    assert held == {"accepted": [r["id"] for r in first], "duplicates": [], "unknown": []}
    assert resent == {"accepted": [later["id"]], "duplicates": [r["id"] for r in first], "unknown": []}
    assert stored(db) == sorted(r["id"] for r in [*first, later])
    with db.session() as s:
        assert s.scalar(select(func.sum(Alarm.activations)).where(Alarm.condition == "hihi")) == 1


@pytest.mark.parametrize("change", ["disable", "rotate"])
def test_a_batch_whose_gateway_is_disabled_or_rotated_after_its_credential_was_checked_is_refused(db, edge, change):
    def meanwhile() -> None:  # another request commits between the credential check and the ingest's lock
        with db.transaction() as s:
            gateway = s.scalar(select(Gateway).where(Gateway.code == edge.code))
            if change == "disable":
                gateway.enabled = False
            else:
                monitoring.rotate_token(s, load_user(s, "admin"), gateway.id)

    with pytest.raises(AuthenticationFailed):
        ingest(edge, [edge.reading("plc.level", 5.0)], between=meanwhile)
    assert stored(db) == []


@pytest.mark.parametrize("rollback", [False, True], ids=["first-commits", "first-rolls-back"])
def test_one_reading_id_through_two_gateways_waits_for_the_first_insert(db, config, edge, rollback):
    token, _ = register(db, [LEVEL], code="gw-02")
    other = Edge(db, config, token, code="gw-02")
    shared, own = edge.reading("plc.level", 5.0), other.reading("plc.level", 6.0)

    held, second = while_held(edge, [shared], lambda: ingest(other, [shared, own]), rollback=rollback)

    if rollback:
        assert isinstance(held, RuntimeError)
        assert second == {"accepted": [shared["id"], own["id"]], "duplicates": [], "unknown": []}
    else:
        assert held["accepted"] == [shared["id"]]
        assert second == {"accepted": [own["id"]], "duplicates": [shared["id"]], "unknown": []}
    assert stored(db) == sorted([shared["id"], own["id"]])


@pytest.fixture
def delayed(db, edge) -> int:
    """The level point with a 30 s on-delay, above hi and hihi since 31 s ago: its on-delay is due for the tick."""
    with db.session() as s:
        point_id = s.scalar(select(Point.id))
    update_point(db, point_id, on_delay_s=30)
    edge.send("plc.level", 9.5)
    clock.advance(timedelta(seconds=31))
    return point_id


def raised(db) -> list[str]:
    """The conditions of the 'raised' events of limit alarms, in order."""
    with db.session() as s:
        return list(s.scalars(select(Alarm.condition).join(AlarmEvent, AlarmEvent.alarm_id == Alarm.id)
                              .where(AlarmEvent.kind == "raised", Alarm.kind == "limit").order_by(AlarmEvent.id)))


def test_a_tick_waits_for_an_ingest_whose_reading_ended_the_on_delay_and_raises_nothing_again(db, config, edge,
                                                                                                 delayed):
    still_high = edge.reading("plc.level", 9.6)

    held, ticked = while_held(edge, [still_high], lambda: tick(db, config))

    assert held["accepted"] == [still_high["id"]]
    assert ticked == 0  # not an error from raising the ingest's alarms a second time
    assert sorted(raised(db)) == ["hi", "hihi"]  # once each
    with db.session() as s:
        assert sorted(s.scalars(select(Alarm.activations).where(Alarm.kind == "limit"))) == [1, 1]
    assert point(db, delayed).eval_due_at is None


def test_a_tick_waits_for_an_ingest_whose_reading_cleared_the_condition_during_the_on_delay(db, config, edge,
                                                                                          delayed):
    back = edge.reading("plc.level", 5.0, ts=clock.now() - timedelta(seconds=11))  # 20 s into the on-delay

    held, ticked = while_held(edge, [back], lambda: tick(db, config))

    assert held["accepted"] == [back["id"]]
    assert ticked == 0
    assert raised(db) == []
    row = point(db, delayed)
    assert (row.last_value, row.eval_due_at) == (5.0, None)
