"""Attachments: upload a file to reference from task data; download one."""
from __future__ import annotations

from flask import g, request, send_file
from flask_smorest import Blueprint

from engine import files
from engine.errors import ValidationFailed

from ..platform import platform
from .schemas import AttachmentOut

PREFIX = "/attachments"
blp = Blueprint("api_attachments", __name__, description="Attachments")


@blp.route("", methods=["POST"])
@blp.response(201, AttachmentOut)
def upload():
    """Multipart upload (field ``file``); size and type are checked. Use the returned id in form data."""
    item = request.files.get("file")
    if item is None or not item.filename:
        raise ValidationFailed("no file uploaded", errors={"file": [{"code": "required", "message": "required"}]})
    with platform().db.transaction() as s:
        return files.store(s, platform().config, g.user, item.filename, item.mimetype, item.stream)


@blp.route("/<attachment_id>", methods=["GET"])
def download(attachment_id: str):
    """The file, for its uploader or anyone who may see its instance."""
    with platform().db.session() as s:
        row, path = files.open_for(s, platform().config, g.user, attachment_id)
    return send_file(path, mimetype=row.content_type, as_attachment=True, download_name=row.filename, max_age=0)
