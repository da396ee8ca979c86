"""Alarm pages: the list with grade colours and filters, one alarm with its reading chart and trail, and KPIs."""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from engine import alarms, clock, telemetry
from engine.errors import EngineError, Forbidden, NotFound, ValidationFailed
from engine.models import Enterprise, Region
from engine.models.monitoring import Point
from engine.monitoring import INDUSTRIES

from .. import i18n
from ..platform import platform
from ..security import login_required

bp = Blueprint("alarms", __name__, url_prefix="/alarms")
GRADES = {1: _l("Grade 1 (red)"), 2: _l("Grade 2 (orange)"), 3: _l("Grade 3 (yellow)"), 4: _l("Grade 4 (blue)")}
STATES = {"unack": _l("Unacknowledged"), "ack": _l("Acknowledged"), "rtn_unack": _l("Returned, unacknowledged"),
          "rtn": _l("Returned"), "closed": _l("Closed")}
CONDITIONS = {"hihi": _l("High-high"), "hi": _l("High"), "lo": _l("Low"), "lolo": _l("Low-low"),
              "offline": _l("Device offline"), "aggregate": _l("Monitored item"),
              "gateway_silent": _l("Gateway communication lost")}
EVENTS = {"raised": _l("Alarm raised"), "reactivated": _l("Raised again"), "acknowledged": _l("Acknowledged"),
          "returned": _l("Returned to normal"), "closed": _l("Closed"), "grade_raised": _l("Grade raised"),
          "process_started": _l("Handling process started"), "process_not_started": _l("No duty person: no process"),
          "shelved": _l("Shelved"), "unshelved": _l("Unshelved"), "shelve_expired": _l("Shelving expired"),
          "raise_blocked": _l("Not annunciated (shelved, suppressed or out of service)")}
CHART_W, CHART_H, PAD = 640, 220, 36
SHELVE_DAYS = alarms.MAX_SHELVE_DAYS
REASON_MAX = 500
LOCAL_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?")


@bp.app_context_processor
def labels():
    return {"grade_text": lambda n: GRADES.get(n, n), "alarm_state_text": lambda s: STATES.get(s, s),
            "condition_text": lambda c: CONDITIONS.get(c, c), "alarm_event_text": lambda k: EVENTS.get(k, k)}


@bp.route("")
@login_required
def index():
    args = request.args
    grade = args.get("grade", type=int)
    state = args.get("state") or "open"
    with platform().db.session() as s:
        rows = alarms.query(s, g.user, region=args.get("region") or None, industry=args.get("industry") or None,
                            grade=grade, state=None if state == "all" else state)
        enterprises = dict(s.execute(select(Enterprise.id, Enterprise.name)).all())
        regions = list(s.execute(select(Region.code, Region.name).where(Region.level <= 3).order_by(Region.code)))
    return render_template("alarms.html", rows=rows, enterprises=enterprises, regions=regions, grades=GRADES,
                           states=STATES, industries=INDUSTRIES, filters={**args, "state": state})


def _chart(readings, point: Point | None, start, end) -> dict:
    """Polyline and limit lines for an inline SVG of the readings between ``start`` and ``end``."""
    values = [r.value for r in readings if isinstance(r.value, (int, float))]
    limits = {k: getattr(point, k) for k in ("lolo", "lo", "hi", "hihi")} if point else {}
    limits = {k: v for k, v in limits.items() if v is not None}
    if not values:
        return {"points": "", "limits": [], "empty": True}
    low, high = min(values + list(limits.values())), max(values + list(limits.values()))
    if high == low:
        high, low = high + 1, low - 1
    span = (end - start).total_seconds() or 1

    def x(ts):
        return round(PAD + (CHART_W - 2 * PAD) * (ts - start).total_seconds() / span, 1)

    def y(v):
        return round(CHART_H - PAD - (CHART_H - 2 * PAD) * (v - low) / (high - low), 1)

    return {"points": " ".join(f"{x(r.ts)},{y(r.value)}" for r in readings if isinstance(r.value, (int, float))),
            "limits": [{"name": k, "y": y(v), "value": v} for k, v in limits.items()],
            "low": round(low, 3), "high": round(high, 3), "empty": False, "w": CHART_W, "h": CHART_H, "pad": PAD}


@bp.route("/<int:alarm_id>")
@login_required
def show(alarm_id: int):
    with platform().db.session() as s:
        alarm = alarms.get(s, g.user, alarm_id)
        point = s.get(Point, alarm.point_id) if alarm.point_id else None
        start = alarm.raised_at - timedelta(hours=2)
        end = min(clock.now(), (alarm.closed_at or clock.now()) + timedelta(hours=1))
        readings = []
        if point is not None:
            try:
                readings = telemetry.history(s, g.user, point.id, start, end)
            except NotFound:
                readings = []
        trail = alarms.trail(s, alarm.id)
        enterprise = s.get(Enterprise, alarm.enterprise_id)
        manage = point is not None and alarms.may_manage(s, g.user, point)
    tz = ZoneInfo(platform().config.timezone)
    now = clock.now()
    shelved = point.shelved_until if point is not None and point.shelved_until and point.shelved_until > now else None
    latest = (now + timedelta(days=SHELVE_DAYS)).replace(second=0, microsecond=0)  # the input's max, to the minute
    shelve_range = (_local_input(now + timedelta(minutes=1), tz), _local_input(latest, tz))
    return render_template("alarm.html", alarm=alarm, point=point, trail=trail, enterprise=enterprise,
                           chart=_chart(readings, point, start, end), start=start.astimezone(tz),
                           end=end.astimezone(tz), readings=len(readings), manage=manage, shelved=shelved,
                           shelve_range=shelve_range, shelve_latest=latest,
                           shelve_days=SHELVE_DAYS, reason_max=REASON_MAX)


