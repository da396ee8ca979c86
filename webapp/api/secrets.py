"""/secrets: names and update times only; values go in and are never sent back."""
from __future__ import annotations

from flask import g
from flask_smorest import Blueprint

from engine import audit, secrets
from engine.errors import Forbidden

from ..platform import platform
from .schemas import SecretOut, SecretRequest

PREFIX = "/secrets"
blp = Blueprint("api_secrets", __name__, description="Secrets for connectors")


def _require_admin() -> None:
    if not g.user.can("connector.admin"):
        raise Forbidden("only integration administrators may manage secrets", code="not_admin")


@blp.route("", methods=["GET"])
@blp.response(200, SecretOut(many=True))
def list_secrets():
    _require_admin()
    with platform().db.session() as s:
        return [{"name": name, "updated_at": at} for name, at in secrets.names(s)]


@blp.route("/<name>", methods=["PUT"])
@blp.arguments(SecretRequest())
@blp.response(200, SecretOut)
def put_secret(body, name: str):
    """Store or replace a secret; the trail records who and when, never the value."""
    _require_admin()
    with platform().db.transaction() as s:
        row = secrets.put(s, platform().config, name, body["value"], g.user)
        audit.record_system(s, "secret_stored", g.user, target=name)
        return row


@blp.route("/<name>", methods=["DELETE"])
@blp.response(204)
def delete_secret(name: str):
    """Delete a secret no connector refers to (409 naming the connectors otherwise)."""
    _require_admin()
    with platform().db.transaction() as s:
        secrets.delete(s, name)
        audit.record_system(s, "secret_deleted", g.user, target=name)
