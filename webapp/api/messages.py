"""POST /messages: deliver a message to the instances waiting for it (or start one)."""
from __future__ import annotations

from flask import g
from flask_smorest import Blueprint

from engine import messages

from ..platform import platform
from .schemas import MessageRequest, MessageResult

PREFIX = "/messages"
blp = Blueprint("api_messages", __name__, description="Messages to processes")


@blp.route("", methods=["POST"])
@blp.arguments(MessageRequest())
@blp.response(200, MessageResult)
def send(body):
    """Match by name and correlation values through the subscription table; 404 if nobody waits."""
    with platform().db.transaction() as s:
        return messages.deliver(s, platform().config, g.user, body["name"], body["correlations"], body["payload"])
