"""Approval operations on any BPMN user task: approve, reject, return, transfer, delegate, add and remove
signers, withdraw, cancel, copy to, urge, and what happens when a task times out.

Every operation records an audit event (actor, time, opinion, target) and is refused with Conflict (409)
or Forbidden (403) when it does not apply. Which operations a task offers is configured on the task in
the BPMN (see engine/taskconfig.py); completing a task itself is engine.tasks.complete.
"""
from __future__ import annotations

import uuid
from datetime import timedelta
from uuid import UUID

from SpiffWorkflow.bpmn.specs.mixins.parallel_gateway import ParallelGateway
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from . import calendar, clock, instances, messaging, notifications, signatures
from .config import Config
from .db import Database, page_of
from .errors import Conflict, EngineError, Forbidden, NotFound, ValidationFailed
from .forms import FieldError
from .models import (
    GroupMember,
    HumanTask,
    InstanceEvent,
    Job,
    MessageSubscription,
    OpinionPhrase,
    ProcessInstance,
    TaskCandidate,
    TaskCopy,
    Unit,
    User,
    utcnow,
)
from .org import leader_of
from .runtime import Step, _reaches, signers_waiting
from .tasks import OWNER_ONLY, _acting_for, _lock_open_task, complete, finish, may_act, notify_signer

POSITIONS = ("before", "after", "parallel")
URGE_INTERVAL = timedelta(minutes=30)


def _allowed(step: Step, task: HumanTask, action: str) -> None:
    if task.kind != "task" or not step.version.task_config(task.bpmn_id).allows(action):
        raise Conflict(f"this task does not offer '{action}'", code="operation_not_allowed", action=action)
    if task.owner_id is not None and action in OWNER_ONLY:
        # 委派: the delegate gives an opinion and the task goes back; deciding it stays with its owner.
        raise Conflict("a delegated task goes back to its owner, who decides it", code="task_delegated",
                       action=action)


def _need_opinion(step: Step, task: HumanTask, action: str, opinion: str | None) -> str | None:
    opinion = (opinion or "").strip() or None
    if not opinion and step.version.task_config(task.bpmn_id).opinion_required(action):
        raise ValidationFailed("an opinion is required", errors={"opinion": [FieldError("required").as_dict()]})
    return opinion


def _user(session: Session, username: str, field: str = "username") -> User:
    found = session.scalar(select(User).where(User.username == username, User.is_active.is_(True)))
    if found is None:
        raise ValidationFailed("no such user", errors={field: [FieldError("unknown_user", username).as_dict()]})
    return found


def _signers_involved(session: Session, task: HumanTask) -> bool:
    """Added signers still to sign: before (the task is blocked), after the decision (planned, or pending)
    or in parallel. A task is not returned or rejected past them; they are removed first (减签)."""
    return task.blocked or task.pending is not None or signers_waiting(session, task)


def _open_task(session: Session, config: Config, user, task_id: str, action: str) -> tuple[Step, HumanTask]:
    step, task = _lock_open_task(session, config, user, task_id)
    if not may_act(session, user, task):
        raise Forbidden("you may not act on this task", code="not_your_task")
    _allowed(step, task, action)
    return step, task


# -- approve and reject ---------------------------------------------------------------------------------
def approve(session: Session, config: Config, user, task_id: str, data: dict | None = None, **kw):
    """Complete the task with ``decision = "approve"`` (and the form data, opinion, signature)."""
    return complete(session, config, user, task_id, data, decision="approve", action="approve", **kw)


