"""engine.jobs: service tasks run as outbox jobs, with retries, back-off, leases and incidents."""
from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

import pytest
from sqlalchemy import select

from connectors.base import Connector, ConnectorError, Operation
from engine import clock, instances, jobs
from engine.connectors import Registry
from engine.models import Job
from tests.engine.helpers import (
    bpmn,
    deploy_bundle,
    events,
    flows,
    instance,
    jobs_of,
    load_user,
    only_task,
    open_tasks,
    service_task,
    start,
    user_task,
    workflow_data,
)

PROCESS = "probe_call"


class Probe(Connector):
    """A test connector: each call takes the next outcome from ``plan`` and records its context."""

    name = "probe"
    title = "测试探针"
    operations = {
        "Echo": Operation(method="echo", params={"type": "object", "properties": {"value": {"type": "string"}}},
                          retries=4),
    }
    plan: ClassVar[list[str]] = []
    keys: ClassVar[list[str]] = []
    instance_ids: ClassVar[list[int | None]] = []

    def check(self) -> None:
        return None

    def echo(self, context, value: str) -> dict:
        Probe.keys.append(context.idempotency_key)
        Probe.instance_ids.append(context.instance_id)
        outcome = Probe.plan.pop(0) if Probe.plan else "ok"
        if outcome == "fail":
            raise ConnectorError("the remote system is down")
        if outcome == "refuse":
            raise ConnectorError("the remote system refused the request", retryable=False)
        if outcome == "crash":
            raise RuntimeError("unexpected failure")
        return {"echo": value, "call": len(Probe.keys)}


@pytest.fixture
def probe():
    """The Probe connector with a clean plan and call log."""
    Probe.plan, Probe.keys, Probe.instance_ids = [], [], []
    yield Probe
    Probe.plan, Probe.keys, Probe.instance_ids = [], [], []


@pytest.fixture
def probe_registry(probe) -> Registry:
    registry = Registry()
    registry.register(probe)
    return registry


@pytest.fixture
def started(db, config, probe_registry):
    """Deploy start → call (probe/Echo) → after (user task) → end, and start one instance."""
    body = ('<bpmn:startEvent id="start"/>'
            + service_task("call", "probe/Echo", "echoed", {"value": "'你好 ' + initiator"})
            + user_task("after", "后续处理") + '<bpmn:endEvent id="end"/>'
            + flows(("start", "call"), ("call", "after"), ("after", "end")))
    deploy_bundle(db, PROCESS, bpmn(PROCESS, body), registry=probe_registry)
    return start(db, config, "zhang.wei", PROCESS)


def the_job(db, instance_id: int) -> Job:
    [job] = jobs_of(db, instance_id)
    return job


def test_starting_queues_a_job_and_waits(db, started):
    job = the_job(db, started)

    assert (job.kind, job.status, job.attempts, job.payload["operation"]) == ("service", "pending", 0, "probe/Echo")
    assert job.payload["params"] == {"value": "你好 zhang.wei"}
    assert open_tasks(db, started) == []
    assert instance(db, started).active_elements == ["call"]
    assert jobs.due_jobs(db) == [job.id]
    assert events(db, started)[-1].kind == "service_call_queued"


def test_success_applies_the_result_and_continues(db, config, probe_registry, started):
    job_id = the_job(db, started).id

    assert jobs.execute(db, config, probe_registry, job_id) == "done"

    job = the_job(db, started)
    assert (job.status, job.attempts, job.result) == ("done", 1, {"echo": "你好 zhang.wei", "call": 1})
    assert workflow_data(db, started)["echoed"] == {"echo": "你好 zhang.wei", "call": 1}
    assert only_task(db, started).bpmn_id == "after"
    completed = events(db, started, "service_call_completed")[0]
    assert (completed.bpmn_id, completed.detail["result"], completed.detail["attempts"]) == ("call", job.result, 1)
    assert Probe.keys == [job_id] and Probe.instance_ids == [started]
    assert jobs.due_jobs(db) == []


