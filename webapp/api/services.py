"""The gateway: /services/{service}/{operation} for outside callers, authenticated by their API key."""
from __future__ import annotations

from flask import Response, jsonify, request
from flask_smorest import Blueprint

from engine import bus
from engine.errors import EngineError, NotFound, RateLimited, ValidationFailed

from .. import soapfacade
from ..platform import platform

PREFIX = "/services"
blp = Blueprint("api_services", __name__, description="Service gateway (API key in X-API-Key)")


@blp.route("/<service>/<operation>", methods=["POST"])
def call(service: str, operation: str):
    """Call a published operation with a JSON object of arguments; the answer is the operation's result.

    401 without a valid key, 403 when the consumer lacks the permission, 429 over its rate limit (with
    Retry-After), 422 for arguments that do not fit the schema, 502/504 when the outside system fails."""
    p = platform()
    arguments = request.get_json(silent=True)
    if arguments is None and request.get_data():
        error = ValidationFailed("the body is not valid JSON", errors={"body": [{"code": "invalid",
                                                                                "message": "not JSON"}]})
        bus.refuse(p.db, request.headers.get("X-API-Key"), service, operation, "json", error)
        raise error
    try:
        outcome = bus.call(p.db, p.config, p.registry, p.bus_limiter, request.headers.get("X-API-Key"), service,
                           operation, arguments if arguments is not None else {},
                           request.headers.get("Idempotency-Key"))
    except RateLimited as exc:
        response = jsonify({"code": exc.code, "status": 429, "message": exc.message, "errors": {}})
        response.status_code, response.headers["Retry-After"] = 429, str(exc.retry_after)
        return response
    response = jsonify(outcome.body)
    response.status_code = outcome.status
    return response


def _entry(service: str) -> dict:
    """The catalogue entry of ``service`` as the calling consumer may see it."""
    with platform().db.session() as s:
        consumer = bus.authenticate(s, request.headers.get("X-API-Key"))
        for entry in bus.catalogue(s, platform().registry, consumer):
            if entry["key"] == service:
                return entry
    raise NotFound(f"service '{service}' does not exist", code="no_such_service")


@blp.route("/<service>/wsdl", methods=["GET"])
def wsdl(service: str):
    """A WSDL of the operations this consumer may call, for SOAP-only callers."""
    address = f"{platform().config.public_url}/api/v1/services/{service}/soap"  # not the Host header's say
    return Response(soapfacade.wsdl(_entry(service), address), mimetype="text/xml")


@blp.route("/<service>/soap", methods=["POST"])
def soap(service: str):
    """The same operations over SOAP 1.1 (document/literal): faults instead of JSON errors."""
    p, key = platform(), request.headers.get("X-API-Key")
    try:
        operation, arguments = soapfacade.parse(request.get_data(), _entry(service)["operations"])
    except soapfacade.SoapError as exc:
        bus.refuse(p.db, key, service, "", "soap", EngineError(str(exc), code="malformed_envelope"))
        return Response(soapfacade.fault("Client", str(exc)), status=400, mimetype="text/xml")
    except EngineError as exc:  # a bad key or a service this consumer cannot see, before call() is reached
        bus.refuse(p.db, key, service, "", "soap", exc)
        return _fault(exc)
    try:
        outcome = bus.call(p.db, p.config, p.registry, p.bus_limiter, key, service, operation, arguments,
                           request.headers.get("Idempotency-Key"), protocol="soap")
    except EngineError as exc:
        return _fault(exc)
    if outcome.status >= 400:
        return Response(soapfacade.fault("Server" if outcome.status >= 500 else "Client",
                                         outcome.body.get("message", "")), status=500, mimetype="text/xml")
    return Response(soapfacade.response(service, operation, outcome.body), mimetype="text/xml")


def _fault(exc: EngineError) -> Response:
    """A refusal as a SOAP fault: the caller's fault with its own status, ours as a 500."""
    side = "Client" if exc.status < 500 else "Server"
    return Response(soapfacade.fault(side, exc.message), status=500 if side == "Server" else exc.status,
                    mimetype="text/xml")
