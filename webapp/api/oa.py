"""POST /oa/documents: the government OA announces an incoming document (来文), which starts 收文.

Authenticated by ``X-OA-Signature`` (hex HMAC-SHA256 of the raw body under the oa connector's
``webhook_secret``), not a user token: ``api_oa.documents`` is one of the API's public endpoints."""
from __future__ import annotations

import marshmallow as ma
from flask import request
from flask_smorest import Blueprint
from marshmallow import fields as f

from engine import oa

from ..platform import platform

PREFIX = "/oa"
blp = Blueprint("api_oa", __name__, description="Incoming documents from the government OA system")


class Received(ma.Schema):
    instance_id = f.Integer(allow_none=True)
    created = f.Boolean()


@blp.route("/documents", methods=["POST"])
@blp.response(201, Received)
@blp.alt_response(200, schema=Received, description="the document was received before: nothing new started")
def documents():
    """Receive one document ``{id, title, issuer, doc_number, copies, secrecy, urgency, deadline, file_url}``:
    its file is fetched and 收文 starts with business key ``OA-<id>``. 401 for a bad signature, 422 for a
    malformed document, 502 when the OA's file cannot be fetched (send again later)."""
    body = request.get_data()
    with platform().db.session() as s:
        oa.check_signature(s, platform().config, body, request.headers.get("X-OA-Signature", ""))
    result = oa.receive(platform().db, platform().config, platform().registry, oa.parse(body), "webhook")
    return result, 201 if result["created"] else 200
