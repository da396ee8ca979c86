"""The workflow runtime: load an instance, run it until it waits, and write everything that follows.

Every state change goes through ``Step``: lock the instance, load the workflow, change it, then
``Step.save`` compacts the task tree and writes human tasks, subscriptions, the next timer,
outbox jobs, the element path for the diagram and the serialized state, all in the caller's
transaction.
"""
from __future__ import annotations

import copy
import json
import time
import uuid
from datetime import UTC, date, datetime
from datetime import time as dt_time
from functools import lru_cache
from zoneinfo import ZoneInfo

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.specs.Join import Join
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import bindparam, delete, exists, select, update
from sqlalchemy.orm import Session, undefer

from . import audit, calendar, rawsql, rowwrites
from .assignment import Context, parse_rule, resolve
from .bpmn.compact import compact
from .bpmn.scripting import ScriptEngine
from .bpmn.serializer import state_from_json, state_to_json
from .config import Config
from .errors import Conflict, NotFound, ScriptError
from .models import (
    HumanTask,
    Job,
    MessageSubscription,
    OrgVersion,
    ProcessInstance,
    Role,
    TaskCandidate,
    User,
    UserRole,
    utcnow,
)
from .models.monitoring import alarms_follow_processes
from .org import leader_of
from .versions import VERSIONS, VersionRuntime

_STEP_ACTOR = object()
MAX_AUTOMATIC_ROUNDS = 50  # approver rules may complete tasks that lead to more; a model loop stops here
TIMER_EVENTS = ("DurationTimerEventDefinition", "TimeDateEventDefinition", "CycleTimerEventDefinition")


_SIGNERS_WAITING = select(exists().where(HumanTask.parent_task_id == bindparam("task_id"),
                                         HumanTask.state.in_(("open", "planned"))))


def signers_waiting(session: Session, task: HumanTask) -> bool:
    """Are added signers still to sign ``task``? Asks the database only for a task that has ever had signers (the
    flag is on the locked row, so a signer added just before is never missed)."""
    return bool(task.has_signers and session.connection().scalar(_SIGNERS_WAITING, {"task_id": task.id}))


# The assignment-rule lookups cached under an org version are reused by steps that read the same version.
_ORG_VERSION = select(OrgVersion.version).where(OrgVersion.id == 1).scalar_subquery()


@lru_cache(maxsize=8)
def _lock_statement(row_lock: bool, skip_locked: bool, by_task: bool):
    """The locking SELECT, built once per variant (building it costs more than SQLAlchemy's compiled cache
    saves); the instance id or task id is its one parameter, ``key``. Its rows end with the org version."""
    if by_task:
        stmt = (select(ProcessInstance, HumanTask, _ORG_VERSION)
                .join(HumanTask, HumanTask.instance_id == ProcessInstance.id).where(HumanTask.id == bindparam("key")))
    else:
        stmt = select(ProcessInstance, _ORG_VERSION).where(ProcessInstance.id == bindparam("key"))
    stmt = stmt.options(undefer(ProcessInstance.state))
    if row_lock:
        stmt = stmt.with_for_update(skip_locked=skip_locked,
                                    of=(ProcessInstance, HumanTask) if by_task else ProcessInstance)
    return stmt.execution_options(populate_existing=True)


@lru_cache(maxsize=4)
def _raw_lock_query(skip_locked: bool, by_task: bool) -> rawsql.Query:
    """The PostgreSQL locking SELECT compiled for rawsql: the instance's columns in its mapper's order, the task's
    (by task), the org version."""
    return rawsql.compile_select(_lock_statement(True, skip_locked, by_task))


_IN_SESSION = object()


def _held(session: Session, cls, key) -> bool:
    return cls.__mapper__.identity_key_from_primary_key((key,)) in session.identity_map


@lru_cache(maxsize=1)
def _instance_id_at() -> int:
    """Where the instance's id is among its columns in the locking read."""
    return [key for key, _ in rawsql.columns(ProcessInstance.__mapper__)].index("id")


