"""Loss of monitoring: a gateway that stops reporting as a whole (power cut at the plant, network down) raises one
网关通信中断 alarm from the scheduler's tick once its threshold passes, returns it when it is heard again (a reading
or a heartbeat), and the alarm goes through the same handling process as every other alarm. The clock is moved with
``engine.clock.advance``; nothing sleeps.

The PostgreSQL tests at the end run tick and ingest of one gateway in two transactions at once, as the scheduler
and a gunicorn worker do."""
from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import select

from engine import alarms, clock, monitoring, schema, telemetry
from engine.errors import AuthenticationFailed, Forbidden, NotFound, ValidationFailed
from engine.models import Notification, SystemEvent, User
from engine.models.monitoring import Alarm, AlarmEvent, Gateway
from tests.concurrency import in_threads, release_when_waiting
from tests.engine.alarm_helpers import LEVEL, Edge, add_enterprise, alarm, register, tick, trail
from tests.engine.helpers import (
    claim,
    complete,
    instance,
    load_user,
    open_tasks,
    run_jobs,
    workflow_data,
)

THRESHOLD = timedelta(seconds=alarms.SILENT_AFTER_S)
SECOND = timedelta(seconds=1)
on_postgres = pytest.mark.skipif(not os.environ.get("EMFLOW_TEST_DATABASE_URL"),
                                 reason="needs EMFLOW_TEST_DATABASE_URL")


@pytest.fixture
def edge(db, config) -> Edge:
    """The demo plant's gateway gw-01 with its level point, registered but not heard from yet."""
    token, _ = register(db, [LEVEL])
    return Edge(db, config, token)


def heartbeat(edge: Edge) -> dict:
    """What the edge posts when it has no readings to send: its status block only."""
    return edge.post([], devices={"plc": "online"})


def silent_alarms(db) -> list[Alarm]:
    with db.session() as s:
        return list(s.scalars(select(Alarm).where(Alarm.kind == alarms.SILENT).order_by(Alarm.id)))


def gateway_row(db, code: str = "gw-01") -> Gateway:
    with db.session() as s:
        return s.scalar(select(Gateway).where(Gateway.code == code))


def set_gateway(db, code: str = "gw-01", **values) -> None:
    with db.transaction() as s:
        row = s.scalar(select(Gateway).where(Gateway.code == code))
        for key, value in values.items():
            setattr(row, key, value)


def raised_detail(db, alarm_id: int) -> dict:
    with db.session() as s:
        return s.scalar(select(AlarmEvent.detail).where(AlarmEvent.alarm_id == alarm_id, AlarmEvent.kind == "raised"))


def handle_and_confirm(db, config, instance_id: int, cause: str, measures: str) -> None:
    """The enterprise reports cause and measures, the county regulator confirms: the process ends."""
    [handle] = open_tasks(db, instance_id, "handle")
    complete(db, config, "qiye.hg001", handle.id, {"cause": cause, "measures": measures})
    [confirm] = open_tasks(db, instance_id, "confirm")
    claim(db, config, "huang.jian", confirm.id)
    complete(db, config, "huang.jian", confirm.id, {"confirm_decision": "confirm", "opinion": "处置到位"})


def test_silence_past_the_threshold_raises_one_alarm_however_often_the_tick_runs(db, config, edge):
    heartbeat(edge)
    heard = gateway_row(db).last_seen_at
    assert gateway_row(db).silent_due_at == heard + THRESHOLD
    clock.advance(THRESHOLD + SECOND)
    assert tick(db, config) == 1
    for _ in range(10):  # the scheduler every half second, and long after
        clock.advance(timedelta(minutes=30))
        assert tick(db, config) == 0
    [raised] = silent_alarms(db)
    assert (raised.kind, raised.condition, raised.grade, raised.state, raised.active) == \
        ("gateway_silent", "gateway_silent", 3, "unack", True)
    assert (raised.point_id, raised.device_id, raised.item_id, raised.value) == (None, None, None, None)
    assert raised.region_code == "450102" and raised.industry == "危险化学品"
    assert "gw-01" in raised.title and "网关通信中断" in raised.title
    assert trail(db, raised.id) == ["raised", "process_started"]
    detail = raised_detail(db, raised.id)
    assert detail["gateway"] == "gw-01" and detail["silent_after_s"] == alarms.SILENT_AFTER_S
    assert detail["last_seen_at"] == heard.isoformat()
    assert gateway_row(db).silent_due_at is None  # nothing more is due until the gateway is heard


