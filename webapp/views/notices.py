"""In-app notifications, and each user's channel preferences per message category."""
from __future__ import annotations

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from engine import messaging, notifications
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


@bp.route("/preferences")
@login_required
def preferences():
    """Which channels each message category reaches the user by."""
    with platform().db.session() as s:
        number = messaging.mobile_number(s, g.user)
        chosen = messaging.preferences(s, g.user)
        sms_ready = messaging.sms_ready(s)
    return render_template("notification_prefs.html", categories=messaging.CATEGORIES, chosen=chosen,
                           mobile=messaging.masked(number), sms_ready=sms_ready)


@bp.route("/preferences", methods=["POST"])
@login_required
def save_preferences():
    sms = set(request.form.getlist("sms"))
    wanted = {c: ["inapp", "sms"] if c in sms else ["inapp"] for c in messaging.CATEGORIES}
    with platform().db.transaction() as s:
        if messaging.mobile_number(s, g.user) is None:  # nothing to choose: the defaults apply once a number is added
            return redirect(url_for("notifications.preferences"))
        messaging.set_preferences(s, g.user, wanted)
    flash(_("Message settings saved."), "success")
    return redirect(url_for("notifications.preferences"))
