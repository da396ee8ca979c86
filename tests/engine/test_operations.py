"""engine.operations: every approval operation on small test processes, its audit event, and each refusal
(with its error and code) leaving the instance exactly as it was.

The processes are built here with the task configuration of engine/taskconfig.py as BPMN extension
properties. The initiator is zhang.wei (厅办公室 clerk) unless a test says otherwise.
"""
from __future__ import annotations

import hashlib
import os
import re
import threading
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from engine import audit, calendar, clock, instances, notifications, operations, schema, tasks
from engine.errors import Conflict, Forbidden, NotFound, ValidationFailed
from engine.models import (
    Holiday,
    HumanTask,
    InstanceEvent,
    Notification,
    OpinionPhrase,
    Signature,
    TaskCandidate,
    TaskCopy,
    User,
)
from engine.taskconfig import TaskConfig
from tests.concurrency import in_threads, release_when_waiting
from tests.engine.helpers import (
    assert_state_round_trips,
    bpmn,
    claim,
    data_url,
    deploy_bundle,
    event_count,
    events,
    flows,
    instance,
    load_user,
    only_task,
    open_tasks,
    png,
    start,
    view,
    workflow_data,
)

KEY = "ops"
ALL = "approve,reject,return,transfer,delegate,addSigner,cc,urge"
STATUS = {Conflict: 409, Forbidden: 403, ValidationFailed: 422, NotFound: 404}
NAMES = {"zhang.wei": "张伟", "li.na": "李娜", "wang.fang": "王芳", "zhou.qiang": "周强", "liu.yang": "刘洋",
         "chen.jie": "陈杰", "admin": "系统管理员"}
STEP_NAMES = {"a": "申请", "b": "审核", "c": "审批", "p1": "分支一", "p1b": "分支一复核", "p2": "分支二",
              "s1": "子流程经办", "s2": "子流程审核"}


# -- building test processes -------------------------------------------------------------------------------
def task(task_id: str, assignee: str = "initiator", rule: str = "assignee", **props: str) -> str:
    """A user task on the note form; ``props`` are taskconfig properties (buttons="approve,return", ...)."""
    extra = "".join(f'<spiffworkflow:property name="{k}" value="{v}"/>' for k, v in props.items())
    return (f'<bpmn:userTask id="{task_id}" name="{STEP_NAMES.get(task_id, task_id)}"><bpmn:extensionElements>'
            f"<spiffworkflow:properties>"
            f'<spiffworkflow:property name="formJsonSchemaFilename" value="note.schema.json"/>'
            f"<spiffworkflow:property name=\"{rule}\" value='{assignee}'/>{extra}"
            f"</spiffworkflow:properties></bpmn:extensionElements></bpmn:userTask>")


def _ids(*elements: str) -> list[str]:
    return [re.match(r'<bpmn:\w+ id="([^"]+)"', e).group(1) for e in elements]


def deploy_chain(db, *steps: str, key: str = KEY, **options) -> None:
    """start → steps, one after the other → end."""
    ids = ["start", *_ids(*steps), "end"]
    body = ('<bpmn:startEvent id="start"/>' + "".join(steps) + '<bpmn:endEvent id="end"/>'
            + flows(*zip(ids, ids[1:], strict=False)))
    deploy_bundle(db, key, bpmn(key, body), **options)


def abc(db, a: dict | None = None, b: dict | None = None, c: dict | None = None, **options) -> None:
    """a (the initiator) → b (li.na) → c (liu.yang), each offering every operation unless told otherwise."""
    deploy_chain(db, task("a", **{"buttons": ALL, **(a or {})}),
                 task("b", 'user("li.na")', **{"buttons": ALL, **(b or {})}),
                 task("c", 'user("liu.yang")', **{"buttons": ALL, **(c or {})}), **options)


def deploy_parallel(db, **p1_props: str) -> None:
    """a → fork → (p1 li.na → p1b liu.yang | p2 wang.fang) → join → c zhou.qiang."""
    body = ('<bpmn:startEvent id="start"/>' + task("a", buttons=ALL)
            + '<bpmn:parallelGateway id="fork"/>'
            + task("p1", 'user("li.na")', **{"buttons": ALL, **p1_props}) + task("p1b", 'user("liu.yang")', buttons=ALL)
            + task("p2", 'user("wang.fang")', buttons=ALL)
            + '<bpmn:parallelGateway id="join"/>' + task("c", 'user("zhou.qiang")', buttons=ALL)
            + '<bpmn:endEvent id="end"/>'
            + flows(("start", "a"), ("a", "fork"), ("fork", "p1"), ("p1", "p1b"), ("p1b", "join"), ("fork", "p2"),
                    ("p2", "join"), ("join", "c"), ("c", "end")))
    deploy_bundle(db, KEY, bpmn(KEY, body))


# -- running operations ----------------------------------------------------------------------------------
def act(db, config, username: str, operation, *args, **kw):
    """Run an engine operation as ``username`` in its own transaction, as one web request does."""
    with db.transaction() as s:
        return operation(s, config, load_user(s, username), *args, **kw)


def approve(db, config, username: str, task_id: str, data: dict | None = None, **kw):
    return act(db, config, username, operations.approve, task_id, data or {}, **kw)


def snapshot(db, instance_id: int) -> tuple:
    """What a refused operation must leave as it was: the instance row and state, the trail, every task row,
    copies, signatures and notifications."""
    row = instance(db, instance_id, with_state=True)
    with db.session() as s:
        rows = s.execute(select(HumanTask.id, HumanTask.state, HumanTask.assignee_id, HumanTask.owner_id,
                                HumanTask.blocked, HumanTask.pending, HumanTask.completed_by_id)
                         .where(HumanTask.instance_id == instance_id).order_by(HumanTask.id)).all()
        counts = [s.scalar(select(func.count()).select_from(model).where(model.instance_id == instance_id))
                  for model in (TaskCopy, Signature, Notification)]
    return row.status, row.state, row.lock_version, event_count(db, instance_id), [tuple(r) for r in rows], counts


def refused(db, instance_id: int, error: type, code: str, call) -> Exception:
    """``call()`` raises ``error`` with ``code`` (and its HTTP status), and nothing changed."""
    before = snapshot(db, instance_id)
    with pytest.raises(error) as err:
        call()
    assert (err.value.code, err.value.status) == (code, STATUS[error]), err.value.message
    assert snapshot(db, instance_id) == before
    return err.value


def task_row(db, task_id: str) -> HumanTask:
    with db.session() as s:
        return s.get(HumanTask, task_id)


def username_of(db, user_id: int | None) -> str | None:
    if user_id is None:
        return None
    with db.session() as s:
        return s.get(User, user_id).username


def opened(db, instance_id: int) -> list[tuple[str, str | None]]:
    """(step, assignee) of every open task, main tasks and added signers alike."""
    with db.session() as s:
        rows = s.scalars(select(HumanTask).where(HumanTask.instance_id == instance_id, HumanTask.state == "open")
                         .order_by(HumanTask.created_at, HumanTask.id)).all()
    return [(t.bpmn_id if t.kind == "task" else f"{t.bpmn_id}+{t.sign_position}", username_of(db, t.assignee_id))
            for t in rows]


def trail(db, instance_id: int, *kinds: str) -> list[tuple[str, str, str | None, str | None]]:
    """(kind, actor, step, opinion) of the instance's events of these kinds, in order."""
    return [(e.kind, e.actor_name, e.bpmn_id, e.opinion) for e in events(db, instance_id)
            if not kinds or e.kind in kinds]


def last(db, instance_id: int, kind: str):
    return events(db, instance_id, kind)[-1]


def chain_intact(db, instance_id: int) -> bool:
    with db.session() as s:
        return audit.verify_instance(s, instance_id) is None


def user_id(db, username: str) -> int:
    with db.session() as s:
        return load_user(s, username).id


def notes_of(db, username: str) -> list[Notification]:
    with db.session() as s:
        items, total = notifications.for_user(s, load_user(s, username), per_page=100)
    assert total == len(items)
    return items


def at(db, config, step: str, instance_id: int | None = None, **abc_options) -> tuple[int, str]:
    """An abc instance whose earlier steps are approved, waiting at ``step``: (instance id, task id)."""
    if instance_id is None:
        abc(db, **abc_options)
        instance_id = start(db, config, "zhang.wei", KEY)
    for done, who in (("a", "zhang.wei"), ("b", "li.na")):
        if done == step:
            break
        approve(db, config, who, only_task(db, instance_id, done).id, {"note": f"{done} 的意见"})
    return instance_id, only_task(db, instance_id, step).id


# -- approve and reject ---------------------------------------------------------------------------------
def test_approve_records_decision_opinion_and_moves_on(db, config):
    instance_id, b = at(db, config, "b")

    approve(db, config, "li.na", b, {"note": "材料齐全"}, opinion="同意")

    assert opened(db, instance_id) == [("c", "liu.yang")]
    done = last(db, instance_id, "task_completed")
    assert (done.actor_name, done.bpmn_id, done.opinion) == ("李娜", "b", "同意")
    assert (done.detail["decision"], done.detail["action"], done.detail["changes"]) == (
        "approve", "approve", {"note": "材料齐全"})
    assert workflow_data(db, instance_id)["decision"] == "approve"
    row = task_row(db, b)
    assert (row.state, row.completed_by_id, row.opinion) == ("completed", user_id(db, "li.na"), "同意")


def test_approve_requires_an_opinion_where_configured(db, config):
    instance_id, b = at(db, config, "b", b={"requireOpinion": "approve,reject"})

    err = refused(db, instance_id, ValidationFailed, "validation_failed",
                  lambda: approve(db, config, "li.na", b, {"note": "x"}))
    assert [e["code"] for e in err.errors["opinion"]] == ["required"]
    refused(db, instance_id, ValidationFailed, "validation_failed",
            lambda: approve(db, config, "li.na", b, opinion="   "))

    approve(db, config, "li.na", b, opinion="同意")
    assert opened(db, instance_id) == [("c", "liu.yang")]


def test_require_opinion_true_means_every_action(db, config):
    instance_id, b = at(db, config, "b", b={"requireOpinion": "true"})

    for call in (lambda: approve(db, config, "li.na", b),
                 lambda: act(db, config, "li.na", operations.transfer, b, "wang.fang"),
                 lambda: act(db, config, "li.na", operations.add_signers, b, ["wang.fang"], "before")):
        refused(db, instance_id, ValidationFailed, "validation_failed", call)