def test_a_process_error_after_the_result_puts_the_instance_in_error(db, config, probe_registry):
    body = ('<bpmn:startEvent id="start"/>' + service_task("call", "probe/Echo", "echoed", {"value": "'x'"})
            + '<bpmn:exclusiveGateway id="route" name="分流"/>' + user_task("after", "后续处理")
            + '<bpmn:endEvent id="end"/>' + flows(("start", "call"), ("call", "route"), ("after", "end"))
            + '<bpmn:sequenceFlow id="only_if" sourceRef="route" targetRef="after">'
            "<bpmn:conditionExpression>echoed['call'] == 99</bpmn:conditionExpression></bpmn:sequenceFlow>")
    deploy_bundle(db, "dead_end", bpmn("dead_end", body), registry=probe_registry)
    instance_id = start(db, config, "zhang.wei", "dead_end")
    job_id = the_job(db, instance_id).id

    assert jobs.execute(db, config, probe_registry, job_id) == "failed"

    job = the_job(db, instance_id)
    assert (job.status, job.result) == ("failed", {"echo": "x", "call": 1})  # kept for a retry after repair
    row = instance(db, instance_id)
    assert row.status == "error" and "route" in row.error
    assert events(db, instance_id)[-1].kind == "incident"
    clock.advance(timedelta(seconds=config.job_lease_seconds + 1))
    assert jobs.due_jobs(db) == []  # not left running under a lease, to be called again and again
    assert Probe.keys == [job_id]


def test_a_done_job_is_skipped(db, config, probe_registry, started):
    job_id = the_job(db, started).id
    jobs.execute(db, config, probe_registry, job_id)

    assert jobs.execute(db, config, probe_registry, job_id) == "skipped"
    assert len(Probe.keys) == 1
    assert len(events(db, started, "service_call_completed")) == 1


def test_a_failing_call_retries_with_back_off_and_the_same_key(db, config, probe_registry, probe, started):
    config = config.with_(job_backoff_seconds=60)
    probe.plan = ["fail", "fail", "ok"]
    job_id = the_job(db, started).id

    assert jobs.execute(db, config, probe_registry, job_id) == "retry"
    first = the_job(db, started)
    assert (first.status, first.attempts, first.lease_until) == ("pending", 1, None)
    assert "the remote system is down" in first.last_error
    assert first.available_at - first.updated_at == timedelta(seconds=60)
    assert jobs.due_jobs(db) == []  # not before the back-off has passed
    assert jobs.execute(db, config, probe_registry, job_id) == "skipped"

    clock.advance(timedelta(seconds=61))
    assert jobs.due_jobs(db) == [job_id]
    assert jobs.execute(db, config, probe_registry, job_id) == "retry"
    second = the_job(db, started)
    assert second.available_at - second.updated_at == timedelta(seconds=120)  # doubled

    clock.advance(timedelta(seconds=121))
    assert jobs.execute(db, config, probe_registry, job_id) == "done"

    assert Probe.keys == [job_id, job_id, job_id]
    assert the_job(db, started).attempts == 3
    assert instance(db, started).status == "running"
    assert only_task(db, started).bpmn_id == "after"


def test_after_max_attempts_the_instance_goes_to_error(db, config, probe_registry, probe, started):
    probe.plan = ["fail"] * 10
    job_id = the_job(db, started).id
    outcomes = []
    for _ in range(config.job_max_attempts):
        clock.advance(timedelta(seconds=60))
        outcomes.append(jobs.execute(db, config, probe_registry, job_id))

    assert outcomes == ["retry"] * (config.job_max_attempts - 1) + ["failed"]
    job = the_job(db, started)
    assert (job.status, job.attempts) == ("failed", config.job_max_attempts)
    row = instance(db, started)
    assert row.status == "error" and "the remote system is down" in row.error
    incident = events(db, started)[-1]
    assert (incident.kind, incident.bpmn_id, incident.detail["attempts"]) == ("incident", "call",
                                                                              config.job_max_attempts)
    clock.advance(timedelta(hours=1))
    assert jobs.due_jobs(db) == []