def reject(session: Session, config: Config, user, task_id: str, opinion: str | None = None,
           signature: str | None = None, on_behalf_of: str | None = None):
    """Reject: end the instance, or return to the step named by the task's onReject."""
    step, task = _lock_open_task(session, config, user, task_id)
    _allowed(step, task, "reject")
    principal = _acting_for(session, user, task, on_behalf_of)  # may they act at all (403) before what they sent
    ops = step.version.task_config(task.bpmn_id)
    if ops.signature == "required" and not signature:  # a decision either way: 不同意 is signed like 同意
        raise ValidationFailed("a handwritten signature is required",
                               errors={"signature": [FieldError("required").as_dict()]})
    if ops.on_reject != "end":
        return _send_back(step, task, user, principal, ops.on_reject, opinion, False, "reject", signature)
    if _signers_involved(session, task):
        raise Conflict("added signers are still involved in this task", code="waiting_for_signers")
    opinion = _need_opinion(step, task, "reject", opinion)
    signature_id = signatures.store(session, principal, signature, task.instance_id) if signature else None
    on_behalf = {"id": principal.id, "name": principal.name} if principal is not user else None
    _reject_to_end(step, task, principal, opinion, action="reject", signature=signature_id, on_behalf_of=on_behalf,
                   label=ops.labels.get("reject"))
    return step.instance


def _reject_to_end(step: Step, task: HumanTask, by: User | None, opinion: str | None, **detail) -> None:
    """Close the task as rejected and end the instance (onReject=end): the flow does not move on."""
    task.state, task.completed_at, task.opinion = "completed", utcnow(), opinion
    task.completed_by_id = by.id if by is not None else None
    step.event("task_completed", task_id=task.id, bpmn_id=task.bpmn_id, task_name=task.name, opinion=opinion,
               decision="reject", **{k: v for k, v in detail.items() if v is not None})
    _end(step, "rejected", reason=opinion)


def _end(step: Step, kind: str, reason: str | None) -> None:
    """Stop an instance for good (rejected or cancelled): open tasks, jobs and subscriptions go."""
    session, inst = step.session, step.instance
    inst.status, inst.ended_at, inst.next_timer_at, inst.active_elements = "terminated", utcnow(), None, []
    session.execute(update(HumanTask).where(HumanTask.instance_id == inst.id, HumanTask.state.in_(("open", "planned")))
                    .values(state="cancelled"))
    session.execute(update(Job).where(Job.instance_id == inst.id,
                                      Job.status.in_(("pending", "queued", "running", "waiting", "failed")))
                    .values(status="cancelled"))
    session.execute(delete(MessageSubscription).where(MessageSubscription.instance_id == inst.id))
    inst.waits_for_messages = False
    step.event(kind, opinion=reason)
    session.flush()


# -- return ----------------------------------------------------------------------------------------------
def return_targets(session: Session, config: Config, user, task_id: str) -> list[dict]:
    """Earlier completed steps on the path that led to this task (newest first): where it may go back to."""
    step, task = _open_task(session, config, user, task_id, "return")
    return _targets(step, task)


def _reachable(start) -> dict:
    """The specs the flow can reach from spec ``start``, by name."""
    found, todo = {}, list(start.outputs)
    while todo:
        spec = todo.pop()
        if spec.name not in found:
            found[spec.name] = spec
            todo.extend(spec.outputs)
    return found


def _rejoins(start, goal) -> bool:
    """Does the way from spec ``start`` to ``goal`` pass a parallel join that also waits for a branch that
    ``start`` does not lead to? (Returning into one branch from after its join: the join would wait for
    ever for the branches that are not run again.)"""
    reach = _reachable(start)
    return any(isinstance(spec, ParallelGateway) and (spec is goal or _reaches(spec, goal))
               and any(i is not start and i.name not in reach for i in spec.inputs)
               for spec in reach.values())