def test_approve_is_refused_where_the_task_does_not_offer_it(db, config):
    deploy_chain(db, task("a"), task("b", 'user("li.na")'))  # default buttons: a plain submit
    instance_id = start(db, config, "zhang.wei", KEY)
    a = only_task(db, instance_id).id

    err = refused(db, instance_id, Conflict, "operation_not_allowed", lambda: approve(db, config, "zhang.wei", a))
    assert err.params["action"] == "approve"
    with db.transaction() as s:
        tasks.complete(s, config, load_user(s, "zhang.wei"), a, {"note": "提交"})
    assert opened(db, instance_id) == [("b", "li.na")]


def test_someone_else_may_not_approve_or_reject(db, config):
    instance_id, b = at(db, config, "b")

    refused(db, instance_id, Forbidden, "not_your_task", lambda: approve(db, config, "wang.fang", b))
    refused(db, instance_id, Forbidden, "not_your_task",
            lambda: act(db, config, "wang.fang", operations.reject, b, "不同意"))


def test_reject_needs_a_reason_then_ends_the_instance(db, config):
    instance_id, b = at(db, config, "b")

    err = refused(db, instance_id, ValidationFailed, "validation_failed",
                  lambda: act(db, config, "li.na", operations.reject, b))
    assert [e["code"] for e in err.errors["opinion"]] == ["required"]

    act(db, config, "li.na", operations.reject, b, "材料不全，不予受理")

    row = instance(db, instance_id)
    assert (row.status, row.active_elements) == ("terminated", [])
    assert row.ended_at is not None and row.next_timer_at is None
    assert opened(db, instance_id) == []
    assert task_row(db, b).state == "completed"
    assert trail(db, instance_id, "task_completed", "rejected")[-2:] == [
        ("task_completed", "李娜", "b", "材料不全，不予受理"), ("rejected", "李娜", None, "材料不全，不予受理")]
    assert last(db, instance_id, "task_completed").detail["decision"] == "reject"
    assert events(db, instance_id, "task_created")[-1].bpmn_id != "c"  # the flow did not move on
    refused(db, instance_id, Conflict, "task_closed", lambda: approve(db, config, "li.na", b))
    assert chain_intact(db, instance_id)


def test_reject_cancels_the_other_open_tasks(db, config):
    deploy_parallel(db, onReject="end")
    instance_id = start(db, config, "zhang.wei", KEY)
    approve(db, config, "zhang.wei", only_task(db, instance_id, "a").id)
    p2 = only_task(db, instance_id, "p2").id

    act(db, config, "li.na", operations.reject, only_task(db, instance_id, "p1").id, "不同意")

    assert instance(db, instance_id).status == "terminated"
    assert task_row(db, p2).state == "cancelled"
    assert opened(db, instance_id) == []
    refused(db, instance_id, Conflict, "task_closed", lambda: approve(db, config, "wang.fang", p2))


def test_reject_with_on_reject_returns_to_that_step(db, config):
    instance_id, c = at(db, config, "c", c={"onReject": "a"})

    act(db, config, "liu.yang", operations.reject, c, "请重新申请")

    assert instance(db, instance_id).status == "running"
    assert opened(db, instance_id) == [("a", "zhang.wei")]
    returned = last(db, instance_id, "task_returned")
    assert (returned.actor_name, returned.opinion, returned.detail["target"], returned.detail["action"]) == (
        "刘洋", "请重新申请", "a", "reject")
    assert task_row(db, c).state == "returned"
    assert only_task(db, instance_id).returned_from == "c"


def test_reject_is_refused_where_the_task_does_not_offer_it(db, config):
    instance_id, b = at(db, config, "b", b={"buttons": "approve"})

    refused(db, instance_id, Conflict, "operation_not_allowed",
            lambda: act(db, config, "li.na", operations.reject, b, "不同意"))


# -- return (退回) ------------------------------------------------------------------------------------------
def targets(db, config, username: str, task_id: str) -> list[tuple[str, str]]:
    return [(t["bpmn_id"], t["completed_by"]) for t in act(db, config, username, operations.return_targets, task_id)]


def test_return_targets_are_the_earlier_steps_newest_first(db, config):
    instance_id, c = at(db, config, "c")

    assert targets(db, config, "liu.yang", c) == [("b", "李娜"), ("a", "张伟")]
    refused(db, instance_id, Forbidden, "not_your_task",
            lambda: act(db, config, "li.na", operations.return_targets, c))


def test_return_to_the_previous_step(db, config):
    instance_id, c = at(db, config, "c")

    act(db, config, "liu.yang", operations.send_back, c, opinion="请补充材料")

    assert opened(db, instance_id) == [("b", "li.na")]
    returned = last(db, instance_id, "task_returned")
    assert (returned.actor_name, returned.bpmn_id, returned.opinion) == ("刘洋", "c", "请补充材料")
    assert (returned.detail["target"], returned.detail["straight_back"]) == ("b", False)
    assert task_row(db, c).state == "returned"
    again = only_task(db, instance_id, "b")
    assert (again.returned_from, again.return_to_me) == ("c", False)

    approve(db, config, "li.na", again.id, opinion="已补充")
    assert opened(db, instance_id) == [("c", "liu.yang")]
    approve(db, config, "liu.yang", only_task(db, instance_id, "c").id)
    assert instance(db, instance_id).status == "completed"
    assert trail(db, instance_id, "task_completed", "task_returned") == [
        ("task_completed", "张伟", "a", None), ("task_completed", "李娜", "b", None),
        ("task_returned", "刘洋", "c", "请补充材料"), ("task_completed", "李娜", "b", "已补充"),
        ("task_completed", "刘洋", "c", None)]
    assert chain_intact(db, instance_id)


def test_return_to_an_earlier_step_offers_its_data_again(db, config):
    instance_id, c = at(db, config, "c")

    act(db, config, "liu.yang", operations.send_back, c, "a", "请重新申请")

    a = only_task(db, instance_id, "a")
    assert opened(db, instance_id) == [("a", "zhang.wei")]
    assert view(db, config, "zhang.wei", a.id).data["note"] == "b 的意见"  # the data as it was when returned
    assert a.returned_from == "c"
    approve(db, config, "zhang.wei", a.id, {"note": "重新申请"})
    assert opened(db, instance_id) == [("b", "li.na")]  # the normal path again: b, then c
    approve(db, config, "li.na", only_task(db, instance_id).id)
    approve(db, config, "liu.yang", only_task(db, instance_id).id)
    assert instance(db, instance_id).status == "completed"
    assert workflow_data(db, instance_id)["note"] == "重新申请"


def test_straight_back_sends_the_resubmission_directly_to_the_returner(db, config):
    instance_id, c = at(db, config, "c")

    act(db, config, "liu.yang", operations.send_back, c, "a", "请补充", straight_back=True)

    a = only_task(db, instance_id, "a")
    assert (a.returned_from, a.return_to_me) == ("c", True)
    assert last(db, instance_id, "task_returned").detail["straight_back"] is True
    created = len(events(db, instance_id, "task_created"))
    approve(db, config, "zhang.wei", a.id, {"note": "已补充"})

    assert opened(db, instance_id) == [("c", "liu.yang")]  # b is skipped
    assert [e.bpmn_id for e in events(db, instance_id, "task_created")[created:]] == ["c"]
    approve(db, config, "liu.yang", only_task(db, instance_id).id)
    assert instance(db, instance_id).status == "completed"
    assert workflow_data(db, instance_id)["note"] == "已补充"
    assert chain_intact(db, instance_id)


def test_return_refusals(db, config):
    instance_id, c = at(db, config, "c", b={"buttons": "approve"})

    refused(db, instance_id, ValidationFailed, "validation_failed",
            lambda: act(db, config, "liu.yang", operations.send_back, c))  # an opinion is required by default
    refused(db, instance_id, Conflict, "not_a_return_target",
            lambda: act(db, config, "liu.yang", operations.send_back, c, "end", "x"))
    refused(db, instance_id, Conflict, "not_a_return_target",
            lambda: act(db, config, "liu.yang", operations.send_back, c, "c", "x"))
    refused(db, instance_id, Forbidden, "not_your_task",
            lambda: act(db, config, "li.na", operations.send_back, c, "a", "x"))

    first = start(db, config, "zhang.wei", KEY)
    a = only_task(db, first).id
    assert act(db, config, "zhang.wei", operations.return_targets, a) == []
    refused(db, first, Conflict, "no_return_target",
            lambda: act(db, config, "zhang.wei", operations.send_back, a, opinion="x"))

    approve(db, config, "liu.yang", c)
    second, b = at(db, config, "b", instance_id=start(db, config, "zhang.wei", KEY))
    refused(db, second, Conflict, "operation_not_allowed",
            lambda: act(db, config, "li.na", operations.send_back, b, opinion="x"))


# -- return and parallel branches ---------------------------------------------------------------------------
def parallel_at_p1b(db, config, p2_first: bool) -> tuple[int, str]:
    deploy_parallel(db)
    instance_id = start(db, config, "zhang.wei", KEY)
    approve(db, config, "zhang.wei", only_task(db, instance_id, "a").id, {"note": "申请"})
    if p2_first:
        approve(db, config, "wang.fang", only_task(db, instance_id, "p2").id, {"note": "分支二意见"})
    approve(db, config, "li.na", only_task(db, instance_id, "p1").id, {"note": "分支一意见"})
    return instance_id, only_task(db, instance_id, "p1b").id


def test_return_targets_leave_out_steps_of_other_branches(db, config):
    instance_id, p1b = parallel_at_p1b(db, config, p2_first=True)

    assert targets(db, config, "liu.yang", p1b) == [("p1", "李娜"), ("a", "张伟")]


def test_return_inside_one_branch_leaves_the_other_branch_alone(db, config):
    instance_id, p1b = parallel_at_p1b(db, config, p2_first=False)
    p2 = only_task(db, instance_id, "p2")

    act(db, config, "liu.yang", operations.send_back, p1b, "p1", "分支一请重办")

    assert opened(db, instance_id) == [("p2", "wang.fang"), ("p1", "li.na")]
    still = only_task(db, instance_id, "p2")
    assert (still.id, still.state, still.assignee_id, still.created_at) == (p2.id, "open", p2.assignee_id,
                                                                          p2.created_at)
    assert [e.task_id for e in events(db, instance_id, "task_cancelled")] == []
    approve(db, config, "wang.fang", p2.id)
    assert opened(db, instance_id) == [("p1", "li.na")]  # the join still waits for branch one
    approve(db, config, "li.na", only_task(db, instance_id, "p1").id)
    approve(db, config, "liu.yang", only_task(db, instance_id, "p1b").id)
    assert opened(db, instance_id) == [("c", "zhou.qiang")]
    approve(db, config, "zhou.qiang", only_task(db, instance_id, "c").id)
    assert instance(db, instance_id).status == "completed"
    assert [e.bpmn_id for e in events(db, instance_id, "task_created")].count("c") == 1
    assert chain_intact(db, instance_id)


