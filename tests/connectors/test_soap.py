"""The soap connector against a real local SOAP service: auth, allow-list, safe XML, the WSDL cache, every fault."""
from __future__ import annotations

import base64
import hashlib
import time
from datetime import timedelta
from pathlib import Path

import pytest

import connectors.soap as soap
from connectors.base import ConnectorError
from connectors.soap import DOCUMENTS, SoapConnector
from engine import clock, connectors, jobs, secrets
from tests.engine.helpers import (
    bpmn,
    deploy_bundle,
    flows,
    jobs_of,
    load_user,
    only_task,
    service_task,
    start,
    user_task,
    workflow_data,
)
from tests.soapservice import SoapService

PROCESS = "soap_call"
INCIDENT = {"title": "尾矿库位移超限", "level": 2, "region": "南宁市", "occurredAt": "2026-07-18T09:30:00+08:00"}
HOSTNAME = Path("/etc/hostname").read_text().strip() if Path("/etc/hostname").is_file() else ""
IMPORT = '<xsd:import namespace="urn:emflow:extra" schemaLocation="{}"/>'


class Context:
    """The context a worker hands to a call: only what the soap connector reads."""

    def __init__(self, key: str = "key-0001", timeout: float = 5.0):
        self.idempotency_key, self.timeout, self.instance_id, self.callback_url = key, timeout, None, ""


@pytest.fixture(autouse=True)
def _cold_cache():
    DOCUMENTS.clear()
    yield
    DOCUMENTS.clear()


@pytest.fixture
def service():
    with SoapService() as server:
        yield server


@pytest.fixture
def other():
    """A second service on another port: a host that is not on the allow-list."""
    with SoapService() as server:
        yield server


def settings(server: SoapService, **extra) -> dict:
    return {"wsdl": server.wsdl_url, "allowed_hosts": [server.host], **extra}


def call(config: dict, operation: str, arguments: dict | None = None, context: Context | None = None):
    return SoapConnector(config).call("Call", {"operation": operation, "arguments": arguments or {}},
                                      context or Context())


def failure(config: dict, operation: str = "QueryDuty", arguments: dict | None = None, **context) -> ConnectorError:
    with pytest.raises(ConnectorError) as caught:
        call(config, operation, {"date": "2026-07-18", "region": "柳州市"} if arguments is None else arguments,
             Context(**context))
    return caught.value


def serve(service: SoapService, path: str, text: str) -> str:
    """Serve ``text`` at ``path`` on the service; returns its URL."""
    service.documents[path] = text.encode()
    return service.url + path


# -- calls ---------------------------------------------------------------------------------------------------


def test_a_call_round_trips_chinese_values_with_one_idempotency_key_across_attempts(service):
    context = Context("job-7f3a")
    service.plan["ReportIncident"] = ["500"]
    with pytest.raises(ConnectorError) as first:
        call(settings(service), "ReportIncident", INCIDENT, context)
    assert (first.value.code, first.value.retryable) == ("soap.http.500", True)
    reply = call(settings(service), "ReportIncident", INCIDENT, context)  # the retry of the same call

    assert reply == {"ticket": "南宁市-0001", "accepted": True}
    first_post, retry = service.posts("ReportIncident")
    assert retry["arguments"] == {**INCIDENT, "level": "2"}
    assert first_post["headers"]["idempotency-key"] == retry["headers"]["idempotency-key"] == "job-7f3a"
    assert retry["headers"]["soapaction"] == '"http://yjgl.gxzf.gov.cn/duty/ReportIncident"'
    assert call(settings(service), "QueryDuty", {"date": "2026-07-18", "region": "柳州市"}) == {
        "leader": "李秀英", "phone": "0772-5556789"}