def _lock_raw(session: Session, key, skip_locked: bool, by_task: bool):
    """``_lock`` past SQLAlchemy's execution and the ORM's loading (0.6 M of a completion's 10.3 M instructions);
    _IN_SESSION if the session already holds the instance or the task, which the ORM query then refreshes."""
    if _held(session, HumanTask if by_task else ProcessInstance, key):
        return _IN_SESSION
    if session.autoflush:  # what the ORM query would do first
        session.flush()
    row = rawsql.fetchone(session, _raw_lock_query(skip_locked, by_task), key=key)
    if row is None:
        return None
    n = len(rawsql.columns(ProcessInstance.__mapper__))
    instance_values = row[:n]
    if by_task and _held(session, ProcessInstance, instance_values[_instance_id_at()]):
        return _IN_SESSION  # found through its task: the lock is ours, and the ORM query refreshes the instance
    instance = rawsql.loaded(session, ProcessInstance.__mapper__, instance_values)
    task = rawsql.loaded(session, HumanTask.__mapper__, row[n:-1]) if by_task else None
    return instance, task, row[-1]


def _lock(session: Session, instance_id: int | None, skip_locked: bool, task_id: str | None):
    """(instance, task or None, org version) locked, or None."""
    key = task_id if task_id is not None else instance_id
    if rawsql.usable(session):
        found = _lock_raw(session, key, skip_locked, task_id is not None)
        if found is not _IN_SESSION:
            return found
    stmt = _lock_statement(session.bind.dialect.name == "postgresql", skip_locked, task_id is not None)
    row = session.execute(stmt, {"key": key}).first()
    if row is None:
        return None
    return tuple(row) if task_id is not None else (row[0], None, row[1])


def lock_instance(session: Session, instance_id: int | None, skip_locked: bool = False,
                  task_id: str | None = None):
    """Load an instance for writing: row lock on PostgreSQL; on SQLite the IMMEDIATE transaction already
    serialises writers and the version column catches anything stale.

    With ``task_id`` the instance is found through its task, and (instance, task) is returned, both
    locked: a concurrent writer's changes to either are seen once the lock is ours (only to those two rows:
    on PostgreSQL the rest of the statement reads as of its start, so read other rows afterwards)."""
    found = _lock(session, instance_id, skip_locked, task_id)
    if found is None:
        return None
    return found[:2] if task_id is not None else found[0]


