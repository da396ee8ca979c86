"""Alarm evaluation and the alarm state machine (ISA-18.2 / IEC 62682), and the alarm's closed handling loop.

States of one alarm (``Alarm.state``):

    unack      active, not acknowledged            (raised)
    ack        active, acknowledged                (acknowledge)
    rtn_unack  returned to normal, not acknowledged (return before anyone acknowledged)
    rtn        returned to normal and acknowledged; the handling loop goes on until a regulator confirms
    closed     the regulator confirmed the handling (the alarm_closure process ended)

Annunciation of a point (point columns): shelved until a time (by an operator, expires by itself),
suppressed by design, out of service (maintenance). While a point does not annunciate, its conditions are still
tracked but no alarm is raised; when it annunciates again and a condition still holds, the alarm is raised then.

Anti-chatter: a condition must hold ``on_delay_s`` before it raises, and be clear beyond the ``deadband`` for
``off_delay_s`` before it returns; times are the readings' own timestamps, and ``tick()`` (the scheduler, or a
test after ``engine.clock.advance``) finishes delays that end with no new reading. One open alarm per
(point, condition): a condition that returns and comes back before closure re-activates the same alarm.

Loss of monitoring: device-offline alarms come from the gateway's own status, so a gateway that goes silent as a
whole (power cut at the plant, network down) would show nothing. Every ingest, readings or a heartbeat alike, sets
the gateway's ``silent_due_at`` (heard + ``silent_after_s``); ``tick()`` raises one ``gateway_silent`` alarm for
a registered, enabled gateway whose time has come, and the next ingest returns it. Both run under the gateway's row
lock, so one silence raises once however ingests and ticks interleave.

Every alarm starts an ``alarm_closure`` process; acknowledging its first task acknowledges the alarm and the
other way round, its end closes the alarm, and a return to normal reaches it as the message ``alarm_returned``.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from . import clock, messages
from .config import Config
from .errors import Conflict, EngineError, Forbidden, NotFound, ValidationFailed
from .models import Enterprise, HumanTask, ProcessInstance, Region, User
from .models.monitoring import AggregationRule, Alarm, AlarmEvent, Device, Gateway, MonitoredItem, Point
from .monitoring import LIMITS, PERMISSION, REGULATOR_ROLE, regulators
from .org import Scope

log = logging.getLogger(__name__)

PROCESS_KEY = "alarm_closure"
RETURN_MESSAGE = "alarm_returned"
ACK_TASK = "acknowledge"
OFFLINE_GRADE = 4
# A silent gateway blinds every point of the plant, not one device: above a device offline (四级), but below the
# grades limits raise for a measured hazard (一级, 二级). 三级 reminds hourly and escalates after 8 hours.
SILENT_GRADE = 3
SILENT = "gateway_silent"
# Heard nothing for this long: silent. The edge posts its status at least every [gateway] heartbeat (60 s by
# default) even with no readings, so the default is five of its default intervals. A gateway with a longer
# heartbeat needs its own Gateway.silent_after_s of at least three of them; never less than the floor.
SILENT_AFTER_S = 300
MIN_SILENT_AFTER_S = 60
MAX_SHELVE_DAYS = 7  # a shelved point must come back under watch within a week
GRADE_NAMES = {1: "一级（红色）", 2: "二级（橙色）", 3: "三级（黄色）", 4: "四级（蓝色）"}
CONDITION_NAMES = {"hihi": "高高报", "hi": "高报", "lo": "低报", "lolo": "低低报", "offline": "设备离线",
                   "aggregate": "监测项综合预警", SILENT: "网关通信中断"}
# Per grade: how often the duty person is reminded while the alarm is unacknowledged or unhandled, and after how
# long an alarm that is still open escalates (to the city, then after as long again to the province).
GRADE_POLICY = {1: ("PT10M", "PT30M"), 2: ("PT30M", "PT2H"), 3: ("PT1H", "PT8H"), 4: ("PT4H", "PT24H")}
OPEN_STATES = ("unack", "ack", "rtn_unack", "rtn")


# -- events ------------------------------------------------------------------------------------------------------
def record(session: Session, kind: str, alarm: Alarm | None = None, point_id: int | None = None, actor=None,
           reason: str | None = None, at: datetime | None = None, **detail) -> AlarmEvent:
    """Write one alarm event (actor None = the system)."""
    row = AlarmEvent(alarm_id=alarm.id if alarm is not None else None,
                     point_id=point_id if point_id is not None else (alarm.point_id if alarm is not None else None),
                     kind=kind, at=at or clock.now(), actor_id=getattr(actor, "id", None),
                     actor_name=getattr(actor, "name", "") or "", detail=detail or None, reason=reason)
    session.add(row)
    return row


def _iso(value: datetime) -> str:
    return value.isoformat()


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


# -- evaluation --------------------------------------------------------------------------------------------------
def _exceeds(condition: str, value: float, limit: float) -> bool:
    return value >= limit if condition in ("hi", "hihi") else value <= limit


def _clear(condition: str, value: float, limit: float, deadband: float) -> bool:
    return value < limit - deadband if condition in ("hi", "hihi") else value > limit + deadband


def annunciates(session: Session, point: Point, now: datetime) -> bool:
    """False while the point is shelved, suppressed or out of service; an expired shelve ends here."""
    if point.shelved_until is not None and point.shelved_until <= now:
        until, point.shelved_until = point.shelved_until, None
        record(session, "shelve_expired", point_id=point.id, at=now, until=_iso(until))
    return point.shelved_until is None and not point.suppressed and not point.out_of_service


class Evaluator:
    """Runs a point's readings through its limits; collects the alarms raised so their processes start after."""

    def __init__(self, session: Session, config: Config):
        self.session, self.config = session, config
        self.raised: list[Alarm] = []

    def readings(self, point: Point, readings: list[tuple[int, datetime, float | None, str]]) -> None:
        """Evaluate readings (seq, ts, value, quality) newer than the point's evaluated seq, in seq order."""
        state = dict(point.eval_state or {})
        for seq, ts, value, quality in sorted(readings, key=lambda r: r[0]):
            if point.evaluated_seq is not None and seq <= point.evaluated_seq:
                continue
            point.evaluated_seq = seq
            if value is None or quality != "good":
                continue
            for condition in LIMITS:
                limit = getattr(point, condition)
                if limit is not None:
                    state[condition] = self._step(point, condition, limit, dict(state.get(condition) or {}),
                                                  value, ts)
        self._store(point, state)

    def _step(self, point: Point, condition: str, limit: float, st: dict, value: float, ts: datetime) -> dict:
        if not st.get("active"):
            st.pop("off", None)
            if not _exceeds(condition, value, limit):
                st.pop("on", None)
                st.pop("blocked", None)
                return st
            st.setdefault("on", _iso(ts))
            st["value"] = value
            return self._try_raise(point, condition, st, ts)
        if _clear(condition, value, limit, point.deadband or 0.0):
            st.setdefault("off", _iso(ts))
            return self._try_return(point, condition, st, ts)
        st.pop("off", None)
        return st

    def _try_raise(self, point: Point, condition: str, st: dict, now: datetime) -> dict:
        if now - _dt(st["on"]) < timedelta(seconds=point.on_delay_s or 0):
            return st
        if not annunciates(self.session, point, now):
            if not st.get("blocked"):
                st["blocked"] = True
                record(self.session, "raise_blocked", point_id=point.id, at=now, condition=condition,
                       value=st.get("value"), shelved_until=_iso(point.shelved_until) if point.shelved_until else None,
                       suppressed=point.suppressed, out_of_service=point.out_of_service)
            return st
        value = st.get("value")
        st = {"active": True}
        self._raise_limit(point, condition, value, now)
        return st

    def _try_return(self, point: Point, condition: str, st: dict, now: datetime) -> dict:
        if now - _dt(st["off"]) < timedelta(seconds=point.off_delay_s or 0):
            return st
        alarm = self.session.scalar(select(Alarm).where(Alarm.open_key == f"point:{point.id}:{condition}"))
        if alarm is not None:
            returned(self.session, self.config, alarm, now, value=point.last_value)
        return {}

    def _store(self, point: Point, state: dict) -> None:
        point.eval_state = state or None
        due = []
        for st in state.values():
            if st.get("on") and not st.get("active"):
                due.append(_dt(st["on"]) + timedelta(seconds=point.on_delay_s or 0))
                if st.get("blocked") and point.shelved_until is not None:
                    due.append(point.shelved_until)
            if st.get("off") and st.get("active"):
                due.append(_dt(st["off"]) + timedelta(seconds=point.off_delay_s or 0))
        point.eval_due_at = max(min(due), clock.now()) if due else None

    def due(self, point: Point, now: datetime) -> None:
        """Finish the on-delays and off-delays of a point that ended by ``now`` (no new reading needed)."""
        state = dict(point.eval_state or {})
        for condition in list(state):
            st = dict(state[condition])
            if st.get("on") and not st.get("active"):
                state[condition] = self._try_raise(point, condition, st, now)
            elif st.get("off") and st.get("active"):
                state[condition] = self._try_return(point, condition, st, now)
        self._store(point, state)
        if point.eval_due_at is not None and point.eval_due_at <= now:
            point.eval_due_at = None

    def _raise_limit(self, point: Point, condition: str, value: float | None, now: datetime) -> Alarm:
        key = f"point:{point.id}:{condition}"
        alarm = self.session.scalar(select(Alarm).where(Alarm.open_key == key))
        if alarm is not None:
            reactivate(self.session, alarm, now, value)
        else:
            enterprise = self.session.get(Enterprise, point.enterprise_id)
            grade = getattr(point, f"{condition}_grade")
            alarm = Alarm(open_key=key, kind="limit", condition=condition, point_id=point.id,
                          device_id=point.device_id, item_id=point.item_id, enterprise_id=enterprise.id,
                          region_code=enterprise.region_code, industry=enterprise.industry or "", grade=grade,
                          state="unack", active=True, value=value, limit=getattr(point, condition), unit=point.unit,
                          raised_at=now, activations=1,
                          title=f"{enterprise.name} {point.label or point.name} {CONDITION_NAMES[condition]} "
                                f"{GRADE_NAMES[grade]}")
            self.session.add(alarm)
            self.session.flush()
            record(self.session, "raised", alarm, at=now, value=value, limit=alarm.limit, grade=grade)
            self.raised.append(alarm)
        if point.item_id is not None:
            self.aggregate(point.item_id, now)
        return alarm

    def device_status(self, device: Device, gateway: Gateway, status: str, now: datetime) -> None:
        """The gateway reports a device online or offline: offline raises a device-offline alarm, online returns it."""
        if status not in ("online", "offline") or device.status == status:
            return
        device.status, device.status_at = status, now
        key = f"device:{device.id}:offline"
        alarm = self.session.scalar(select(Alarm).where(Alarm.open_key == key))
        if status == "online":
            if alarm is not None and alarm.active:
                returned(self.session, self.config, alarm, now)
            return
        if alarm is not None:
            reactivate(self.session, alarm, now, None)
            return
        enterprise = self.session.get(Enterprise, gateway.enterprise_id)
        alarm = Alarm(open_key=key, kind="offline", condition="offline", device_id=device.id,
                      enterprise_id=enterprise.id, region_code=enterprise.region_code,
                      industry=enterprise.industry or "", grade=OFFLINE_GRADE, state="unack", active=True,
                      raised_at=now, activations=1,
                      title=f"{enterprise.name} {gateway.code}/{device.name} {CONDITION_NAMES['offline']}")
        self.session.add(alarm)
        self.session.flush()
        record(self.session, "raised", alarm, at=now, gateway=gateway.code, device=device.name)
        self.raised.append(alarm)

    def heard(self, gateway: Gateway, now: datetime) -> None:
        """The gateway was heard (readings or a heartbeat; the caller holds its row lock): its silence is due again
        ``silent_after`` from now, and the alarm of the silence that just ended returns to normal."""
        raised = gateway.silent_due_at is None  # never heard before, or its silence alarm was raised
        gateway.silent_due_at = now + silent_after(gateway)
        if not raised:
            return
        alarm = self.session.scalar(select(Alarm).where(Alarm.open_key == f"gateway:{gateway.id}:silent"))
        if alarm is not None and alarm.active:
            returned(self.session, self.config, alarm, now)

    def silent(self, gateway: Gateway, now: datetime) -> None:
        """The gateway's silence is due (the caller holds its row lock): raise its alarm, or raise again the one of
        an earlier silence that is not closed yet; nothing more until the gateway is heard."""
        gateway.silent_due_at = None
        key = f"gateway:{gateway.id}:silent"
        detail = {"gateway": gateway.code, "last_seen_at": _iso(gateway.last_seen_at) if gateway.last_seen_at else None,
                  "silent_after_s": int(silent_after(gateway).total_seconds())}
        alarm = self.session.scalar(select(Alarm).where(Alarm.open_key == key))
        if alarm is not None:
            if not alarm.active:
                reactivate(self.session, alarm, now, None)
            return
        enterprise = self.session.get(Enterprise, gateway.enterprise_id)
        name = gateway.code if gateway.name in ("", gateway.code) else f"{gateway.name}（{gateway.code}）"
        alarm = Alarm(open_key=key, kind=SILENT, condition=SILENT, enterprise_id=enterprise.id,
                      region_code=enterprise.region_code, industry=enterprise.industry or "", grade=SILENT_GRADE,
                      state="unack", active=True, raised_at=now, activations=1,
                      title=f"{enterprise.name} {name} {CONDITION_NAMES[SILENT]}"[:300])
        self.session.add(alarm)
        self.session.flush()
        record(self.session, "raised", alarm, at=now, grade=SILENT_GRADE, **detail)
        self.raised.append(alarm)

    def aggregate(self, item_id: int, now: datetime) -> None:
        """Apply the aggregation rules to one monitored item: raise, escalate or return the item's alarm."""
        item = self.session.get(MonitoredItem, item_id)
        enterprise = self.session.get(Enterprise, item.enterprise_id)
        rules = list(self.session.scalars(select(AggregationRule).where(
            AggregationRule.enabled.is_(True), AggregationRule.industry.in_(("", enterprise.industry or "")))))
        worst = dict(self.session.execute(
            select(Alarm.point_id, func.min(Alarm.grade)).where(
                Alarm.item_id == item_id, Alarm.kind == "limit", Alarm.active.is_(True),
                Alarm.state.in_(OPEN_STATES)).group_by(Alarm.point_id)).all())
        result = None
        for rule in rules:
            if sum(1 for grade in worst.values() if grade <= rule.grade) >= rule.count:
                result = rule.result_grade if result is None else min(result, rule.result_grade)
        key = f"item:{item_id}:aggregate"
        alarm = self.session.scalar(select(Alarm).where(Alarm.open_key == key))
        if result is None:
            if alarm is not None and alarm.active:
                returned(self.session, self.config, alarm, now)
            return
        if alarm is not None:
            if not alarm.active:
                reactivate(self.session, alarm, now, None)
            if result < alarm.grade:
                record(self.session, "grade_raised", alarm, at=now, before=alarm.grade, after=result)
                alarm.grade = result
                alarm.title = f"{enterprise.name} {item.name} {CONDITION_NAMES['aggregate']} {GRADE_NAMES[result]}"
            return
        alarm = Alarm(open_key=key, kind="aggregate", condition="aggregate", item_id=item_id,
                      enterprise_id=enterprise.id, region_code=enterprise.region_code,
                      industry=enterprise.industry or "", grade=result, state="unack", active=True, raised_at=now,
                      activations=1, title=f"{enterprise.name} {item.name} {CONDITION_NAMES['aggregate']} "
                                           f"{GRADE_NAMES[result]}")
        self.session.add(alarm)
        self.session.flush()
        record(self.session, "raised", alarm, at=now, points={str(k): v for k, v in worst.items()}, grade=result)
        self.raised.append(alarm)

    def start_processes(self) -> None:
        """Start the handling process of every alarm raised by this evaluator."""
        for alarm in self.raised:
            start_closure(self.session, self.config, alarm)
        self.raised.clear()


