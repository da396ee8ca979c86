"""processes/alarm_closure (监测预警闭环处置): every path, with the stored state round-tripping after each step.

An alarm starts it: notify the duty person and the county regulator → 企业确认 (acknowledges the alarm, and
acknowledging the alarm completes it) → 企业处置反馈 (cause, measures, photos) → 监管确认 or 退回 → closed (the alarm
too). Reminders repeat per grade while unacknowledged or unhandled; past the grade's deadline it escalates to the
city, then the province. A return to normal arrives as a message and is recorded; closure still needs the regulator.
"""
from __future__ import annotations

import io
from datetime import timedelta

import pytest
from sqlalchemy import select

from engine import alarms, audit, clock, files, jobs
from engine.errors import Forbidden
from engine.models import Notification, User
from tests.engine.alarm_helpers import LEVEL, Edge, alarm, open_alarms, register, trail
from tests.engine.helpers import (
    assert_state_round_trips,
    assignee,
    claim,
    complete,
    events,
    instance,
    load_user,
    open_tasks,
    run_jobs,
    workflow_data,
)


class Closure:
    """One alarm and its process, driven step by step."""

    def __init__(self, db, config, registry, value: float = 8.5):
        self.db, self.config, self.registry = db, config, registry
        token, ids = register(db, [LEVEL])
        self.edge, self.point = Edge(db, config, token), ids["plc.level"]
        self.edge.send("plc.level", value)
        [self.alarm] = open_alarms(db, self.point)
        self.id = self.alarm.instance_id
        self.checked()

    def checked(self) -> None:
        assert_state_round_trips(self.db, self.id)

    def task(self, bpmn_id: str):
        [found] = open_tasks(self.db, self.id, bpmn_id)
        return found

    def open(self) -> list[str]:
        return sorted(t.bpmn_id for t in open_tasks(self.db, self.id))

    def complete(self, username: str, bpmn_id: str, data: dict) -> None:
        complete(self.db, self.config, username, self.task(bpmn_id).id, data)
        self.checked()

    def acknowledge(self, username: str = "qiye.hg001") -> None:
        self.complete(username, "acknowledge", {"ack_comment": "已收到，正在核实"})

    def photo(self) -> str:
        with self.db.transaction() as s:
            return files.store(s, self.config, load_user(s, "qiye.hg001"), "现场.png", "image/png",
                               io.BytesIO(b"\x89PNG\r\n\x1a\n photo")).id

    def handle(self) -> None:
        self.complete("qiye.hg001", "handle", {"cause": "进料阀门内漏导致液位上升",
                                               "measures": "关闭进料阀，倒罐至T102", "photos": [self.photo()]})

    def confirm(self, decision: str = "confirm", opinion: str = "处置到位", username: str = "huang.jian") -> None:
        claim(self.db, self.config, username, self.task("confirm").id)
        self.complete(username, "confirm", {"confirm_decision": decision, "opinion": opinion})

    def jobs(self) -> list[str]:
        outcomes = run_jobs(self.db, self.config, self.registry)
        self.checked()
        return outcomes

    def timers(self, after: timedelta) -> int:
        clock.advance(after)
        fired = jobs.fire_due_timers(self.db, self.config)
        self.checked()
        return fired

    @property
    def state(self) -> str:
        return alarm(self.db, self.alarm.id).state

    def notes(self, username: str, category: str | None = None) -> list[Notification]:
        with self.db.session() as s:
            uid = s.scalar(select(User.id).where(User.username == username))
            stmt = select(Notification).where(Notification.user_id == uid)
            if category:
                stmt = stmt.where(Notification.category == category)
            return list(s.scalars(stmt.order_by(Notification.id)))


@pytest.fixture
def closure(db, config, registry):
    return Closure(db, config, registry)


def test_the_whole_loop_closes_the_alarm(closure, db, config):
    assert instance(db, closure.id).region_code == "450102"  # the enterprise's region and scope, not the starter's
    assert closure.open() == ["acknowledge"] and assignee(db, closure.task("acknowledge")) == "qiye.hg001"
    assert closure.jobs() == ["done"]  # the notification
    assert [n.category for n in closure.notes("qiye.hg001")] == ["alarm"]
    assert "三级（黄色）预警" in closure.notes("huang.jian", "alarm")[0].title
    closure.acknowledge()
    assert closure.state == "ack" and alarm(db, closure.alarm.id).acked_by_id is not None
    assert closure.open() == ["handle"]
    closure.handle()
    assert closure.open() == ["confirm"]
    with pytest.raises(Forbidden):
        claim(db, config, "qiye.hg001", closure.task("confirm").id)  # the enterprise cannot confirm itself
    closure.confirm()
    assert instance(db, closure.id).status == "completed" and closure.open() == []
    closed = alarm(db, closure.alarm.id)
    assert closed.state == "closed" and closed.open_key is None
    with db.session() as s:
        assert s.get(User, closed.closed_by_id).username == "huang.jian"
        assert audit.verify_instance(s, closure.id) is None  # the audit chain is intact
    assert trail(db, closure.alarm.id) == ["raised", "process_started", "acknowledged", "closed"]
    data = workflow_data(db, closure.id)
    assert data["confirm_decision"] == "confirm" and len(data["photos"]) == 1


