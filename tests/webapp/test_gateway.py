"""The service bus end to end: catalogue, consumers with API keys, the gateway against a real local service,
internal services (connector, straight-through process, query), rate limits, the call log and usage."""
from __future__ import annotations

import socket
import threading
from datetime import date, timedelta

import pytest

from engine import clock
from engine.models import BusCall, SystemEvent
from tests.engine.helpers import bpmn, clear_of_midnight, deploy_bundle, flows
from tests.outside import OutsideSystem

DUTY = {"name": "省应急值班系统", "kind": "rest", "description": "值班与事件报送",
        "definition": {"base_url": None, "auth": {"scheme": "bearer", "token": {"$secret": "duty_token"}},
                       "operations": {
                           "QueryDuty": {"method": "GET", "path": "/duty/{region}",
                                         "params": {"type": "object", "required": ["region"],
                                                    "properties": {"region": {"type": "string",
                                                                              "pattern": "^\\d{6}$"},
                                                                   "date": {"type": "string"}}}},
                           "Report": {"method": "POST", "path": "/reports"}}}}


@pytest.fixture
def outside():
    with OutsideSystem() as server:
        yield server


@pytest.fixture
def admin(api):
    return api("admin")


@pytest.fixture
def duty(client, admin, outside):
    """The outside duty service registered, with its token stored as a secret."""
    assert client.put("/api/v1/secrets/duty_token", json={"value": "duty-tok-5555"}, headers=admin).status_code == 200
    body = {**DUTY, "definition": {**DUTY["definition"], "base_url": outside.url}}
    response = client.put("/api/v1/bus/services/duty", json=body, headers=admin)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def consumer(client, admin, permissions, rate=600, run_as=None, name="市县应急局对接系统") -> str:
    response = client.post("/api/v1/bus/consumers", headers=admin, json={
        "name": name, "permissions": permissions, "rate_per_minute": rate, "run_as": run_as})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["api_key"]


def gw(client, key, path, body=None, **headers):
    return client.post(f"/api/v1/services/{path}", json=body if body is not None else {},
                       headers={"X-API-Key": key, **headers} if key else headers)


def test_a_rest_call_through_the_gateway_reaches_the_service_with_its_secret(client, admin, outside, duty):
    key = consumer(client, admin, ["duty/*"])

    response = gw(client, key, "duty/QueryDuty", {"region": "450100", "date": "2026-11-29"},
                  **{"Idempotency-Key": "caller-key-1"})
    assert response.status_code == 200, response.get_json()
    seen = outside.requests[0]
    assert (seen["path"], seen["query"]) == ("/duty/450100", {"date": ["2026-11-29"]})
    assert seen["headers"]["authorization"] == "Bearer duty-tok-5555"
    key_seen = seen["headers"]["idempotency-key"]  # namespaced per consumer, so callers cannot collide
    assert key_seen.startswith("bus:") and key_seen.endswith(":caller-key-1")
    assert response.get_json()["received"]["path"] == "/duty/450100"

    posted = gw(client, key, "duty/Report", {"title": "化工园区泄漏", "level": 2})
    assert posted.status_code == 200
    assert outside.requests[1]["method"] == "POST" and "化工园区泄漏" in outside.requests[1]["body"]


def test_keys_permissions_and_schemas_are_enforced(client, admin, outside, duty, db, caplog):
    key = consumer(client, admin, ["duty/QueryDuty"])

    assert gw(client, None, "duty/QueryDuty", {"region": "450100"}).status_code == 401
    assert gw(client, "emf_wrong-key-000000000000", "duty/QueryDuty", {"region": "450100"}).status_code == 401
    assert [r.getMessage() for r in caplog.records if r.name == "emflow.bus"] == [
        "gateway: a call to duty/QueryDuty without a valid API key was refused"] * 2
    assert gw(client, key, "duty/Report", {}).status_code == 403
    assert gw(client, key, "nothing/QueryDuty", {}).status_code == 404
    bad = gw(client, key, "duty/QueryDuty", {"region": "南宁"})
    assert bad.status_code == 422 and "region" in bad.get_json()["errors"]
    not_json = client.post("/api/v1/services/duty/QueryDuty", data="{oops", headers={
        "X-API-Key": key, "Content-Type": "application/json"})
    assert not_json.status_code == 422
    assert outside.requests == []
    with db.session() as s:  # a known consumer's refusals are in its call log and statistics
        calls = s.query(BusCall.service, BusCall.operation, BusCall.status, BusCall.ok).order_by(BusCall.id).all()
    assert calls == [("duty", "Report", 403, False), ("nothing", "QueryDuty", 404, False),
                     ("duty", "QueryDuty", 422, False), ("duty", "QueryDuty", 422, False)]


