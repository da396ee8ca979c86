"""Downloading attachments (only for people who may see the instance, or the uploader)."""
from __future__ import annotations

from urllib.parse import quote

from flask import Blueprint, g, send_file

from engine import files as engine_files

from ..platform import platform
from ..security import login_required

bp = Blueprint("files", __name__, url_prefix="/files")


@bp.route("/<attachment_id>")
@login_required
def download(attachment_id: str):
    with platform().db.session() as s:
        row, path = engine_files.open_for(s, platform().config, g.user, attachment_id)
    response = send_file(path, mimetype=row.content_type, as_attachment=True, download_name=row.filename,
                         max_age=0)
    response.headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(row.filename)}"
    return response