def silent_after(gateway: Gateway) -> timedelta:
    """How long the gateway may stay unheard before its silence alarm: its own setting or the platform default."""
    return timedelta(seconds=max(MIN_SILENT_AFTER_S, gateway.silent_after_s or SILENT_AFTER_S))


def reactivate(session: Session, alarm: Alarm, now: datetime, value: float | None) -> None:
    """A returned alarm that is not closed yet becomes active again (an acknowledged one stays acknowledged)."""
    if alarm.active:
        return
    alarm.active, alarm.activations = True, alarm.activations + 1
    alarm.state = "unack" if alarm.state == "rtn_unack" else "ack"
    record(session, "reactivated", alarm, at=now, value=value, activations=alarm.activations)


def returned(session: Session, config: Config, alarm: Alarm, now: datetime, value: float | None = None) -> None:
    """The condition cleared: unack → rtn_unack, ack → rtn; the handling process hears it as a message."""
    if not alarm.active:
        return
    alarm.active, alarm.rtn_at = False, now
    if alarm.state == "unack":
        alarm.state = "rtn_unack"
    elif alarm.state == "ack":
        alarm.state = "rtn"
    record(session, "returned", alarm, at=now, value=value)
    if alarm.instance_id is not None:
        payload = {"alarm_id": alarm.id, "returned_at": _iso(now), "value": value}
        try:
            messages.deliver_to(session, config, None, alarm.instance_id, RETURN_MESSAGE, payload)
        except EngineError:  # the process is finished or failed: the return is recorded on the alarm anyway
            log.warning("alarm %s: return not delivered to instance %s", alarm.id, alarm.instance_id)
    if alarm.kind == "limit" and alarm.item_id is not None:
        Evaluator(session, config).aggregate(alarm.item_id, now)


