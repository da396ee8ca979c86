"""Telemetry from edge gateways (gateway credential), points' latest values and history, alarms, and the monitoring
registry (gateways with their one-time credential, Excel import of point lists).

``POST /telemetry`` authenticates the gateway's own bearer token here, not a user token: its endpoint
``api_telemetry.ingest`` is one of the API's public endpoints."""
from __future__ import annotations

import marshmallow as ma
from flask import g, request
from flask_smorest import Blueprint
from marshmallow import fields as f

from engine import alarms, monitoring, telemetry
from engine.errors import AuthenticationFailed, ValidationFailed

from ..platform import platform

PREFIX = ""
blp = Blueprint("api_telemetry", __name__, description="Telemetry, points, alarms and the monitoring registry")


class TelemetryAnswer(ma.Schema):
    accepted = f.List(f.String())
    duplicates = f.List(f.String())
    unknown = f.List(f.String())


class LatestOut(ma.Schema):
    point_id = f.Integer()
    name = f.String()
    label = f.String()
    unit = f.String()
    seq = f.Integer(allow_none=True)
    ts = f.DateTime(allow_none=True)
    value = f.Float(allow_none=True)
    quality = f.String(allow_none=True)
    limits = f.Dict()


class HistoryArgs(ma.Schema):
    from_ = f.AwareDateTime(data_key="from", load_default=None, default_timezone=None)
    to = f.AwareDateTime(load_default=None, default_timezone=None)
    limit = f.Integer(load_default=telemetry.MAX_HISTORY, validate=ma.validate.Range(min=1, max=telemetry.MAX_HISTORY))


class ReadingOut(ma.Schema):
    id = f.String(attribute="reading_id")
    seq = f.Integer()
    ts = f.DateTime()
    value = f.Float(allow_none=True)
    quality = f.String()
    historical = f.Boolean()


class HistoryOut(ma.Schema):
    point_id = f.Integer()
    items = f.List(f.Nested(ReadingOut))


class AlarmOut(ma.Schema):
    id = f.Integer()
    kind = f.String()
    condition = f.String()
    grade = f.Integer()
    state = f.String()
    active = f.Boolean()
    title = f.String()
    point_id = f.Integer(allow_none=True)
    device_id = f.Integer(allow_none=True)
    item_id = f.Integer(allow_none=True)
    enterprise_id = f.Integer()
    region_code = f.String()
    industry = f.String()
    value = f.Float(allow_none=True)
    limit = f.Float(allow_none=True)
    unit = f.String()
    raised_at = f.DateTime()
    acked_at = f.DateTime(allow_none=True)
    rtn_at = f.DateTime(allow_none=True)
    closed_at = f.DateTime(allow_none=True)
    activations = f.Integer()
    instance_id = f.Integer(allow_none=True)


class AlarmArgs(ma.Schema):
    region = f.String(load_default=None)
    industry = f.String(load_default=None)
    grade = f.Integer(load_default=None, validate=ma.validate.Range(min=1, max=4))
    state = f.String(load_default=None, validate=ma.validate.OneOf(("open", *alarms.OPEN_STATES, "closed")))


class AckIn(ma.Schema):
    comment = f.String(load_default="", validate=ma.validate.Length(max=500))


class ShelveIn(ma.Schema):
    until = f.AwareDateTime(required=True, default_timezone=None)
    reason = f.String(required=True, validate=ma.validate.Length(min=1, max=500))


class GatewayIn(ma.Schema):
    code = f.String(required=True)
    enterprise_id = f.Integer(required=True)
    name = f.String(load_default="")


class GatewayOut(ma.Schema):
    id = f.Integer()
    code = f.String()
    enterprise_id = f.Integer()
    token = f.String()


class GatewayUpdate(ma.Schema):
    name = f.String()
    enabled = f.Boolean()
    silent_after_s = f.Integer(allow_none=True, metadata={
        "description": "seconds the gateway may stay unheard before its silence alarm (null: the platform default)"})


class GatewayDetail(ma.Schema):
    id = f.Integer()
    code = f.String()
    name = f.String()
    enterprise_id = f.Integer()
    enabled = f.Boolean()
    silent_after_s = f.Integer(allow_none=True)
    effective_silent_after_s = f.Integer()
    last_seen_at = f.DateTime(allow_none=True)
    silent_due_at = f.DateTime(allow_none=True)


def _gateway_out(gateway) -> dict:
    return {"id": gateway.id, "code": gateway.code, "name": gateway.name, "enterprise_id": gateway.enterprise_id,
            "enabled": gateway.enabled, "silent_after_s": gateway.silent_after_s,
            "effective_silent_after_s": int(alarms.silent_after(gateway).total_seconds()),
            "last_seen_at": gateway.last_seen_at, "silent_due_at": gateway.silent_due_at}


