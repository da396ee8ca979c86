"""The handling sheet (办理单): a printable page, its A4 PDF, and the signature images both show."""
from __future__ import annotations

import re
from urllib.parse import quote

from flask import Blueprint, Response, g, render_template

from engine import instances
from engine import sheet as engine_sheet

from .. import sheetpdf
from ..platform import platform
from ..security import login_required

bp = Blueprint("sheet", __name__)


def pdf_response(session, user, instance_id: int) -> Response:
    """The PDF of an instance the user may see, shown inline, named after its title (shared with the API)."""
    from . import status_text  # the package imports this module: import its helper at call time

    inst = instances.get(session, user, instance_id)
    sheet = engine_sheet.build(session, inst, platform().config.timezone)
    body = sheetpdf.render(sheet, engine_sheet.signature_images(session, sheet), status_text(sheet.status))
    name = re.sub(r'[\\/:*?"<>|\x00-\x1f]+', " ", f"{sheet.instance_title}-{sheet.title}").strip()[:150]
    response = Response(body, mimetype="application/pdf")
    # filename= is an ASCII fallback for old clients; filename* carries the Chinese title (RFC 6266).
    response.headers["Content-Disposition"] = (f'inline; filename="sheet-{instance_id}.pdf"; '
                                               f"filename*=UTF-8''{quote(name + '.pdf')}")
    return response


@bp.route("/instances/<int:instance_id>/sheet")
@login_required
def page(instance_id: int):
    with platform().db.session() as s:
        inst = instances.get(s, g.user, instance_id)
        sheet = engine_sheet.build(s, inst, platform().config.timezone)
    return render_template("sheet.html", sheet=sheet, rows=engine_sheet.field_rows(sheet.fields))


@bp.route("/instances/<int:instance_id>/sheet.pdf")
@login_required
def pdf(instance_id: int):
    with platform().db.session() as s:
        return pdf_response(s, g.user, instance_id)


@bp.route("/signatures/<signature_id>.png")
@login_required
def signature(signature_id: str):
    with platform().db.session() as s:
        image = engine_sheet.signature_image(s, g.user, signature_id)
    return Response(image, mimetype="image/png")
