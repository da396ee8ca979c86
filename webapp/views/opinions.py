"""Common opinions (常用意见): the shared list and each user's own, kept on a page and from the task page."""
from __future__ import annotations

from flask import Blueprint, flash, g, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _

from engine import operations
from engine.errors import Conflict, NotFound, ValidationFailed

from .. import i18n
from ..platform import platform
from ..security import login_required

bp = Blueprint("opinions", __name__, url_prefix="/opinions")


def _wants_json() -> bool:
    return request.accept_mimetypes.best == "application/json"


@bp.route("")
@login_required
def index():
    with platform().db.session() as s:
        phrases = operations.phrases(s, g.user)
    return render_template("opinions.html", shared=[p for p in phrases if p.user_id is None],
                           own=[p for p in phrases if p.user_id is not None])


@bp.route("", methods=["POST"])
@login_required
def add():
    """Save a common opinion of one's own; answers JSON to the task page's script, else back to the list."""
    try:
        with platform().db.transaction() as s:
            row = operations.add_phrase(s, g.user, request.form.get("text", ""))
            saved = {"id": row.id, "text": row.text}
    except (ValidationFailed, Conflict) as exc:
        if _wants_json():
            return jsonify({"code": exc.code, "message": i18n.error_text(exc)}), exc.status
        flash(i18n.error_with_details(exc), "error")
        return redirect(url_for("opinions.index"))
    if _wants_json():
        return jsonify(saved), 201
    flash(_("Saved to my common opinions"), "success")
    return redirect(url_for("opinions.index"))


@bp.route("/<int:phrase_id>/delete", methods=["POST"])
@login_required
def delete(phrase_id: int):
    try:
        with platform().db.transaction() as s:
            operations.delete_phrase(s, g.user, phrase_id)
        flash(_("Deleted."), "success")
    except NotFound as exc:
        flash(i18n.error_text(exc), "error")
    return redirect(url_for("opinions.index"))
