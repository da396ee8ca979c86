"""In-app notifications."""
from __future__ import annotations

from flask import Blueprint, g, redirect, render_template, request, url_for
from sqlalchemy import select

from engine import notifications
from engine.models import Notification

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


@bp.route("/<int:note_id>/open", methods=["POST"])
@login_required
def open_one(note_id: int):
    """Follow a notification's link, marking it read on the way."""
    with platform().db.transaction() as s:
        notifications.mark_read(s, g.user, [note_id])
        link = s.scalar(select(Notification.link).where(Notification.id == note_id,
                                                        Notification.user_id == g.user.id))
    # Only our own paths: a link is stored by the engine, but never follow one off the site.
    return redirect(link if link and link.startswith("/") and not link.startswith("//") else url_for(".index"))


@bp.route("/read", methods=["POST"])
@login_required
def mark_read():
    ids = [int(i) for i in request.form.getlist("id") if i.isdigit()] or None
    with platform().db.transaction() as s:
        notifications.mark_read(s, g.user, ids)
    return redirect(request.form.get("next") or url_for("notifications.index"))
