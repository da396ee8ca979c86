"""In-app notifications."""
from __future__ import annotations

from flask import Blueprint, g, redirect, render_template, request, url_for

from engine import notifications

from ..platform import platform
from ..security import login_required

bp = Blueprint("notifications", __name__, url_prefix="/notifications")


@bp.route("")
@login_required
def index():
    page = max(request.args.get("page", 1, type=int), 1)
    with platform().db.session() as s:
        items, total = notifications.for_user(s, g.user, page=page)
    return render_template("notifications.html", items=items, total=total, page=page, per_page=20)


@bp.route("/read", methods=["POST"])
@login_required
def mark_read():
    ids = [int(i) for i in request.form.getlist("id") if i.isdigit()] or None
    with platform().db.transaction() as s:
        notifications.mark_read(s, g.user, ids)
    return redirect(request.form.get("next") or url_for("notifications.index"))