def test_basic_auth_and_ws_security_tokens_reach_the_service(service):
    call(settings(service, auth={"scheme": "basic", "username": "duty", "password": "pw-密码"}), "QueryDuty",
         {"date": "2026-07-18", "region": "南宁市"})
    call(settings(service, auth={"scheme": "wsse", "username": "emflow", "password": "ws-口令"}), "QueryDuty",
         {"date": "2026-07-18", "region": "南宁市"})
    call(settings(service, auth={"scheme": "wsse", "username": "emflow", "password": "ws-口令", "digest": True}),
         "QueryDuty", {"date": "2026-07-18", "region": "南宁市"})

    basic, text, digest = service.posts()
    assert base64.b64decode(basic["headers"]["authorization"][6:]).decode() == "duty:pw-密码"
    assert [r["method"] for r in service.requests if r["headers"].get("authorization")] == ["GET", "POST"]
    assert basic["security"] is None and "authorization" not in text["headers"]
    assert text["security"]["username"] == "emflow" and text["security"]["password"] == "ws-口令"
    assert text["security"]["type"].endswith("#PasswordText")
    token = digest["security"]
    assert token["type"].endswith("#PasswordDigest")
    expected = hashlib.sha1(base64.b64decode(token["nonce"]) + token["created"].encode() + "ws-口令".encode())
    assert token["password"] == base64.b64encode(expected.digest()).decode()


def test_describe_lists_services_ports_and_operations_with_their_elements(service):
    described = SoapConnector(settings(service)).call("Describe", {}, Context())

    [duty] = described["services"]
    [port] = duty["ports"]
    assert (duty["name"], port["name"], port["address"]) == ("EmergencyDutyService", "DutyPort",
                                                             f"{service.url}/service")
    operations = {op["name"]: op for op in port["operations"]}
    assert sorted(operations) == ["QueryDuty", "ReportIncident"]
    assert [(f["name"], f["type"]) for f in operations["ReportIncident"]["input"]] == [
        ("title", "string"), ("level", "int"), ("region", "string"), ("occurredAt", "dateTime")]
    assert [f["name"] for f in operations["QueryDuty"]["output"]] == ["leader", "phone"]
    assert service.posts() == []


def test_the_parsed_wsdl_is_cached_without_the_session_and_reused(service, capsys):
    config = settings(service, auth={"scheme": "basic", "username": "duty", "password": "pw-1"})
    started = time.perf_counter()
    call(config, "QueryDuty", {"date": "2026-07-18", "region": "南宁市"})
    cold = time.perf_counter() - started
    started = time.perf_counter()
    call(config, "QueryDuty", {"date": "2026-07-18", "region": "南宁市"})
    warm = time.perf_counter() - started
    with capsys.disabled():
        print(f"\nsoap Call, cold WSDL cache {cold * 1000:.1f} ms, warm {warm * 1000:.1f} ms")

    assert [r["method"] for r in service.requests] == ["GET", "POST", "POST"]
    [(_, document)] = DOCUMENTS.entries.values()
    assert isinstance(document.transport, soap._Sealed) and isinstance(document.types._transport, soap._Sealed)
    call(settings(service), "QueryDuty", {"date": "2026-07-18", "region": "南宁市"})  # other settings: own entry
    assert len(DOCUMENTS.entries) == 2


def test_the_cache_forgets_old_and_surplus_documents():
    now = [100.0]
    cache = soap._DocumentCache(size=2, ttl=60, clock=lambda: now[0])
    for n in range(3):
        cache.put((f"w{n}", ""), n)
    assert (cache.get(("w0", "")), cache.get(("w1", "")), cache.get(("w2", ""))) == (None, 1, 2)
    now[0] += 61
    assert cache.get(("w2", "")) is None and cache.entries.keys() == {("w1", "")}


# -- faults --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("behaviour", "code", "retryable"), [
    ("fault", "soap.fault.Client", False), ("500", "soap.http.500", True), ("503", "soap.http.503", True),
    ("404", "soap.http.404", False), ("malformed", "soap.malformed", False),
])
def test_faults_become_connector_errors_with_codes(service, behaviour, code, retryable):
    service.plan["QueryDuty"] = [behaviour]
    error = failure(settings(service))
    assert (error.code, error.retryable) == (code, retryable)
    if behaviour == "fault":
        assert "事件级别无效" in str(error)