def _targets(step: Step, task: HumanTask) -> list[dict]:
    spiff_task = step.workflow.get_task_from_id(UUID(task.id))
    current = spiff_task.task_spec
    # A task in a called subprocess may also go back to the steps before the call activity(s) around it.
    goals, workflow = [current], spiff_task.workflow
    while workflow is not workflow.top_workflow:
        caller = workflow.top_workflow.get_task_from_id(workflow.parent_task_id)
        goals.append(caller.task_spec)
        workflow = caller.workflow
    specs = dict(step.workflow.spec.task_specs)
    for sub in step.version.subprocess_specs.values():
        specs.update(sub.task_specs)
    seen, out = set(), []
    events = step.session.execute(select(InstanceEvent.bpmn_id, InstanceEvent.task_name, InstanceEvent.actor_name,
                                         InstanceEvent.at, InstanceEvent.detail).where(
        InstanceEvent.instance_id == step.instance.id, InstanceEvent.kind == "task_completed")
        .order_by(InstanceEvent.seq.desc())).all()
    for bpmn_id, name, actor, at, detail in events:
        spec = specs.get(bpmn_id)
        if bpmn_id in seen or spec is None or bpmn_id == current.bpmn_id:
            continue
        goal = next((g for g in goals if _reaches(spec, g)), None)
        if goal is None or _rejoins(spec, goal):
            continue
        seen.add(bpmn_id)
        by = (detail or {}).get("on_behalf_of", {}).get("name") or actor
        out.append({"bpmn_id": bpmn_id, "name": name, "completed_by": by, "completed_at": at})
    return out


def send_back(session: Session, config: Config, user, task_id: str, target: str | None = None,
              opinion: str | None = None, straight_back: bool = False, on_behalf_of: str | None = None):
    """Return (退回) to an earlier step (default: the previous one). With ``straight_back`` (原路返回),
    the returned-to person's resubmission comes straight back to this step."""
    step, task = _lock_open_task(session, config, user, task_id)
    _allowed(step, task, "return")
    targets = _targets(step, task)
    if not targets:
        raise Conflict("there is no earlier step to return to", code="no_return_target")
    target = target or targets[0]["bpmn_id"]
    if target not in {t["bpmn_id"] for t in targets}:
        raise Conflict(f"'{target}' is not an earlier step on this task's path", code="not_a_return_target")
    principal = _acting_for(session, user, task, on_behalf_of)
    return _send_back(step, task, user, principal, target, opinion, straight_back, "return")


def _send_back(step: Step, task: HumanTask, user, principal, target: str, opinion: str | None, straight_back: bool,
               action: str, signature: str | None = None):
    """Return the task to ``target`` as ``principal``'s decision (the caller has checked their right to act)."""
    if _signers_involved(step.session, task):
        raise Conflict("added signers are still involved in this task", code="waiting_for_signers")
    opinion = _need_opinion(step, task, action, opinion)
    signature_id = signatures.store(step.session, principal, signature, task.instance_id) if signature else None
    spiff_task = step.workflow.get_task_from_id(UUID(task.id))
    task.state, task.completed_by_id, task.completed_at, task.opinion = "returned", principal.id, utcnow(), opinion
    step.closed_by_caller.add(task.id)
    detail = {"target": target, "straight_back": straight_back, "action": action}
    if signature_id:
        detail["signature"] = signature_id
    if principal is not user:
        detail["on_behalf_of"] = {"id": principal.id, "name": principal.name}
    step.event("task_returned", task_id=task.id, bpmn_id=task.bpmn_id, task_name=task.name, opinion=opinion,
               **detail)
    step.origin_task_id = task.id
    step.jump(spiff_task, target, returned_from=task.bpmn_id, to_me=straight_back)
    step.run()
    step.save()
    return step.instance


# -- transfer and delegate -------------------------------------------------------------------------------
def transfer(session: Session, config: Config, user, task_id: str, to: str, opinion: str | None = None):
    """Transfer (转办): the task is the other user's from now on."""
    step, task = _open_task(session, config, user, task_id, "transfer")
    target = _user(session, to, "to")
    if target.id == user.id:
        raise Conflict("the task is already yours", code="same_user")
    opinion = _need_opinion(step, task, "transfer", opinion)
    session.execute(delete(TaskCandidate).where(TaskCandidate.task_id == task.id))
    task.assignee_id, task.owner_id, task.claimed_at = target.id, None, None
    step.event("task_transferred", task_id=task.id, bpmn_id=task.bpmn_id, task_name=task.name, opinion=opinion,
               to={"id": target.id, "name": target.name})
    notifications.send(session, [target], f"转办：{task.name}", step.instance.title, "task",
                       f"/tasks/{task.id}", step.instance.id)
    session.flush()
    return task


