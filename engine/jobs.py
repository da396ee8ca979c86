"""Background work: outbox jobs (service tasks) and due timers.

A job row is written in the transaction that queued it. Whoever runs it first claims it with a
conditional UPDATE and a lease, calls the connector outside any transaction, then applies the
result in a short transaction of its own. A worker that dies leaves an expired lease, and the job is
picked up again with the same id, which is the idempotency key the connector passes on.

Embedded mode runs these loops as threads in the server; with Redis, ``emflow scheduler`` relays
due jobs to RQ and fires timers, and ``emflow worker`` processes run the jobs.
"""
from __future__ import annotations

import logging
import threading
from datetime import timedelta
from uuid import UUID

from SpiffWorkflow.bpmn.specs.event_definitions.item_aware_event import ErrorEventDefinition
from SpiffWorkflow.bpmn.util.event import BpmnEvent
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import event, or_, select, update
from sqlalchemy.orm import Session

from connectors.base import ConnectorError

from . import clock, incidents, messaging
from .config import Config
from .connectors import Registry, callback_token, prepare
from .db import Database
from .errors import EngineError
from .models import Job, ProcessInstance
from .runtime import TIMER_EVENTS, Step, lock_instance

log = logging.getLogger("emflow.jobs")
WAKE = threading.Event()


@event.listens_for(Session, "after_commit")
def _wake_after_commit(session):
    if session.info.pop("jobs_written", False):
        WAKE.set()


@event.listens_for(Session, "after_rollback")
def _forget_on_rollback(session):
    session.info.pop("jobs_written", None)


def due_jobs(db: Database, limit: int = 20, statuses=("pending",)) -> list[str]:
    """Ids of jobs ready to run: due and pending, or holding an expired lease."""
    now = clock.now()
    with db.session() as s:
        return list(s.scalars(select(Job.id).where(or_(
            (Job.status.in_(statuses)) & (Job.available_at <= now),
            (Job.status.in_(("queued", "running"))) & (Job.lease_until < now),
        )).order_by(Job.available_at).limit(limit)))


def claim(db: Database, config: Config, job_id: str, from_statuses=("pending", "queued")) -> dict | None:
    """Atomically take a job for running; None if someone else has it or it is not due."""
    now = clock.now()
    with db.transaction() as s:
        taken = s.execute(update(Job).where(Job.id == job_id, or_(
            (Job.status.in_(from_statuses)) & (Job.available_at <= now),
            (Job.status.in_(("queued", "running"))) & (Job.lease_until < now),
        )).values(status="running", attempts=Job.attempts + 1, updated_at=now,
                  lease_until=now + timedelta(seconds=config.job_lease_seconds)))
        if taken.rowcount != 1:
            return None
        job = s.get(Job, job_id)
        return {"id": job.id, "instance_id": job.instance_id, "task_id": job.task_id, "payload": job.payload,
                "attempts": job.attempts, "max_attempts": job.max_attempts, "result": job.result}


def execute(db: Database, config: Config, registry: Registry, job_id: str) -> str:
    """Run one job to an outcome: 'done', 'retry', 'failed', 'caught', 'waiting' or 'skipped'."""
    job = claim(db, config, job_id)
    if job is None:
        return "skipped"
    result = job["result"]
    if result is None and job["attempts"] > job["max_attempts"]:
        # Workers kept dying during this call (their leases ran out): stop calling, let an admin decide.
        return _fail(db, config, job, "the worker running this call stopped before it finished, on every attempt",
                     retryable=False, code="worker_lost")
    if result is None:
        payload = job["payload"]
        try:
            with db.session() as s:
                call = prepare(registry, s, config, payload["operation"])
            job["max_attempts"] = call.max_attempts
            message = payload.get("callback_message")
            callback = (f"{config.public_url}/api/v1/callbacks/{callback_token(config, job['id'], message)}"
                        if message else "")
            result = call.run(db, payload.get("params", {}), job["id"], job["instance_id"], callback)
        except ConnectorError as exc:
            return _fail(db, config, job, str(exc), exc.retryable, exc.code)
        except EngineError as exc:  # the platform's own set-up (e.g. no secrets key): an admin must act
            return _fail(db, config, job, exc.message, False, exc.code)
    return _apply(db, config, job, result)


