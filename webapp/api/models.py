"""Process models and their versions; deployment by upload."""
from __future__ import annotations

from flask import g, request
from flask_smorest import Blueprint
from sqlalchemy import select

from engine.deploy import deploy
from engine.errors import Forbidden, NotFound
from engine.models import ProcessModel, ProcessVersion

from ..platform import platform
from ..views.admin import bundle_from_upload
from .schemas import DeployResult, ProcessModelOut, ProcessVersionOut

PREFIX = "/process-models"
blp = Blueprint("api_models", __name__, description="Process models and versions")


@blp.route("", methods=["GET"])
@blp.response(200, ProcessModelOut(many=True))
def list_models():
    """Every deployed process model, each with its key and latest version."""
    with platform().db.session() as s:
        return list(s.scalars(select(ProcessModel).order_by(ProcessModel.key)))


@blp.route("", methods=["POST"])
@blp.response(201, DeployResult)
def upload():
    """Deploy a model: multipart form with ``key``, ``name``, ``category`` and ``files`` (BPMN, DMN, forms).
    Identical content returns the existing version with 200."""
    if not g.user.can("process.deploy"):
        raise Forbidden("you may not deploy process models", code="not_admin")
    bundle = bundle_from_upload(request.form, request.files)
    with platform().db.transaction() as s:
        version, created = deploy(s, bundle, g.user, platform().registry.operations())
        body = {"version": version, "created": created}
        return (body, 201) if created else (body, 200)


@blp.route("/<key>/versions", methods=["GET"])
@blp.response(200, ProcessVersionOut(many=True))
def versions(key: str):
    """The versions of one model, newest first."""
    with platform().db.session() as s:
        rows = list(s.scalars(select(ProcessVersion).where(ProcessVersion.process_key == key)
                              .order_by(ProcessVersion.version.desc())))
        if not rows:
            raise NotFound(f"no process model '{key}'")
        return rows