def delegate(session: Session, config: Config, user, task_id: str, to: str, opinion: str | None = None):
    """Delegate (委派): the delegate acts, then the task comes back to its owner to finish."""
    step, task = _open_task(session, config, user, task_id, "delegate")
    if task.owner_id is not None:
        raise Conflict("this task is already delegated", code="already_delegated")
    target = _user(session, to, "to")
    if target.id == user.id:
        raise Conflict("you cannot delegate to yourself", code="same_user")
    opinion = _need_opinion(step, task, "delegate", opinion)
    session.execute(delete(TaskCandidate).where(TaskCandidate.task_id == task.id))
    task.owner_id, task.assignee_id = user.id, target.id
    step.event("task_delegated", task_id=task.id, bpmn_id=task.bpmn_id, task_name=task.name, opinion=opinion,
               to={"id": target.id, "name": target.name})
    notifications.send(session, [target], f"委派：{task.name}", step.instance.title, "task",
                       f"/tasks/{task.id}", step.instance.id)
    session.flush()
    return task


# -- added signers ---------------------------------------------------------------------------------------
def add_signers(session: Session, config: Config, user, task_id: str, usernames: list[str], position: str,
                opinion: str | None = None) -> list[HumanTask]:
    """Add signers (加签): before the current person (they sign first), after them (they sign once the
    current person has decided), or in parallel (both must be done before the flow moves on)."""
    step, task = _open_task(session, config, user, task_id, "addSigner")
    if position not in POSITIONS:
        raise ValidationFailed("position must be before, after or parallel",
                               errors={"position": [FieldError("enum").as_dict()]})
    if task.pending is not None:
        raise Conflict("this task is already decided", code="waiting_for_signers")
    if not usernames or not isinstance(usernames, list):
        raise ValidationFailed("name at least one signer", errors={"users": [FieldError("minItems", 1).as_dict()]})
    signers = [_user(session, name, "users") for name in dict.fromkeys(usernames)]
    if any(s.id == task.assignee_id for s in signers):
        raise Conflict("the task's own assignee cannot be added as a signer", code="same_user")
    opinion = _need_opinion(step, task, "addSigner", opinion)
    rows = []
    for signer in signers:
        row = HumanTask(
            id=str(uuid.uuid4()), instance_id=task.instance_id, process_key=task.process_key,
            process_name=task.process_name, instance_title=task.instance_title, bpmn_id=task.bpmn_id,
            name=f"{task.name}（加签）", form_key=None, state="planned" if position == "after" else "open",
            assignee_id=signer.id, region_code=task.region_code, enterprise_id=task.enterprise_id,
            kind="signer", parent_task_id=task.id, sign_position=position, origin_task_id=task.id,
        )
        session.add(row)
        rows.append(row)
    task.has_signers = True
    if position == "before":
        task.blocked = True
    step.event("signers_added", task_id=task.id, bpmn_id=task.bpmn_id, task_name=task.name, opinion=opinion,
               position=position, signers=[{"id": s.id, "name": s.name} for s in signers])
    session.flush()
    for row in rows if position != "after" else []:  # "after" signers hear once the holder has decided
        notify_signer(session, row, step.instance.title)
    session.flush()
    return rows