def test_nothing_before_the_threshold_and_every_contact_moves_it(db, config, edge):
    heartbeat(edge)
    clock.advance(THRESHOLD - SECOND)
    assert tick(db, config) == 0
    edge.send("plc.level", 5.0)  # a reading counts as much as a heartbeat
    clock.advance(THRESHOLD - SECOND)
    heartbeat(edge)
    clock.advance(THRESHOLD - SECOND)
    assert tick(db, config) == 0 and silent_alarms(db) == []
    clock.advance(2 * SECOND)
    assert tick(db, config) == 1 and len(silent_alarms(db)) == 1


def test_a_heartbeat_returns_the_alarm_and_a_new_silence_raises_it_again(db, config, edge):
    heartbeat(edge)
    clock.advance(THRESHOLD + SECOND)
    tick(db, config)
    [raised] = silent_alarms(db)
    clock.advance(timedelta(minutes=20))
    heartbeat(edge)
    back = alarm(db, raised.id)
    assert (back.state, back.active, back.rtn_at) == ("rtn_unack", False, gateway_row(db).last_seen_at)
    assert trail(db, raised.id) == ["raised", "process_started", "returned"]
    assert workflow_data(db, raised.instance_id)["returns"] != []  # the process heard the return
    heartbeat(edge)  # heard again while already normal: nothing more
    assert trail(db, raised.id) == ["raised", "process_started", "returned"]

    # Silent again before anyone closed the first: one open alarm per gateway, raised a second time (ISA-18.2, as a
    # point's condition or a device going offline), not a second alarm and a second process.
    clock.advance(THRESHOLD + SECOND)
    assert tick(db, config) == 1
    [again] = silent_alarms(db)
    assert (again.id, again.active, again.activations, again.state) == (raised.id, True, 2, "unack")
    assert trail(db, raised.id) == ["raised", "process_started", "returned", "reactivated"]
    edge.send("plc.level", 5.0)  # a reading returns it too
    assert alarm(db, raised.id).state == "rtn_unack"


def test_the_silence_alarm_goes_through_the_handling_process_and_after_closure_a_new_silence_is_a_new_alarm(
        db, config, registry, edge):
    heartbeat(edge)
    clock.advance(THRESHOLD + SECOND)
    tick(db, config)
    [raised] = silent_alarms(db)
    run = instance(db, raised.instance_id)
    assert (run.process_key, run.region_code, run.enterprise_id) == ("alarm_closure", "450102", raised.enterprise_id)
    data = workflow_data(db, raised.instance_id)
    assert (data["condition"], data["grade_name"], data["value"], data["limit"]) == \
        ("网关通信中断", "三级（黄色）", None, None)
    assert run_jobs(db, config, registry) == ["done"]  # the duty person and the county regulator are notified
    with db.session() as s:
        notes = {u: [n.title for n in s.scalars(select(Notification).join(User, User.id == Notification.user_id)
                                                 .where(User.username == u))] for u in ("qiye.hg001", "huang.jian")}
    assert all(any("三级（黄色）预警" in t and "网关通信中断" in t for t in titles) for titles in notes.values()), notes

    [ack] = open_tasks(db, raised.instance_id, "acknowledge")
    complete(db, config, "qiye.hg001", ack.id, {"ack_comment": "厂区停电，正在恢复"})
    assert alarm(db, raised.id).state == "ack"
    clock.advance(timedelta(minutes=40))
    heartbeat(edge)  # power back
    assert alarm(db, raised.id).state == "rtn"
    handle_and_confirm(db, config, raised.instance_id, "厂区10kV进线失电，网关及交换机断电",
                       "启用备用电源，人工巡检储罐液位，恢复后核对数据")
    closed = alarm(db, raised.id)
    assert (closed.state, closed.open_key) == ("closed", None)
    assert trail(db, raised.id) == ["raised", "process_started", "acknowledged", "returned", "closed"]

    clock.advance(THRESHOLD + SECOND)
    assert tick(db, config) == 1
    first, second = silent_alarms(db)
    assert first.id == raised.id and second.state == "unack" and second.instance_id not in (None, raised.instance_id)