def correlation_key(values: dict) -> str:
    """Canonical form of correlation values, the subscription table's match key."""
    return json.dumps(values, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def script_engine(session: Session, config: Config) -> ScriptEngine:
    """A fresh script engine (the engine is not serialized with the workflow)."""
    return ScriptEngine(calendar.load(session, config.timezone).script_helpers(), config.script_time_limit)


def _branch_root(task):
    """A user task, or the boundary-event structure it sits in (cancelled and replaced as one)."""
    parent = task.parent
    return parent if parent is not None and parent.task_spec.name.endswith(".BoundaryEventSplit") else task


def _reaches(start, goal, seen=None) -> bool:
    """Can the flow go from spec ``start`` to spec ``goal`` (so returning to start makes goal run again)?"""
    seen = seen if seen is not None else set()
    for nxt in start.outputs:
        if nxt is goal:
            return True
        if nxt.name not in seen:
            seen.add(nxt.name)
            if _reaches(nxt, goal, seen):
                return True
    return False


def _reruns(target, task) -> bool:
    """Does a return to spec ``target`` run the live ``task`` again? A token waiting at a join belongs to the
    branch that brought it there: it stays unless the return runs that branch again."""
    spec = task.task_spec
    if isinstance(spec, Join) and task.state == TaskState.WAITING and task.parent is not None:
        spec = task.parent.task_spec
        return spec is target or _reaches(target, spec)
    return _reaches(target, spec)


def _drop_cancelled(workflow) -> None:
    """Remove cancelled branches from the tree, so a join never counts a cancelled branch as arrived."""
    for task in [t for t in workflow.tasks.values() if t.state == TaskState.CANCELLED
                 and t.parent is not None and t.parent.state != TaskState.CANCELLED]:
        for tid in [t.id for t in task]:
            workflow.tasks.pop(tid, None)
        task.parent._children.remove(task.id)


def process_admins(session: Session) -> list[int]:
    """Users who administer processes (the fallback approvers)."""
    admins = set(session.scalars(select(User.id).where(User.is_superuser.is_(True), User.is_active.is_(True))))
    for role_id, permissions in session.execute(select(Role.id, Role.permissions)):
        if "instance.admin" in (permissions or []):
            admins.update(session.scalars(select(UserRole.user_id).where(UserRole.role_id == role_id)))
    return sorted(admins)


def instance_data(session: Session, instance: ProcessInstance, task_id: str | None = None) -> dict:
    """An instance's data: a given task's, else the newest open task's (or the last completed one's),
    or the workflow's result once it has ended."""
    version = VERSIONS.get(session, instance.version_id)
    state = session.scalar(select(ProcessInstance.state).where(ProcessInstance.id == instance.id))
    wf = state_from_json(state, version.spec, version.subprocess_specs, lambda: version.spec_json)
    if task_id is None and not wf.is_completed():
        task_id = session.scalar(select(HumanTask.id).where(HumanTask.instance_id == instance.id,
                                                            HumanTask.state == "open")
                                 .order_by(HumanTask.created_at.desc()).limit(1))
    task = wf.get_task_from_id(uuid.UUID(task_id)) if task_id else None
    if task is None and wf.is_completed():
        return dict(wf.data)
    task = task or wf.last_task
    return dict(task.data) if task is not None else {}


class Step:
    """One transaction's work on one instance."""

    def __init__(self, session: Session, config: Config, instance: ProcessInstance, actor: User | None):
        self.session, self.config, self.instance, self.actor = session, config, instance, actor
        self.version: VersionRuntime = VERSIONS.get(session, instance.version_id)
        self.engine = script_engine(session, config)
        self.started = time.time()  # SpiffWorkflow stamps state changes with time.time()
        self.workflow: BpmnWorkflow | None = None
        self._initiator: User | None = None
        self.task_row: HumanTask | None = None  # the task the step was opened through, if any
        self.org_version: int | None = None  # read with the lock: assignment lookups cached under it are current
        self.signers_waiting = False  # does that task wait for added signers?
        self.only_task_open = False  # was it the instance's only open task?
        self.created_rows: list[HumanTask] = []
        self._unwritten: list[HumanTask] = []  # created rows the next save inserts
        self._candidates: list[dict] = []  # and their candidates (rows nobody reads back as objects)
        # Human tasks open when the step began (their rows exist) and those the caller closed itself:
        # comparing them with the READY tasks afterwards tells which rows to create or cancel, no query needed.
        self.open_before: dict[str, tuple[str, str]] = {}
        self.closed_by_caller: set[str] = set()
        self.origin_task_id: str | None = None  # the task whose completion this step follows
        self.decided_by: int | None = None  # who decided that task (dedupe: the same person next is skipped)
        self.return_info: dict | None = None  # set by a return: the step that returned, and "send back to me"

    @classmethod
    def open(cls, session: Session, config: Config, instance_id: int | None, actor: User | None,
             skip_locked: bool = False, task_id: str | None = None) -> Step | None:
        """Lock and load an instance (or the instance of ``task_id``); None if skip_locked and someone
        else holds it."""
        found = _lock(session, instance_id, skip_locked, task_id)
        if found is None:
            if skip_locked:
                return None
            raise NotFound(f"process instance {instance_id or 'of task ' + str(task_id)} does not exist")
        instance, task_row, org_version = found
        step = cls(session, config, instance, actor)
        step.task_row, step.org_version = task_row, org_version
        if task_row is not None:  # a statement of its own: signers added by whoever held the lock before us count
            step.signers_waiting = signers_waiting(session, task_row)
        step.workflow = state_from_json(instance.state, step.version.spec, step.version.subprocess_specs,
                                        lambda: step.version.spec_json)
        step.workflow.script_engine = step.engine
        step.open_before = {str(t.id): (t.task_spec.bpmn_id, t.task_spec.bpmn_name or t.task_spec.bpmn_id)
                            for t in step.workflow.get_tasks(state=TaskState.READY, manual=True)}
        # Added signers belong to some open task; with only the opened task open and none waiting on it,
        # the rows this step creates are all the instance's open tasks afterwards.
        step.only_task_open = (task_row is not None and not step.signers_waiting
                               and set(step.open_before) == {task_row.id})
        return step

    @classmethod
    def new(cls, session: Session, config: Config, instance: ProcessInstance, actor: User | None) -> Step:
        step = cls(session, config, instance, actor)
        step.workflow = BpmnWorkflow(step.version.spec, step.version.subprocess_specs, script_engine=step.engine)
        return step

    @property
    def initiator(self) -> User | None:
        """The initiator, loaded once per step (the session's identity map holds objects only weakly)."""
        if self._initiator is None and self.instance.initiator_id:
            self._initiator = self.session.get(User, self.instance.initiator_id)
        return self._initiator

    def require_running(self) -> None:
        if self.instance.status != "running":
            raise Conflict(f"the process instance is {self.instance.status}", code="instance_not_running",
                           status=self.instance.status)

    def run(self, task=None) -> None:
        """Run ``task`` (a ready user task, or a STARTED service task to finish), then fire due timers
        and run engine steps until the workflow waits.

        The library's own errors (no gateway condition holds, multi-instance data of the wrong kind ...)
        become a ScriptError naming the element, so callers roll back and report instead of crashing."""
        try:
            if task is not None:
                task.complete() if task.state == TaskState.STARTED else task.run()
            self.workflow.refresh_timers()
            self.workflow.do_engine_steps()
        except SpiffWorkflowException as exc:
            spec = getattr(getattr(exc, "task", None), "task_spec", None) or getattr(exc, "task_spec", None)
            element = getattr(spec, "bpmn_id", None) or getattr(spec, "name", None)
            where = f" at '{element}'" if element else ""
            raise ScriptError(f"the process cannot continue{where}: {exc}", task=element) from exc

    def event(self, kind: str, actor: User | None | object = _STEP_ACTOR, **kw) -> None:
        """Record an audit event; by default the step's actor, ``actor=None`` for the system itself."""
        audit.record(self.session, self.instance, kind, self.actor if actor is _STEP_ACTOR else actor, **kw)

    # -- persistence ---------------------------------------------------------------------------
    def save(self) -> None:
        """Write everything that follows from the workflow's new state: the step's own rows and the audit
        events in one batch of Core writes (one statement on PostgreSQL), then the rest in one flush."""
        with self.session.no_autoflush:
            self._save()
        alarms_follow_processes(self.session)  # sees the step's rows as dirty only until they are written
        rows, self._unwritten = self._unwritten, []
        with rowwrites.batch(self.session):
            rowwrites.write_rows(self.session, rows, [self.task_row] if self.task_row is not None else [])
            if self._candidates:
                rowwrites.insert_rows(self.session, TaskCandidate.__table__, self._candidates)
                self._candidates = []
            rowwrites.update_changed(self.session, self.instance)
            audit.write_pending(self.session)
        self.session.flush()

    def _save(self) -> None:
        wf, inst = self.workflow, self.instance
        for _ in range(MAX_AUTOMATIC_ROUNDS):
            self._track_elements()
            title_field = self.version.meta.get("title_field")
            if title_field:
                value = self._latest_data().get(title_field)
                if isinstance(value, str) and value.strip() and value.strip()[:300] != inst.title:
                    inst.title = value.strip()[:300]
                    self.session.execute(update(HumanTask).where(HumanTask.instance_id == inst.id)
                                         .values(instance_title=inst.title))
                    for row in self.created_rows:  # not flushed yet: the UPDATE did not reach them
                        row.instance_title = inst.title
            if wf.is_completed() and inst.status == "running":
                inst.status, inst.ended_at = "completed", utcnow()
                self.event("completed", actor=None)
            compact(wf)
            automatic = self._sync_human_tasks()
            if not automatic:
                break
            for spiff_task, row, reason in automatic:  # approver rules decided these: complete them now
                row.state, row.completed_at = "completed", utcnow()
                self.closed_by_caller.add(row.id)
                self.open_before.pop(row.id, None)
                spiff_task.data["decision"] = "approve"
                self.event("task_auto_completed", actor=None, task_id=row.id, bpmn_id=row.bpmn_id,
                           task_name=row.name, reason=reason)
                self.origin_task_id = row.id
                self.run(spiff_task)
        self._sync_subscriptions()
        self._write_jobs()
        inst.next_timer_at = self._next_timer() if inst.status == "running" else None
        inst.state = state_to_json(wf)
        inst.updated_at = utcnow()

    def open_tasks(self) -> list[HumanTask] | None:
        """The instance's open tasks after this step, when the step knows them all without a query."""
        if not self.only_task_open:
            return None
        return [r for r in self.created_rows if r.state == "open" and r.id in self.open_before]

    def _latest_data(self) -> dict:
        task = self.workflow.last_task
        if task is not None:
            return task.data
        return self.workflow.data

    def _track_elements(self) -> None:
        done = set(self.instance.completed_elements or [])
        for task in self.workflow.get_tasks(state=TaskState.COMPLETED, updated_ts=self.started - 1):
            bpmn_id = getattr(task.task_spec, "bpmn_id", None)
            if bpmn_id:
                done.add(bpmn_id)
        active = sorted({t.task_spec.bpmn_id for t in self.workflow.get_tasks(
            state=TaskState.READY | TaskState.STARTED | TaskState.WAITING)
            if getattr(t.task_spec, "bpmn_id", None)})
        if sorted(done) != sorted(self.instance.completed_elements or []):
            self.instance.completed_elements = sorted(done)
        if active != (self.instance.active_elements or []):
            self.instance.active_elements = active

    def _sync_human_tasks(self) -> list:
        """Create rows for new READY user tasks and cancel rows whose task went away; returns the
        (task, row, reason) that approver rules say complete themselves."""
        ready = {str(t.id): t for t in self.workflow.get_tasks(state=TaskState.READY, manual=True)}
        cancelled = [tid for tid in self.open_before if tid not in ready and tid not in self.closed_by_caller]
        if cancelled:  # e.g. the other instances of an or-sign, or a task behind an interrupting timer
            self.session.execute(update(HumanTask).where(HumanTask.id.in_(cancelled), HumanTask.state == "open")
                                 .values(state="cancelled"))
            # Added signers of a cancelled task go with it; candidates matter only while a task is open.
            self.session.execute(update(HumanTask).where(HumanTask.parent_task_id.in_(cancelled),
                                                         HumanTask.state == "open").values(state="cancelled"))
            self.session.execute(delete(TaskCandidate).where(TaskCandidate.task_id.in_(cancelled)))
            for row in self.created_rows:  # made earlier in this step: not written yet, so the UPDATE missed it
                if row.id in cancelled:
                    row.state = "cancelled"
            self._candidates = [c for c in self._candidates if c["task_id"] not in cancelled]
            for task_id in cancelled:
                bpmn_id, name = self.open_before.pop(task_id)
                self.event("task_cancelled", actor=None, task_id=task_id, bpmn_id=bpmn_id, task_name=name)
        automatic = []
        for task_id, task in ready.items():
            if task_id not in self.open_before:
                row, reason = self._create_human_task(task)
                self.open_before[task_id] = (row.bpmn_id, row.name)
                if reason:
                    automatic.append((task, row, reason))
        return automatic

    def _create_human_task(self, task) -> tuple[HumanTask, str | None]:
        """Write the row for a new READY user task and resolve who gets it. Returns the row and, when an
        approver rule completes the task by itself, the reason."""
        spec = task.task_spec
        info = self.version.user_task(spec.bpmn_id)
        ops = self.version.task_config(spec.bpmn_id)
        loop_item = None
        input_item = getattr(task.parent.task_spec, "input_item", None) if task.parent is not None else None
        if input_item is not None:  # a multi-instance child: remember whom or what it is for
            loop_item = str(input_item.get(task) or "")[:200] or None
        now = utcnow()
        row = HumanTask(
            id=str(task.id), instance_id=self.instance.id, process_key=self.instance.process_key,
            process_name=self.version.name, instance_title=self.instance.title, bpmn_id=spec.bpmn_id,
            name=spec.bpmn_name or spec.bpmn_id, form_key=info.get("form"), state="open",
            region_code=self.instance.region_code, enterprise_id=self.instance.enterprise_id, loop_item=loop_item,
            origin_task_id=self.origin_task_id, created_at=now,
        )
        if self.return_info and self.return_info.get("target") == spec.bpmn_id:
            row.returned_from = self.return_info["from"]
            row.return_to_me = self.return_info["to_me"]
        row.due_at = row.next_action_at = self._deadline(ops, task.data, now)
        ctx = Context(instance_region=self.instance.region_code, data=task.data,
                      load_initiator=lambda: self.initiator, org_version=self.org_version)
        assignee_rule, candidates_rule = info.get("assignee"), info.get("candidates")
        resolved = resolve(self.session, parse_rule(assignee_rule), ctx) if assignee_rule else None
        offered = resolve(self.session, parse_rule(candidates_rule), ctx) if candidates_rule else None
        users = sorted({u for r in (resolved, offered) if r is not None for u in r.users})
        groups = sorted({g for r in (resolved, offered) if r is not None for g in r.groups})
        names = {k: v for r in (resolved, offered) if r is not None for k, v in r.names.items()}
        automatic = None
        if not users and not groups:
            users, groups, automatic = self._empty_approver(ops, names)
            if automatic is None and not users and not groups:
                rule = " | ".join(r for r in (assignee_rule, candidates_rule) if r)
                row.assignment_error = f"the assignment rule '{rule}' matched nobody"
        elif len(users) == 1 and not groups and offered is None:
            if ops.initiator_approver != "self" and users[0] == self.instance.initiator_id:
                users, automatic = self._initiator_approver(ops, users, names)
            if automatic is None and ops.dedupe and self.decided_by is not None and users == [self.decided_by] \
                    and self.origin_task_id is not None:
                automatic = "the same person approved the previous step"
        assignees = []
        if automatic is None and len(users) == 1 and not groups and offered is None:
            row.assignee_id = users[0]
            assignees = [names.get(users[0], "")]
            users = []
        self.created_rows.append(row)
        self._unwritten.append(row)
        self._candidates += ([{"task_id": row.id, "user_id": uid, "group_id": None} for uid in users] +
                             [{"task_id": row.id, "user_id": None, "group_id": gid} for gid in groups])
        self.event("task_created", actor=None, task_id=row.id, bpmn_id=row.bpmn_id, task_name=row.name,
                   assignees=assignees, candidate_users=users, candidate_groups=groups, loop_item=loop_item,
                   assignment_error=row.assignment_error, returned_from=row.returned_from)
        return row, automatic

    def _deadline(self, ops, data: dict, now: datetime) -> datetime | None:
        """When the task is due: a date from the data (the end of that working day), or now + its timeout."""
        if ops.due_field and data.get(ops.due_field):
            try:
                day = date.fromisoformat(str(data[ops.due_field])[:10])
            except ValueError:
                return None
            tz = ZoneInfo(self.config.timezone)
            return datetime.combine(day, dt_time(17, 30), tz).astimezone(UTC)
        if ops.timeout is not None:
            return calendar.load(self.session, self.config.timezone).add(now, ops.timeout)
        return None

    def _empty_approver(self, ops, names: dict) -> tuple[list[int], list[int], str | None]:
        """What the emptyApprover rule does when the assignment rule matched nobody."""
        rule = ops.empty_approver
        if rule in ("approve", "skip"):
            return [], [], "nobody matched the assignment rule" + (" (skipped)" if rule == "skip" else "")
        if rule == "leader":
            leader = leader_of(self.session, self.initiator.unit if self.initiator else None)
            if leader is not None:
                names[leader.id] = leader.name
                return [leader.id], [], None
        if rule == "admin":
            return process_admins(self.session), [], None
        return [], [], None

    def _initiator_approver(self, ops, users: list[int], names: dict) -> tuple[list[int], str | None]:
        """What the initiatorApprover rule does when the approver is the initiator."""
        if ops.initiator_approver in ("approve", "skip"):
            return users, "the approver is the initiator"
        leader = leader_of(self.session, self.initiator.unit if self.initiator else None)
        if leader is not None and leader.id != users[0]:
            names[leader.id] = leader.name
            return [leader.id], None
        return users, None

    # -- going back -------------------------------------------------------------------------------
    def jump(self, current, target_bpmn_id: str, returned_from: str, to_me: bool) -> None:
        """Move the token from ``current`` (a READY user task) back to the step ``target_bpmn_id``.

        Every live task that the target step can reach again is cancelled with its branch (so a return
        inside one parallel branch leaves the others alone, including one already waiting at the join, and
        a return to before a split or a call activity takes the whole of it back); the target gets a fresh
        task carrying the current data."""
        workflow = current.workflow
        while workflow.spec.task_specs.get(target_bpmn_id) is None and workflow is not workflow.top_workflow:
            current = workflow.top_workflow.get_task_from_id(workflow.parent_task_id)  # the call activity
            workflow = current.workflow
        target = workflow.spec.task_specs.get(target_bpmn_id)
        if target is None:
            raise Conflict(f"there is no step '{target_bpmn_id}' to return to", code="no_such_step")
        data = dict(current.data)
        anchor = _branch_root(current).parent
        while anchor is not None and not anchor.has_state(TaskState.COMPLETED):  # e.g. out of a multi-instance
            anchor = anchor.parent
        live = workflow.get_tasks(state=TaskState.READY | TaskState.WAITING | TaskState.STARTED)
        doomed = {id(b): b for b in (_branch_root(t) for t in live if t is current or _reruns(target, t))}
        for branch in doomed.values():
            if branch.has_state(TaskState.FINISHED_MASK):
                continue
            for t in branch:
                if t.id in workflow.top_workflow.subprocesses:
                    workflow.top_workflow.delete_subprocess(t)
            branch.cancel()
        _drop_cancelled(workflow)
        new = anchor._add_child(target, TaskState.FUTURE)
        new.data = copy.deepcopy(data)
        target._predict(new, mask=TaskState.NOT_FINISHED_MASK)
        target._update(new)
        new.set_data(**data)  # updating it merged in the anchor's (older) data: what is current wins
        for w in (workflow, workflow.top_workflow):
            w.completed = False  # the library caches "completed" (SpiffWorkflow 3.2 reset bug)
        self.return_info = {"target": target_bpmn_id, "from": returned_from, "to_me": to_me}

    def _sync_subscriptions(self) -> None:
        wanted = set()
        if self.instance.status == "running":
            for event in self.workflow.waiting_events():
                if event.event_type != "MessageEventDefinition":
                    continue
                values = {}
                for props in (event.correlations or {}).values():
                    values.update(props)
                wanted.add((event.name, correlation_key(values or {"business_key": self.instance.business_key})))
        if not wanted and not self.instance.waits_for_messages:
            return  # nothing stored, nothing to store: skip the DELETE
        self.session.execute(delete(MessageSubscription).where(MessageSubscription.instance_id == self.instance.id))
        self.session.add_all([MessageSubscription(instance_id=self.instance.id, message_name=name, correlation_key=key)
                              for name, key in sorted(wanted)])
        self.instance.waits_for_messages = bool(wanted)

    def _next_timer(self) -> datetime | None:
        due = []
        for event in self.workflow.waiting_events():
            if event.event_type not in TIMER_EVENTS or event.value is None:
                continue
            value = event.value["next"] if isinstance(event.value, dict) else event.value
            try:
                due.append(datetime.fromisoformat(value))
            except (TypeError, ValueError):
                continue
        return min(due) if due else None

    def _write_jobs(self) -> None:
        for call in self.engine.service_calls:
            self.session.add(Job(
                id=str(uuid.uuid4()), kind="service", instance_id=self.instance.id, task_id=call["task_id"],
                payload=call, status="pending", max_attempts=self.config.job_max_attempts,
            ))
            self.event("service_call_queued", actor=None, task_id=call["task_id"], bpmn_id=call["bpmn_id"],
                       operation=call["operation"])
        if self.engine.service_calls:
            self.session.info["jobs_written"] = True
        self.engine.service_calls.clear()