def _apply(db: Database, config: Config, job: dict, result) -> str:
    try:
        with db.transaction() as s:
            row = s.get(Job, job["id"])
            if row.status != "running":
                return "skipped"
            messaging.record_job(s, row, result)
            if row.instance_id is None:  # a standalone job (e.g. a text message): nothing to advance
                row.status, row.result, row.lease_until, row.updated_at = "done", result, None, clock.now()
                return "done"
            step = Step.open(s, config, job["instance_id"], None)
            if step.instance.status != "running":
                row.status, row.result, row.lease_until = "waiting", result, None
                return "waiting"
            task = step.workflow.get_task_from_id(UUID(job["task_id"]))
            payload = job["payload"]
            if task is None or task.state != TaskState.STARTED:
                row.status, row.result = "done", result
                step.event("service_result_ignored", task_id=job["task_id"], bpmn_id=payload["bpmn_id"])
                step.save()
                return "done"
            task.data[payload["result_variable"]] = result
            step.event("service_call_completed", task_id=job["task_id"], bpmn_id=payload["bpmn_id"],
                       task_name=task.task_spec.bpmn_name, operation=payload["operation"], result=result,
                       attempts=job["attempts"])
            step.run(task)  # completing a STARTED service task runs its postScript
            step.save()
            row.status, row.result, row.lease_until, row.updated_at = "done", result, None, clock.now()
            return "done"
    except EngineError as exc:
        return _fail(db, config, job, exc.message, retryable=False, result=result)


def _fail(db: Database, config: Config, job: dict, message: str, retryable: bool, code: str | None = None,
          result=None) -> str:
    now = clock.now()
    with db.transaction() as s:
        row = s.get(Job, job["id"])
        row.last_error, row.updated_at, row.lease_until = message[:2000], now, None
        row.max_attempts = job["max_attempts"]
        if result is not None:
            row.result = result
        if retryable and row.attempts < row.max_attempts:
            row.status = "pending"
            row.available_at = now + timedelta(seconds=config.job_backoff_seconds * 2 ** (row.attempts - 1))
            log.warning("job %s attempt %s/%s failed, retrying: %s", row.id, row.attempts, row.max_attempts, message)
            return "retry"
        row.status = "failed"
        messaging.record_job(s, row, result, None if result is not None else message)
        step = Step.open(s, config, row.instance_id, None) if row.instance_id else None
        if step is None or step.instance.status != "running":
            log.error("job %s failed for good: %s", row.id, message)
            return "failed"
        payload = job["payload"]
        error = {"code": code, "message": message[:2000], "operation": payload.get("operation"),
                 "attempts": row.attempts}
        if result is None and _catch(step, job["task_id"], error):
            row.status = "caught"
            step.event("service_error_caught", task_id=row.task_id, bpmn_id=payload.get("bpmn_id"), **error)
            step.run()
            step.save()
            log.warning("job %s failed; the model's error boundary took over: %s", row.id, message)
            return "caught"
        incidents.raise_for_job(s, step.instance, row, message, payload.get("operation"))
        log.error("job %s failed for good: %s", row.id, message)
        return "failed"


def _catch(step: Step, task_id: str, error: dict) -> bool:
    """Follow an error boundary event of the failed service task, if the model has one for this code."""
    task = step.workflow.get_task_from_id(UUID(task_id))
    if task is None or task.state != TaskState.STARTED or task.parent is None:
        return False
    boundaries = [t for t in task.parent.children if t is not task and t.state == TaskState.WAITING
                  and isinstance(getattr(t.task_spec, "event_definition", None), ErrorEventDefinition)]
    # The boundary naming this error code wins over a catch-all one, as BPMN intends.
    exact = [t for t in boundaries if error["code"] and t.task_spec.event_definition.code == error["code"]]
    catch_all = [t for t in boundaries if not t.task_spec.event_definition.code]
    chosen = (exact or catch_all or [None])[0]
    if chosen is None:
        return False
    # The error lands in ``service_error`` and, if the model names one (variableName), in that variable too.
    chosen.data["service_error"] = error
    chosen.task_spec.catch(chosen, BpmnEvent(chosen.task_spec.event_definition, payload=dict(error)))
    chosen.task_spec._update(chosen)
    return True


def mark_error(db: Database, instance_id: int, message: str) -> None:
    """Put an instance in the error state with an incident (admins see it) after a background step failed."""
    with db.transaction() as s:
        inst = lock_instance(s, instance_id)
        if inst is not None and inst.status == "running":
            incidents.raise_for_step(s, inst, message)


