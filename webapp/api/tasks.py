"""Tasks: the inbox, one task with its form, claim/unclaim/complete/assign."""
from __future__ import annotations

from flask import g, jsonify
from flask_smorest import Blueprint

from engine import tasks

from ..platform import platform
from . import serial
from .schemas import AssignRequest, CompleteRequest, InstanceSummary, TaskArgs, TaskDetail, TaskOut, paged

PREFIX = "/tasks"
blp = Blueprint("api_tasks", __name__, description="Human tasks")


@blp.route("", methods=["GET"])
@blp.arguments(TaskArgs, location="query")
@blp.response(200, paged(TaskOut))
def inbox(args):
    """scope=mine (assigned to me), group (offered to me to claim), done (I completed), unassigned (admins)."""
    with platform().db.session() as s:
        items, total = tasks.inbox(s, g.user, args["scope"], args["page"], args["per_page"])
        body = serial.tasks_out(s, items, known={g.user.id: g.user.username})
        return jsonify(serial.page(body, total, args["page"], args["per_page"]))


@blp.route("/<task_id>", methods=["GET"])
@blp.response(200, TaskDetail)
def read(task_id: str):
    """A task with its form (JSON Schema) and the current data the form shows."""
    with platform().db.session() as s:
        view = tasks.view(s, platform().config, g.user, task_id)
        body = serial.tasks_out(s, [view.task])[0]
        body.update(form_schema=view.form.schema if view.form else {}, data=view.data, can_act=view.can_act)
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


@blp.route("/<task_id>/complete", methods=["POST"])
@blp.arguments(CompleteRequest)
@blp.response(200, InstanceSummary)
def complete(body, task_id: str):
    """Complete a task with form data; returns the instance and its open tasks.
    422 with per-field messages if the data is invalid, 409 if the task is no longer open."""
    with platform().db.transaction() as s:
        inst = tasks.complete(s, platform().config, g.user, task_id, body["data"])
        return jsonify(serial.instance_summary(s, inst))  # already JSON-shaped: skip the schema dump


@blp.route("/<task_id>/assign", methods=["POST"])
@blp.arguments(AssignRequest)
@blp.response(200, TaskOut)
def assign(body, task_id: str):
    """Assign a task to a user (process administrators), e.g. one whose rule matched nobody."""
    with platform().db.transaction() as s:
        task = tasks.assign(s, platform().config, g.user, task_id, body["username"], body["reason"])
        return serial.tasks_out(s, [task])[0]
