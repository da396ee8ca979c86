"""Tasks: the inbox, one task with its form, claim/unclaim/complete/assign."""
from __future__ import annotations

from flask import g, jsonify
from flask_smorest import Blueprint

from engine import operations, tasks
from engine.errors import Forbidden

from .. import i18n
from ..platform import platform
from . import serial
from .schemas import (
    ApproveRequest,
    AssignRequest,
    CompleteRequest,
    CopyRequest,
    HandOverRequest,
    InstanceSummary,
    OpinionRequest,
    ReturnRequest,
    ReturnTarget,
    SignersRequest,
    TaskArgs,
    TaskDetail,
    TaskOut,
    paged,
)

PREFIX = "/tasks"
blp = Blueprint("api_tasks", __name__, description="Human tasks")


@blp.route("", methods=["GET"])
@blp.arguments(TaskArgs(), location="query")
@blp.response(200, paged(TaskOut))
def inbox(args):
    """scope=mine (assigned to me), group (offered to me to claim), done (I completed), unassigned (admins),
    cc (copied to me to read, CopyOut items), overdue (past their deadline; supervisors)."""
    page_no, per_page = args["page"], args["per_page"]
    with platform().db.session() as s:
        if args["scope"] == "cc":
            rows, total = operations.copies(s, g.user, page_no, per_page)
            return jsonify(serial.page([serial.copy_out(r) for r in rows], total, page_no, per_page))
        if args["scope"] == "overdue":
            if not g.user.can("instance.supervise") and not g.user.can("instance.admin"):
                raise Forbidden("only supervisors see the overdue list", code="not_supervisor")
            items, total = operations.overdue(s, g.user, page_no, per_page)
        else:
            items, total = tasks.inbox(s, g.user, args["scope"], page_no, per_page, plain=True)
        body = serial.tasks_out(s, items)
        return jsonify(serial.page(body, total, page_no, per_page))


@blp.route("/<task_id>", methods=["GET"])
@blp.response(200, TaskDetail)
def read(task_id: str):
    """A task with its form (JSON Schema), the current data, the operations it offers and its added signers."""
    with platform().db.session() as s:
        view = tasks.view(s, platform().config, g.user, task_id)
        body = serial.tasks_out(s, [view.task])[0]
        body.update(form_schema=view.form.schema if view.form else {}, data=view.data, can_act=view.can_act,
                    buttons=i18n.buttons(view.config), require_opinion=sorted(view.config.require_opinion),
                    signature=view.config.signature, signers=serial.tasks_out(s, view.signers),
                    proxy_for=[p.username for p in view.proxy_for])
        return body


@blp.route("/<task_id>/claim", methods=["POST"])
@blp.response(200, TaskOut)
def claim(task_id: str):
    """Take a task offered to you or your group; 409 if someone else was first."""
    with platform().db.transaction() as s:
        task = tasks.claim(s, platform().config, g.user, task_id)
        return serial.tasks_out(s, [task])[0]


@blp.route("/<task_id>/unclaim", methods=["POST"])
@blp.response(200, TaskOut)
def unclaim(task_id: str):
    """Give a claimed task back to its candidates."""
    with platform().db.transaction() as s:
        task = tasks.unclaim(s, platform().config, g.user, task_id)
        return serial.tasks_out(s, [task])[0]


def _summary(operation, *args, **kwargs):
    with platform().db.transaction() as s:
        inst = operation(s, platform().config, g.user, *args, **kwargs)
        return jsonify(serial.instance_summary(s, inst))  # already JSON-shaped: skip the schema dump


@blp.route("/<task_id>/complete", methods=["POST"])
@blp.arguments(CompleteRequest())
@blp.response(200, InstanceSummary)
def complete(body, task_id: str):
    """Complete a task with form data (and opinion, signature, on_behalf_of); returns the instance and its
    open tasks. 422 with per-field messages if the data is invalid, 409 if the task is no longer open."""
    return _summary(tasks.complete, task_id, body["data"], opinion=body["opinion"], signature=body["signature"],
                    on_behalf_of=body["on_behalf_of"])