# -- the handling process ----------------------------------------------------------------------------------------
def _region_chain(session: Session, code: str) -> list[Region]:
    chain = []
    while code:
        region = session.get(Region, code)
        if region is None:
            break
        chain.append(region)
        code = region.parent_code
    return chain


def duty_officers(session: Session, region_code: str) -> dict[str, list[str]]:
    """Usernames on alarm duty for an enterprise's region: county (the nearest level that has any), city, province."""
    chain = _region_chain(session, region_code)
    names = {r.code: [u.username for u in regulators(session, r.code)] for r in chain}
    county = next((names[r.code] for r in chain if names[r.code]), [])
    city = next((names[r.code] for r in chain if r.level == 2), [])
    province = names[chain[-1].code] if chain else []
    return {"county": county, "city": city or province, "province": province}


def system_user(session: Session) -> User:
    """Who starts alarm processes: the platform administrator account."""
    user = session.scalar(select(User).where(User.username == "admin", User.is_active.is_(True)))
    user = user or session.scalar(select(User).where(User.is_superuser.is_(True), User.is_active.is_(True))
                                  .order_by(User.id).limit(1))
    if user is None:
        raise Conflict("no active administrator to start alarm processes", code="no_system_user")
    return user


def start_closure(session: Session, config: Config, alarm: Alarm):
    """Start the alarm's alarm_closure instance in the enterprise's region and scope; None without a duty person."""
    from . import instances

    enterprise = session.get(Enterprise, alarm.enterprise_id)
    duty = session.get(User, enterprise.duty_user_id) if enterprise.duty_user_id else None
    if duty is None or not duty.is_active:
        record(session, "process_not_started", alarm, reason="the enterprise has no duty person")
        return None
    officers = duty_officers(session, alarm.region_code)
    remind, escalate = GRADE_POLICY[alarm.grade]
    data = {
        "alarm_id": alarm.id, "alarm_title": alarm.title, "grade": alarm.grade, "grade_name": GRADE_NAMES[alarm.grade],
        "condition": CONDITION_NAMES.get(alarm.condition, alarm.condition), "value": alarm.value,
        "limit": alarm.limit, "unit": alarm.unit, "raised_at": _iso(alarm.raised_at), "enterprise": enterprise.name,
        "duty_user": duty.username, "county_regulators": officers["county"], "city_regulators": officers["city"],
        "province_regulators": officers["province"], "notify_to": [duty.username, *officers["county"]],
        "remind_cycle": f"R/{remind}", "escalate_after": escalate, "returns": [],
    }
    instance = instances.start(session, config, system_user(session), PROCESS_KEY, data=data,
                               business_key=f"ALARM-{alarm.id}", title=alarm.title)
    instance.region_code, instance.enterprise_id = alarm.region_code, alarm.enterprise_id
    session.execute(update(HumanTask).where(HumanTask.instance_id == instance.id)
                    .values(region_code=alarm.region_code, enterprise_id=alarm.enterprise_id))
    alarm.instance_id = instance.id
    record(session, "process_started", alarm, instance_id=instance.id)
    return instance


