"""GET /incidents and their retry / skip: what stopped an instance, for process administrators."""
from __future__ import annotations

from flask import g
from flask_smorest import Blueprint

from engine import incidents

from ..platform import platform
from . import serial
from .schemas import AdminAction, IncidentArgs, IncidentOut, paged

PREFIX = "/incidents"
blp = Blueprint("api_incidents", __name__, description="Incidents")


@blp.route("", methods=["GET"])
@blp.arguments(IncidentArgs(), location="query")
@blp.response(200, paged(IncidentOut))
def list_incidents(args):
    """Open incidents by default (state=resolved|all for the rest), newest first."""
    with platform().db.session() as s:
        items, total = incidents.search(s, g.user, args["state"], args.get("instance_id"), args["page"],
                                        args["per_page"])
        return serial.page(items, total, args["page"], args["per_page"])


@blp.route("/<int:incident_id>/retry", methods=["POST"])
@blp.arguments(AdminAction())
@blp.response(200, IncidentOut)
def retry(body, incident_id: int):
    """Run the failed step again; a service call keeps its idempotency key."""
    with platform().db.transaction() as s:
        return incidents.retry(s, platform().config, g.user, incident_id, body["reason"])


@blp.route("/<int:incident_id>/skip", methods=["POST"])
@blp.arguments(AdminAction())
@blp.response(200, IncidentOut)
def skip(body, incident_id: int):
    """Give up on a failed service call with a reason; its result is left empty and the process moves on."""
    with platform().db.transaction() as s:
        return incidents.skip(s, platform().config, g.user, incident_id, body["reason"])
