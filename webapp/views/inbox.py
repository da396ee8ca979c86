"""The inbox: my tasks, my groups' tasks to claim, tasks I completed."""
from __future__ import annotations

from flask import Blueprint, abort, g, render_template, request

from engine import tasks

from ..platform import platform
from ..security import login_required

bp = Blueprint("inbox", __name__)
PER_PAGE = 20


@bp.route("/inbox")
@login_required
def index():
    tab = request.args.get("tab", "mine")
    if tab not in ("mine", "group", "done"):
        abort(404)
    page = max(request.args.get("page", 1, type=int), 1)
    with platform().db.session() as s:
        items, total = tasks.inbox(s, g.user, tab, page, PER_PAGE)
    return render_template("inbox.html", tab=tab, items=items, total=total, page=page, per_page=PER_PAGE)