def _ack(session: Session, alarm: Alarm, actor, comment: str | None = None) -> bool:
    if alarm.state not in ("unack", "rtn_unack"):
        return False
    alarm.state = "ack" if alarm.state == "unack" else "rtn"
    alarm.acked_at, alarm.acked_by_id = clock.now(), getattr(actor, "id", None)
    record(session, "acknowledged", alarm, actor=actor, reason=comment)
    return True


def _close(session: Session, alarm: Alarm, actor, reason: str | None = None) -> bool:
    if alarm.state == "closed":
        return False
    if alarm.acked_at is None:
        alarm.acked_at, alarm.acked_by_id = clock.now(), getattr(actor, "id", None)
    alarm.state, alarm.open_key = "closed", None
    alarm.closed_at, alarm.closed_by_id = clock.now(), getattr(actor, "id", None)
    record(session, "closed", alarm, actor=actor, reason=reason)
    return True


def sync_from_flush(session: Session) -> None:
    """Keep alarms in step with their processes (a before_flush hook, so every path that completes tasks counts):
    the acknowledge task completed acknowledges the alarm; the process ending closes it."""
    tasks = [o for o in session.dirty if isinstance(o, HumanTask) and o.process_key == PROCESS_KEY
             and o.bpmn_id == ACK_TASK and o.state == "completed"]
    ended = [o for o in session.dirty if isinstance(o, ProcessInstance) and o.process_key == PROCESS_KEY
             and o.status in ("completed", "terminated")]
    if not tasks and not ended:
        return
    with session.no_autoflush:
        for task in tasks:
            alarm = session.scalar(select(Alarm).where(Alarm.instance_id == task.instance_id))
            if alarm is not None:
                _ack(session, alarm, session.get(User, task.completed_by_id) if task.completed_by_id else None,
                     task.opinion)
        for inst in ended:
            alarm = session.scalar(select(Alarm).where(Alarm.instance_id == inst.id))
            if alarm is None or alarm.state == "closed":
                continue
            confirmed = next((o for o in session.dirty if isinstance(o, HumanTask) and o.instance_id == inst.id
                              and o.bpmn_id == "confirm" and o.state == "completed"), None)
            confirmed = confirmed or session.scalar(select(HumanTask).where(
                HumanTask.instance_id == inst.id, HumanTask.bpmn_id == "confirm", HumanTask.state == "completed")
                .order_by(HumanTask.completed_at.desc()).limit(1))
            actor = session.get(User, confirmed.completed_by_id) if confirmed and confirmed.completed_by_id else None
            _close(session, alarm, actor, "process " + inst.status)