def test_the_regulator_may_close_it_while_the_gateway_is_still_silent_and_it_is_not_raised_again(db, config, edge):
    heartbeat(edge)
    clock.advance(THRESHOLD + SECOND)
    tick(db, config)
    [raised] = silent_alarms(db)
    [ack] = open_tasks(db, raised.instance_id, "acknowledge")
    complete(db, config, "qiye.hg001", ack.id, {})
    handle_and_confirm(db, config, raised.instance_id, "网关主板故障", "已报修，期间人工巡检每2小时一次")
    assert alarm(db, raised.id).state == "closed"
    clock.advance(timedelta(days=2))
    assert tick(db, config) == 0 and len(silent_alarms(db)) == 1  # one alarm per silence, even once closed
    heartbeat(edge)  # repaired: watched again from now on
    assert trail(db, raised.id)[-1] == "closed" and gateway_row(db).silent_due_at is not None
    clock.advance(THRESHOLD + SECOND)
    assert tick(db, config) == 1 and len(silent_alarms(db)) == 2


def test_a_gateway_that_never_reported_raises_nothing(db, config, edge):
    assert gateway_row(db).silent_due_at is None
    clock.advance(timedelta(days=3))
    assert tick(db, config) == 0 and silent_alarms(db) == []


def test_a_disabled_gateway_raises_nothing(db, config, edge):
    heartbeat(edge)
    set_gateway(db, enabled=False)  # taken out of use: its silence is expected
    clock.advance(THRESHOLD * 10)
    assert tick(db, config) == 0 and silent_alarms(db) == []


def test_the_threshold_is_per_gateway_with_a_floor(db, config, edge):
    set_gateway(db, silent_after_s=900)  # an edge with heartbeat = 300 (tailings example): three intervals
    heartbeat(edge)
    clock.advance(THRESHOLD * 2)
    assert tick(db, config) == 0
    clock.advance(timedelta(seconds=900) - THRESHOLD * 2 + SECOND)
    assert tick(db, config) == 1
    assert raised_detail(db, silent_alarms(db)[0].id)["silent_after_s"] == 900

    dam = add_enterprise(db, "南宁某尾矿库有限公司", "尾矿库")
    token, _ = register(db, [], code="gw-dam", enterprise=dam)
    set_gateway(db, "gw-dam", silent_after_s=5)  # below the floor: the floor applies
    Edge(db, config, token, code="gw-dam").post([])
    clock.advance(timedelta(seconds=alarms.MIN_SILENT_AFTER_S) - SECOND)
    assert tick(db, config) == 0
    clock.advance(2 * SECOND)
    assert tick(db, config) == 1
    dam_alarm = silent_alarms(db)[-1]
    assert dam_alarm.enterprise_id == dam and dam_alarm.industry == "尾矿库"


def test_only_silent_gateways_raise_and_each_its_own_enterprise(db, config, edge):
    dam = add_enterprise(db, "南宁某尾矿库有限公司", "尾矿库")
    token, _ = register(db, [], code="gw-dam", enterprise=dam)
    other = Edge(db, config, token, code="gw-dam")
    heartbeat(edge)
    other.post([])
    for _ in range(6):  # gw-dam keeps reporting every minute, gw-01 says nothing
        clock.advance(timedelta(minutes=1))
        other.post([])
        tick(db, config)
    [raised] = silent_alarms(db)
    assert "gw-01" in raised.title and raised.enterprise_id != dam


def test_the_alarm_is_in_the_scope_of_the_plants_regulators_and_duty_person_only(db, config, edge):
    heartbeat(edge)
    clock.advance(THRESHOLD + SECOND)
    tick(db, config)
    [raised] = silent_alarms(db)
    with db.session() as s:
        for username in ("qiye.hg001", "huang.jian", "chen.jie", "admin"):
            user = load_user(s, username)
            assert [a.id for a in alarms.query(s, user, state="open")] == [raised.id], username
            assert alarms.get(s, user, raised.id).id == raised.id
        outsider = load_user(s, "zhao.min")  # 柳州
        assert alarms.query(s, outsider) == []
        with pytest.raises(NotFound):
            alarms.get(s, outsider, raised.id)
    [ack] = open_tasks(db, raised.instance_id, "acknowledge")
    with db.session() as s:
        assert s.get(type(ack), ack.id).assignee_id == load_user(s, "qiye.hg001").id


