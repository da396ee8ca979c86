"""GET /connectors: every connector with its operations and their JSON Schemas (for the modeler)."""
from __future__ import annotations

from flask_smorest import Blueprint

from ..platform import platform

PREFIX = "/connectors"
blp = Blueprint("api_connectors", __name__, description="Connectors")


@blp.route("", methods=["GET"])
@blp.response(200)
def list_connectors():
    return platform().registry.describe()
