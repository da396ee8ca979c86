"""In-app notifications with read/unread, and each user's channel preferences per message category."""
from __future__ import annotations

import marshmallow as ma
from flask import g
from flask_smorest import Blueprint
from marshmallow import fields as f

from engine import messaging, notifications

from ..platform import platform
from . import serial
from .schemas import NotificationArgs, NotificationOut, ReadRequest, paged

PREFIX = "/notifications"
blp = Blueprint("api_notifications", __name__, description="In-app notifications")


@blp.route("", methods=["GET"])
@blp.arguments(NotificationArgs(), location="query")
@blp.response(200, paged(NotificationOut))
def list_notifications(args):
    with platform().db.session() as s:
        items, total = notifications.for_user(s, g.user, args["unread"], args["page"], args["per_page"])
        return serial.page(items, total, args["page"], args["per_page"])


@blp.route("/read", methods=["POST"])
@blp.arguments(ReadRequest())
@blp.response(200)
def mark_read(body):
    """Mark notifications read: the given ids, or all when ids is omitted."""
    with platform().db.transaction() as s:
        return {"updated": notifications.mark_read(s, g.user, body["ids"])}


class PreferencesIn(ma.Schema):
    preferences = f.Dict(keys=f.String(), values=f.List(f.String()), required=True)


class PreferencesOut(ma.Schema):
    preferences = f.Dict(keys=f.String(), values=f.List(f.String()))
    categories = f.List(f.String())
    channels = f.List(f.String())
    mobile = f.String()
    sms_available = f.Boolean()


def _preferences(session) -> dict:
    number = messaging.mobile_number(session, g.user)
    return {"preferences": messaging.preferences(session, g.user), "categories": list(messaging.CATEGORIES),
            "channels": list(messaging.CHANNELS), "mobile": messaging.masked(number),
            "sms_available": bool(number) and messaging.sms_ready(session)}


@blp.route("/preferences", methods=["GET"])
@blp.response(200, PreferencesOut)
def get_preferences():
    """Your channels per message category (in-app is always on; SMS needs a mobile number on file)."""
    with platform().db.session() as s:
        return _preferences(s)


@blp.route("/preferences", methods=["PUT"])
@blp.arguments(PreferencesIn())
@blp.response(200, PreferencesOut)
def put_preferences(body):
    """Set your channels for the categories given, e.g. ``{"preferences": {"alarm": ["inapp", "sms"]}}``."""
    with platform().db.transaction() as s:
        messaging.set_preferences(s, g.user, body["preferences"])
        return _preferences(s)