# -- operator actions --------------------------------------------------------------------------------------------
def get(session: Session, user, alarm_id: int) -> Alarm:
    """An alarm in the user's data scope; NotFound otherwise."""
    alarm = session.get(Alarm, alarm_id)
    if alarm is None or not Scope(session, user).allows(alarm.region_code, alarm.enterprise_id):
        raise NotFound(f"alarm {alarm_id} not found")
    return alarm


def acknowledge(session: Session, config: Config, user, alarm_id: int, comment: str = "") -> Alarm:
    """Acknowledge an alarm: through its process's acknowledge task when one is open (only its holder may), else
    directly (users in scope)."""
    from . import tasks

    alarm = get(session, user, alarm_id)
    if alarm.state not in ("unack", "rtn_unack"):
        raise Conflict("the alarm is already acknowledged", code="alarm_already_acknowledged")
    task = None
    if alarm.instance_id is not None:
        task = session.scalar(select(HumanTask).where(HumanTask.instance_id == alarm.instance_id,
                                                      HumanTask.bpmn_id == ACK_TASK, HumanTask.state == "open"))
    if task is not None:
        tasks.complete(session, config, user, task.id, {"ack_comment": comment} if comment else {})
        session.flush()
        session.refresh(alarm)
    else:
        _ack(session, alarm, user, comment or None)
        session.flush()
    return alarm