def remove_signer(session: Session, config: Config, user, signer_task_id: str, opinion: str | None = None):
    """Remove an added signer (减签) who has not acted yet."""
    signer = session.get(HumanTask, signer_task_id)
    if signer is None or signer.kind != "signer":
        raise NotFound("no such added signer")
    step, main = _open_task(session, config, user, signer.parent_task_id, "addSigner")
    session.refresh(signer)
    if signer.state not in ("open", "planned"):
        raise Conflict("this signer has already signed", code="signer_acted")
    signer.state = "cancelled"
    left = [s for s in session.scalars(select(HumanTask).where(
        HumanTask.parent_task_id == main.id, HumanTask.state.in_(("open", "planned")))) if s.id != signer.id]
    if main.blocked and not any(s.sign_position == "before" for s in left):
        main.blocked = False
    name = session.get(User, signer.assignee_id).name
    step.event("signer_removed", task_id=main.id, bpmn_id=main.bpmn_id, task_name=main.name, opinion=opinion,
               signer={"id": signer.assignee_id, "name": name}, position=signer.sign_position)
    if main.pending is not None and not left:  # the decision waited only for this signer: it takes effect now
        finish(step, main, step.workflow.get_task_from_id(UUID(main.id)), main.pending)
        return main
    session.flush()
    return main


# -- withdraw and cancel ---------------------------------------------------------------------------------
def withdraw(session: Session, config: Config, user, task_id: str, opinion: str | None = None):
    """Withdraw (撤回) a step I completed, while what it led to has not been acted on."""
    mine = session.get(HumanTask, task_id)
    if mine is None or mine.kind != "task":
        raise NotFound(f"task {task_id} not found")
    step = Step.open(session, config, mine.instance_id, user)
    step.require_running()
    session.refresh(mine)
    if mine.state != "completed" or mine.completed_by_id != user.id:
        raise Forbidden("only the person who completed this step can withdraw it", code="not_completer")
    if not step.version.task_config(mine.bpmn_id).allow_withdraw:
        raise Conflict("this step cannot be withdrawn", code="operation_not_allowed", action="withdraw")
    following = list(session.scalars(select(HumanTask).where(HumanTask.origin_task_id == mine.id,
                                                             HumanTask.kind == "task")))
    later = session.scalar(select(func.max(InstanceEvent.seq)).where(
        InstanceEvent.instance_id == mine.instance_id, InstanceEvent.kind.in_(
            ("task_completed", "task_returned", "task_rejected", "task_decided", "signer_signed",
             "task_claimed", "task_delegated", "task_transferred", "signers_added"))))
    own = session.scalar(select(func.max(InstanceEvent.seq)).where(
        InstanceEvent.instance_id == mine.instance_id, InstanceEvent.task_id == mine.id,
        InstanceEvent.kind == "task_completed"))
    if not following or any(t.state != "open" for t in following) or (later or 0) > (own or 0):
        raise Conflict("the next step has already been acted on", code="next_step_acted")
    current = next((step.workflow.get_task_from_id(UUID(t.id)) for t in following), None)
    if current is None:
        raise Conflict("the next step has already been acted on", code="next_step_acted")
    for t in following:
        t.state = "withdrawn"
        step.closed_by_caller.add(t.id)
    step.event("task_withdrawn", task_id=mine.id, bpmn_id=mine.bpmn_id, task_name=mine.name, opinion=opinion,
               withdrawn=[t.id for t in following])
    step.origin_task_id = None
    step.jump(current, mine.bpmn_id, returned_from=None, to_me=False)
    step.run()
    step.save()
    return step.instance


def cancel(session: Session, config: Config, user, instance_id: int, opinion: str | None = None):
    """Cancel (撤销) the whole instance: its initiator, where the process allows it."""
    instances.get(session, user, instance_id)
    step = Step.open(session, config, instance_id, user)
    if step.instance.initiator_id != user.id:
        raise Forbidden("only the initiator can cancel this process", code="not_initiator")
    if not step.version.meta.get("allow_cancel"):
        raise Conflict("this process cannot be cancelled by its initiator", code="operation_not_allowed",
                       action="cancel")
    if step.instance.status not in ("running", "suspended"):
        raise Conflict(f"the process instance is {step.instance.status}", code="instance_ended")
    _end(step, "cancelled", reason=(opinion or "").strip() or None)
    return step.instance