def test_a_rotated_or_disabled_key_stops_working_at_once(client, admin, outside, duty):
    key = consumer(client, admin, ["duty/*"])
    [row] = client.get("/api/v1/bus/consumers", headers=admin).get_json()
    assert "api_key" not in row or row["api_key"] is None

    new_key = client.post(f"/api/v1/bus/consumers/{row['id']}/rotate-key", headers=admin).get_json()["api_key"]
    assert gw(client, key, "duty/QueryDuty", {"region": "450100"}).status_code == 401
    assert gw(client, new_key, "duty/QueryDuty", {"region": "450100"}).status_code == 200

    client.put(f"/api/v1/bus/consumers/{row['id']}", headers=admin,
               json={"name": row["name"], "permissions": ["duty/*"], "enabled": False})
    assert gw(client, new_key, "duty/QueryDuty", {"region": "450100"}).status_code == 401


def test_a_change_in_the_catalogue_applies_to_the_next_call(client, admin, outside, duty):
    key = consumer(client, admin, ["duty/*"])
    assert gw(client, key, "duty/QueryDuty", {"region": "450100"}).status_code == 200
    with OutsideSystem() as moved:
        body = {**DUTY, "definition": {**DUTY["definition"], "base_url": moved.url}}
        assert client.put("/api/v1/bus/services/duty", json=body, headers=admin).get_json()["revision"] == 2
        assert gw(client, key, "duty/QueryDuty", {"region": "450100"}).status_code == 200
        assert len(moved.requests) == 1 and len(outside.requests) == 1


def test_outside_failures_become_502_and_504_and_are_logged_without_secrets(client, admin, outside, duty, db):
    key = consumer(client, admin, ["duty/*"])
    outside.plan["/reports"] = ["500"]
    failed = gw(client, key, "duty/Report", {"password": "p@ss-word-9", "title": "x"})
    assert failed.status_code == 502 and failed.get_json()["code"] == "http.500"

    with db.session() as s:
        [call] = s.query(BusCall).all()
        assert (call.service, call.operation, call.ok, call.status) == ("duty", "Report", False, 502)
        assert "p@ss-word-9" not in call.request and "duty-tok-5555" not in (call.request + call.response)
        assert call.latency_ms > 0


def test_rate_limits_answer_429_with_retry_after(client, admin, outside, duty, db):
    # The limit counts the calls of each clock minute: start just after a minute begins, so all four fall in one.
    clock.advance(timedelta(seconds=61 - clock.now().timestamp() % 60))
    key = consumer(client, admin, ["duty/*"], rate=2)
    assert [gw(client, key, "duty/QueryDuty", {"region": "450100"}).status_code for _ in range(3)] == [200, 200, 429]
    limited = gw(client, key, "duty/QueryDuty", {"region": "450100"})
    assert limited.status_code == 429 and 1 <= int(limited.headers["Retry-After"]) <= 60
    with db.session() as s:
        assert [c.status for c in s.query(BusCall).order_by(BusCall.id)] == [200, 200]  # refusals shed, not logged
    clock.advance(timedelta(minutes=1))
    assert gw(client, key, "duty/QueryDuty", {"region": "450100"}).status_code == 200


STRAIGHT = bpmn("score_risk", '<bpmn:startEvent id="start"/>'
                '<bpmn:scriptTask id="score"><bpmn:script>risk = "高" if level &gt;= 3 else "低"</bpmn:script>'
                '</bpmn:scriptTask><bpmn:endEvent id="end"/>' + flows(("start", "score"), ("score", "end")))


