"""Integration administration: incidents to retry or skip, and the service bus with its usage charts."""
from __future__ import annotations

import json
from datetime import timedelta
from zoneinfo import ZoneInfo

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _

from engine import bus, clock, incidents
from engine.errors import EngineError
from engine.models import BusConsumer, BusService, ProcessInstance

from .. import i18n
from ..platform import platform
from ..security import permission_required

bp = Blueprint("integration", __name__, url_prefix="/admin")
CHART_DAYS = 14


@bp.route("/incidents")
@permission_required("instance.admin")
def incidents_page():
    state = request.args.get("state", "open")
    state = state if state in ("open", "resolved", "all") else "open"
    with platform().db.session() as s:
        rows, total = incidents.search(s, g.user, state, page=1, per_page=100)
        titles = {i.id: i.title for i in s.query(ProcessInstance).filter(
            ProcessInstance.id.in_({r.instance_id for r in rows}))} if rows else {}
    return render_template("incidents.html", rows=rows, total=total, state=state, titles=titles)


@bp.route("/incidents/<int:incident_id>/<action>", methods=["POST"])
@permission_required("instance.admin")
def handle_incident(incident_id: int, action: str):
    operation = {"retry": incidents.retry, "skip": incidents.skip}.get(action)
    if operation is None:
        return redirect(url_for("integration.incidents_page"))
    try:
        with platform().db.transaction() as s:
            operation(s, platform().config, g.user, incident_id, request.form.get("reason", "").strip()[:500])
        flash(_("The step is queued again.") if action == "retry" else _("The step is skipped."), "success")
    except EngineError as exc:
        flash(i18n.error_with_details(exc), "error")
    return redirect(url_for("integration.incidents_page"))


def _chart(rows: list[dict], today) -> list[dict]:
    """Per day of the last CHART_DAYS: calls, errors and the worst p95 latency, with bar heights in %."""
    days = [today - timedelta(days=n) for n in range(CHART_DAYS - 1, -1, -1)]
    per_day = {d.isoformat(): {"calls": 0, "errors": 0, "p95": 0.0} for d in days}
    for r in rows:
        day = per_day.get(r["day"])
        if day is not None:
            day["calls"] += r["calls"]
            day["errors"] += r["errors"]
            day["p95"] = max(day["p95"], r["p95_ms"])
    peak = max([d["calls"] for d in per_day.values()] + [1])
    slowest = max([d["p95"] for d in per_day.values()] + [1.0])
    return [{"day": d, "label": d[5:], **v, "height": round(100 * v["calls"] / peak, 1),
             "error_height": round(100 * v["errors"] / peak, 1), "p95_y": round(100 - 100 * v["p95"] / slowest, 1)}
            for d, v in per_day.items()]


@bp.route("/bus")
@permission_required("bus.admin")
def bus_page(new_key: str | None = None, new_consumer: str | None = None):
    p = platform()
    today = clock.now().astimezone(ZoneInfo(p.config.timezone)).date()
    with p.db.session() as s:
        usage = bus.usage(s, g.user, p.config, today - timedelta(days=CHART_DAYS - 1), today)
        services = list(s.query(BusService).order_by(BusService.key))
        consumers = list(s.query(BusConsumer).order_by(BusConsumer.name))
        calls = bus.recent_calls(s, g.user, limit=30)
    return render_template("bus.html", usage=usage, chart=_chart(usage, today), services=services,
                           consumers=consumers, calls=calls, new_key=new_key, new_consumer=new_consumer,
                           consumer_names={c.id: c.name for c in consumers})


@bp.route("/bus/services", methods=["POST"])
@permission_required("bus.admin")
def save_service():
    form = request.form
    try:
        definition = json.loads(form.get("definition") or "{}")
        with platform().db.transaction() as s:
            bus.save_service(s, platform().registry, g.user, form.get("key", "").strip(), form.get("name", ""),
                             form.get("kind", ""), definition, form.get("description", ""),
                             form.get("enabled") == "on")
        flash(_("The service is saved; the next call uses it."), "success")
    except ValueError:
        flash(_("The definition is not valid JSON."), "error")
    except EngineError as exc:
        details = "; ".join(f"{k}: {v[0]['message']}" for k, v in exc.errors.items()) if exc.errors else ""
        flash(f"{i18n.error_text(exc)} {details}".strip(), "error")
    return redirect(url_for("integration.bus_page"))


@bp.route("/bus/consumers", methods=["POST"])
@permission_required("bus.admin")
def create_consumer():
    form = request.form
    permissions = [p.strip() for p in form.get("permissions", "").replace("，", ",").split(",") if p.strip()]
    try:
        with platform().db.transaction() as s:
            row, key = bus.save_consumer(s, g.user, form.get("name", ""), permissions,
                                         int(form.get("rate_per_minute") or 600), form.get("run_as") or None)
            name = row.name
    except ValueError:
        flash(_("Enter a whole number of calls per minute."), "error")
        return redirect(url_for("integration.bus_page"))
    except EngineError as exc:
        flash(i18n.error_with_details(exc), "error")
        return redirect(url_for("integration.bus_page"))
    # Rendered, not redirected: the key is shown once and never stored in the session cookie.
    return bus_page(new_key=key, new_consumer=name)
