"""POST /auth/token: a bearer token for a username and password."""
from __future__ import annotations

from flask import request
from flask_smorest import Blueprint

from engine.auth import login

from ..platform import platform
from ..security import issue_token
from .schemas import TokenRequest, TokenResponse

PREFIX = "/auth"
blp = Blueprint("api_auth", __name__, description="Authentication")


@blp.route("/token", methods=["POST"])
@blp.arguments(TokenRequest)
@blp.response(200, TokenResponse)
def token(body):
    """Exchange a username and password for a bearer token (the same lockout rules as the login page)."""
    user = login(platform().db, platform().config, body["username"], body["password"],
                 source=request.remote_addr or "")
    return {"access_token": issue_token(user), "token_type": "Bearer",
            "expires_in": platform().config.token_ttl_seconds}