def test_a_slow_service_times_out_and_a_dead_endpoint_is_unreachable(service):
    service.plan["QueryDuty"] = ["slow:2"]
    slow = failure(settings(service), timeout=0.3)
    assert (slow.code, slow.retryable) == ("soap.timeout", True)

    dead = serve(service, "/dead.wsdl", service.wsdl(address="http://127.0.0.1:9/service"))
    refused = failure({"wsdl": dead, "allowed_hosts": [service.host, "127.0.0.1:9"]})
    assert (refused.code, refused.retryable) == ("soap.unreachable", True)
    no_wsdl = failure({"wsdl": "http://127.0.0.1:9/service?wsdl", "allowed_hosts": ["127.0.0.1:9"]})
    assert (no_wsdl.code, no_wsdl.retryable) == ("soap.unreachable", True)


def test_unknown_operations_and_unfitting_arguments_are_bad_requests(service):
    unknown = failure(settings(service), "DeleteEverything", {})
    assert (unknown.code, unknown.retryable) == ("soap.bad_request", False)
    assert "DeleteEverything" in str(unknown) and "ReportIncident" in str(unknown)
    extra = failure(settings(service), "ReportIncident", {**INCIDENT, "secretField": 1})
    missing = failure(settings(service), "ReportIncident", {"title": "火情"})
    assert [(e.code, e.retryable) for e in (extra, missing)] == [("soap.bad_request", False)] * 2
    assert all("ReportIncident" in str(e) for e in (extra, missing))
    no_port = failure(settings(service, service="EmergencyDutyService", port="NoSuchPort"))
    assert (no_port.code, no_port.retryable) == ("soap.config", False)
    assert service.posts() == []
    assert call(settings(service, service="EmergencyDutyService", port="DutyPort"), "QueryDuty",
                {"date": "2026-07-18", "region": "南宁市"})["leader"] == "王建国"


# -- the allow-list and safe XML -----------------------------------------------------------------------------


def test_a_wsdl_on_a_host_off_the_allow_list_is_never_fetched(service, other):
    error = failure({"wsdl": other.wsdl_url, "allowed_hosts": [service.host]})
    assert (error.code, error.retryable) == ("soap.forbidden_host", False)
    assert other.requests == []


def test_an_endpoint_address_off_the_allow_list_is_never_contacted(service, other):
    wsdl = serve(service, "/elsewhere.wsdl", service.wsdl(address=f"{other.url}/service"))
    error = failure({"wsdl": wsdl, "allowed_hosts": [service.host]})
    assert (error.code, error.retryable) == ("soap.forbidden_host", False)
    assert other.requests == [] and service.posts() == []


@pytest.mark.parametrize(("location", "code"), [
    ("{other}/types.xsd", "soap.forbidden_host"),
    ("file:///etc/hostname", "soap.forbidden_host"),
    ("../../../../etc/hostname", "soap.forbidden_import"),
])
def test_schema_imports_are_never_fetched_off_the_allow_list_or_from_local_files(service, other, location, code):
    target = location.format(other=other.url)
    wsdl = serve(service, "/imports.wsdl", service.wsdl(imports=IMPORT.format(target)))
    error = failure({"wsdl": wsdl, "allowed_hosts": [service.host]})
    assert (error.code, error.retryable) == (code, False)
    assert other.requests == [] and [r["path"] for r in service.requests] == ["/imports.wsdl"]
    assert not HOSTNAME or HOSTNAME not in str(error)


@pytest.mark.parametrize(("prolog", "reference"), [
    ('<!DOCTYPE wsdl:definitions [<!ENTITY leak SYSTEM "file:///etc/hostname">]>', "&leak;"),
    ('<!DOCTYPE wsdl:definitions [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>', "&b;"),
    ('<!DOCTYPE wsdl:definitions SYSTEM "{other}/evil.dtd">', ""),
])
def test_a_wsdl_with_a_dtd_or_entities_is_refused_and_leaks_nothing(service, other, prolog, reference):
    text = service.wsdl().replace('<?xml version="1.0" encoding="UTF-8"?>',
                                  '<?xml version="1.0" encoding="UTF-8"?>' + prolog.format(other=other.url))
    text = text.replace('name="EmergencyDuty">',
                        f'name="EmergencyDuty"><wsdl:documentation>{reference}</wsdl:documentation>')
    error = failure({"wsdl": serve(service, "/xxe.wsdl", text), "allowed_hosts": [service.host]})
    assert (error.code, error.retryable) == ("soap.forbidden_xml", False)
    assert not HOSTNAME or HOSTNAME not in str(error)
    assert other.requests == []