def test_internal_services_a_connector_a_straight_through_process_and_a_query(client, admin, db, app):
    deploy_bundle(db, "score_risk", STRAIGHT, registry=app.extensions["emflow"].registry, forms={})
    for key, body in {
        "numbers": {"name": "公文编号", "kind": "connector",
                    "definition": {"operations": {"Allocate": {"operation": "docnumber/Allocate"}}}},
        "risk": {"name": "风险研判", "kind": "process",
                 "definition": {"operations": {"Score": {"process_key": "score_risk", "outputs": ["risk"]}}}},
        "cases": {"name": "研判记录", "kind": "query",
                  "definition": {"operations": {"Recent": {"process_key": "score_risk", "fields": ["level", "risk"]}}}},
    }.items():
        response = client.put(f"/api/v1/bus/services/{key}", json=body, headers=admin)
        assert response.status_code == 200, response.get_json()
    key = consumer(client, admin, ["numbers/*", "risk/*", "cases/*"], run_as="zhang.wei")

    number = gw(client, key, "numbers/Allocate", {"prefix": "桂应急函", "year": 2026})
    assert number.status_code == 200 and number.get_json()["number"] == "桂应急函〔2026〕1号"
    scored = gw(client, key, "risk/Score", {"level": 4}).get_json()
    assert scored["completed"] is True and scored["result"] == {"risk": "高"}
    recent = gw(client, key, "cases/Recent", {}).get_json()
    assert recent["total"] == 1 and recent["items"][0]["risk"] == "高" and recent["items"][0]["level"] == 4

    catalogue = client.get("/api/v1/bus/catalogue", headers=admin).get_json()
    assert [s["key"] for s in catalogue] == ["cases", "numbers", "risk"]
    assert catalogue[1]["operations"]["Allocate"]["params"]["required"] == ["prefix"]


def test_an_internal_service_needs_a_run_as_user(client, admin, db, app):
    client.put("/api/v1/bus/services/numbers", headers=admin, json={
        "name": "公文编号", "kind": "process",
        "definition": {"operations": {"Start": {"process_key": "document_dispatch"}}}})
    key = consumer(client, admin, ["numbers/*"])
    assert gw(client, key, "numbers/Start", {}).status_code == 403


def test_invalid_definitions_are_refused_precisely(client, admin):
    for body, field in (
        ({"name": "x", "kind": "ftp", "definition": {}}, "kind"),
        ({"name": "x", "kind": "rest", "definition": {"base_url": "ftp://x", "operations": {"A": {
            "method": "GET", "path": "/"}}}}, "definition.base_url"),
        ({"name": "x", "kind": "connector", "definition": {"operations": {"A": {"operation": "nope/Op"}}}},
         "definition.operations.A.operation"),
        ({"name": "x", "kind": "process", "definition": {"operations": {"A": {"process_key": "nope"}}}},
         "definition.operations.A.process_key"),
        ({"name": "x", "kind": "rest", "definition": {"base_url": "http://a", "operations": {"A": {
            "method": "GET", "path": "/", "params": {"type": "nonsense"}}}}}, "definition.operations.A.params"),
    ):
        response = client.put("/api/v1/bus/services/bad", json=body, headers=admin)
        assert response.status_code == 422, body
        assert field in response.get_json()["errors"], (field, response.get_json()["errors"])
    assert client.put("/api/v1/bus/services/Bad Key", json={"name": "x", "kind": "rest", "definition": {}},
                      headers=admin).status_code == 422


def test_only_bus_admins_manage_the_bus(client, api):
    clerk = api("zhang.wei")
    assert client.get("/api/v1/bus/services", headers=clerk).status_code == 403
    assert client.get("/api/v1/bus/catalogue", headers=clerk).status_code == 403
    assert client.get("/api/v1/bus/catalogue", headers=api("qiye.hg001")).status_code == 403
    assert client.post("/api/v1/bus/consumers", headers=clerk, json={"name": "x"}).status_code == 403
    assert client.put("/api/v1/bus/services/x", headers=clerk, json={
        "name": "x", "kind": "rest", "definition": {}}).status_code == 403
    assert client.get("/api/v1/bus/usage?from=2026-11-01&to=2026-11-30", headers=clerk).status_code == 403


