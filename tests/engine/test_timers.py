"""Timers: the 发文 签发 reminder, duration timers under the embedded runner, intermediate and
interrupting boundary timers. The engine clock is moved forward instead of waiting."""
from __future__ import annotations

from datetime import timedelta

from engine import clock, instances, jobs, notifications
from engine.connectors import EngineContext
from engine.jobs import EmbeddedRunner
from tests.engine.helpers import (
    bpmn,
    complete,
    deploy_bundle,
    events,
    flows,
    instance,
    jobs_of,
    load_user,
    only_task,
    open_tasks,
    poll,
    review,
    run_jobs,
    start,
    start_dispatch,
    user_task,
)


def notifications_of(db, username: str) -> list:
    with db.session() as s:
        items, total = notifications.for_user(s, load_user(s, username))
    assert total == len(items)
    return items


def timer(duration: str) -> str:
    return f"<bpmn:timerEventDefinition><bpmn:timeDuration>{duration}</bpmn:timeDuration></bpmn:timerEventDefinition>"


# -- the 发文 签发 reminder -----------------------------------------------------------------------------
def at_sign_off(db, config) -> int:
    instance_id = start_dispatch(db, config, title="关于做好汛期值班工作的通知")
    review(db, config, instance_id)
    assert only_task(db, instance_id).bpmn_id == "sign_off"
    return instance_id


def test_the_sign_off_reminder_is_scheduled_but_not_yet_due(db, config):
    instance_id = at_sign_off(db, config)

    row = instance(db, instance_id)
    assert row.next_timer_at is not None and row.next_timer_at > clock.now() + timedelta(hours=12)
    assert jobs.fire_due_timers(db, config) == 0
    assert jobs_of(db, instance_id) == []
    assert "sign_reminder" in row.active_elements


def test_the_reminder_notifies_the_signer_and_the_task_stays_open(db, config, registry):
    instance_id = at_sign_off(db, config)
    sign_off_task = only_task(db, instance_id)

    clock.advance(timedelta(days=5))
    assert jobs.fire_due_timers(db, config) == 1

    [job] = jobs_of(db, instance_id)
    assert job.payload["operation"] == "notify/RemindAssignees"
    assert run_jobs(db, config, registry) == ["done"]
    [note] = notifications_of(db, "liu.yang")
    assert note.title == "公文待签发：关于做好汛期值班工作的通知"
    assert "一个工作日" in note.body
    assert (note.category, note.instance_id, note.link) == ("reminder", instance_id, f"/instances/{instance_id}")
    assert notifications_of(db, "li.na") == []
    assert only_task(db, instance_id).id == sign_off_task.id
    assert events(db, instance_id, "timer_fired")[0].detail["timers"] == ["一个工作日未签发"]
    assert instance(db, instance_id).status == "running"


def test_the_reminder_fires_once(db, config, registry):
    instance_id = at_sign_off(db, config)
    clock.advance(timedelta(days=5))
    jobs.fire_due_timers(db, config)
    run_jobs(db, config, registry)

    clock.advance(timedelta(days=5))

    assert jobs.fire_due_timers(db, config) == 0
    assert instance(db, instance_id).next_timer_at is None
    assert len(notifications_of(db, "liu.yang")) == 1


def test_a_retried_reminder_job_does_not_notify_twice(db, config, registry):
    instance_id = at_sign_off(db, config)
    clock.advance(timedelta(days=5))
    jobs.fire_due_timers(db, config)
    [job] = jobs_of(db, instance_id)
    jobs.claim(db, config, job.id)  # the first worker notified, then died before applying the result
    EngineContext(db, job.id, instance_id).notify(["liu.yang"], "公文待签发")

    clock.advance(timedelta(seconds=config.job_lease_seconds + 1))
    assert run_jobs(db, config, registry) == ["done"]

    assert len(notifications_of(db, "liu.yang")) == 1


def test_a_suspended_instance_fires_its_due_timer_on_resume(db, config, registry):
    instance_id = at_sign_off(db, config)
    with db.transaction() as s:
        instances.suspend(s, config, load_user(s, "admin"), instance_id)
    clock.advance(timedelta(days=5))

    assert jobs.fire_due_timers(db, config) == 0
    assert jobs_of(db, instance_id) == []

    with db.transaction() as s:
        instances.resume(s, config, load_user(s, "admin"), instance_id)
    assert run_jobs(db, config, registry) == ["done"]
    assert len(notifications_of(db, "liu.yang")) == 1
    assert only_task(db, instance_id).bpmn_id == "sign_off"