def test_return_inside_a_branch_after_the_other_branch_reached_the_join(db, config):
    instance_id, p1b = parallel_at_p1b(db, config, p2_first=True)

    act(db, config, "liu.yang", operations.send_back, p1b, "p1", "分支一请重办")

    assert opened(db, instance_id) == [("p1", "li.na")]
    approve(db, config, "li.na", only_task(db, instance_id, "p1").id)
    assert opened(db, instance_id) == [("p1b", "liu.yang")]
    approve(db, config, "liu.yang", only_task(db, instance_id, "p1b").id)
    assert opened(db, instance_id) == [("c", "zhou.qiang")]  # the finished branch still counts at the join
    approve(db, config, "zhou.qiang", only_task(db, instance_id, "c").id)
    assert instance(db, instance_id).status == "completed"
    assert_state_round_trips(db, instance_id)


def test_return_to_before_the_split_takes_back_every_branch(db, config):
    instance_id, p1b = parallel_at_p1b(db, config, p2_first=False)
    p2 = only_task(db, instance_id, "p2").id

    act(db, config, "wang.fang", operations.send_back, p2, "a", "整体退回")

    assert opened(db, instance_id) == [("a", "zhang.wei")]
    assert {task_row(db, t).state for t in (p1b, p2)} == {"cancelled", "returned"}
    approve(db, config, "zhang.wei", only_task(db, instance_id).id)
    assert sorted(opened(db, instance_id)) == [("p1", "li.na"), ("p2", "wang.fang")]
    approve(db, config, "li.na", only_task(db, instance_id, "p1").id)
    approve(db, config, "liu.yang", only_task(db, instance_id, "p1b").id)
    approve(db, config, "wang.fang", only_task(db, instance_id, "p2").id)
    approve(db, config, "zhou.qiang", only_task(db, instance_id, "c").id)
    assert instance(db, instance_id).status == "completed"


def test_from_after_the_join_only_steps_before_the_split_are_offered(db, config):
    instance_id, p1b = parallel_at_p1b(db, config, p2_first=True)
    approve(db, config, "liu.yang", p1b)
    c = only_task(db, instance_id, "c").id

    assert targets(db, config, "zhou.qiang", c) == [("a", "张伟")]  # into one branch, the join would wait for ever
    refused(db, instance_id, Conflict, "not_a_return_target",
            lambda: act(db, config, "zhou.qiang", operations.send_back, c, "p2", "x"))
    act(db, config, "zhou.qiang", operations.send_back, c, "a", "全部重来")

    assert opened(db, instance_id) == [("a", "zhang.wei")]
    approve(db, config, "zhang.wei", only_task(db, instance_id).id)
    approve(db, config, "wang.fang", only_task(db, instance_id, "p2").id)
    approve(db, config, "li.na", only_task(db, instance_id, "p1").id)
    assert opened(db, instance_id) == [("p1b", "liu.yang")]
    approve(db, config, "liu.yang", only_task(db, instance_id, "p1b").id)
    approve(db, config, "zhou.qiang", only_task(db, instance_id, "c").id)
    assert instance(db, instance_id).status == "completed"


# -- return and call activities ------------------------------------------------------------------------------
def deploy_call_activity(db) -> None:
    """a → call sub (s1 li.na → s2 liu.yang) → c zhou.qiang."""
    parent = ('<bpmn:startEvent id="start"/>' + task("a", buttons=ALL)
              + '<bpmn:callActivity id="call" name="子流程" calledElement="ops_sub"/>'
              + task("c", 'user("zhou.qiang")', buttons=ALL) + '<bpmn:endEvent id="end"/>'
              + flows(("start", "a"), ("a", "call"), ("call", "c"), ("c", "end")))
    sub = ('<bpmn:startEvent id="sub_start"/>' + task("s1", 'user("li.na")', buttons=ALL)
           + task("s2", 'user("liu.yang")', buttons=ALL) + '<bpmn:endEvent id="sub_end"/>'
           + flows(("sub_start", "s1"), ("s1", "s2"), ("s2", "sub_end")))
    text = bpmn(KEY, parent).replace("</bpmn:definitions>", f'<bpmn:process id="ops_sub" isExecutable="true">'
                                                           f"{sub}</bpmn:process></bpmn:definitions>")
    deploy_bundle(db, KEY, text)


def in_subprocess(db, config) -> tuple[int, str]:
    deploy_call_activity(db)
    instance_id = start(db, config, "zhang.wei", KEY)
    approve(db, config, "zhang.wei", only_task(db, instance_id, "a").id, {"note": "申请"})
    approve(db, config, "li.na", only_task(db, instance_id, "s1").id, {"note": "子流程经办"})
    return instance_id, only_task(db, instance_id, "s2").id


def test_return_inside_a_called_subprocess(db, config):
    instance_id, s2 = in_subprocess(db, config)

    assert targets(db, config, "liu.yang", s2)[0] == ("s1", "李娜")
    act(db, config, "liu.yang", operations.send_back, s2, "s1", "子流程内退回")

    assert opened(db, instance_id) == [("s1", "li.na")]
    approve(db, config, "li.na", only_task(db, instance_id, "s1").id)
    approve(db, config, "liu.yang", only_task(db, instance_id, "s2").id)
    assert opened(db, instance_id) == [("c", "zhou.qiang")]
    approve(db, config, "zhou.qiang", only_task(db, instance_id, "c").id)
    assert instance(db, instance_id).status == "completed"
    assert chain_intact(db, instance_id)


def test_return_from_a_called_subprocess_to_a_step_before_it(db, config):
    instance_id, s2 = in_subprocess(db, config)

    assert targets(db, config, "liu.yang", s2) == [("s1", "李娜"), ("a", "张伟")]
    act(db, config, "liu.yang", operations.send_back, s2, "a", "退回申请人")

    assert opened(db, instance_id) == [("a", "zhang.wei")]
    assert task_row(db, s2).state == "returned"
    approve(db, config, "zhang.wei", only_task(db, instance_id, "a").id, {"note": "重新申请"})
    assert opened(db, instance_id) == [("s1", "li.na")]  # the call activity runs afresh
    approve(db, config, "li.na", only_task(db, instance_id, "s1").id)
    approve(db, config, "liu.yang", only_task(db, instance_id, "s2").id)
    approve(db, config, "zhou.qiang", only_task(db, instance_id, "c").id)
    assert instance(db, instance_id).status == "completed"
    assert_state_round_trips(db, instance_id)


def test_return_from_after_a_call_activity_into_it_is_not_offered(db, config):
    instance_id, s2 = in_subprocess(db, config)
    approve(db, config, "liu.yang", s2)
    c = only_task(db, instance_id, "c").id

    assert targets(db, config, "zhou.qiang", c) == [("a", "张伟")]
    refused(db, instance_id, Conflict, "not_a_return_target",
            lambda: act(db, config, "zhou.qiang", operations.send_back, c, "s2", "x"))
    act(db, config, "zhou.qiang", operations.send_back, c, "a", "退回申请人")
    assert opened(db, instance_id) == [("a", "zhang.wei")]


# -- transfer and delegate ----------------------------------------------------------------------------------
def test_transfer_hands_the_task_over(db, config):
    instance_id, b = at(db, config, "b")

    act(db, config, "li.na", operations.transfer, b, "wang.fang", "请王处办理")

    assert opened(db, instance_id) == [("b", "wang.fang")]
    moved = last(db, instance_id, "task_transferred")
    assert (moved.actor_name, moved.task_id, moved.opinion, moved.detail["to"]["name"]) == (
        "李娜", b, "请王处办理", "王芳")
    assert [n.title for n in notes_of(db, "wang.fang")] == ["转办：审核"]
    refused(db, instance_id, Forbidden, "not_your_task", lambda: approve(db, config, "li.na", b))
    approve(db, config, "wang.fang", b, opinion="已办")
    assert (task_row(db, b).completed_by_id, opened(db, instance_id)) == (user_id(db, "wang.fang"),
                                                                          [("c", "liu.yang")])


def test_transfer_refusals(db, config):
    instance_id, b = at(db, config, "b")

    refused(db, instance_id, Conflict, "same_user", lambda: act(db, config, "li.na", operations.transfer, b, "li.na"))
    err = refused(db, instance_id, ValidationFailed, "validation_failed",
                  lambda: act(db, config, "li.na", operations.transfer, b, "no.such.user"))
    assert [e["code"] for e in err.errors["to"]] == ["unknown_user"]
    refused(db, instance_id, Forbidden, "not_your_task",
            lambda: act(db, config, "wang.fang", operations.transfer, b, "wang.fang"))

    second, b2 = at(db, config, "b", instance_id=None, b={"buttons": "approve"})
    refused(db, second, Conflict, "operation_not_allowed",
            lambda: act(db, config, "li.na", operations.transfer, b2, "wang.fang"))


def test_delegate_comes_back_to_the_owner_who_finishes(db, config):
    instance_id, b = at(db, config, "b")

    act(db, config, "li.na", operations.delegate, b, "wang.fang", "请王处先提意见")

    row = task_row(db, b)
    assert (username_of(db, row.assignee_id), username_of(db, row.owner_id)) == ("wang.fang", "li.na")
    refused(db, instance_id, Forbidden, "not_your_task", lambda: approve(db, config, "li.na", b))
    approve(db, config, "wang.fang", b, {"note": "建议同意"}, opinion="拟同意")

    row = task_row(db, b)
    assert (row.state, username_of(db, row.assignee_id), row.owner_id) == ("open", "li.na", None)
    assert opened(db, instance_id) == [("b", "li.na")]
    assert view(db, config, "li.na", b).data["note"] == "建议同意"
    approve(db, config, "li.na", b, opinion="同意")

    assert opened(db, instance_id) == [("c", "liu.yang")]
    assert trail(db, instance_id, "task_delegated", "delegation_resolved", "task_completed")[1:] == [
        ("task_delegated", "李娜", "b", "请王处先提意见"), ("delegation_resolved", "王芳", "b", "拟同意"),
        ("task_completed", "李娜", "b", "同意")]
    assert last(db, instance_id, "task_delegated").detail["to"]["name"] == "王芳"
    assert last(db, instance_id, "delegation_resolved").detail["returned_to"] == user_id(db, "li.na")
    assert task_row(db, b).completed_by_id == user_id(db, "li.na")