def _may_manage(session: Session, user, point: Point) -> None:
    enterprise = session.get(Enterprise, point.enterprise_id)
    if not Scope(session, user).allows(enterprise.region_code, enterprise.id):
        raise NotFound(f"point {point.id} not found")
    if not (user.can(PERMISSION) or user.has_role(REGULATOR_ROLE) or user.enterprise_id == enterprise.id):
        raise Forbidden("you may not change this point's alarms", code="not_alarm_operator")


def may_manage(session: Session, user, point: Point) -> bool:
    """Whether the user may shelve, unshelve or set the mode of the point (the rule those actions enforce)."""
    try:
        _may_manage(session, user, point)
    except (NotFound, Forbidden):
        return False
    return True


def _lock_gateways(session: Session, gateway_ids: list[int]) -> None:
    """Row-lock gateways in id order, as ingest locks its one: what changes their points waits for the others."""
    session.execute(select(Gateway.id).where(Gateway.id.in_(gateway_ids)).order_by(Gateway.id).with_for_update())


def _locked_point(session: Session, point_id: int) -> Point:
    """The point, read under its gateway's row lock: ingest and tick change points only while holding it."""
    gateway_id = session.scalar(select(Point.gateway_id).where(Point.id == point_id))
    if gateway_id is None:
        raise NotFound(f"point {point_id} not found")
    _lock_gateways(session, [gateway_id])
    return session.scalars(select(Point).where(Point.id == point_id)
                           .execution_options(populate_existing=True)).one()