def test_signing_off_in_time_cancels_the_reminder(db, config, registry):
    instance_id = at_sign_off(db, config)
    complete(db, config, "liu.yang", only_task(db, instance_id).id, {"sign_decision": "approve"})

    row = instance(db, instance_id)
    assert row.next_timer_at is None and "sign_reminder" not in row.active_elements
    clock.advance(timedelta(days=5))
    assert jobs.fire_due_timers(db, config) == 0


# -- test bundles ---------------------------------------------------------------------------------------
def deploy_intermediate_timer(db, key: str, duration: str) -> None:
    body = ('<bpmn:startEvent id="start"/>'
            f'<bpmn:intermediateCatchEvent id="wait" name="等待">{timer(duration)}</bpmn:intermediateCatchEvent>'
            + user_task("after", "到时处理") + '<bpmn:endEvent id="end"/>'
            + flows(("start", "wait"), ("wait", "after"), ("after", "end")))
    deploy_bundle(db, key, bpmn(key, body))


def test_an_intermediate_timer_waits_then_continues(db, config):
    deploy_intermediate_timer(db, "wait_an_hour", '"PT1H"')
    instance_id = start(db, config, "zhang.wei", "wait_an_hour")

    assert open_tasks(db, instance_id) == []
    assert instance(db, instance_id).active_elements == ["wait"]
    clock.advance(timedelta(minutes=59))
    assert jobs.fire_due_timers(db, config) == 0

    clock.advance(timedelta(minutes=2))
    assert jobs.fire_due_timers(db, config) == 1

    assert only_task(db, instance_id).bpmn_id == "after"
    assert instance(db, instance_id).next_timer_at is None


def test_a_timer_duration_may_come_from_data(db, config):
    deploy_intermediate_timer(db, "wait_as_told", "wait_for")
    instance_id = start(db, config, "zhang.wei", "wait_as_told", data={"wait_for": "P2D"})

    clock.advance(timedelta(days=1))
    assert jobs.fire_due_timers(db, config) == 0
    clock.advance(timedelta(days=1, minutes=1))
    assert jobs.fire_due_timers(db, config) == 1
    assert only_task(db, instance_id).bpmn_id == "after"


def test_an_interrupting_boundary_timer_cancels_the_task(db, config):
    body = ('<bpmn:startEvent id="start"/>' + user_task("handle", "处置")
            + '<bpmn:boundaryEvent id="overdue" attachedToRef="handle" cancelActivity="true">'
            + timer('"PT2H"') + "</bpmn:boundaryEvent>"
            + user_task("escalated", "上报处置", 'user("li.na")') + '<bpmn:endEvent id="end"/>'
            '<bpmn:endEvent id="end_escalated"/>'
            + flows(("start", "handle"), ("handle", "end"), ("overdue", "escalated"), ("escalated", "end_escalated")))
    deploy_bundle(db, "escalation", bpmn("escalation", body))
    instance_id = start(db, config, "zhang.wei", "escalation")
    handle = only_task(db, instance_id)

    clock.advance(timedelta(hours=2, seconds=1))
    assert jobs.fire_due_timers(db, config) == 1

    escalated = only_task(db, instance_id)
    assert escalated.bpmn_id == "escalated"
    cancelled = events(db, instance_id, "task_cancelled")
    assert [e.task_id for e in cancelled] == [handle.id]
    complete(db, config, "li.na", escalated.id, {"note": "已处置"})
    assert instance(db, instance_id).status == "completed"


def test_a_pt1s_timer_fires_under_the_embedded_runner(db, config, registry):
    deploy_intermediate_timer(db, "wait_a_second", '"PT1S"')
    config = config.with_(scheduler_interval=0.1)
    instance_id = start(db, config, "zhang.wei", "wait_a_second")
    assert open_tasks(db, instance_id) == []
    runner = EmbeddedRunner(db, config, registry)
    runner.start()
    try:
        poll(lambda: open_tasks(db, instance_id), timeout=2.0)
    finally:
        runner.stop()

    assert only_task(db, instance_id).bpmn_id == "after"
    assert [e.kind for e in events(db, instance_id)][-2:] == ["timer_fired", "task_created"]


def test_the_embedded_runner_runs_queued_jobs(db, config, registry):
    instance_id = at_sign_off(db, config)
    complete(db, config, "liu.yang", only_task(db, instance_id).id, {"sign_decision": "approve"})
    runner = EmbeddedRunner(db, config, registry)
    runner.start()
    try:
        poll(lambda: open_tasks(db, instance_id), timeout=5.0)
    finally:
        runner.stop()

    assert only_task(db, instance_id).bpmn_id == "distribute"
    assert [j.status for j in jobs_of(db, instance_id)] == ["done"]
