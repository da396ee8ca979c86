"""POST /ministry/instructions: the ministry's command system sends an instruction (指示) on an incident.

Authenticated by ``X-Ministry-Signature`` (hex HMAC-SHA256 of the raw body under the ministry connector's
``webhook_secret``), not a user token: ``api_ministry.instructions`` is one of the API's public endpoints.
An instruction is delivered once: sent again (a retry or a replay) it answers 200 ``duplicate`` and delivers nothing."""
from __future__ import annotations

import marshmallow as ma
from flask import request
from flask_smorest import Blueprint
from marshmallow import fields as f

from engine import ministry

from ..platform import platform

PREFIX = "/ministry"
blp = Blueprint("api_ministry", __name__, description="Instructions from the ministry's command system")


class Delivered(ma.Schema):
    delivered = f.List(f.Integer())
    duplicate = f.Boolean(metadata={"description": "received before: nothing delivered now, the first ids"})


@blp.route("/instructions", methods=["POST"])
@blp.response(200, Delivered)
def instructions():
    """Deliver ``{incident_id, instruction, issued_by, issued_at}`` as the message ``ministry.instruction`` to the
    instances waiting on that incident, once. 401 for a bad signature, 422 for a malformed body, 404 when no
    process waits for it; the same instruction again answers 200 with ``duplicate`` and the first delivery's ids."""
    body = request.get_data()
    config = platform().config
    with platform().db.transaction() as s:
        ministry.check_signature(s, config, body, request.headers.get("X-Ministry-Signature", ""))
        return ministry.receive(s, config, body)