def test_the_regulator_sends_the_handling_back(closure, db):
    closure.acknowledge()
    closure.handle()
    closure.confirm("return", "原因分析不充分，请补充")
    assert closure.open() == ["handle"] and closure.state == "ack"
    closure.handle()
    closure.confirm()
    assert closure.state == "closed"
    names = [e.task_name for e in events(db, closure.id, "task_completed")]
    assert names == ["企业确认", "企业处置反馈", "监管确认", "企业处置反馈", "监管确认"]


def test_acknowledging_the_alarm_completes_the_task(closure, db, config):
    with db.transaction() as s, pytest.raises(Forbidden):
        alarms.acknowledge(s, config, load_user(s, "huang.jian"), closure.alarm.id)  # not the task holder
    with db.transaction() as s:
        alarms.acknowledge(s, config, load_user(s, "qiye.hg001"), closure.alarm.id, "值班室已知悉")
    closure.checked()
    assert closure.state == "ack" and closure.open() == ["handle"]
    assert trail(db, closure.alarm.id).count("acknowledged") == 1


def test_return_to_normal_is_recorded_but_closure_needs_the_regulator(closure, db):
    closure.edge.send("plc.level", 6.0)
    assert closure.state == "rtn_unack"
    [received] = events(db, closure.id, "message_received")
    assert received.detail["message"] == "alarm_returned"
    assert closure.open() == ["acknowledge"] and instance(db, closure.id).status == "running"
    closure.acknowledge()
    assert closure.state == "rtn"
    closure.edge.send("plc.level", 8.5, 6.0)  # again: still one alarm, the process hears the second return too
    assert len(events(db, closure.id, "message_received")) == 2
    closure.handle()
    closure.confirm()
    assert closure.state == "closed"
    returns = [e.detail["payload"] for e in events(db, closure.id, "message_received")]
    assert [r["alarm_id"] for r in returns] == [closure.alarm.id] * 2 and all(r["returned_at"] for r in returns)


def test_reminders_repeat_per_grade_while_unacknowledged_then_unhandled(closure, db):
    closure.jobs()
    for _ in range(2):  # grade 3: every hour
        assert closure.timers(timedelta(hours=1, seconds=1)) == 1
        assert closure.jobs() == ["done"]
    assert len(closure.notes("qiye.hg001", "reminder")) == 2
    closure.acknowledge()
    assert closure.timers(timedelta(minutes=30)) == 0
    assert closure.timers(timedelta(minutes=31)) == 1  # the handling reminder's own hour
    closure.jobs()
    reminders = closure.notes("qiye.hg001", "reminder")
    assert len(reminders) == 3 and "预警提醒" in reminders[-1].title
    closure.handle()
    closure.timers(timedelta(hours=2))
    closure.jobs()
    assert len(closure.notes("qiye.hg001", "reminder")) == 3  # handled: no more reminders


def test_escalation_to_the_city_then_the_province(closure, db):
    closure.jobs()
    closure.acknowledge()
    clock.advance(timedelta(hours=7))
    jobs.fire_due_timers(db, closure.config)  # hourly handling reminders only
    closure.jobs()
    assert closure.notes("chen.jie", "urge") == []
    clock.advance(timedelta(hours=1, minutes=1))  # grade 3: 8 hours
    jobs.fire_due_timers(db, closure.config)
    closure.jobs()
    closure.checked()
    assert [n.title for n in closure.notes("chen.jie", "urge")] == ["【预警升级】" + closure.alarm.title]
    assert closure.notes("zheng.hui", "urge") == []
    clock.advance(timedelta(hours=8, minutes=1))
    jobs.fire_due_timers(db, closure.config)
    closure.jobs()
    assert len(closure.notes("zheng.hui", "urge")) == 1
    closure.handle()
    closure.confirm()
    assert instance(db, closure.id).status == "completed" and instance(db, closure.id).next_timer_at is None


def test_grade_one_is_reminded_every_ten_minutes(db, config, registry):
    token, _ = register(db, [LEVEL])
    Edge(db, config, token).send("plc.level", 9.5)  # hihi (grade 1) and hi (grade 3): one process each
    by_condition = {a.condition: a for a in open_alarms(db)}
    assert set(by_condition) == {"hi", "hihi"}
    data = workflow_data(db, by_condition["hihi"].instance_id)
    assert (data["grade"], data["remind_cycle"], data["escalate_after"]) == (1, "R/PT10M", "PT30M")
    clock.advance(timedelta(minutes=10, seconds=1))
    assert jobs.fire_due_timers(db, config) == 1  # only the grade 1 process is due yet
    assert run_jobs(db, config, registry) == ["done", "done", "done"]  # two notifications and the reminder


def test_an_enterprise_without_a_duty_person_gets_no_process(db, config):
    with db.transaction() as s:
        from engine.models import Enterprise
        s.scalar(select(Enterprise)).duty_user_id = None
    token, _ = register(db, [LEVEL])
    Edge(db, config, token).send("plc.level", 8.5)
    [raised] = open_alarms(db)
    assert raised.instance_id is None and trail(db, raised.id) == ["raised", "process_not_started"]