@blp.route("/telemetry", methods=["POST"])
@blp.response(200, TelemetryAnswer)
def ingest():
    """Readings and status from an edge gateway (its own bearer credential); idempotent by reading id."""
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("bearer "):
        raise AuthenticationFailed("a gateway credential is required", code="token_missing")
    body = request.get_json(silent=True)
    if body is None:
        raise ValidationFailed("the body must be JSON", errors={"body": [{"code": "invalid", "message": "JSON"}]})
    with platform().db.transaction() as s:
        gateway = monitoring.gateway_by_token(s, header[7:].strip())
        return telemetry.ingest(s, platform().config, gateway, body)


@blp.route("/points/<int:point_id>/latest", methods=["GET"])
@blp.response(200, LatestOut)
def latest(point_id):
    """The point's latest value: the reading with the highest seq."""
    with platform().db.session() as s:
        return telemetry.latest(s, g.user, point_id)


@blp.route("/points/<int:point_id>/history", methods=["GET"])
@blp.arguments(HistoryArgs(), location="query")
@blp.response(200, HistoryOut)
def history(args, point_id):
    """Readings in [from, to) by time (default: the last 24 hours)."""
    with platform().db.session() as s:
        items = telemetry.history(s, g.user, point_id, args["from_"], args["to"], args["limit"])
        return {"point_id": point_id, "items": items}


@blp.route("/points/<int:point_id>/shelve", methods=["POST"])
@blp.arguments(ShelveIn())
@blp.response(200)
def shelve(body, point_id):
    """Shelve the point's alarms until a time (at most 7 days)."""
    with platform().db.transaction() as s:
        point = alarms.shelve(s, g.user, point_id, body["until"], body["reason"])
        return {"point_id": point.id, "shelved_until": point.shelved_until}


@blp.route("/alarms", methods=["GET"])
@blp.arguments(AlarmArgs(), location="query")
@blp.response(200, AlarmOut(many=True))
def list_alarms(args):
    """Alarms in your data scope, newest first."""
    with platform().db.session() as s:
        return alarms.query(s, g.user, args["region"], args["industry"], args["grade"], args["state"])


@blp.route("/alarms/<int:alarm_id>", methods=["GET"])
@blp.response(200, AlarmOut)
def get_alarm(alarm_id):
    with platform().db.session() as s:
        return alarms.get(s, g.user, alarm_id)


@blp.route("/alarms/<int:alarm_id>/acknowledge", methods=["POST"])
@blp.arguments(AckIn())
@blp.response(200, AlarmOut)
def acknowledge(body, alarm_id):
    """Acknowledge an alarm (completes its process's acknowledge task when one is open)."""
    with platform().db.transaction() as s:
        return alarms.acknowledge(s, platform().config, g.user, alarm_id, body["comment"])


@blp.route("/gateways", methods=["POST"])
@blp.arguments(GatewayIn())
@blp.response(201, GatewayOut)
def create_gateway(body):
    """Register a gateway; the answer carries its credential, shown this once only."""
    with platform().db.transaction() as s:
        gateway, token = monitoring.create_gateway(s, g.user, body["code"], body["enterprise_id"], body["name"])
        return {"id": gateway.id, "code": gateway.code, "enterprise_id": gateway.enterprise_id, "token": token}


@blp.route("/gateways", methods=["GET"])
@blp.response(200, GatewayDetail(many=True))
def list_gateways():
    """Every registered gateway with its state and silence threshold (monitoring administrators)."""
    with platform().db.session() as s:
        return [_gateway_out(gw) for gw in monitoring.gateways(s, g.user)]


@blp.route("/gateways/<int:gateway_id>", methods=["PATCH"])
@blp.arguments(GatewayUpdate())
@blp.response(200, GatewayDetail)
def update_gateway(body, gateway_id):
    """Rename, enable or disable a gateway, or set its silence threshold (monitoring administrators)."""
    with platform().db.transaction() as s:
        return _gateway_out(monitoring.update_gateway(s, g.user, gateway_id, body))


@blp.route("/gateways/<int:gateway_id>/token", methods=["POST"])
@blp.response(200, GatewayOut)
def rotate_token(gateway_id):
    """A new credential for the gateway (the old one stops working at once)."""
    with platform().db.transaction() as s:
        token = monitoring.rotate_token(s, g.user, gateway_id)
        return {"id": gateway_id, "token": token}


@blp.route("/gateways/<int:gateway_id>/points/import", methods=["POST"])
@blp.response(200)
def import_points(gateway_id):
    """Import a point list (.xlsx, multipart field ``file``): all rows or none, errors by row number."""
    upload = request.files.get("file")
    if upload is None:
        raise ValidationFailed("upload the point list as 'file'", errors={"file": [{"code": "required",
                                                                                    "message": "required"}]})
    with platform().db.transaction() as s:
        points = monitoring.import_points(s, g.user, gateway_id, upload.stream)
        return {"imported": len(points), "points": [{"id": p.id, "name": p.name} for p in points]}
