"""engine/alarms: the ISA-18.2 state machine on ingest: each transition, deadband, on/off delays against chattering
(with the engine clock), one open alarm per point and condition, shelving with expiry, suppression and out of
service, device-offline alarms, the GB 51108 aggregation rule stored as data, and the KPI figures."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from engine import alarms, clock
from engine.errors import Conflict, NotFound, ValidationFailed
from engine.models.monitoring import AggregationRule
from tests.engine.alarm_helpers import (
    LEVEL,
    Edge,
    add_enterprise,
    alarm,
    all_alarms,
    open_alarms,
    point,
    point_events,
    register,
    tick,
    trail,
    update_point,
)
from tests.engine.helpers import load_user


@pytest.fixture
def plant(db, config):
    """The demo plant's gateway, one level point: hi 8 m grade 3, hihi 9 m grade 1, lo 1 m grade 4, deadband 0.5."""
    token, ids = register(db, [LEVEL])
    return Edge(db, config, token), ids["plc.level"]


def act(db, username, fn, *args, **kw):
    with db.transaction() as s:
        return fn(s, load_user(s, username), *args, **kw)


def test_a_reading_over_the_limit_raises_one_unacknowledged_alarm_with_a_process(db, plant):
    edge, pid = plant
    edge.send("plc.level", 5.0, 8.2, 8.4, 8.6)
    [raised] = open_alarms(db, pid)
    assert (raised.condition, raised.grade, raised.state, raised.active, raised.value) == ("hi", 3, "unack", True, 8.2)
    assert raised.region_code == "450102" and raised.instance_id is not None
    assert trail(db, raised.id) == ["raised", "process_started"]
    assert "三级（黄色）" in raised.title and "T101液位" in raised.title


def test_each_transition_unack_ack_rtn_and_rtn_unack(db, config, plant):
    edge, pid = plant
    edge.send("plc.level", 8.5)
    first = open_alarms(db, pid)[0]
    with db.transaction() as s:
        alarms.acknowledge(s, config, load_user(s, "qiye.hg001"), first.id, "已知悉")
    assert alarm(db, first.id).state == "ack"
    edge.send("plc.level", 7.0)  # clear of 8 - 0.5
    returned = alarm(db, first.id)
    assert (returned.state, returned.active, returned.rtn_at is not None) == ("rtn", False, True)
    with pytest.raises(Conflict), db.transaction() as s:
        alarms.acknowledge(s, config, load_user(s, "qiye.hg001"), first.id)

    update_point(db, pid, lo=None, lo_grade=None)
    edge.send("plc.level", 9.5)  # hihi: a second condition, its own alarm (hi re-activates)
    conditions = {a.condition: a for a in open_alarms(db, pid)}
    assert set(conditions) == {"hi", "hihi"} and conditions["hi"].id == first.id
    assert (conditions["hi"].state, conditions["hi"].activations) == ("ack", 2)  # acknowledged stays acknowledged
    edge.send("plc.level", 5.0)
    hihi = alarm(db, conditions["hihi"].id)
    assert hihi.state == "rtn_unack"  # returned before anyone acknowledged
    with db.transaction() as s:
        alarms.acknowledge(s, config, load_user(s, "qiye.hg001"), hihi.id)
    assert alarm(db, hihi.id).state == "rtn"
    assert trail(db, hihi.id) == ["raised", "process_started", "returned", "acknowledged"]
    assert trail(db, first.id)[:5] == ["raised", "process_started", "acknowledged", "returned", "reactivated"]


def test_low_limits_and_the_deadband_on_return(db, plant):
    edge, pid = plant
    edge.send("plc.level", 0.8)
    [low] = open_alarms(db, pid)
    assert (low.condition, low.grade) == ("lo", 4)
    edge.send("plc.level", 1.2, 1.4, 1.5)  # inside the deadband (1 + 0.5): still active
    assert alarm(db, low.id).active
    edge.send("plc.level", 1.6)
    assert not alarm(db, low.id).active and alarm(db, low.id).state == "rtn_unack"