def test_a_delegated_task_cannot_be_delegated_again(db, config):
    instance_id, b = at(db, config, "b")
    act(db, config, "li.na", operations.delegate, b, "wang.fang")

    refused(db, instance_id, Conflict, "already_delegated",
            lambda: act(db, config, "wang.fang", operations.delegate, b, "zhou.qiang"))
    refused(db, instance_id, Forbidden, "not_your_task",
            lambda: act(db, config, "li.na", operations.delegate, b, "zhou.qiang"))


def test_a_delegate_gives_an_opinion_but_cannot_decide_the_owners_task(db, config):
    instance_id, b = at(db, config, "b")
    act(db, config, "li.na", operations.delegate, b, "wang.fang")

    for call in (lambda: act(db, config, "wang.fang", operations.reject, b, "不同意"),
                 lambda: act(db, config, "wang.fang", operations.send_back, b, opinion="退回"),
                 lambda: act(db, config, "wang.fang", operations.transfer, b, "zhou.qiang")):
        refused(db, instance_id, Conflict, "task_delegated", call)
    approve(db, config, "wang.fang", b, opinion="建议退回")
    act(db, config, "li.na", operations.send_back, b, opinion="退回")  # the owner decides
    assert opened(db, instance_id) == [("a", "zhang.wei")]


def test_delegate_to_oneself_is_refused(db, config):
    instance_id, b = at(db, config, "b")

    refused(db, instance_id, Conflict, "same_user", lambda: act(db, config, "li.na", operations.delegate, b, "li.na"))


# -- added signers (加签 / 减签) ------------------------------------------------------------------------------
def signer(db, instance_id: int, username: str) -> str:
    [found] = [t for t in open_tasks(db, instance_id) if t.kind == "signer" and username_of(db, t.assignee_id)
               == username]
    return found.id


def sign(db, config, username: str, signer_task: str, opinion: str) -> None:
    with db.transaction() as s:
        tasks.complete(s, config, load_user(s, username), signer_task, {}, opinion=opinion, decision="approve")


def links(db, username: str) -> list[str]:
    """The links of the user's notifications about added signatures."""
    with db.session() as s:
        notes, _ = notifications.for_user(s, load_user(s, username))
    return [n.link for n in notes if n.title.startswith("加签")]


def test_a_signer_before_signs_first(db, config):
    instance_id, b = at(db, config, "b")

    rows = act(db, config, "li.na", operations.add_signers, b, ["wang.fang"], "before", "请王处先签")
    assert links(db, "wang.fang") == [f"/tasks/{rows[0].id}"]

    assert [(r.kind, r.sign_position, r.state, r.parent_task_id) for r in rows] == [("signer", "before", "open", b)]
    assert opened(db, instance_id) == [("b", "li.na"), ("b+before", "wang.fang")]
    added = last(db, instance_id, "signers_added")
    assert (added.actor_name, added.opinion, added.detail["position"], added.detail["signers"][0]["name"]) == (
        "李娜", "请王处先签", "before", "王芳")
    assert task_row(db, b).blocked
    refused(db, instance_id, Conflict, "waiting_for_signers", lambda: approve(db, config, "li.na", b))

    sign(db, config, "wang.fang", rows[0].id, "政策上可行")

    assert not task_row(db, b).blocked
    assert opened(db, instance_id) == [("b", "li.na")]
    approve(db, config, "li.na", b, opinion="同意")
    assert opened(db, instance_id) == [("c", "liu.yang")]
    assert trail(db, instance_id, "signer_signed", "task_released", "task_completed")[-3:] == [
        ("signer_signed", "王芳", "b", "政策上可行"), ("task_released", "王芳", "b", None),
        ("task_completed", "李娜", "b", "同意")]


def test_a_signer_after_signs_once_the_owner_has_decided(db, config):
    instance_id, b = at(db, config, "b")

    [row] = act(db, config, "li.na", operations.add_signers, b, ["wang.fang"], "after")

    assert task_row(db, row.id).state == "planned"
    assert opened(db, instance_id) == [("b", "li.na")]
    assert links(db, "wang.fang") == []  # nothing to do yet
    approve(db, config, "li.na", b, {"note": "李娜意见"}, opinion="同意，请王处复核")
    assert links(db, "wang.fang") == [f"/tasks/{row.id}"]  # now: straight to the signer's own task

    assert task_row(db, b).pending is not None
    assert opened(db, instance_id) == [("b", "li.na"), ("b+after", "wang.fang")]
    decided = last(db, instance_id, "task_decided")
    assert (decided.actor_name, decided.opinion, decided.detail["waiting_for"]) == (
        "李娜", "同意，请王处复核", [row.id])
    refused(db, instance_id, Conflict, "waiting_for_signers", lambda: approve(db, config, "li.na", b))

    sign(db, config, "wang.fang", row.id, "复核同意")

    assert opened(db, instance_id) == [("c", "liu.yang")]
    main = task_row(db, b)
    assert (main.state, main.completed_by_id, main.opinion, main.pending) == (
        "completed", user_id(db, "li.na"), "同意，请王处复核", None)
    done = [e for e in events(db, instance_id, "task_completed") if e.task_id == b]
    assert [(e.actor_name, e.opinion) for e in done] == [("李娜", "同意，请王处复核")]  # the owner's decision
    assert workflow_data(db, instance_id)["note"] == "李娜意见"
    assert chain_intact(db, instance_id)


def test_parallel_signers_and_the_owner_all_finish_before_the_flow_moves(db, config):
    instance_id, b = at(db, config, "b")

    act(db, config, "li.na", operations.add_signers, b, ["wang.fang", "zhou.qiang"], "parallel")

    assert opened(db, instance_id) == [("b", "li.na"), ("b+parallel", "wang.fang"), ("b+parallel", "zhou.qiang")]
    sign(db, config, "wang.fang", signer(db, instance_id, "wang.fang"), "同意")
    approve(db, config, "li.na", b, opinion="同意")
    assert opened(db, instance_id) == [("b", "li.na"), ("b+parallel", "zhou.qiang")]
    sign(db, config, "zhou.qiang", signer(db, instance_id, "zhou.qiang"), "经费可保障")
    assert opened(db, instance_id) == [("c", "liu.yang")]
    assert [(e.actor_name, e.opinion) for e in events(db, instance_id, "signer_signed")] == [
        ("王芳", "同意"), ("周强", "经费可保障")]


def test_remove_a_signer_who_has_not_acted(db, config):
    instance_id, b = at(db, config, "b")
    rows = act(db, config, "li.na", operations.add_signers, b, ["wang.fang", "zhou.qiang"], "before")

    act(db, config, "li.na", operations.remove_signer, rows[0].id, "不必会签")

    assert task_row(db, rows[0].id).state == "cancelled"
    assert task_row(db, b).blocked  # zhou.qiang still signs first
    removed = last(db, instance_id, "signer_removed")
    assert (removed.actor_name, removed.opinion, removed.detail["signer"]["name"], removed.detail["position"]) == (
        "李娜", "不必会签", "王芳", "before")
    act(db, config, "li.na", operations.remove_signer, rows[1].id)
    assert not task_row(db, b).blocked
    approve(db, config, "li.na", b)
    assert opened(db, instance_id) == [("c", "liu.yang")]


def test_removing_the_last_awaited_signer_lets_the_decision_take_effect(db, config):
    instance_id, b = at(db, config, "b")
    [row] = act(db, config, "li.na", operations.add_signers, b, ["wang.fang"], "after")
    approve(db, config, "li.na", b, {"note": "李娜意见"}, opinion="同意")
    assert opened(db, instance_id) == [("b", "li.na"), ("b+after", "wang.fang")]

    act(db, config, "li.na", operations.remove_signer, row.id, "不必复核")

    assert opened(db, instance_id) == [("c", "liu.yang")]
    main = task_row(db, b)
    assert (main.state, main.completed_by_id, main.opinion, main.pending) == (
        "completed", user_id(db, "li.na"), "同意", None)
    assert trail(db, instance_id, "signer_removed", "task_completed")[-2:] == [
        ("signer_removed", "李娜", "b", "不必复核"), ("task_completed", "李娜", "b", "同意")]
    assert workflow_data(db, instance_id)["note"] == "李娜意见"
    assert chain_intact(db, instance_id)


def test_signer_refusals(db, config):
    instance_id, b = at(db, config, "b")
    [before] = act(db, config, "li.na", operations.add_signers, b, ["wang.fang"], "before")
    sign(db, config, "wang.fang", before.id, "已签")

    refused(db, instance_id, Conflict, "signer_acted",
            lambda: act(db, config, "li.na", operations.remove_signer, before.id))
    refused(db, instance_id, Conflict, "same_user",
            lambda: act(db, config, "li.na", operations.add_signers, b, ["li.na"], "before"))
    refused(db, instance_id, ValidationFailed, "validation_failed",
            lambda: act(db, config, "li.na", operations.add_signers, b, ["wang.fang"], "sideways"))
    refused(db, instance_id, ValidationFailed, "validation_failed",
            lambda: act(db, config, "li.na", operations.add_signers, b, [], "before"))
    refused(db, instance_id, ValidationFailed, "validation_failed",
            lambda: act(db, config, "li.na", operations.add_signers, b, ["no.such.user"], "before"))
    refused(db, instance_id, Forbidden, "not_your_task",
            lambda: act(db, config, "wang.fang", operations.add_signers, b, ["zhou.qiang"], "before"))
    [after] = act(db, config, "li.na", operations.add_signers, b, ["zhou.qiang"], "after")
    refused(db, instance_id, Forbidden, "not_your_task",
            lambda: act(db, config, "zhou.qiang", operations.remove_signer, after.id))
    refused(db, instance_id, NotFound, "not_found",
            lambda: act(db, config, "li.na", operations.remove_signer, b))
    approve(db, config, "li.na", b)
    refused(db, instance_id, Conflict, "waiting_for_signers",
            lambda: act(db, config, "li.na", operations.add_signers, b, ["liu.yang"], "after"))

    second, b2 = at(db, config, "b", instance_id=None, b={"buttons": "approve"})
    refused(db, second, Conflict, "operation_not_allowed",
            lambda: act(db, config, "li.na", operations.add_signers, b2, ["wang.fang"], "before"))


def test_a_returned_task_takes_its_added_signers_with_it(db, config):
    instance_id, c = at(db, config, "c")
    [row] = act(db, config, "liu.yang", operations.add_signers, c, ["wang.fang"], "parallel")

    refused(db, instance_id, Conflict, "waiting_for_signers",
            lambda: act(db, config, "liu.yang", operations.send_back, c, opinion="退回"))
    act(db, config, "liu.yang", operations.remove_signer, row.id)
    act(db, config, "liu.yang", operations.send_back, c, opinion="退回")
    assert opened(db, instance_id) == [("b", "li.na")]