def test_a_response_with_an_entity_is_refused_and_leaks_nothing(service):
    service.plan["QueryDuty"] = ["xxe"]
    error = failure(settings(service))
    assert (error.code, error.retryable) == ("soap.forbidden_xml", False)
    assert not HOSTNAME or HOSTNAME not in str(error)


def test_a_wsdl_from_forms_is_read_and_paths_out_of_it_are_refused(service, tmp_path, monkeypatch):
    forms = tmp_path / "forms"
    (forms / "soap").mkdir(parents=True)
    (forms / "soap" / "duty.wsdl").write_text(service.wsdl(), encoding="utf-8")
    (forms / "soap" / "escape.wsdl").symlink_to("/etc/hostname")
    monkeypatch.setattr(soap, "_forms_dir", lambda: forms)

    assert call({"wsdl": "soap/duty.wsdl", "allowed_hosts": [service.host]}, "QueryDuty",
                {"date": "2026-07-18", "region": "南宁市"})["leader"] == "王建国"
    assert [r["method"] for r in service.requests] == ["POST"]
    for wsdl in ("../secrets.wsdl", "soap/../../x.wsdl", "/etc/hostname", "file:///etc/hostname",
                 "soap/escape.wsdl", "ftp://127.0.0.1/x.wsdl"):
        error = failure({"wsdl": wsdl, "allowed_hosts": [service.host]})
        assert (error.code, error.retryable) == ("soap.config", False), wsdl
        assert not HOSTNAME or HOSTNAME not in str(error)


# -- through the engine: a process calls the connector from a service task ----------------------------------


@pytest.fixture
def process(db, config, service, registry):
    """WS-Security password as a secret; start → report (soap/Call ReportIncident) → review → end."""
    registry.register(SoapConnector)  # setup.cfg's entry point makes discover() find it once installed
    with db.transaction() as s:
        secrets.put(s, config, "duty_password", "ws-值班-2026")
        connectors.configure(s, config, registry, load_user(s, "admin"), "soap", {
            "wsdl": service.wsdl_url, "allowed_hosts": [service.host],
            "auth": {"scheme": "wsse", "username": "emflow", "password": {"$secret": "duty_password"}}}, retries=2)
    arguments = "{'title': title, 'level': 2, 'region': '南宁市', 'occurredAt': '2026-07-18T09:30:00+08:00'}"
    body = ('<bpmn:startEvent id="start"/>'
            + service_task("report", "soap/Call", "reply", {"operation": "'ReportIncident'", "arguments": arguments})
            + user_task("review", "核对回执") + '<bpmn:endEvent id="end"/>'
            + flows(("start", "report"), ("report", "review"), ("review", "end")))
    deploy_bundle(db, PROCESS, bpmn(PROCESS, body), registry=registry)


def test_a_service_task_reports_with_the_secret_and_stores_the_reply(db, config, registry, service, process):
    service.plan["ReportIncident"] = ["503"]
    instance_id = start(db, config, "zhang.wei", PROCESS, data={"title": "尾矿库位移超限"})
    [job] = jobs_of(db, instance_id)
    outcomes = []
    while not outcomes or outcomes[-1] == "retry":
        clock.advance(timedelta(minutes=10))
        outcomes.append(jobs.execute(db, config, registry, job.id))

    assert outcomes == ["retry", "done"]
    assert workflow_data(db, instance_id)["reply"] == {"ticket": "南宁市-0001", "accepted": True}
    assert only_task(db, instance_id).bpmn_id == "review"
    posts = service.posts("ReportIncident")
    assert [p["headers"]["idempotency-key"] for p in posts] == [job.id, job.id]
    assert posts[-1]["arguments"]["title"] == "尾矿库位移超限"
    assert posts[-1]["security"]["password"] == "ws-值班-2026"