def shelve(session: Session, user, point_id: int, until: datetime, reason: str) -> Point:
    """Shelve a point's alarms until a time (at most MAX_SHELVE_DAYS); new alarms are not raised meanwhile."""
    point = _locked_point(session, point_id)
    _may_manage(session, user, point)
    now = clock.now()
    if until <= now or until > now + timedelta(days=MAX_SHELVE_DAYS):
        raise ValidationFailed(f"a shelve ends in the future, within {MAX_SHELVE_DAYS} days", errors={
            "until": [{"code": "range", "message": f"within {MAX_SHELVE_DAYS} days"}]})
    if not reason:
        raise ValidationFailed("shelving needs a reason", errors={"reason": [{"code": "required", "message": ""}]})
    point.shelved_until = until
    point.eval_due_at = min(filter(None, (point.eval_due_at, until)))
    record(session, "shelved", point_id=point.id, actor=user, reason=reason, until=_iso(until))
    return point


def unshelve(session: Session, user, point_id: int, reason: str = "") -> Point:
    point = _locked_point(session, point_id)
    _may_manage(session, user, point)
    point.shelved_until = None
    point.eval_due_at = clock.now()
    record(session, "unshelved", point_id=point.id, actor=user, reason=reason or None)
    return point


def set_mode(session: Session, user, point_id: int, mode: str, on: bool, reason: str) -> Point:
    """Suppress a point by design (``mode='suppressed'``) or take it out of service (``'out_of_service'``)."""
    if mode not in ("suppressed", "out_of_service"):
        raise ValidationFailed("unknown mode", errors={"mode": [{"code": "enum", "message": mode}]})
    point = _locked_point(session, point_id)
    _may_manage(session, user, point)
    setattr(point, mode, on)
    if not on:
        point.eval_due_at = clock.now()
    record(session, f"{mode}_{'on' if on else 'off'}", point_id=point.id, actor=user, reason=reason or None)
    return point


def tick(session: Session, config: Config, now: datetime | None = None, limit: int = 1000) -> int:
    """Finish delays and shelves that ended by now, for points with no new reading, and raise the alarms of gateways
    silent past their threshold; returns the points and gateways handled."""
    now = now or clock.now()
    due = select(Point).where(Point.eval_due_at <= now).order_by(Point.eval_due_at, Point.id).limit(limit)
    silent = select(Gateway).where(Gateway.silent_due_at <= now, Gateway.enabled.is_(True)) \
        .order_by(Gateway.silent_due_at, Gateway.id).limit(limit)
    point_gateways = set(session.scalars(due.with_only_columns(Point.gateway_id)))
    silent_ids = set(session.scalars(silent.with_only_columns(Gateway.id)))
    gateway_ids = sorted(point_gateways | silent_ids)
    if not gateway_ids:
        return 0
    # An ingest evaluates its points and moves its gateway's silence under that gateway's row lock: taking the same
    # locks (in id order, so ticks never deadlock each other; an ingest holds just one) makes this wait for an ingest
    # in flight. Points and gateways are read again afterwards, as that ingest left them, and may no longer be due.
    # SQLite ignores FOR UPDATE; its writers are serialised anyway.
    _lock_gateways(session, gateway_ids)
    points = list(session.scalars(due.where(Point.gateway_id.in_(sorted(point_gateways)))
                                  .execution_options(populate_existing=True))) if point_gateways else []
    gateways = list(session.scalars(silent.where(Gateway.id.in_(sorted(silent_ids)))
                                    .execution_options(populate_existing=True))) if silent_ids else []
    evaluator = Evaluator(session, config)
    for point in points:
        evaluator.due(point, now)
    for gateway in gateways:
        evaluator.silent(gateway, now)
    session.flush()
    evaluator.start_processes()
    return len(points) + len(gateways)