# -- withdraw (撤回) ---------------------------------------------------------------------------------------
def test_withdraw_brings_the_step_back_while_the_next_is_untouched(db, config):
    instance_id, b = at(db, config, "b")
    a = task_row(db, b).origin_task_id

    act(db, config, "zhang.wei", operations.withdraw, a, "还需补充")

    assert opened(db, instance_id) == [("a", "zhang.wei")]
    assert task_row(db, b).state == "withdrawn"
    withdrawn = last(db, instance_id, "task_withdrawn")
    assert (withdrawn.actor_name, withdrawn.task_id, withdrawn.opinion, withdrawn.detail["withdrawn"]) == (
        "张伟", a, "还需补充", [b])
    again = only_task(db, instance_id, "a")
    assert view(db, config, "zhang.wei", again.id).data["note"] == "a 的意见"
    refused(db, instance_id, Conflict, "task_closed", lambda: approve(db, config, "li.na", b))
    approve(db, config, "zhang.wei", again.id, {"note": "已补充"})
    assert opened(db, instance_id) == [("b", "li.na")]
    assert chain_intact(db, instance_id)


def test_withdraw_is_refused_once_the_next_step_is_acted_on(db, config):
    instance_id, c = at(db, config, "c")
    a, b = (e.task_id for e in events(db, instance_id, "task_completed"))

    refused(db, instance_id, Conflict, "next_step_acted",
            lambda: act(db, config, "zhang.wei", operations.withdraw, a))  # b is completed
    act(db, config, "liu.yang", operations.transfer, c, "zhou.qiang")
    refused(db, instance_id, Conflict, "next_step_acted",
            lambda: act(db, config, "li.na", operations.withdraw, b))  # c was transferred


def test_withdraw_is_refused_once_the_next_step_is_claimed(db, config):
    deploy_chain(db, task("a", buttons=ALL), task("b", 'user("li.na") | user("wang.fang")', "candidates"))
    instance_id = start(db, config, "zhang.wei", KEY)
    a = only_task(db, instance_id).id
    approve(db, config, "zhang.wei", a)
    claim(db, config, "wang.fang", only_task(db, instance_id, "b").id)

    refused(db, instance_id, Conflict, "next_step_acted",
            lambda: act(db, config, "zhang.wei", operations.withdraw, a))


def test_only_the_completer_may_withdraw(db, config):
    instance_id, b = at(db, config, "b")
    a = task_row(db, b).origin_task_id

    refused(db, instance_id, Forbidden, "not_completer", lambda: act(db, config, "li.na", operations.withdraw, a))
    refused(db, instance_id, Forbidden, "not_completer", lambda: act(db, config, "li.na", operations.withdraw, b))
    refused(db, instance_id, NotFound, "not_found",
            lambda: act(db, config, "zhang.wei", operations.withdraw, "00000000-0000-0000-0000-000000000000"))


def test_withdraw_is_allowed_by_default_and_refused_where_switched_off(db, config):
    assert TaskConfig().allow_withdraw is True
    instance_id, b = at(db, config, "b", a={"allowWithdraw": "false"})
    a = task_row(db, b).origin_task_id

    err = refused(db, instance_id, Conflict, "operation_not_allowed",
                  lambda: act(db, config, "zhang.wei", operations.withdraw, a))
    assert err.params["action"] == "withdraw"




@pytest.mark.postgres
@pytest.mark.skipif(not os.environ.get("EMFLOW_TEST_DATABASE_URL"), reason="needs EMFLOW_TEST_DATABASE_URL")
def test_a_withdraw_racing_the_next_steps_completion_one_wins(db, config):
    abc(db)
    outcomes = set()
    for round_no in range(6):
        instance_id, b = at(db, config, "b", instance_id=start(db, config, "zhang.wei", KEY))
        a = task_row(db, b).origin_task_id
        calls = {"withdraw": lambda a=a: act(db, config, "zhang.wei", operations.withdraw, a, "撤回"),
                 "approve": lambda b=b: approve(db, config, "li.na", b, opinion="同意")}
        order = sorted(calls, reverse=bool(round_no % 2))  # each side starts its thread first in turn
        results = dict(zip(order, in_threads(*[calls[name] for name in order], together=True), strict=True))

        lost = [name for name, r in results.items() if isinstance(r, Conflict)]
        assert len(lost) == 1, results
        won = "approve" if lost == ["withdraw"] else "withdraw"
        outcomes.add(won)
        assert results[lost[0]].code == ("next_step_acted" if won == "approve" else "task_closed")
        if won == "approve":
            assert opened(db, instance_id) == [("c", "liu.yang")]
            assert task_row(db, b).state == "completed" and events(db, instance_id, "task_withdrawn") == []
        else:
            assert opened(db, instance_id) == [("a", "zhang.wei")]
            assert task_row(db, b).state == "withdrawn"
            assert [e for e in events(db, instance_id, "task_completed") if e.task_id == b] == []
        assert_state_round_trips(db, instance_id)
        assert chain_intact(db, instance_id)
    assert outcomes  # which side wins is up to the scheduler; both are consistent


@pytest.mark.postgres
@pytest.mark.skipif(not os.environ.get("EMFLOW_TEST_DATABASE_URL"), reason="needs EMFLOW_TEST_DATABASE_URL")
def test_a_completion_that_waited_for_an_added_signer_waits_for_that_signer(db, config):
    # The completion queues behind add_signers for the lock; once it has the lock it must see the new signer.
    instance_id, b = at(db, config, "b")
    holding, released = threading.Event(), threading.Event()

    def add_and_hold():
        with db.transaction() as s:
            rows = operations.add_signers(s, config, load_user(s, "li.na"), b, ["wang.fang"], "after")
            holding.set()
            released.wait(30)
        return rows

    def complete_b():
        holding.wait(30)
        return approve(db, config, "li.na", b, {"note": "李娜意见"}, opinion="同意")

    added, completed, _ = in_threads(add_and_hold, complete_b, lambda: release_when_waiting(db, released))

    assert not isinstance(added, Exception) and not isinstance(completed, Exception), (added, completed)
    assert task_row(db, b).pending is not None
    assert opened(db, instance_id) == [("b", "li.na"), ("b+after", "wang.fang")]


# -- cancel (撤销) ------------------------------------------------------------------------------------------
def test_the_initiator_cancels_where_the_process_allows_it(db, config):
    instance_id, b = at(db, config, "b", allow_cancel=True)

    act(db, config, "zhang.wei", operations.cancel, instance_id, "不再需要")

    row = instance(db, instance_id)
    assert (row.status, row.active_elements) == ("terminated", [])
    assert task_row(db, b).state == "cancelled"
    assert trail(db, instance_id)[-1] == ("cancelled", "张伟", None, "不再需要")
    refused(db, instance_id, Conflict, "task_closed", lambda: approve(db, config, "li.na", b))
    refused(db, instance_id, Conflict, "instance_ended",
            lambda: act(db, config, "zhang.wei", operations.cancel, instance_id))
    assert chain_intact(db, instance_id)


def test_cancel_refusals(db, config):
    instance_id, _ = at(db, config, "b", allow_cancel=True)

    refused(db, instance_id, Forbidden, "not_initiator",
            lambda: act(db, config, "li.na", operations.cancel, instance_id))
    refused(db, instance_id, NotFound, "not_found",
            lambda: act(db, config, "zhao.min", operations.cancel, instance_id))

    abc(db)  # a new version without allow_cancel
    other = start(db, config, "zhang.wei", KEY)
    err = refused(db, other, Conflict, "operation_not_allowed",
                  lambda: act(db, config, "zhang.wei", operations.cancel, other))
    assert err.params["action"] == "cancel"


# -- copy to (抄送/传阅) -------------------------------------------------------------------------------------
def test_copy_to_users_and_units_with_read_receipts(db, config):
    instance_id, b = at(db, config, "b")

    rows = act(db, config, "li.na", operations.copy_to, b, ["chen.jie"], ["GHCWC"], "请阅知")

    assert sorted(username_of(db, r.user_id) for r in rows) == ["chen.jie", "zhou.qiang"]
    copied = last(db, instance_id, "copied")
    assert (copied.actor_name, copied.task_id, copied.opinion) == ("李娜", b, "请阅知")
    assert sorted(p["name"] for p in copied.detail["to"]) == ["周强", "陈杰"]
    assert [n.title for n in notes_of(db, "chen.jie")] == ["传阅：" + instance(db, instance_id).title]
    with db.session() as s:
        chen = load_user(s, "chen.jie")
        items, total = operations.copies(s, chen)
        assert total == 1
        copy, title, sender = items[0][:3]
        assert (copy.instance_id, copy.note, title, sender, copy.read_at) == (
            instance_id, "请阅知", instance(db, instance_id).title, "李娜", None)
        # chen.jie (南宁) is outside the instance's region, yet may read what was copied to him
        assert instances.get(s, chen, instance_id).id == instance_id
        assert instances.participates(s, chen, instance_id)
    assert opened(db, instance_id) == [("b", "li.na")]  # copying does not move the task

    with db.transaction() as s:
        assert operations.mark_copies_read(s, load_user(s, "chen.jie"), instance_id) == 1
    with db.transaction() as s:
        assert operations.mark_copies_read(s, load_user(s, "chen.jie"), instance_id) == 0
    with db.session() as s:
        receipts = {name: read for name, _, read in operations.read_receipts(s, instance_id)}
    assert set(receipts) == {"陈杰", "周强"}
    assert receipts["周强"] is None and receipts["陈杰"] is not None


def test_someone_not_copied_outside_the_scope_still_cannot_read_the_instance(db, config):
    instance_id, b = at(db, config, "b")
    act(db, config, "li.na", operations.copy_to, b, ["chen.jie"])

    with db.session() as s, pytest.raises(NotFound):
        instances.get(s, load_user(s, "zhao.min"), instance_id)


def test_copy_to_refusals(db, config):
    instance_id, b = at(db, config, "b")

    err = refused(db, instance_id, ValidationFailed, "validation_failed",
                  lambda: act(db, config, "li.na", operations.copy_to, b, ["no.such.user"]))
    assert [e["code"] for e in err.errors["users"]] == ["unknown_user"]
    err = refused(db, instance_id, ValidationFailed, "validation_failed",
                  lambda: act(db, config, "li.na", operations.copy_to, b, [], ["NO_SUCH_UNIT"]))
    assert [e["code"] for e in err.errors["units"]] == ["unknown_unit"]
    refused(db, instance_id, ValidationFailed, "validation_failed",
            lambda: act(db, config, "li.na", operations.copy_to, b, ["li.na"]))  # only oneself: nobody
    refused(db, instance_id, Forbidden, "not_your_task",
            lambda: act(db, config, "wang.fang", operations.copy_to, b, ["chen.jie"]))

    second, b2 = at(db, config, "b", instance_id=None, b={"buttons": "approve"})
    refused(db, second, Conflict, "operation_not_allowed",
            lambda: act(db, config, "li.na", operations.copy_to, b2, ["chen.jie"]))