def fire_due_timers(db: Database, config: Config, limit: int = 100) -> int:
    """Advance every running instance whose next timer is due; returns how many moved."""
    now = clock.now()
    with db.session() as s:
        ids = list(s.scalars(select(ProcessInstance.id).where(
            ProcessInstance.status == "running", ProcessInstance.next_timer_at <= now)
            .order_by(ProcessInstance.next_timer_at).limit(limit)))
    fired = 0
    for instance_id in ids:
        try:
            with db.transaction() as s:
                step = Step.open(s, config, instance_id, None, skip_locked=True)
                if step is None or step.instance.status != "running" or step.instance.next_timer_at is None \
                        or step.instance.next_timer_at > clock.now():
                    continue
                due = [e.name for e in step.workflow.waiting_events() if e.event_type in TIMER_EVENTS]
                step.run()
                step.event("timer_fired", timers=due)
                step.save()
                fired += 1
        except EngineError as exc:
            mark_error(db, instance_id, f"timer step failed: {exc.message}")
        except Exception as exc:  # noqa: BLE001 - the loop must survive any one instance
            log.exception("timer step for instance %s failed", instance_id)
            mark_error(db, instance_id, f"timer step failed: {type(exc).__name__}: {exc}")
    return fired


def scheduler_pass(db: Database, config: Config, registry: Registry) -> None:
    """One round of the scheduler's periodic work; each part is logged on failure and never stops the others."""
    from . import alarms
    from .oa import poll_due
    from .operations import handle_timeouts

    def alarm_delays():  # on/off-delays that end without a new reading, shelving that expires, silent gateways
        with db.transaction() as s:
            alarms.tick(s, config)

    for work in (lambda: fire_due_timers(db, config), lambda: handle_timeouts(db, config), alarm_delays):
        try:
            work()
        except Exception:  # noqa: BLE001 - the loop outlives any one failure; it is logged
            log.exception("scheduler work failed")
    poll_due(db, config, registry)  # the OA, every poll_seconds; never raises


def relay(db: Database, config: Config, queue) -> int:
    """Move due jobs to RQ (Redis mode); a queued job whose lease expires is relayed again."""
    moved = 0
    for job_id in due_jobs(db, 100):
        now = clock.now()
        with db.transaction() as s:
            taken = s.execute(update(Job).where(Job.id == job_id, or_(
                (Job.status == "pending") & (Job.available_at <= now),
                (Job.status.in_(("queued", "running"))) & (Job.lease_until < now),
            )).values(status="queued", lease_until=now + timedelta(seconds=config.job_lease_seconds)))
        if taken.rowcount != 1:
            continue
        try:
            queue.enqueue(rq_execute, job_id, job_timeout=config.job_lease_seconds)
        except Exception:
            with db.transaction() as s:  # Redis refused it: make it due again at once, not after the lease
                s.execute(update(Job).where(Job.id == job_id, Job.status == "queued").values(status="pending"))
            raise
        moved += 1
    return moved


_context: tuple | None = None


def rq_execute(job_id: str) -> str:
    """The RQ entry point: runs in an ``emflow worker`` process configured from the environment."""
    global _context
    if _context is None:
        from . import clock as _clock

        config = Config.from_env()
        _clock.install()
        _context = (Database(config), config, Registry.discover())
    db, config, registry = _context
    return execute(db, config, registry, job_id)


class EmbeddedRunner:
    """Threads inside the server process: job workers and the timer scheduler (no Redis)."""

    def __init__(self, db: Database, config: Config, registry: Registry):
        self.db, self.config, self.registry = db, config, registry
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for i in range(self.config.embedded_workers):
            self._threads.append(threading.Thread(target=self._work, name=f"emflow-worker-{i}", daemon=True))
        self._threads.append(threading.Thread(target=self._schedule, name="emflow-scheduler", daemon=True))
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        WAKE.set()
        for t in self._threads:
            t.join(timeout)

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                ids = due_jobs(self.db)
                for job_id in ids:
                    execute(self.db, self.config, self.registry, job_id)
            except Exception:  # noqa: BLE001 - a worker thread never dies; the job keeps its lease
                log.exception("embedded worker loop error")
                ids = []
            if not ids:
                WAKE.wait(0.5)
                WAKE.clear()

    def _schedule(self) -> None:
        while not self._stop.is_set():
            scheduler_pass(self.db, self.config, self.registry)
            self._stop.wait(self.config.scheduler_interval)