# -- copy to ---------------------------------------------------------------------------------------------
def copy_to(session: Session, config: Config, user, task_id: str, usernames: list[str] | None = None,
            unit_codes: list[str] | None = None, note: str = "") -> list[TaskCopy]:
    """Copy (抄送/传阅) the instance to users, or to every member of units, to read."""
    step, task = _open_task(session, config, user, task_id, "cc")
    people = {u.id: u for u in (_user(session, n, "users") for n in (usernames or []))}
    for code in unit_codes or []:
        unit = session.scalar(select(Unit).where(Unit.code == code))
        if unit is None:
            raise ValidationFailed("no such unit", errors={"units": [FieldError("unknown_unit", code).as_dict()]})
        people.update({u.id: u for u in session.scalars(select(User).where(User.unit_id == unit.id,
                                                                          User.is_active.is_(True)))})
    people.pop(user.id, None)
    if not people:
        raise ValidationFailed("name someone to copy to", errors={"users": [FieldError("minItems", 1).as_dict()]})
    rows = [TaskCopy(instance_id=task.instance_id, task_id=task.id, user_id=uid, from_user_id=user.id,
                     note=(note or "")[:1000]) for uid in people]
    session.add_all(rows)
    step.event("copied", task_id=task.id, bpmn_id=task.bpmn_id, task_name=task.name, opinion=note or None,
               to=[{"id": u.id, "name": u.name} for u in people.values()])
    messaging.send(session, config, list(people.values()), "cc", f"传阅：{step.instance.title}", note or "",
                   f"/instances/{task.instance_id}", task.instance_id)
    session.flush()
    return rows


def copies(session: Session, user, page: int = 1, per_page: int = 20):
    """What was copied to the user (newest first), as (copy, instance title, sender name) rows; (items, total)."""
    sender = User.__table__.alias("sender")
    stmt = (select(TaskCopy, ProcessInstance.title, sender.c.name)
            .join(ProcessInstance, ProcessInstance.id == TaskCopy.instance_id)
            .outerjoin(sender, sender.c.id == TaskCopy.from_user_id).where(TaskCopy.user_id == user.id))
    return page_of(session, stmt, (TaskCopy.created_at.desc(), TaskCopy.id.desc()), page, per_page, entities=False)


def mark_copies_read(session: Session, user, instance_id: int) -> int:
    """Read receipt: the user has opened the instance copied to them."""
    return session.execute(update(TaskCopy).where(TaskCopy.user_id == user.id, TaskCopy.instance_id == instance_id,
                                                  TaskCopy.read_at.is_(None)).values(read_at=utcnow())).rowcount


def read_receipts(session: Session, instance_id: int) -> list:
    """Who the instance was copied to, and when each read it."""
    return session.execute(select(User.name, TaskCopy.created_at, TaskCopy.read_at)
                           .join(User, User.id == TaskCopy.user_id).where(TaskCopy.instance_id == instance_id)
                           .order_by(TaskCopy.created_at, User.name)).all()