def test_the_migration_watches_gateways_that_reported_before_it(db, config, edge):
    heartbeat(edge)
    heard = gateway_row(db).last_seen_at
    register(db, [], code="gw-new")  # never reported
    db.dispose()
    schema.downgrade(config, "0008")
    schema.upgrade(config)
    assert gateway_row(db).silent_due_at == heard + THRESHOLD
    assert gateway_row(db, "gw-new").silent_due_at is None
    clock.advance(THRESHOLD + SECOND)
    assert tick(db, config) == 1 and len(silent_alarms(db)) == 1


# -- PostgreSQL: tick and ingest of one gateway at the same time -------------------------------------------------
def ingest(edge: Edge, after: Callable[[], None] = lambda: None) -> dict:
    """A heartbeat in its own request transaction; ``after`` runs before it commits."""
    with edge.db.transaction() as s:
        gateway = monitoring.gateway_by_token(s, edge.token)
        answer = telemetry.ingest(s, edge.config, gateway, {"gateway": edge.code, "readings": []})
        after()
    return answer


def ticked(db, config, after: Callable[[], None] = lambda: None) -> int:
    """A scheduler pass's alarm tick in its own transaction; ``after`` runs before it commits."""
    with db.transaction() as s:
        handled = alarms.tick(s, config)
        after()
    return handled


def held(first: Callable[[Callable[[], None]], object], then: Callable[[], object], db) -> list[object]:
    """``first`` keeps its transaction open (at its ``after`` hook) until ``then``, started meanwhile, waits on one of
    its locks; then it commits, and both results are returned."""
    reached, release = threading.Event(), threading.Event()

    def hold() -> None:
        reached.set()
        assert release.wait(30)

    def second() -> object:
        assert reached.wait(30)
        return then()

    return in_threads(lambda: first(hold), second, lambda: release_when_waiting(db, release))[:2]


@on_postgres
@pytest.mark.postgres
def test_a_tick_waits_for_a_heartbeat_in_flight_and_raises_nothing(db, config, edge):
    heartbeat(edge)
    clock.advance(THRESHOLD + SECOND)  # due, but the gateway is being heard right now

    answer, handled = held(lambda hold: ingest(edge, after=hold), lambda: ticked(db, config), db)

    assert answer == {"accepted": [], "duplicates": [], "unknown": []}
    assert handled == 0 and silent_alarms(db) == []
    assert gateway_row(db).silent_due_at > clock.now()


@on_postgres
@pytest.mark.postgres
def test_a_heartbeat_waits_for_the_tick_raising_the_alarm_and_returns_it(db, config, edge):
    heartbeat(edge)
    clock.advance(THRESHOLD + SECOND)

    handled, answer = held(lambda hold: ticked(db, config, after=hold), lambda: ingest(edge), db)

    assert handled == 1 and answer["accepted"] == []
    [raised] = silent_alarms(db)
    assert (raised.state, raised.active) == ("rtn_unack", False)
    assert trail(db, raised.id) == ["raised", "process_started", "returned"]
    assert gateway_row(db).silent_due_at is not None


@on_postgres
@pytest.mark.postgres
def test_ticks_and_heartbeats_at_the_same_moment_raise_at_most_one_alarm_per_silence(db, config, edge):
    heartbeat(edge)
    for _ in range(5):
        clock.advance(THRESHOLD + SECOND)
        results = in_threads(lambda: ticked(db, config), lambda: ticked(db, config), lambda: ticked(db, config),
                             together=True)
        assert not any(isinstance(r, Exception) for r in results), results
        assert sorted(results) == [0, 0, 1]
        results = in_threads(lambda: ticked(db, config), lambda: ingest(edge), lambda: ticked(db, config),
                             together=True)
        assert not any(isinstance(r, Exception) for r in results), results
    [raised] = silent_alarms(db)  # one alarm, raised and returned five times
    assert (raised.activations, raised.active) == (5, False)
    kinds = trail(db, raised.id)
    assert (kinds.count("raised") + kinds.count("reactivated"), kinds.count("returned")) == (5, 5)


