"""Starting a process."""
from __future__ import annotations

from flask import Blueprint, g, redirect, render_template, url_for
from sqlalchemy import select

from engine import instances
from engine.models import HumanTask

from ..platform import platform
from ..security import login_required

bp = Blueprint("processes", __name__)


@bp.route("/start")
@login_required
def index():
    with platform().db.session() as s:
        models = instances.startable_models(s, g.user)
    return render_template("start.html", models=models)


@bp.route("/start/<key>", methods=["POST"])
@login_required
def start(key: str):
    with platform().db.transaction() as s:
        inst = instances.start(s, platform().config, g.user, key)
        first = s.scalar(select(HumanTask.id).where(HumanTask.instance_id == inst.id, HumanTask.state == "open",
                                                    HumanTask.assignee_id == g.user.id))
    if first:
        return redirect(url_for("tasks.show", task_id=first))
    return redirect(url_for("instances.show", instance_id=inst.id))
