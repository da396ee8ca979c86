"""In-app notifications with read/unread."""
from __future__ import annotations

from flask import g
from flask_smorest import Blueprint

from engine import notifications

from ..platform import platform
from . import serial
from .schemas import NotificationArgs, NotificationOut, ReadRequest, paged

PREFIX = "/notifications"
blp = Blueprint("api_notifications", __name__, description="In-app notifications")


@blp.route("", methods=["GET"])
@blp.arguments(NotificationArgs, location="query")
@blp.response(200, paged(NotificationOut))
def list_notifications(args):
    with platform().db.session() as s:
        items, total = notifications.for_user(s, g.user, args["unread"], args["page"], args["per_page"])
        return serial.page(items, total, args["page"], args["per_page"])


@blp.route("/read", methods=["POST"])
@blp.arguments(ReadRequest)
@blp.response(200)
def mark_read(body):
    """Mark notifications read: the given ids, or all when ids is omitted."""
    with platform().db.transaction() as s:
        return {"updated": notifications.mark_read(s, g.user, body["ids"])}
