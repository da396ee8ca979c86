"""/connectors: every connector with its operations and JSON Schemas (for the modeler), and their settings."""
from __future__ import annotations

from flask import g
from flask_smorest import Blueprint

from engine import connectors
from engine.errors import Forbidden

from ..platform import platform
from .schemas import ConnectorSettings

PREFIX = "/connectors"
blp = Blueprint("api_connectors", __name__, description="Connectors")


@blp.route("", methods=["GET"])
@blp.response(200)
def list_connectors():
    return platform().registry.describe()


@blp.route("/<name>/settings", methods=["GET"])
@blp.response(200, ConnectorSettings)
def read_settings(name: str):
    """A connector's stored settings; secrets appear as {"$secret": name}, never as values."""
    if not g.user.can("connector.admin"):
        raise Forbidden("only integration administrators may read connector settings", code="not_admin")
    with platform().db.session() as s:
        return connectors.settings_of(s, platform().registry, name)


@blp.route("/<name>/settings", methods=["PUT"])
@blp.arguments(ConnectorSettings())
@blp.response(200, ConnectorSettings)
def write_settings(body, name: str):
    """Replace a connector's settings; checked against its schema with the secrets resolved; applies to the
    next call (connectors are built per call)."""
    with platform().db.transaction() as s:
        return connectors.configure(s, platform().config, platform().registry, g.user, name, body["config"],
                                    body["enabled"], body["timeout"], body["retries"])