# -- urge -----------------------------------------------------------------------------------------------
def urge(session: Session, config: Config, user, instance_id: int, opinion: str | None = None) -> int:
    """Urge (催办): the initiator or a supervisor chases the current assignees; rate-limited per urger."""
    inst = instances.get(session, user, instance_id)
    if inst.initiator_id != user.id and not user.can("instance.supervise") and not user.can("instance.admin"):
        raise Forbidden("only the initiator or a supervisor can urge", code="not_urger")
    step = Step.open(session, config, instance_id, user)
    step.require_running()
    since = clock.now() - URGE_INTERVAL
    recent = session.scalar(select(InstanceEvent.id).where(
        InstanceEvent.instance_id == instance_id, InstanceEvent.kind == "urged", InstanceEvent.actor_id == user.id,
        InstanceEvent.at >= since).limit(1))
    if recent is not None:
        raise Conflict("you urged this process a short while ago; try again later", code="urged_recently",
                       minutes=int(URGE_INTERVAL.total_seconds() // 60))
    holders = _holders(session, select(HumanTask.id).where(HumanTask.instance_id == instance_id,
                                                           HumanTask.state == "open"))
    if not holders:
        raise Conflict("nobody holds an open task in this process", code="nobody_to_urge")
    text = (opinion or "").strip() or "请尽快办理。"
    step.event("urged", opinion=text, to=[{"id": u.id, "name": u.name} for u in holders])
    messaging.send(session, config, holders, "urge", f"催办：{inst.title}", text, f"/instances/{instance_id}",
                   instance_id)
    session.flush()
    return len(holders)


def _holders(session: Session, task_ids) -> list[User]:
    """The people the tasks (ids, or a select of them) wait for: their assignees, or for unclaimed ones their
    candidate users and the members of their candidate groups."""
    assigned = select(HumanTask.assignee_id).where(HumanTask.id.in_(task_ids), HumanTask.assignee_id.is_not(None))
    unclaimed = select(HumanTask.id).where(HumanTask.id.in_(task_ids), HumanTask.assignee_id.is_(None))
    offered = select(TaskCandidate.user_id).where(TaskCandidate.task_id.in_(unclaimed))
    members = (select(GroupMember.user_id).join(TaskCandidate, TaskCandidate.group_id == GroupMember.group_id)
               .where(TaskCandidate.task_id.in_(unclaimed)))
    return list(session.scalars(select(User).where(
        or_(User.id.in_(assigned), User.id.in_(offered), User.id.in_(members)), User.is_active.is_(True))
        .order_by(User.id)))


# -- common opinions --------------------------------------------------------------------------------------
def phrases(session: Session, user) -> list[OpinionPhrase]:
    """The shared common opinions, then the user's own."""
    return list(session.scalars(select(OpinionPhrase).where(or_(OpinionPhrase.user_id.is_(None),
                                                                OpinionPhrase.user_id == user.id))
                                .order_by(OpinionPhrase.user_id.is_not(None), OpinionPhrase.sort_order,
                                          OpinionPhrase.id)))


def add_phrase(session: Session, user, text: str) -> OpinionPhrase:
    text = (text or "").strip()
    if not text or len(text) > 200:
        raise ValidationFailed("a common opinion has 1 to 200 characters",
                               errors={"text": [FieldError("maxLength", 200).as_dict()]})
    count = session.scalar(select(func.count()).select_from(OpinionPhrase).where(OpinionPhrase.user_id == user.id))
    if count >= 50:
        raise Conflict("you have 50 common opinions already", code="too_many_phrases")
    row = OpinionPhrase(user_id=user.id, text=text, sort_order=count)
    session.add(row)
    session.flush()
    return row


def delete_phrase(session: Session, user, phrase_id: int) -> None:
    row = session.get(OpinionPhrase, phrase_id)
    if row is None or row.user_id != user.id:
        raise NotFound("no such common opinion of yours")
    session.delete(row)


# -- deadlines --------------------------------------------------------------------------------------------
def overdue(session: Session, user, page: int = 1, per_page: int = 50):
    """Open tasks past their deadline, within the user's data scope: for supervisors (office directors)."""
    from .org import Scope

    if not user.can("instance.supervise") and not user.can("instance.admin"):
        raise Forbidden("only supervisors see the overdue list", code="not_supervisor")
    scope = Scope(session, user)
    stmt = select(HumanTask).where(HumanTask.state == "open", HumanTask.due_at <= clock.now(),
                                   scope.clause(HumanTask.region_code, HumanTask.enterprise_id))
    return page_of(session, stmt, (HumanTask.due_at, HumanTask.id), page, per_page)


def handle_timeouts(db: Database, config: Config, limit: int = 100) -> int:
    """Apply each overdue task's timeoutAction: remind (up to N times), approve, reject or escalate."""
    now = clock.now()
    with db.session() as s:
        due = list(s.execute(select(HumanTask.id, HumanTask.instance_id).where(
            HumanTask.state == "open", HumanTask.kind == "task", HumanTask.next_action_at <= now)
            .order_by(HumanTask.next_action_at).limit(limit)).all())
    handled = 0
    for task_id, instance_id in due:
        try:
            with db.transaction() as s:
                handled += _timeout(s, config, task_id)
        except EngineError as exc:
            from .jobs import mark_error

            mark_error(db, instance_id, f"timeout of task {task_id}: {exc.message}")
    return handled


def _timeout(session: Session, config: Config, task_id: str) -> int:
    step = Step.open(session, config, None, None, task_id=task_id, skip_locked=True)
    if step is None:
        return 0
    task = step.task_row
    if task.state != "open" or task.next_action_at is None or task.next_action_at > clock.now() \
            or step.instance.status != "running":
        return 0
    ops = step.version.task_config(task.bpmn_id)
    holders = _holders(session, [task.id])
    if ops.timeout_action == "remind" or _signers_involved(session, task):
        task.reminders_sent += 1
        more = task.reminders_sent < ops.remind_limit
        task.next_action_at = calendar.load(session, config.timezone).add(clock.now(), ops.repeat) if more else None
        step.event("task_overdue_reminded", actor=None, task_id=task.id, bpmn_id=task.bpmn_id, task_name=task.name,
                   reminder=task.reminders_sent)
        messaging.send(session, config, holders, "reminder", f"超期提醒：{task.name}",
                       f"《{task.instance_title}》已超过办理期限，请尽快办理。", f"/tasks/{task.id}", task.instance_id)
        session.flush()
        return 1
    task.next_action_at = None
    if ops.timeout_action == "escalate":
        holder = holders[0] if holders else step.initiator
        leader = leader_of(session, holder.unit if holder is not None else None)
        if leader is None or (task.assignee_id == leader.id):
            step.event("task_escalation_failed", actor=None, task_id=task.id, bpmn_id=task.bpmn_id,
                       task_name=task.name)
            session.flush()
            return 1
        session.execute(delete(TaskCandidate).where(TaskCandidate.task_id == task.id))
        task.assignee_id, task.owner_id = leader.id, None
        step.event("task_escalated", actor=None, task_id=task.id, bpmn_id=task.bpmn_id, task_name=task.name,
                   to={"id": leader.id, "name": leader.name})
        messaging.send(session, config, [leader], "reminder", f"超期上报：{task.name}", task.instance_title,
                       f"/tasks/{task.id}", task.instance_id)
        session.flush()
        return 1
    spiff_task = step.workflow.get_task_from_id(UUID(task.id))
    decision = "approve" if ops.timeout_action == "approve" else "reject"
    step.event("task_timed_out", actor=None, task_id=task.id, bpmn_id=task.bpmn_id, task_name=task.name,
               action=decision)
    if decision == "reject" and ops.on_reject != "end":
        task.state, task.completed_at = "returned", utcnow()
        step.closed_by_caller.add(task.id)
        step.origin_task_id = task.id
        step.jump(spiff_task, ops.on_reject, returned_from=task.bpmn_id, to_me=False)
        step.run()
        step.save()
        return 1
    if decision == "reject":
        _reject_to_end(step, task, None, "超期自动处理", action="timeout")
        return 1
    finish(step, task, spiff_task, {"data": {}, "decision": decision, "opinion": "超期自动处理", "action": "timeout",
                                    "by": None, "for": None, "signature": None})
    return 1
