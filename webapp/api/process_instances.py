"""Process instances: start, list, read, and admin operations."""
from __future__ import annotations

from flask import g
from flask_smorest import Blueprint
from sqlalchemy import select

from engine import instances, operations
from engine.models import ProcessInstance, ProcessVersion
from engine.runtime import instance_data

from ..platform import platform
from . import serial
from .schemas import (
    AdminAction,
    InstanceArgs,
    InstanceCreate,
    InstanceDetail,
    InstanceOut,
    OpinionOnly,
    ReadReceipt,
    paged,
)

PREFIX = "/process-instances"
blp = Blueprint("api_instances", __name__, description="Process instances")


def _detail(session, inst: ProcessInstance) -> dict:
    body = serial.instance_summary(session, inst)
    body["history"] = instances.history(session, inst.id)
    body["completed_elements"], body["active_elements"] = inst.completed_elements, inst.active_elements
    body["data"] = instance_data(session, inst)
    return body


@blp.route("", methods=["POST"])
@blp.arguments(InstanceCreate())
@blp.response(201, InstanceDetail)
def create(body):
    """Start an instance of the latest version of a model; returns it with its first tasks."""
    with platform().db.transaction() as s:
        inst = instances.start(s, platform().config, g.user, body["process_key"], body["data"],
                               body["business_key"], body["title"])
        return _detail(s, inst)


@blp.route("", methods=["GET"])
@blp.arguments(InstanceArgs(), location="query")
@blp.response(200, paged(InstanceOut))
def list_instances(args):
    """Instances within the caller's data scope (and those they started), newest first."""
    filters = instances.Filters(**{k: args.get(k) for k in (
        "process_key", "status", "business_key", "q", "mine", "created_from", "created_to")})
    with platform().db.session() as s:
        items, total = instances.query(s, g.user, filters, args["page"], args["per_page"])
        versions = dict(s.execute(select(ProcessVersion.id, ProcessVersion.version).where(
            ProcessVersion.id.in_({i.version_id for i in items}))).all()) if items else {}
        return serial.page([serial.instance_out(s, i, versions[i.version_id]) for i in items], total,
                           args["page"], args["per_page"])


@blp.route("/<int:instance_id>", methods=["GET"])
@blp.response(200, InstanceDetail)
def read(instance_id: int):
    """One instance: status, active tasks with assignees and candidates, the audit history, the data."""
    with platform().db.session() as s:
        return _detail(s, instances.get(s, g.user, instance_id))


def _admin(operation, instance_id: int, body):
    with platform().db.transaction() as s:
        inst = operation(s, platform().config, g.user, instance_id, body["reason"])
        return _detail(s, inst)


@blp.route("/<int:instance_id>/suspend", methods=["POST"])
@blp.arguments(AdminAction())
@blp.response(200, InstanceDetail)
def suspend(body, instance_id: int):
    """Suspend a running instance (process administrators)."""
    return _admin(instances.suspend, instance_id, body)


@blp.route("/<int:instance_id>/resume", methods=["POST"])
@blp.arguments(AdminAction())
@blp.response(200, InstanceDetail)
def resume(body, instance_id: int):
    """Resume a suspended instance, or retry one in error (process administrators)."""
    return _admin(instances.resume, instance_id, body)


@blp.route("/<int:instance_id>/terminate", methods=["POST"])
@blp.arguments(AdminAction())
@blp.response(200, InstanceDetail)
def terminate(body, instance_id: int):
    """End an instance for good (process administrators)."""
    return _admin(instances.terminate, instance_id, body)


@blp.route("/<int:instance_id>/cancel", methods=["POST"])
@blp.arguments(OpinionOnly())
@blp.response(200, InstanceDetail)
def cancel(body, instance_id: int):
    """Cancel (撤销) the whole instance: its initiator, where the process allows it."""
    with platform().db.transaction() as s:
        return _detail(s, operations.cancel(s, platform().config, g.user, instance_id, body["opinion"]))


@blp.route("/<int:instance_id>/urge", methods=["POST"])
@blp.arguments(OpinionOnly())
@blp.response(200)
def urge(body, instance_id: int):
    """Urge (催办) the current assignees: the initiator or a supervisor; once per 30 minutes per urger."""
    with platform().db.transaction() as s:
        return {"notified": operations.urge(s, platform().config, g.user, instance_id, body["opinion"])}


@blp.route("/<int:instance_id>/read", methods=["POST"])
@blp.response(200)
def mark_read(instance_id: int):
    """Record that the caller has read an instance copied to them (the read receipt)."""
    with platform().db.transaction() as s:
        instances.get(s, g.user, instance_id)
        return {"updated": operations.mark_copies_read(s, g.user, instance_id)}


@blp.route("/<int:instance_id>/copies", methods=["GET"])
@blp.response(200, ReadReceipt(many=True))
def read_receipts(instance_id: int):
    """Who the instance was copied to, and when each read it."""
    with platform().db.session() as s:
        instances.get(s, g.user, instance_id)
        return [{"name": n, "copied_at": c, "read_at": r} for n, c, r in operations.read_receipts(s, instance_id)]