def test_resume_by_admin_requeues_the_failed_job(db, config, probe_registry, probe, started):
    probe.plan = ["refuse"]
    job_id = the_job(db, started).id
    assert jobs.execute(db, config, probe_registry, job_id) == "failed"

    with db.transaction() as s:
        instances.resume(s, config, load_user(s, "admin"), started, "对方系统已恢复")

    job = the_job(db, started)
    assert (job.status, job.attempts) == ("pending", 0)
    assert instance(db, started).status == "running" and instance(db, started).error is None
    assert jobs.due_jobs(db) == [job_id]
    assert jobs.execute(db, config, probe_registry, job_id) == "done"
    assert only_task(db, started).bpmn_id == "after"
    assert Probe.keys == [job_id, job_id]
    assert [e.kind for e in events(db, started)][-4:] == ["incident", "resumed", "service_call_completed",
                                                          "task_created"]


def test_a_non_retryable_error_fails_at_once(db, config, probe_registry, probe, started):
    probe.plan = ["refuse"]

    assert jobs.execute(db, config, probe_registry, the_job(db, started).id) == "failed"

    assert (the_job(db, started).attempts, instance(db, started).status) == (1, "error")
    assert events(db, started)[-1].kind == "incident"


def test_an_unexpected_exception_is_retried(db, config, probe_registry, probe, started):
    probe.plan = ["crash"]

    assert jobs.execute(db, config, probe_registry, the_job(db, started).id) == "retry"

    assert "RuntimeError: unexpected failure" in the_job(db, started).last_error


def test_an_unknown_operation_fails_at_once(db, config, started):
    assert jobs.execute(db, config, Registry(), the_job(db, started).id) == "failed"

    assert "unknown connector operation" in the_job(db, started).last_error
    assert instance(db, started).status == "error"


def test_a_job_of_a_dead_worker_is_picked_up_after_its_lease(db, config, probe_registry, started):
    job_id = the_job(db, started).id
    taken = jobs.claim(db, config, job_id)  # the worker dies right after claiming
    assert taken["id"] == job_id and the_job(db, started).status == "running"

    assert jobs.due_jobs(db) == []
    assert jobs.execute(db, config, probe_registry, job_id) == "skipped"

    clock.advance(timedelta(seconds=config.job_lease_seconds + 1))
    assert jobs.due_jobs(db) == [job_id]
    assert jobs.execute(db, config, probe_registry, job_id) == "done"

    assert the_job(db, started).attempts == 2
    assert Probe.keys == [job_id]
    assert only_task(db, started).bpmn_id == "after"


def test_a_result_arriving_while_suspended_waits_for_resume(db, config, probe_registry, started):
    job_id = the_job(db, started).id
    with db.transaction() as s:
        instances.suspend(s, config, load_user(s, "admin"), started)

    assert jobs.execute(db, config, probe_registry, job_id) == "waiting"
    assert the_job(db, started).status == "waiting" and open_tasks(db, started) == []

    with db.transaction() as s:
        instances.resume(s, config, load_user(s, "admin"), started)
    assert jobs.execute(db, config, probe_registry, job_id) == "done"

    assert Probe.keys == [job_id]  # the stored result was applied, not fetched again
    assert only_task(db, started).bpmn_id == "after"


def test_two_executions_of_one_job_call_once(db, config, probe_registry, started):
    job_id = the_job(db, started).id

    outcomes = [jobs.execute(db, config, probe_registry, job_id) for _ in range(2)]

    assert outcomes == ["done", "skipped"]
    with db.session() as s:
        assert s.scalars(select(Job.status).where(Job.instance_id == started)).all() == ["done"]