def test_on_delay_stops_chattering_and_tick_raises_without_a_new_reading(db, config, plant):
    edge, pid = plant
    update_point(db, pid, on_delay_s=30)
    edge.send("plc.level", 8.5)
    clock.advance(timedelta(seconds=10))
    edge.send("plc.level", 7.9)  # a dip below the limit: the pending raise starts over
    clock.advance(timedelta(seconds=25))
    edge.send("plc.level", 8.5)
    clock.advance(timedelta(seconds=25))
    assert tick(db, config) == 0 and open_alarms(db, pid) == []  # only 25 s since it came back
    clock.advance(timedelta(seconds=6))
    assert tick(db, config) == 1
    [raised] = open_alarms(db, pid)
    assert raised.condition == "hi" and point(db, pid).eval_due_at is None


def test_off_delay_holds_the_alarm_through_brief_dips(db, config, plant):
    edge, pid = plant
    update_point(db, pid, off_delay_s=60)
    edge.send("plc.level", 8.5)
    [raised] = open_alarms(db, pid)
    edge.send("plc.level", 7.0)
    clock.advance(timedelta(seconds=30))
    edge.send("plc.level", 8.3)  # back over the limit within the off-delay: never returned
    clock.advance(timedelta(seconds=30))
    edge.send("plc.level", 7.0)
    clock.advance(timedelta(seconds=59))
    tick(db, config)
    assert alarm(db, raised.id).active
    clock.advance(timedelta(seconds=2))
    tick(db, config)
    assert alarm(db, raised.id).state == "rtn_unack"
    assert trail(db, raised.id).count("returned") == 1


def test_one_open_alarm_per_point_and_condition(db, plant):
    edge, pid = plant
    for _ in range(5):
        edge.send("plc.level", 8.5, 7.0)
    hi = [a for a in all_alarms(db) if a.condition == "hi"]
    assert len(hi) == 1 and hi[0].activations == 5 and hi[0].state == "rtn_unack"


def test_bad_quality_and_stale_seqs_are_not_evaluated(db, plant):
    edge, pid = plant
    edge.post([edge.reading("plc.level", 9.9, quality="bad")])
    assert open_alarms(db, pid) == []
    edge.post([edge.reading("plc.level", 5.0, seq=10)])
    edge.post([edge.reading("plc.level", 9.9, seq=3, historical=True)])  # older than what was evaluated
    assert open_alarms(db, pid) == [] and point(db, pid).evaluated_seq == 10


def test_shelving_blocks_new_alarms_until_it_expires(db, config, plant):
    edge, pid = plant
    until = clock.now() + timedelta(hours=1)
    with pytest.raises(ValidationFailed):
        act(db, "qiye.hg001", alarms.shelve, pid, clock.now() + timedelta(days=8), "检修")
    with pytest.raises(NotFound):
        act(db, "zhao.min", alarms.shelve, pid, until, "检修")  # 柳州 does not see a 兴宁区 point
    act(db, "qiye.hg001", alarms.shelve, pid, until, "液位计标定")
    edge.send("plc.level", 8.5, 8.6)
    assert open_alarms(db, pid) == []
    assert [e.kind for e in point_events(db, pid)] == ["shelved", "raise_blocked"]  # blocked once, not per reading
    clock.advance(timedelta(hours=1, seconds=1))
    tick(db, config)  # the shelve ends and the condition still holds: the alarm is raised now
    [raised] = open_alarms(db, pid)
    assert raised.condition == "hi"
    assert [e.kind for e in point_events(db, pid)][:3] == ["shelved", "raise_blocked", "shelve_expired"]
    assert point(db, pid).shelved_until is None


def test_suppressed_and_out_of_service_points_raise_nothing(db, config, plant):
    edge, pid = plant
    act(db, "huang.jian", alarms.set_mode, pid, "out_of_service", True, "更换液位计")
    edge.send("plc.level", 8.5)
    assert open_alarms(db, pid) == []
    act(db, "huang.jian", alarms.set_mode, pid, "out_of_service", False, "已恢复")
    act(db, "admin", alarms.set_mode, pid, "suppressed", True, "停车检修期间按设计抑制")
    tick(db, config)
    edge.send("plc.level", 8.6)
    assert open_alarms(db, pid) == []
    act(db, "admin", alarms.set_mode, pid, "suppressed", False, "开车")
    tick(db, config)
    assert [a.condition for a in open_alarms(db, pid)] == ["hi"]
    kinds = [e.kind for e in point_events(db, pid)]
    assert kinds[:4] == ["out_of_service_on", "raise_blocked", "out_of_service_off", "suppressed_on"]