@bp.route("/<int:alarm_id>/acknowledge", methods=["POST"])
@login_required
def acknowledge(alarm_id: int):
    try:
        with platform().db.transaction() as s:
            alarms.acknowledge(s, platform().config, g.user, alarm_id, request.form.get("comment", "").strip()[:500])
        flash(_("The alarm is acknowledged."), "success")
    except EngineError as exc:
        flash(i18n.error_with_details(exc), "error")
    return redirect(url_for("alarms.show", alarm_id=alarm_id))


def _local_input(value: datetime, tz: ZoneInfo) -> str:
    """A time as a datetime-local input's value, in the platform time zone, to the minute."""
    return value.astimezone(tz).strftime("%Y-%m-%dT%H:%M")


def _parse_local(text: str, tz: ZoneInfo) -> datetime | None:
    """A datetime-local input's value (a wall-clock time in the platform time zone) as an aware time; None if it is
    not one."""
    text = text.strip()
    if not LOCAL_TIME.fullmatch(text):
        return None
    try:
        return datetime.fromisoformat(text.replace(" ", "T")).replace(tzinfo=tz)
    except ValueError:  # e.g. 2026-02-30T10:00
        return None


def _shelve_error(exc: EngineError) -> str:
    """The flashed text for a refused shelve or unshelve: which field is wrong, or why the user may not."""
    if isinstance(exc, ValidationFailed):
        if "until" in exc.errors:
            if exc.errors["until"][0].get("code") == "format":
                return _("Enter the end of shelving as a date and time.")
            return _("Shelve until a time in the future, at most %(days)s days from now.", days=SHELVE_DAYS)
        if "reason" in exc.errors:
            return _("Give a reason for shelving.")
    if isinstance(exc, Forbidden):
        return _("You may not shelve or unshelve this point's alarms.")
    return i18n.error_text(exc)


def _point_id(session, alarm_id: int) -> int:
    """The point of an alarm in the user's data scope (device and item alarms have none: NotFound)."""
    alarm = alarms.get(session, g.user, alarm_id)
    if alarm.point_id is None:
        raise NotFound(f"alarm {alarm_id} has no point")
    return alarm.point_id


@bp.route("/<int:alarm_id>/shelve", methods=["POST"])
@login_required
def shelve(alarm_id: int):
    """Shelve the alarm's point until a local time within 7 days, with a reason."""
    tz = ZoneInfo(platform().config.timezone)
    until = _parse_local(request.form.get("until", ""), tz)
    reason = request.form.get("reason", "").strip()[:REASON_MAX]
    try:
        with platform().db.transaction() as s:
            point_id = _point_id(s, alarm_id)
            if until is None:
                raise ValidationFailed("not a date and time",
                                       errors={"until": [{"code": "format", "message": "not a date and time"}]})
            alarms.shelve(s, g.user, point_id, until, reason)
        flash(_("The point's alarms are shelved until %(until)s.", until=i18n.fmt_dt(until)), "success")
    except EngineError as exc:
        flash(_shelve_error(exc), "error")
    return redirect(url_for("alarms.show", alarm_id=alarm_id))


@bp.route("/<int:alarm_id>/unshelve", methods=["POST"])
@login_required
def unshelve(alarm_id: int):
    """End the shelving of the alarm's point now; the reason is optional."""
    reason = request.form.get("reason", "").strip()[:REASON_MAX]
    try:
        with platform().db.transaction() as s:
            point = s.get(Point, _point_id(s, alarm_id))
            if point.shelved_until is None or point.shelved_until <= clock.now():
                flash(_("The point's alarms are not shelved."), "info")
                return redirect(url_for("alarms.show", alarm_id=alarm_id))
            alarms.unshelve(s, g.user, point.id, reason)
        flash(_("The point's alarms are no longer shelved."), "success")
    except EngineError as exc:
        flash(_shelve_error(exc), "error")
    return redirect(url_for("alarms.show", alarm_id=alarm_id))


@bp.route("/kpis")
@login_required
def kpis():
    by = "region" if request.args.get("by") == "region" else "enterprise"
    days = request.args.get("days", default=7, type=int)
    days = days if days in (1, 7, 30, 90) else 7
    until = clock.now()
    with platform().db.session() as s:
        rows = alarms.kpis(s, g.user, until - timedelta(days=days), until, by=by)
    return render_template("alarm_kpis.html", rows=rows, by=by, days=days)
