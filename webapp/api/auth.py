"""POST /auth/token: a bearer token for a username and password."""
from __future__ import annotations

from flask import request
from flask_smorest import Blueprint

from engine.auth import login
from engine.org import principal_of

from ..platform import platform
from ..security import issue_token
from .schemas import TokenRequest, TokenResponse

PREFIX = "/auth"
blp = Blueprint("api_auth", __name__, description="Authentication")


@blp.route("/token", methods=["POST"])
@blp.arguments(TokenRequest())
@blp.response(200, TokenResponse)
def token(body):
    """Exchange a username and password for a bearer token (the same lockout rules as the login page)."""
    user = login(platform().db, platform().config, body["username"], body["password"],
                 source=request.remote_addr or "")
    with platform().db.session() as s:
        principal = principal_of(s, user.id)
    return {"access_token": issue_token(principal), "token_type": "Bearer",
            "expires_in": platform().config.token_ttl_seconds}
