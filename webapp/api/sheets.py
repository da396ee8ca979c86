"""Handling sheets (办理单): an instance's document fields and every opinion, as an A4 PDF."""
from __future__ import annotations

from flask import g
from flask_smorest import Blueprint

from ..platform import platform
from ..views.sheet import pdf_response

PREFIX = "/process-instances"
blp = Blueprint("api_sheets", __name__, description="Handling sheets (办理单) as PDF")


@blp.route("/<int:instance_id>/sheet.pdf", methods=["GET"])
@blp.response(200, content_type="application/pdf",
              description="The A4 handling sheet: document fields, then each step's opinion, name, "
                          "signature and time, in order.")
@blp.doc(responses={"200": {"content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}}})
def sheet_pdf(instance_id: int):
    """The handling sheet of an instance in the caller's data scope, as PDF (404 outside it)."""
    with platform().db.session() as s:
        return pdf_response(s, g.user, instance_id)