# -- urge (催办) -----------------------------------------------------------------------------------------------
def test_urge_by_initiator_and_supervisor_rate_limited_per_urger(db, config):
    deploy_chain(db, task("a", buttons=ALL), task("b", 'user("wang.fang")', buttons=ALL))
    instance_id = start(db, config, "zhang.wei", KEY)
    approve(db, config, "zhang.wei", only_task(db, instance_id).id)

    assert act(db, config, "zhang.wei", operations.urge, instance_id, "请尽快审核") == 1
    assert [(n.title, n.body, n.category) for n in notes_of(db, "wang.fang")] == [
        (f"催办：{instance(db, instance_id).title}", "请尽快审核", "urge")]
    err = refused(db, instance_id, Conflict, "urged_recently",
                  lambda: act(db, config, "zhang.wei", operations.urge, instance_id))
    assert err.params["minutes"] == 30
    assert act(db, config, "li.na", operations.urge, instance_id) == 1  # a supervisor, rate-limited apart

    clock.advance(timedelta(minutes=29))
    refused(db, instance_id, Conflict, "urged_recently", lambda: act(db, config, "zhang.wei", operations.urge,
                                                                     instance_id))
    clock.advance(timedelta(minutes=2))
    assert act(db, config, "zhang.wei", operations.urge, instance_id, "再次催办") == 1

    assert trail(db, instance_id, "urged") == [
        ("urged", "张伟", None, "请尽快审核"), ("urged", "李娜", None, "请尽快办理。"),
        ("urged", "张伟", None, "再次催办")]
    assert all(e.detail["to"] == [{"id": user_id(db, "wang.fang"), "name": "王芳"}]
               for e in events(db, instance_id, "urged"))
    assert len(notes_of(db, "wang.fang")) == 3


def test_urge_refusals(db, config):
    instance_id, b = at(db, config, "b")

    refused(db, instance_id, Forbidden, "not_urger", lambda: act(db, config, "wang.fang", operations.urge,
                                                                 instance_id))
    refused(db, instance_id, Forbidden, "not_urger", lambda: act(db, config, "liu.yang", operations.urge,
                                                                 instance_id))
    refused(db, instance_id, NotFound, "not_found", lambda: act(db, config, "zhao.min", operations.urge,
                                                                instance_id))
    approve(db, config, "li.na", b)
    approve(db, config, "liu.yang", only_task(db, instance_id, "c").id)
    refused(db, instance_id, Conflict, "instance_not_running",
            lambda: act(db, config, "zhang.wei", operations.urge, instance_id))


def test_urge_reaches_the_candidates_of_an_unclaimed_task_then_only_who_claimed_it(db, config):
    deploy_chain(db, task("a", buttons=ALL), task("b", 'user("li.na") | user("wang.fang")', "candidates"))
    instance_id = start(db, config, "zhang.wei", KEY)
    approve(db, config, "zhang.wei", only_task(db, instance_id).id)

    assert act(db, config, "zhang.wei", operations.urge, instance_id) == 2
    assert len(notes_of(db, "li.na")) == len(notes_of(db, "wang.fang")) == 1
    claim(db, config, "wang.fang", only_task(db, instance_id).id)
    clock.advance(timedelta(minutes=31))
    assert act(db, config, "zhang.wei", operations.urge, instance_id) == 1
    assert (len(notes_of(db, "li.na")), len(notes_of(db, "wang.fang"))) == (1, 2)


def test_urge_and_reminders_reach_the_members_of_a_candidate_group(db, config):
    deploy_chain(db, task("a", 'user("li.na")', buttons=ALL),
                 task("b", 'group("office_clerks")', "candidates", timeout="PT1H", timeoutAction="remind:1"))
    instance_id = start(db, config, "li.na", KEY)
    approve(db, config, "li.na", only_task(db, instance_id).id)

    assert act(db, config, "li.na", operations.urge, instance_id, "请签收") == 1
    assert last(db, instance_id, "urged").detail["to"] == [{"id": user_id(db, "zhang.wei"), "name": "张伟"}]
    clock.advance(timedelta(hours=2))
    assert operations.handle_timeouts(db, config) == 1
    title = instance(db, instance_id).title
    assert [n.title for n in notes_of(db, "zhang.wei")] == ["超期提醒：审核", f"催办：{title}"]


# -- proxy entry (领导意见代录) ---------------------------------------------------------------------------------
def test_a_clerk_records_the_leaders_paper_opinion(db, config):
    instance_id, c = at(db, config, "c")

    approve(db, config, "zhang.wei", c, {"note": "纸质批示"}, opinion="同意", on_behalf_of="liu.yang")

    assert instance(db, instance_id).status == "completed"
    row = task_row(db, c)
    assert (username_of(db, row.completed_by_id), row.opinion) == ("liu.yang", "同意")
    done = last(db, instance_id, "task_completed")
    assert (done.actor_name, done.actor_id, done.opinion) == ("张伟", user_id(db, "zhang.wei"), "同意")
    assert done.detail["on_behalf_of"] == {"id": user_id(db, "liu.yang"), "name": "刘洋"}
    assert chain_intact(db, instance_id)


def test_a_clerk_returns_on_the_leaders_behalf(db, config):
    instance_id, c = at(db, config, "c")

    act(db, config, "zhang.wei", operations.send_back, c, opinion="请补充", on_behalf_of="liu.yang")

    returned = last(db, instance_id, "task_returned")
    assert (returned.actor_name, returned.detail["on_behalf_of"]["name"]) == ("张伟", "刘洋")
    assert username_of(db, task_row(db, c).completed_by_id) == "liu.yang"
    assert opened(db, instance_id) == [("b", "li.na")]


def test_proxy_refusals(db, config):
    instance_id, c = at(db, config, "c")

    refused(db, instance_id, Forbidden, "not_a_proxy",
            lambda: approve(db, config, "li.na", c, opinion="同意", on_behalf_of="liu.yang"))
    refused(db, instance_id, Forbidden, "not_a_proxy",
            lambda: approve(db, config, "zhang.wei", c, opinion="同意", on_behalf_of="wang.fang"))
    refused(db, instance_id, Forbidden, "not_a_proxy",
            lambda: act(db, config, "li.na", operations.reject, c, "不同意", on_behalf_of="liu.yang"))
    act(db, config, "liu.yang", operations.transfer, c, "wang.fang")
    refused(db, instance_id, Forbidden, "not_your_task",  # the task is no longer the leader's
            lambda: approve(db, config, "zhang.wei", c, opinion="同意", on_behalf_of="liu.yang"))


# -- timeouts -----------------------------------------------------------------------------------------------
def timeouts(db, config) -> int:
    return operations.handle_timeouts(db, config)


def test_remind_repeats_up_to_its_limit_then_stops(db, config):
    instance_id, b = at(db, config, "b", b={"timeout": "PT1H", "timeoutAction": "remind:2"})
    row = task_row(db, b)
    assert row.due_at == row.next_action_at and row.due_at - row.created_at == timedelta(hours=1)

    clock.advance(timedelta(minutes=59))
    assert timeouts(db, config) == 0
    clock.advance(timedelta(minutes=2))
    assert timeouts(db, config) == 1
    assert timeouts(db, config) == 0  # the next reminder is an hour away
    clock.advance(timedelta(hours=1, minutes=1))
    assert timeouts(db, config) == 1
    clock.advance(timedelta(days=3))
    assert timeouts(db, config) == 0

    row = task_row(db, b)
    assert (row.state, row.reminders_sent, row.next_action_at) == ("open", 2, None)
    assert [(e.actor_name, e.detail["reminder"]) for e in events(db, instance_id, "task_overdue_reminded")] == [
        ("", 1), ("", 2)]
    assert [n.title for n in notes_of(db, "li.na")] == ["超期提醒：审核"] * 2
    assert opened(db, instance_id) == [("b", "li.na")]


def test_timeout_approve_completes_the_task(db, config):
    instance_id, b = at(db, config, "b", b={"timeout": "PT2H", "timeoutAction": "approve"})

    clock.advance(timedelta(hours=2, minutes=1))
    assert timeouts(db, config) == 1

    assert opened(db, instance_id) == [("c", "liu.yang")]
    row = task_row(db, b)
    assert (row.state, row.completed_by_id, row.opinion) == ("completed", None, "超期自动处理")
    assert trail(db, instance_id, "task_timed_out", "task_completed")[-2:] == [
        ("task_timed_out", "", "b", None), ("task_completed", "", "b", "超期自动处理")]
    done = last(db, instance_id, "task_completed")
    assert (done.detail["decision"], done.detail["action"]) == ("approve", "timeout")
    assert timeouts(db, config) == 0


def test_timeout_reject_ends_the_instance(db, config):
    instance_id, b = at(db, config, "b", b={"timeout": "PT2H", "timeoutAction": "reject"})

    clock.advance(timedelta(hours=3))
    assert timeouts(db, config) == 1

    row = instance(db, instance_id)
    assert row.status == "terminated"
    assert opened(db, instance_id) == []
    assert task_row(db, b).state == "completed"
    assert [e.bpmn_id for e in events(db, instance_id, "task_created")] == ["a", "b"]  # c never started
    assert trail(db, instance_id)[-1] == ("rejected", "", None, "超期自动处理")
    assert last(db, instance_id, "task_completed").detail["decision"] == "reject"
    assert chain_intact(db, instance_id)


def test_timeout_reject_on_the_last_step_ends_rejected_not_completed(db, config):
    instance_id, c = at(db, config, "c", c={"timeout": "PT2H", "timeoutAction": "reject"})

    clock.advance(timedelta(hours=3))
    assert timeouts(db, config) == 1

    assert instance(db, instance_id).status == "terminated"
    assert [e.kind for e in events(db, instance_id)][-1] == "rejected"
    assert events(db, instance_id, "completed") == []


def test_timeout_reject_with_on_reject_returns(db, config):
    instance_id, c = at(db, config, "c", c={"timeout": "PT2H", "timeoutAction": "reject", "onReject": "a"})

    clock.advance(timedelta(hours=3))
    assert timeouts(db, config) == 1

    assert opened(db, instance_id) == [("a", "zhang.wei")]
    assert task_row(db, c).state == "returned"
    assert instance(db, instance_id).status == "running"


