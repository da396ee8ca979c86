"""POST /callbacks/{token}: an outside system answers a service call later (the token is the credential)."""
from __future__ import annotations

from flask_smorest import Blueprint

from engine import messages

from ..platform import platform
from .schemas import CallbackRequest, CallbackResult

PREFIX = "/callbacks"
blp = Blueprint("api_callbacks", __name__, description="Callbacks from outside systems")


@blp.route("/<token>", methods=["POST"])
@blp.arguments(CallbackRequest())
@blp.response(200, CallbackResult)
def callback(body, token: str):
    """Deliver the answer as a message to the instance that made the call; 404 for a forged address,
    409 when the process no longer waits for it."""
    with platform().db.transaction() as s:
        return {"instance_id": messages.deliver_callback(s, platform().config, token, body["message"],
                                                         body["payload"])}
