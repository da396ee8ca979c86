"""POST /sms/receipts: the SMS gateway reports delivery, signed with the sms connector's API key."""
from __future__ import annotations

import marshmallow as ma
from flask import request
from flask_smorest import Blueprint
from marshmallow import fields as f

from engine import messaging

from ..platform import platform

PREFIX = "/sms"
blp = Blueprint("api_sms", __name__, description="SMS gateway delivery receipts")


class ReceiptOut(ma.Schema):
    id = f.String()
    status = f.String()


@blp.route("/receipts", methods=["POST"])
@blp.response(200, ReceiptOut)
def receipts():
    """A delivery receipt ``{"id", "status": "delivered"|"failed", "error"}`` with headers ``X-Sms-Timestamp``
    and ``X-Sms-Signature`` (hex HMAC-SHA256 of timestamp + "." + body); 401 for a bad signature, 404 for an
    unknown id; a replay changes nothing."""
    with platform().db.transaction() as s:
        row = messaging.apply_receipt(s, platform().config, request.get_data(),
                                      request.headers.get("X-Sms-Timestamp", ""),
                                      request.headers.get("X-Sms-Signature", ""))
        return {"id": row.gateway_id, "status": row.status}
