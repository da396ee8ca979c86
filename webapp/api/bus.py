"""/bus: the service catalogue, consumers and their API keys, usage statistics (service-bus administrators)."""
from __future__ import annotations

from flask import g
from flask_smorest import Blueprint

from engine import bus
from engine.errors import Forbidden, ValidationFailed
from engine.models import BusConsumer, BusService

from ..platform import platform
from .schemas import BusConsumerIn, BusConsumerOut, BusServiceIn, BusServiceOut, UsageArgs

PREFIX = "/bus"
blp = Blueprint("api_bus", __name__, description="Service bus administration")


@blp.route("/catalogue", methods=["GET"])
@blp.response(200)
def catalogue():
    """Every enabled service with its operations and their parameter and result schemas (for service-bus and
    process administrators, who wire services into models)."""
    if not (g.user.can("bus.admin") or g.user.can("instance.admin")):
        raise Forbidden("only service-bus and process administrators see the catalogue", code="not_admin")
    with platform().db.session() as s:
        return bus.catalogue(s, platform().registry)


@blp.route("/services", methods=["GET"])
@blp.response(200, BusServiceOut(many=True))
def list_services():
    bus.require_admin(g.user)
    with platform().db.session() as s:
        return list(s.query(BusService).order_by(BusService.key))


@blp.route("/services/<key>", methods=["PUT"])
@blp.arguments(BusServiceIn())
@blp.response(200, BusServiceOut)
def save_service(body, key: str):
    """Register or change a service; the next call uses it (no restart)."""
    with platform().db.transaction() as s:
        return bus.save_service(s, platform().registry, g.user, key, body["name"], body["kind"], body["definition"],
                                body["description"], body["enabled"])


@blp.route("/services/<key>", methods=["DELETE"])
@blp.response(204)
def delete_service(key: str):
    with platform().db.transaction() as s:
        bus.delete_service(s, g.user, key)


@blp.route("/consumers", methods=["GET"])
@blp.response(200, BusConsumerOut(many=True))
def list_consumers():
    bus.require_admin(g.user)
    with platform().db.session() as s:
        return list(s.query(BusConsumer).order_by(BusConsumer.name))


@blp.route("/consumers", methods=["POST"])
@blp.arguments(BusConsumerIn())
@blp.response(201, BusConsumerOut)
def create_consumer(body):
    """A new consumer; the response carries its API key, which is shown only this once."""
    with platform().db.transaction() as s:
        row, row.api_key = bus.save_consumer(s, g.user, **body)
        return row


@blp.route("/consumers/<int:consumer_id>", methods=["PUT"])
@blp.arguments(BusConsumerIn())
@blp.response(200, BusConsumerOut)
def update_consumer(body, consumer_id: int):
    with platform().db.transaction() as s:
        return bus.save_consumer(s, g.user, consumer_id=consumer_id, **body)[0]


@blp.route("/consumers/<int:consumer_id>/rotate-key", methods=["POST"])
@blp.response(200, BusConsumerOut)
def rotate_key(consumer_id: int):
    """A new API key for the consumer; the old one stops working at once."""
    with platform().db.transaction() as s:
        key = bus.rotate_key(s, g.user, consumer_id)
        row = s.get(BusConsumer, consumer_id)
        row.api_key = key  # shown once, in this response; only its hash is stored
        return row


@blp.route("/usage", methods=["GET"])
@blp.arguments(UsageArgs(), location="query")
@blp.response(200)
def usage(args):
    """Calls, errors and latency percentiles per day, service, operation and consumer."""
    if (args["day_to"] - args["day_from"]).days > 366:
        raise ValidationFailed("ask for at most a year at a time", errors={"to": [{"code": "maximum",
                                                                                   "message": "366 days"}]})
    with platform().db.session() as s:
        return bus.usage(s, g.user, platform().config, args["day_from"], args["day_to"], args.get("service"),
                         args.get("consumer_id"))