def test_usage_per_day_service_operation_and_consumer(client, admin, outside, duty, db, config):
    today = clear_of_midnight(config).date()  # usage is counted per local day: every call below falls on this one
    key = consumer(client, admin, ["duty/*"])
    other = consumer(client, admin, ["duty/*"], name="省政务服务平台")
    outside.plan["/reports"] = ["503"]
    for _ in range(4):
        gw(client, key, "duty/QueryDuty", {"region": "450100"})
    gw(client, key, "duty/Report", {})
    gw(client, other, "duty/QueryDuty", {"region": "450200"})

    rows = client.get(f"/api/v1/bus/usage?from={today - timedelta(days=1)}&to={today + timedelta(days=1)}",
                      headers=admin).get_json()
    by = {(r["operation"], r["consumer"]): r for r in rows}
    assert by[("QueryDuty", "市县应急局对接系统")]["calls"] == 4
    assert by[("QueryDuty", "省政务服务平台")]["calls"] == 1
    report = by[("Report", "市县应急局对接系统")]
    assert (report["calls"], report["errors"]) == (1, 1)
    assert all(r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"] for r in rows)
    assert client.get(f"/api/v1/bus/usage?from={date(2024, 1, 1)}&to={today}", headers=admin).status_code == 422
    with db.session() as s:
        kinds = {e.kind for e in s.query(SystemEvent)}
        assert {"bus_service_saved", "bus_consumer_saved", "secret_stored"} <= kinds


def envelope(operation: str, inner: str, service: str = "duty") -> str:
    return ('<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/'
            f'envelope/"><soap:Body><m:{operation} xmlns:m="urn:emflow:services:{service}">{inner}</m:{operation}>'
            "</soap:Body></soap:Envelope>")


def soap(client, key, service, body):
    return client.post(f"/api/v1/services/{service}/soap", data=body.encode(),
                       headers={"X-API-Key": key, "Content-Type": "text/xml; charset=utf-8"})


def test_a_soap_caller_reaches_a_rest_service(client, admin, outside, duty, db):
    key = consumer(client, admin, ["duty/QueryDuty"])
    wsdl = client.get("/api/v1/services/duty/wsdl", headers={"X-API-Key": key})
    assert wsdl.status_code == 200 and b'name="QueryDuty"' in wsdl.data and b'name="Report"' not in wsdl.data

    answer = soap(client, key, "duty", envelope("QueryDuty", "<m:region>450100</m:region><m:date>2026-11-29</m:date>"))
    assert answer.status_code == 200, answer.data
    text = answer.get_data(as_text=True)
    assert "QueryDutyResponse" in text and "/duty/450100" in text
    assert outside.requests[0]["query"] == {"date": ["2026-11-29"]}
    with db.session() as s:
        assert s.query(BusCall).one().protocol == "soap"


def test_bad_soap_requests_get_faults_and_entities_are_never_expanded(client, admin, outside, duty, db, caplog):
    key = consumer(client, admin, ["duty/*"])
    xxe = ('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/hostname">]>'
           + envelope("QueryDuty", "<m:region>&x;</m:region>").split("?>", 1)[1])
    for service, body, status in (("duty", xxe, 400), ("duty", "<oops", 400), ("duty", envelope("Nothing", ""), 400),
                                  ("duty", envelope("QueryDuty", "<m:region>南宁</m:region>"), 422),
                                  ("nothing", envelope("QueryDuty", "", "nothing"), 404)):
        answer = soap(client, key, service, body)
        assert answer.status_code == status, body
        assert b"<faultcode>soap:Client</faultcode>" in answer.data
    assert soap(client, "emf_nobody-000000000000", "duty", envelope("QueryDuty", "")).status_code == 401
    assert outside.requests == []
    # Every refusal of a known consumer is in its call log, also those before the envelope could be read (a
    # partner's failing calls must be findable); a call without a valid key only in the server log.
    with db.session() as s:
        calls = s.query(BusCall.service, BusCall.operation, BusCall.status, BusCall.protocol, BusCall.error).order_by(
            BusCall.id).all()
    assert [c[:4] for c in calls] == [("duty", "", 400, "soap")] * 3 + [("duty", "QueryDuty", 422, "soap"),
                                                                      ("nothing", "", 404, "soap")]
    assert all(c.error for c in calls) and "hostname" not in calls[0].error
    assert [r.getMessage() for r in caplog.records if r.name == "emflow.bus"] == [
        "gateway: a call to duty/ without a valid API key was refused"]


def test_zeep_consumes_the_generated_wsdl(client, admin, config):
    import requests
    import zeep
    from werkzeug.serving import make_server

    from webapp import create_app
    from webapp.platform import Platform

    client.put("/api/v1/bus/services/numbers", headers=admin, json={
        "name": "公文编号", "kind": "connector",
        "definition": {"operations": {"Allocate": {"operation": "docnumber/Allocate"}}}})
    key = consumer(client, admin, ["numbers/*"])
    with socket.socket() as probe:  # the WSDL's address comes from public_url, so it must name this port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    served = config.with_(public_url=f"http://127.0.0.1:{port}")
    platform = Platform(served)
    server = make_server("127.0.0.1", port, create_app(served, platform=platform, overrides={"TESTING": True}),
                         threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        session = requests.Session()
        session.headers["X-API-Key"] = key
        soap_client = zeep.Client(f"http://127.0.0.1:{port}/api/v1/services/numbers/wsdl",
                                  transport=zeep.Transport(session=session))
        result = soap_client.service.Allocate(prefix="桂应急函", year=2026)
    finally:
        server.shutdown()
        platform.stop()
    assert (result.number, result.year, result.sequence) == ("桂应急函〔2026〕1号", 2026, 1)