# -- the threshold and the switch, set by a monitoring administrator ----------------------------------------------
def update(db, username: str, changes: dict, code: str = "gw-01") -> Gateway:
    with db.transaction() as s:
        return monitoring.update_gateway(s, load_user(s, username), gateway_row(db, code).id, changes)


def test_an_administrator_sets_the_threshold_and_the_due_time_follows_the_last_contact(db, config, edge):
    heartbeat(edge)
    heard = gateway_row(db).last_seen_at
    update(db, "admin", {"silent_after_s": 120})
    assert (gateway_row(db).silent_after_s, gateway_row(db).silent_due_at) == (120, heard + timedelta(seconds=120))
    clock.advance(timedelta(seconds=121))
    assert tick(db, config) == 1
    assert raised_detail(db, silent_alarms(db)[0].id)["silent_after_s"] == 120
    update(db, "admin", {"silent_after_s": None})  # back to the platform default
    assert gateway_row(db).silent_after_s is None
    with db.session() as s:
        kinds = [(e.kind, e.target, e.detail["changes"]) for e in s.scalars(
            select(SystemEvent).where(SystemEvent.kind == "gateway_updated").order_by(SystemEvent.seq))]
    assert kinds == [("gateway_updated", "gw-01", {"silent_after_s": {"from": None, "to": 120}}),
                     ("gateway_updated", "gw-01", {"silent_after_s": {"from": 120, "to": None}})]


def test_a_disabled_gateway_is_refused_and_not_watched_and_enabled_again_has_its_full_threshold(db, config, edge):
    heartbeat(edge)
    update(db, "admin", {"enabled": False, "name": "鑫安化工一号网关"})
    with pytest.raises(AuthenticationFailed) as refused:
        heartbeat(edge)
    assert refused.value.code == "gateway_token_invalid"
    clock.advance(THRESHOLD * 3)
    assert tick(db, config) == 0 and silent_alarms(db) == []
    before = clock.now()
    update(db, "admin", {"enabled": True})
    assert before + THRESHOLD <= gateway_row(db).silent_due_at <= clock.now() + THRESHOLD
    clock.advance(THRESHOLD - SECOND)
    assert tick(db, config) == 0
    clock.advance(2 * SECOND)
    assert tick(db, config) == 1
    assert "鑫安化工一号网关（gw-01）" in silent_alarms(db)[0].title


@pytest.mark.parametrize(("changes", "field", "code"), [
    ({"silent_after_s": 59}, "silent_after_s", "minimum"),
    ({"silent_after_s": 7 * 24 * 3600 + 1}, "silent_after_s", "maximum"),
    ({"silent_after_s": "300"}, "silent_after_s", "type"),
    ({"enabled": "yes"}, "enabled", "type"),
    ({"name": " "}, "name", "maxLength"),
])
def test_bad_gateway_settings_are_refused_field_by_field_and_change_nothing(db, config, edge, changes, field, code):
    before = gateway_row(db)
    with pytest.raises(ValidationFailed) as refused:
        update(db, "admin", changes)
    assert [e["code"] for e in refused.value.errors[field]] == [code]
    after = gateway_row(db)
    assert (after.name, after.enabled, after.silent_after_s) == (before.name, before.enabled, before.silent_after_s)


def test_only_monitoring_administrators_change_gateways_and_an_unknown_one_is_not_found(db, config, edge):
    with pytest.raises(Forbidden):
        update(db, "qiye.hg001", {"enabled": False})
    assert gateway_row(db).enabled
    with db.transaction() as s, pytest.raises(NotFound):
        monitoring.update_gateway(s, load_user(s, "admin"), 999_999, {"enabled": False})
    with db.session() as s:
        assert monitoring.gateway(s, load_user(s, "admin"), gateway_row(db).id).code == gateway_row(db).code
        with pytest.raises(Forbidden):
            monitoring.gateway(s, load_user(s, "huang.jian"), gateway_row(db).id)
        with pytest.raises(Forbidden):
            monitoring.gateways(s, load_user(s, "huang.jian"))
        with pytest.raises(NotFound):
            monitoring.gateway(s, load_user(s, "admin"), 999_999)