# -- lists and figures -------------------------------------------------------------------------------------------
def query(session: Session, user, region: str | None = None, industry: str | None = None, grade: int | None = None,
          state: str | None = None, enterprise_id: int | None = None, limit: int = 200) -> list[Alarm]:
    """Alarms in the user's data scope, newest first, with the list page's filters."""
    stmt = select(Alarm).where(Scope(session, user).clause(Alarm.region_code, Alarm.enterprise_id))
    if region:
        from .org import region_subtree

        stmt = stmt.where(Alarm.region_code.in_(region_subtree(session, region)))
    if industry:
        stmt = stmt.where(Alarm.industry == industry)
    if grade:
        stmt = stmt.where(Alarm.grade == grade)
    if state == "open":
        stmt = stmt.where(Alarm.state.in_(OPEN_STATES))
    elif state:
        stmt = stmt.where(Alarm.state == state)
    if enterprise_id:
        stmt = stmt.where(Alarm.enterprise_id == enterprise_id)
    return list(session.scalars(stmt.order_by(Alarm.raised_at.desc(), Alarm.id.desc()).limit(limit)))


def trail(session: Session, alarm_id: int) -> list[AlarmEvent]:
    """The alarm's transitions, oldest first."""
    return list(session.scalars(select(AlarmEvent).where(AlarmEvent.alarm_id == alarm_id).order_by(AlarmEvent.id)))


def kpis(session: Session, user, since: datetime, until: datetime, by: str = "enterprise") -> list[dict]:
    """Alarm-management figures per enterprise or region (ISA-18.2 / EEMUA 191): alarms, the peak and the number of
    10-minute windows over 10 alarms (flood), chattering alarms (3 activations within a minute), stale alarms (active
    for 24 h or more), mean time to acknowledge and to close, in seconds."""
    alarms = list(session.scalars(select(Alarm).where(
        Scope(session, user).clause(Alarm.region_code, Alarm.enterprise_id),
        Alarm.raised_at >= since, Alarm.raised_at < until)))
    reactivations: dict[int, list[datetime]] = {}
    if alarms:
        for alarm_id, at in session.execute(select(AlarmEvent.alarm_id, AlarmEvent.at).where(
                AlarmEvent.alarm_id.in_([a.id for a in alarms]), AlarmEvent.kind.in_(("raised", "reactivated")))):
            reactivations.setdefault(alarm_id, []).append(at)
    now = clock.now()
    groups: dict = {}
    for alarm in alarms:
        key = alarm.enterprise_id if by == "enterprise" else alarm.region_code
        groups.setdefault(key, []).append(alarm)
    names = dict(session.execute(select(Enterprise.id, Enterprise.name)).all()) if by == "enterprise" else \
        dict(session.execute(select(Region.code, Region.name)).all())
    out = []
    for key, rows in groups.items():
        windows: dict[int, int] = {}
        for alarm in rows:
            slot = int(alarm.raised_at.timestamp() // 600)
            windows[slot] = windows.get(slot, 0) + 1
        chattering = 0
        for alarm in rows:
            times = sorted(reactivations.get(alarm.id, []))
            if any(times[i + 2] - times[i] <= timedelta(minutes=1) for i in range(len(times) - 2)):
                chattering += 1
        acked = [(a.acked_at - a.raised_at).total_seconds() for a in rows if a.acked_at]
        closed = [(a.closed_at - a.raised_at).total_seconds() for a in rows if a.closed_at]
        out.append({
            "key": key, "name": names.get(key, str(key)), "alarms": len(rows),
            "peak_per_10min": max(windows.values()), "flood_windows": sum(1 for n in windows.values() if n > 10),
            "chattering": chattering,
            "stale": sum(1 for a in rows if a.active and a.state != "closed"
                         and now - a.raised_at >= timedelta(hours=24)),
            "mtta_s": sum(acked) / len(acked) if acked else None,
            "mttc_s": sum(closed) / len(closed) if closed else None,
        })
    return sorted(out, key=lambda r: -r["alarms"])
