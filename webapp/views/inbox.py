"""The inbox: my tasks, my groups' tasks to claim, tasks I completed, what was copied to me, and (for
supervisors) the overdue list."""
from __future__ import annotations

from flask import Blueprint, abort, g, render_template, request

from engine import clock, operations, tasks

from ..platform import platform
from ..security import login_required

bp = Blueprint("inbox", __name__)
PER_PAGE = 20


def supervises(user) -> bool:
    return user.can("instance.supervise") or user.can("instance.admin")


@bp.route("/inbox")
@login_required
def index():
    tab = request.args.get("tab", "mine")
    if tab not in ("mine", "group", "done", "cc", "overdue") or (tab == "overdue" and not supervises(g.user)):
        abort(404)
    page = max(request.args.get("page", 1, type=int), 1)
    with platform().db.session() as s:
        if tab == "cc":
            items, total = operations.copies(s, g.user, page, PER_PAGE)
        elif tab == "overdue":
            items, total = operations.overdue(s, g.user, page, PER_PAGE)
        else:
            items, total = tasks.inbox(s, g.user, tab, page, PER_PAGE)
    return render_template("inbox.html", tab=tab, items=items, total=total, page=page, per_page=PER_PAGE,
                           supervisor=supervises(g.user), now=clock.now())
