"""Login and logout."""
from __future__ import annotations

from flask import Blueprint, flash, g, redirect, render_template, request, session, url_for
from flask_babel import gettext as _

from engine import audit
from engine.auth import login as engine_login
from engine.errors import AuthenticationFailed

from .. import i18n
from ..platform import platform
from ..security import start_session

bp = Blueprint("auth", __name__)


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("inbox.index")


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if session.pop("expired", False):
        error = _("Your session ended after a period of inactivity. Please log in again.")
    if request.method == "POST":
        username = request.form.get("username", "").strip()
        try:
            user = engine_login(platform().db, platform().config, username, request.form.get("password", ""),
                                source=request.remote_addr or "")
        except AuthenticationFailed as exc:
            error = i18n.error_text(exc)
        else:
            start_session(user)
            return redirect(_safe_next(request.args.get("next")))
    return render_template("auth/login.html", error=error), (401 if error and request.method == "POST" else 200)


@bp.route("/logout", methods=["POST"])
def logout():
    if g.get("user") is not None:
        with platform().db.transaction() as s:
            audit.record_system(s, "logout", g.user, target=g.user.username)
    session.clear()
    flash(_("You have logged out."), "info")
    return redirect(url_for("auth.login"))