@blp.route("/<task_id>/approve", methods=["POST"])
@blp.arguments(ApproveRequest())
@blp.response(200, InstanceSummary)
def approve(body, task_id: str):
    """Approve (同意): complete with decision "approve" and the form data."""
    return _summary(operations.approve, task_id, body["data"], opinion=body["opinion"],
                    signature=body["signature"], on_behalf_of=body["on_behalf_of"])


@blp.route("/<task_id>/reject", methods=["POST"])
@blp.arguments(OpinionRequest())
@blp.response(200, InstanceSummary)
def reject(body, task_id: str):
    """Reject: ends the instance or returns to the step the task's onReject names."""
    return _summary(operations.reject, task_id, body["opinion"], body["signature"], body["on_behalf_of"])


@blp.route("/<task_id>/return-targets", methods=["GET"])
@blp.response(200, ReturnTarget(many=True))
def return_targets(task_id: str):
    """The earlier completed steps on this task's path, newest first."""
    with platform().db.session() as s:
        return operations.return_targets(s, platform().config, g.user, task_id)


@blp.route("/<task_id>/return", methods=["POST"])
@blp.arguments(ReturnRequest())
@blp.response(200, InstanceSummary)
def send_back(body, task_id: str):
    """Return (退回) to an earlier step (default: the previous); straight_back = 原路返回."""
    return _summary(operations.send_back, task_id, body["target"], body["opinion"], body["straight_back"],
                    body["on_behalf_of"])


@blp.route("/<task_id>/transfer", methods=["POST"])
@blp.arguments(HandOverRequest())
@blp.response(200, TaskOut)
def transfer(body, task_id: str):
    """Transfer (转办) the task to another user."""
    with platform().db.transaction() as s:
        return serial.tasks_out(s, [operations.transfer(s, platform().config, g.user, task_id, body["to"],
                                                        body["opinion"])])[0]


@blp.route("/<task_id>/delegate", methods=["POST"])
@blp.arguments(HandOverRequest())
@blp.response(200, TaskOut)
def delegate(body, task_id: str):
    """Delegate (委派): the delegate acts, then the task comes back."""
    with platform().db.transaction() as s:
        return serial.tasks_out(s, [operations.delegate(s, platform().config, g.user, task_id, body["to"],
                                                        body["opinion"])])[0]


@blp.route("/<task_id>/signers", methods=["POST"])
@blp.arguments(SignersRequest())
@blp.response(201, TaskOut(many=True))
def add_signers(body, task_id: str):
    """Add signers (加签) before, after, or in parallel with the current person."""
    with platform().db.transaction() as s:
        rows = operations.add_signers(s, platform().config, g.user, task_id, body["users"], body["position"],
                                      body["opinion"])
        return serial.tasks_out(s, rows)


@blp.route("/<task_id>/remove-signer", methods=["POST"])
@blp.arguments(OpinionRequest())
@blp.response(200, TaskOut)
def remove_signer(body, task_id: str):
    """Remove an added signer (减签) who has not acted; the id is the signer's task id."""
    with platform().db.transaction() as s:
        return serial.tasks_out(s, [operations.remove_signer(s, platform().config, g.user, task_id,
                                                             body["opinion"])])[0]


@blp.route("/<task_id>/withdraw", methods=["POST"])
@blp.arguments(OpinionRequest())
@blp.response(200, InstanceSummary)
def withdraw(body, task_id: str):
    """Withdraw (撤回) a step you completed, while the next step has not been acted on."""
    return _summary(operations.withdraw, task_id, body["opinion"])


@blp.route("/<task_id>/cc", methods=["POST"])
@blp.arguments(CopyRequest())
@blp.response(201)
def copy_to(body, task_id: str):
    """Copy (抄送/传阅) the instance to users or units; they see it under scope=cc."""
    with platform().db.transaction() as s:
        rows = operations.copy_to(s, platform().config, g.user, task_id, body["users"], body["units"],
                                  body["note"])
        return {"copied": len(rows)}


@blp.route("/<task_id>/assign", methods=["POST"])
@blp.arguments(AssignRequest())
@blp.response(200, TaskOut)
def assign(body, task_id: str):
    """Assign a task to a user (process administrators), e.g. one whose rule matched nobody."""
    with platform().db.transaction() as s:
        task = tasks.assign(s, platform().config, g.user, task_id, body["username"], body["reason"])
        return serial.tasks_out(s, [task])[0]