def test_timeout_escalates_to_the_assignees_unit_leader(db, config):
    deploy_chain(db, task("a", 'user("li.na")', buttons=ALL),
                 task("b", 'user("zhang.wei")', buttons=ALL, timeout="PT1H", timeoutAction="escalate"))
    instance_id = start(db, config, "li.na", KEY)
    approve(db, config, "li.na", only_task(db, instance_id).id)
    b = only_task(db, instance_id, "b").id

    clock.advance(timedelta(hours=2))
    assert timeouts(db, config) == 1

    assert opened(db, instance_id) == [("b", "li.na")]  # zhang.wei is in 厅办公室, led by li.na
    escalated = last(db, instance_id, "task_escalated")
    assert (escalated.actor_name, escalated.detail["to"]["name"]) == ("", "李娜")
    assert [n.title for n in notes_of(db, "li.na")] == ["超期上报：审核"]
    refused(db, instance_id, Forbidden, "not_your_task", lambda: approve(db, config, "zhang.wei", b))
    assert timeouts(db, config) == 0
    approve(db, config, "li.na", b)
    assert instance(db, instance_id).status == "completed"


def test_escalation_of_a_leaders_own_task_fails_visibly(db, config):
    instance_id, b = at(db, config, "b", b={"timeout": "PT1H", "timeoutAction": "escalate"})

    clock.advance(timedelta(hours=2))
    assert timeouts(db, config) == 1

    assert opened(db, instance_id) == [("b", "li.na")]  # li.na leads 厅办公室 herself
    assert [e.bpmn_id for e in events(db, instance_id, "task_escalation_failed")] == ["b"]
    assert task_row(db, b).next_action_at is None


def test_working_day_timeouts_skip_the_weekend(db, config):
    tz = ZoneInfo(config.timezone)
    today = clock.now().astimezone(tz)
    friday = (today + timedelta(days=(4 - today.weekday()) % 7 or 7)).replace(hour=10, minute=0, second=0,
                                                                              microsecond=0)
    clock.advance(friday - clock.now())
    instance_id, b = at(db, config, "b", b={"timeout": "P1D", "timeoutAction": "approve"})

    due = task_row(db, b).due_at.astimezone(tz)
    assert (due.weekday(), due.date()) == (0, (friday + timedelta(days=3)).date())  # Monday, same time of day
    clock.advance(timedelta(days=2, hours=12))  # Sunday evening
    assert timeouts(db, config) == 0
    clock.advance(friday + timedelta(days=3, minutes=1) - clock.now())
    assert timeouts(db, config) == 1
    assert opened(db, instance_id) == [("c", "liu.yang")]


def test_a_holiday_in_the_calendar_is_skipped_and_a_makeup_saturday_counts(db, config):
    tz = ZoneInfo(config.timezone)
    start_day = datetime(2031, 9, 26, 10, 0, tzinfo=tz)  # a Friday
    with db.transaction() as s:
        s.add_all([Holiday(day=datetime(2031, 9, 27).date(), is_workday=True),  # 调休: Saturday works
                   Holiday(day=datetime(2031, 9, 29).date(), is_workday=False)])  # Monday off
    calendar.invalidate()
    with db.session() as s:
        cal = calendar.load(s, config.timezone)
    assert cal.add_working_days(start_day, 1).astimezone(tz).date() == datetime(2031, 9, 27).date()
    assert cal.add_working_days(start_day, 2).astimezone(tz).date() == datetime(2031, 9, 30).date()


# -- approver rules: empty approver, initiator as approver, dedupe --------------------------------------------
def empty_rule(db, config, rule: str) -> int:
    deploy_chain(db, task("a", buttons=ALL), task("b", 'field("approver")', buttons=ALL, emptyApprover=rule),
                 task("c", 'user("liu.yang")', buttons=ALL))
    instance_id = start(db, config, "zhang.wei", KEY)
    approve(db, config, "zhang.wei", only_task(db, instance_id).id)
    return instance_id


def test_empty_approver_error_leaves_the_task_for_an_administrator(db, config):
    instance_id = empty_rule(db, config, "error")

    b = only_task(db, instance_id, "b")
    assert (b.assignee_id, b.assignment_error) == (None, "the assignment rule 'field(\"approver\")' matched nobody")
    with db.session() as s:
        items, _ = tasks.inbox(s, load_user(s, "admin"), "unassigned")
    assert [t.id for t in items] == [b.id]


@pytest.mark.parametrize("rule", ["approve", "skip"])
def test_empty_approver_approve_or_skip_completes_the_task(db, config, rule):
    instance_id = empty_rule(db, config, rule)

    assert opened(db, instance_id) == [("c", "liu.yang")]
    auto = last(db, instance_id, "task_auto_completed")
    assert (auto.bpmn_id, auto.actor_name) == ("b", "")
    assert auto.detail["reason"].startswith("nobody matched the assignment rule")
    assert auto.detail["reason"].endswith("(skipped)") == (rule == "skip")


@pytest.mark.parametrize(("rule", "who"), [("leader", "li.na"), ("admin", "admin")])
def test_empty_approver_leader_or_admin_gets_the_task(db, config, rule, who):
    instance_id = empty_rule(db, config, rule)

    assert opened(db, instance_id) == [("b", who)]
    assert only_task(db, instance_id).assignment_error is None


def initiator_rule(db, config, rule: str, initiator: str = "zhang.wei") -> int:
    deploy_chain(db, task("a", 'user("wang.fang")', buttons=ALL),
                 task("b", "initiator", buttons=ALL, initiatorApprover=rule),
                 task("c", 'user("liu.yang")', buttons=ALL))
    instance_id = start(db, config, initiator, KEY)
    approve(db, config, "wang.fang", only_task(db, instance_id).id)
    return instance_id


@pytest.mark.parametrize(("rule", "expected"), [
    ("self", [("b", "zhang.wei")]), ("leader", [("b", "li.na")]),
    ("approve", [("c", "liu.yang")]), ("skip", [("c", "liu.yang")])])
def test_initiator_as_approver(db, config, rule, expected):
    instance_id = initiator_rule(db, config, rule)

    assert opened(db, instance_id) == expected
    auto = events(db, instance_id, "task_auto_completed")
    assert [(e.bpmn_id, e.detail["reason"]) for e in auto] == (
        [("b", "the approver is the initiator")] if rule in ("approve", "skip") else [])


def or_sign_started_by_an_approver(db, config, approvers: str) -> int:
    """An or-sign b over ``approvers`` (a Python list literal) in which zhang.wei, who starts it, is an approver and
    the initiator rule approves for him: b is decided, and its other tasks cancelled, in the starting step."""
    mi = ('<bpmn:multiInstanceLoopCharacteristics isSequential="false">'
          "<bpmn:loopDataInputRef>approvers</bpmn:loopDataInputRef>"
          '<bpmn:inputDataItem id="approver" name="approver"/>'
          "<bpmn:completionCondition>True</bpmn:completionCondition></bpmn:multiInstanceLoopCharacteristics>")
    prepare = f'<bpmn:scriptTask id="prepare"><bpmn:script>approvers = {approvers}</bpmn:script></bpmn:scriptTask>'
    b = task("b", 'field("approver")', buttons=ALL, initiatorApprover="approve").replace("</bpmn:userTask>",
                                                                                       mi + "</bpmn:userTask>")
    deploy_chain(db, prepare, b, task("c", 'user("liu.yang")', buttons=ALL))
    return start(db, config, "zhang.wei", KEY)


def test_an_or_sign_decided_by_the_initiator_rule_cancels_the_other_approvers_at_once(db, config):
    # The three approvers' tasks are made and two of them cancelled in one step, before any row is written.
    instance_id = or_sign_started_by_an_approver(db, config, '["li.na", "zhang.wei", "wang.fang"]')

    assert opened(db, instance_id) == [("c", "liu.yang")]
    with db.session() as s:
        rows = s.execute(select(HumanTask.loop_item, HumanTask.state).where(HumanTask.instance_id == instance_id,
                                                                             HumanTask.bpmn_id == "b")).all()
    assert sorted(rows) == [("li.na", "cancelled"), ("wang.fang", "cancelled"), ("zhang.wei", "completed")]


def test_initiator_leader_rule_keeps_a_leader_who_started_it_themselves(db, config):
    instance_id = initiator_rule(db, config, "leader", initiator="li.na")

    assert opened(db, instance_id) == [("b", "li.na")]


def test_dedupe_approves_the_same_persons_next_step(db, config):
    deploy_chain(db, task("a", buttons=ALL), task("b", 'user("zhang.wei")', buttons=ALL, dedupe="true"),
                 task("c", 'user("liu.yang")', buttons=ALL))
    instance_id = start(db, config, "zhang.wei", KEY)

    approve(db, config, "zhang.wei", only_task(db, instance_id).id, opinion="提交")

    assert opened(db, instance_id) == [("c", "liu.yang")]
    auto = last(db, instance_id, "task_auto_completed")
    assert (auto.bpmn_id, auto.detail["reason"]) == ("b", "the same person approved the previous step")
    assert workflow_data(db, instance_id)["decision"] == "approve"


def test_dedupe_leaves_the_step_when_someone_else_acted_before(db, config):
    deploy_chain(db, task("a", 'user("li.na")', buttons=ALL), task("b", 'user("zhang.wei")', buttons=ALL,
                                                                  dedupe="true"))
    instance_id = start(db, config, "zhang.wei", KEY)

    approve(db, config, "li.na", only_task(db, instance_id).id)

    assert opened(db, instance_id) == [("b", "zhang.wei")]


def test_dedupe_follows_who_decided_not_who_recorded_it(db, config):
    deploy_chain(db, task("a", buttons=ALL), task("b", 'user("liu.yang")', buttons=ALL),
                 task("c", 'user("zhang.wei")', buttons=ALL, dedupe="true"),
                 task("d", 'user("liu.yang")', buttons=ALL, dedupe="true"))
    instance_id = start(db, config, "zhang.wei", KEY)
    approve(db, config, "zhang.wei", only_task(db, instance_id).id)

    approve(db, config, "zhang.wei", only_task(db, instance_id, "b").id, opinion="同意", on_behalf_of="liu.yang")

    assert opened(db, instance_id) == [("c", "zhang.wei")]  # the clerk only recorded the leader's decision
    approve(db, config, "zhang.wei", only_task(db, instance_id, "c").id)
    assert opened(db, instance_id) == [("d", "liu.yang")]