def test_device_offline_raises_and_online_returns(db, plant):
    edge, pid = plant
    edge.post([], devices={"plc": "online"})
    assert open_alarms(db) == []
    edge.post([], devices={"plc": "offline"})
    [offline] = open_alarms(db)
    assert (offline.kind, offline.condition, offline.grade, offline.state) == ("offline", "offline", 4, "unack")
    edge.post([], devices={"plc": "offline"})  # unchanged: nothing new
    assert len(all_alarms(db)) == 1
    edge.post([], devices={"plc": "online"})
    assert alarm(db, offline.id).state == "rtn_unack"


def test_tailings_dam_aggregation_is_data(db, config):
    """GB 51108: 4 blue points of one item make the item yellow, 3 yellow orange, 2 orange red."""
    dam = add_enterprise(db, "南宁某尾矿库有限公司", "尾矿库")
    points = [{"name": f"gnss.p{i}", "hi": 10.0, "hi_grade": 4, "hihi": 20.0, "hihi_grade": 3,
               "item_code": "displacement", "item_name": "坝体位移"} for i in range(1, 5)]
    token, ids = register(db, points, code="gw-dam", enterprise=dam)
    edge = Edge(db, config, token, code="gw-dam")
    for name in ("gnss.p1", "gnss.p2", "gnss.p3"):
        edge.send(name, 12.0)
    assert [a.kind for a in open_alarms(db)] == ["limit"] * 3
    edge.send("gnss.p4", 12.0)
    item_alarm = next(a for a in open_alarms(db) if a.kind == "aggregate")
    assert (item_alarm.grade, item_alarm.item_id is not None, item_alarm.instance_id is not None) == (3, True, True)
    for name in ("gnss.p1", "gnss.p2", "gnss.p3"):
        edge.send(name, 25.0)  # three yellow points: orange
    assert alarm(db, item_alarm.id).grade == 2
    assert "grade_raised" in trail(db, item_alarm.id)
    for name in ("gnss.p1", "gnss.p2", "gnss.p3", "gnss.p4"):
        edge.send(name, 0.0)
    assert alarm(db, item_alarm.id).state == "rtn_unack"

    with db.transaction() as s:  # switching the rule off is a data change, no code
        for rule in s.scalars(select(AggregationRule)):
            rule.enabled = False
    for name in ("gnss.p1", "gnss.p2", "gnss.p3", "gnss.p4"):
        edge.send(name, 12.0)
    assert alarm(db, item_alarm.id).state == "rtn_unack"  # not re-activated


def test_aggregation_rules_do_not_apply_to_other_industries(db, config):
    points = [{"name": f"gas.p{i}", "hi": 10.0, "hi_grade": 4, "item_code": "gas"} for i in range(1, 5)]
    token, _ = register(db, points, code="gw-gas")
    edge = Edge(db, config, token, code="gw-gas")
    for i in range(1, 5):
        edge.send(f"gas.p{i}", 11.0)
    assert [a.kind for a in open_alarms(db)] == ["limit"] * 4


def test_kpis_flood_chattering_stale_and_mean_times(db, config, plant):
    edge, pid = plant
    # Start just after a 10-minute boundary, so both alarms (2 minutes apart) fall in one flood window.
    clock.advance(timedelta(seconds=600 - clock.now().timestamp() % 600 + 1))
    start = clock.now()
    for _ in range(3):
        edge.send("plc.level", 8.5, 7.0)  # three activations within a minute: chattering
    [hi] = [a for a in all_alarms(db) if a.condition == "hi"]
    clock.advance(timedelta(minutes=2))
    with db.transaction() as s:
        alarms.acknowledge(s, config, load_user(s, "qiye.hg001"), hi.id)
    edge.send("plc.level", 9.5)
    clock.advance(timedelta(hours=25))
    with db.session() as s:
        [row] = alarms.kpis(s, load_user(s, "chen.jie"), start - timedelta(minutes=1), clock.now())
        assert alarms.kpis(s, load_user(s, "zhao.min"), start - timedelta(minutes=1), clock.now()) == []
        [region] = alarms.kpis(s, load_user(s, "admin"), start - timedelta(minutes=1), clock.now(), by="region")
    assert (row["alarms"], row["chattering"], row["stale"], row["peak_per_10min"]) == (2, 1, 2, 2)  # hi and hihi
    assert row["mtta_s"] == pytest.approx(120, abs=5) and row["mttc_s"] is None
    assert region["key"] == "450102" and region["name"] == "兴宁区"