def test_dedupe_runs_along_several_steps_of_the_same_person(db, config):
    deploy_chain(db, task("a", buttons=ALL), task("b", 'user("zhang.wei")', buttons=ALL, dedupe="true"),
                 task("c", 'user("zhang.wei")', buttons=ALL, dedupe="true"), task("d", 'user("liu.yang")'))
    instance_id = start(db, config, "zhang.wei", KEY)

    approve(db, config, "zhang.wei", only_task(db, instance_id).id)

    assert opened(db, instance_id) == [("d", "liu.yang")]
    assert [e.bpmn_id for e in events(db, instance_id, "task_auto_completed")] == ["b", "c"]


def test_a_returned_step_is_not_deduped_away(db, config):
    deploy_chain(db, task("a", buttons=ALL), task("b", 'user("li.na")', buttons=ALL, dedupe="true"),
                 task("c", 'user("li.na")', buttons=ALL))
    instance_id = start(db, config, "zhang.wei", KEY)
    approve(db, config, "zhang.wei", only_task(db, instance_id).id)
    approve(db, config, "li.na", only_task(db, instance_id).id)

    act(db, config, "li.na", operations.send_back, only_task(db, instance_id, "c").id, "b", "我再看看")

    assert opened(db, instance_id) == [("b", "li.na")]


def test_without_dedupe_the_same_person_decides_twice(db, config):
    deploy_chain(db, task("a", buttons=ALL), task("b", 'user("zhang.wei")', buttons=ALL))
    instance_id = start(db, config, "zhang.wei", KEY)

    approve(db, config, "zhang.wei", only_task(db, instance_id).id)

    assert opened(db, instance_id) == [("b", "zhang.wei")]


# -- common opinions ------------------------------------------------------------------------------------------
def phrase_texts(db, username: str) -> list[tuple[str, bool]]:
    with db.session() as s:
        return [(p.text, p.user_id is None) for p in operations.phrases(s, load_user(s, username))]


def test_common_opinions_shared_first_then_my_own(db):
    shared = phrase_texts(db, "zhang.wei")
    assert shared[:2] == [("同意", True), ("已阅", True)] and all(mine is True for _, mine in shared)

    with db.transaction() as s:
        mine = operations.add_phrase(s, load_user(s, "zhang.wei"), "  拟同意，请领导审定  ").id
        operations.add_phrase(s, load_user(s, "zhang.wei"), "已登记")

    assert phrase_texts(db, "zhang.wei") == shared + [("拟同意，请领导审定", False), ("已登记", False)]
    assert phrase_texts(db, "li.na") == shared
    with pytest.raises(NotFound), db.transaction() as s:
        operations.delete_phrase(s, load_user(s, "li.na"), mine)
    with pytest.raises(NotFound), db.transaction() as s:
        shared_id = s.scalar(select(OpinionPhrase.id).where(OpinionPhrase.user_id.is_(None)).limit(1))
        operations.delete_phrase(s, load_user(s, "zhang.wei"), shared_id)
    assert len(phrase_texts(db, "zhang.wei")) == len(shared) + 2

    with db.transaction() as s:
        operations.delete_phrase(s, load_user(s, "zhang.wei"), mine)
    assert phrase_texts(db, "zhang.wei") == shared + [("已登记", False)]


def test_common_opinions_are_limited_to_fifty_and_two_hundred_characters(db):
    with db.transaction() as s:
        user = load_user(s, "zhang.wei")
        for i in range(50):
            operations.add_phrase(s, user, f"意见{i}")
    with pytest.raises(Conflict) as err, db.transaction() as s:
        operations.add_phrase(s, load_user(s, "zhang.wei"), "第五十一条")
    assert err.value.code == "too_many_phrases"
    for text in ("", "   ", "长" * 201):
        with pytest.raises(ValidationFailed) as err, db.transaction() as s:
            operations.add_phrase(s, load_user(s, "li.na"), text)
        assert list(err.value.errors) == ["text"]
    assert [t for t, shared in phrase_texts(db, "zhang.wei") if not shared] == [f"意见{i}" for i in range(50)]
    assert all(shared for _, shared in phrase_texts(db, "li.na"))


# -- signatures ------------------------------------------------------------------------------------------------
def test_a_required_signature_is_stored_and_referenced_from_the_trail(db, config):
    instance_id, c = at(db, config, "c", c={"signature": "required"})

    err = refused(db, instance_id, ValidationFailed, "validation_failed",
                  lambda: approve(db, config, "liu.yang", c, opinion="同意"))
    assert [e["code"] for e in err.errors["signature"]] == ["required"]

    image = png()
    approve(db, config, "liu.yang", c, opinion="同意", signature=data_url(image))

    signature_id = last(db, instance_id, "task_completed").detail["signature"]
    with db.session() as s:
        row = s.get(Signature, signature_id)
        assert (row.image, row.user_id, row.instance_id) == (image, user_id(db, "liu.yang"), instance_id)
        assert row.sha256 == hashlib.sha256(image).hexdigest()
    assert instance(db, instance_id).status == "completed"


def test_a_proxy_stores_the_leaders_signature_under_the_leaders_name(db, config):
    instance_id, c = at(db, config, "c", c={"signature": "required"})

    approve(db, config, "zhang.wei", c, opinion="同意", signature=data_url(png()), on_behalf_of="liu.yang")

    with db.session() as s:
        row = s.get(Signature, last(db, instance_id, "task_completed").detail["signature"])
        assert row.user_id == user_id(db, "liu.yang")


@pytest.mark.parametrize("bad", [
    data_url(png(), "jpeg"),  # not a PNG data URL
    data_url(b"\xff\xd8\xff\xe0" + b"\x00" * 200),  # PNG in name only
    data_url(png()[:60]),  # too small to be an image
    "data:image/png;base64,not base64!",
    data_url(b"\x89PNG\r\n\x1a\n" + b"\x00" * (600 * 1024)),  # over 512 KiB
])
def test_a_signature_that_is_not_a_usable_png_is_refused(db, config, bad):
    instance_id, c = at(db, config, "c", c={"signature": "optional"})

    err = refused(db, instance_id, ValidationFailed, "validation_failed",
                  lambda: approve(db, config, "liu.yang", c, opinion="同意", signature=bad))
    assert [e["code"] for e in err.errors["signature"]] in (["invalid"], ["maxLength"])


def test_the_signature_of_a_rejection_is_kept_too(db, config):
    instance_id, c = at(db, config, "c", c={"signature": "optional"})

    act(db, config, "liu.yang", operations.reject, c, "不同意", data_url(png()))

    assert last(db, instance_id, "task_completed").detail["signature"]
    assert instance(db, instance_id).status == "terminated"


def test_a_required_signature_is_required_to_reject_too(db, config):
    instance_id, c = at(db, config, "c", c={"signature": "required"})

    err = refused(db, instance_id, ValidationFailed, "validation_failed",
                  lambda: act(db, config, "liu.yang", operations.reject, c, "不同意"))
    assert list(err.errors) == ["signature"]
    act(db, config, "liu.yang", operations.reject, c, "不同意", data_url(png()))
    assert last(db, instance_id, "task_completed").detail["signature"]


def test_a_rejection_that_returns_keeps_its_signature(db, config):
    instance_id, c = at(db, config, "c", c={"signature": "required", "onReject": "a"})

    act(db, config, "liu.yang", operations.reject, c, "请重新拟稿", data_url(png()))

    returned = last(db, instance_id, "task_returned")
    assert (returned.detail["target"], returned.detail["action"]) == ("a", "reject") and returned.detail["signature"]
    assert opened(db, instance_id) == [("a", "zhang.wei")]


# -- the audit trail after many operations -----------------------------------------------------------------------
def test_the_audit_chain_verifies_after_a_sequence_of_operations(db, config):
    instance_id, b = at(db, config, "b", allow_cancel=True)
    act(db, config, "li.na", operations.copy_to, b, ["chen.jie"], note="请阅")
    act(db, config, "li.na", operations.delegate, b, "wang.fang")
    approve(db, config, "wang.fang", b, opinion="拟同意")
    [row] = act(db, config, "li.na", operations.add_signers, b, ["zhou.qiang"], "after")
    approve(db, config, "li.na", b, opinion="同意")
    sign(db, config, "zhou.qiang", row.id, "复核")
    c = only_task(db, instance_id, "c").id
    act(db, config, "zhang.wei", operations.urge, instance_id)
    act(db, config, "liu.yang", operations.send_back, c, "a", "退回", straight_back=True)
    approve(db, config, "zhang.wei", only_task(db, instance_id).id, {"note": "改"})
    c = only_task(db, instance_id, "c").id
    act(db, config, "liu.yang", operations.transfer, c, "wang.fang")
    act(db, config, "zhang.wei", operations.cancel, instance_id, "撤销")

    kinds = {e.kind for e in events(db, instance_id)}
    assert {"copied", "task_delegated", "delegation_resolved", "signers_added", "task_decided", "signer_signed",
            "urged", "task_returned", "task_transferred", "cancelled"} <= kinds
    assert chain_intact(db, instance_id)
    with db.transaction() as s:  # and tampering with any of them shows
        event = s.scalar(select(InstanceEvent).where(InstanceEvent.instance_id == instance_id,
                                                     InstanceEvent.kind == "task_delegated"))
        event.opinion = "篡改"
        seq = event.seq
    with db.session() as s:
        assert audit.verify_instance(s, instance_id) == seq


def test_signers_added_before_the_upgrade_that_flags_their_task_are_still_waited_for(db, config):
    # Migration 0010 marks tasks that have signer rows: a completion looks for waiting signers only then.
    instance_id, b = at(db, config, "b")
    act(db, config, "li.na", operations.add_signers, b, ["wang.fang"], "after")
    assert task_row(db, b).has_signers
    schema.downgrade(config, "0009")
    schema.upgrade(config)
    db.dispose()  # the pools hold connections that knew the old table

    assert task_row(db, b).has_signers
    approve(db, config, "li.na", b, {"note": "李娜意见"}, opinion="同意")
    assert task_row(db, b).pending is not None
    assert opened(db, instance_id) == [("b", "li.na"), ("b+after", "wang.fang")]


def test_a_pool_task_made_and_cancelled_in_one_step_leaves_no_candidates(db, config):
    # The or-sign's first approver is the initiator (decided at once); the second is a pool of two, cancelled
    # in the same step before any row is written: its candidate rows must not be written either.
    instance_id = or_sign_started_by_an_approver(db, config, '["zhang.wei", ["li.na", "wang.fang"]]')

    assert opened(db, instance_id) == [("c", "liu.yang")]
    with db.session() as s:
        pool = s.scalar(select(HumanTask).where(HumanTask.instance_id == instance_id, HumanTask.bpmn_id == "b",
                                                HumanTask.state == "cancelled"))
        assert pool is not None and pool.assignee_id is None
        assert s.scalar(select(func.count()).select_from(TaskCandidate).where(TaskCandidate.task_id == pool.id)) == 0
