"""The incidents page and the service-bus page: admins only, CSRF-protected forms, the key shown once."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest

from engine import clock, connectors, jobs
from engine.models import BusConsumer, Incident
from tests.engine.helpers import (
    bpmn,
    deploy_bundle,
    flows,
    jobs_of,
    load_user,
    only_task,
    open_tasks,
    service_task,
    start,
    user_task,
)
from tests.outside import OutsideSystem


@pytest.fixture
def failed(db, config, app):
    """An instance whose http call was refused (404) and raised an incident."""
    registry = app.extensions["emflow"].registry
    with OutsideSystem() as outside:
        with db.transaction() as s:
            connectors.configure(s, config, registry, load_user(s, "admin"), "http",
                                 {"allowed_hosts": [outside.host], "base_url": outside.url})
        body = ('<bpmn:startEvent id="start"/>' + service_task("fetch", "http/Request", "reply", {"url": "'/x'"})
                + user_task("check", "核对") + '<bpmn:endEvent id="end"/>'
                + flows(("start", "fetch"), ("fetch", "check"), ("check", "end")))
        deploy_bundle(db, "fetch_once", bpmn("fetch_once", body), registry=registry)
        instance_id = start(db, config, "zhang.wei", "fetch_once")
        outside.plan["/x"] = ["404"]
        clock.advance(timedelta(minutes=1))
        assert jobs.execute(db, config, registry, jobs_of(db, instance_id)[0].id) == "failed"
    return instance_id


def test_the_incidents_page_lists_and_skips_with_a_reason(web, client, db, failed):
    web.login("admin")
    page = client.get("/admin/incidents").get_data(as_text=True)
    assert "http/Request" in page and "answered 404" in page
    with db.session() as s:
        incident_id = s.query(Incident).one().id

    web.post(f"/admin/incidents/{incident_id}/skip", {"reason": ""}, page="/admin/incidents")
    assert open_tasks(db, failed) == []  # refused: skipping needs a reason
    web.post(f"/admin/incidents/{incident_id}/skip", {"reason": "线下已处理"}, page="/admin/incidents")
    assert only_task(db, failed).bpmn_id == "check"
    resolved = client.get("/admin/incidents?state=resolved").get_data(as_text=True)
    assert "线下已处理" in resolved


def test_the_skip_form_without_csrf_is_refused(web, client, db, failed):
    web.login("admin")
    with db.session() as s:
        incident_id = s.query(Incident).one().id
    assert client.post(f"/admin/incidents/{incident_id}/retry", data={"reason": "x"}).status_code == 400


def test_the_bus_page_shows_usage_and_creates_a_consumer_whose_key_is_shown_once(web, client, db):
    web.login("admin")
    page = client.get("/admin/bus")
    assert page.status_code == 200 and "<svg" in page.get_data(as_text=True)

    created = web.post("/admin/bus/consumers", {"name": "市应急局", "permissions": "duty/*，cases/Recent",
                                                "rate_per_minute": "120"}, page="/admin/bus")
    text = created.get_data(as_text=True)
    with db.session() as s:
        row = s.query(BusConsumer).one()
        assert row.permissions == ["cases/Recent", "duty/*"] and row.rate_per_minute == 120
    assert f'class="api-key">{row.key_prefix}' in text
    assert row.key_prefix not in client.get("/admin/bus").get_data(as_text=True)


def test_a_bad_service_definition_is_reported_on_the_page(web, client):
    web.login("admin")
    response = web.post("/admin/bus/services", {"key": "duty", "name": "值班", "kind": "rest",
                                                "definition": "{not json", "enabled": "on"},
                        page="/admin/bus", follow_redirects=True)
    assert "JSON" in response.get_data(as_text=True)


def test_integration_pages_are_for_admins(web, client):
    web.login("zhang.wei")
    assert client.get("/admin/incidents").status_code == 403
    assert client.get("/admin/bus").status_code == 403


def test_a_refusal_on_a_page_without_marked_fields_spells_out_the_fields(web, client):
    web.login("admin")
    response = web.post("/admin/bus/services", {"key": "duty", "name": "值班", "kind": "rest",
                                                "definition": '{"base_url": "ftp://x", "operations": {}}'},
                        page="/admin/bus", follow_redirects=True)
    flashed = re.search(r'class="flash flash-error"[^>]*>([^<]+)<', response.get_data(as_text=True)).group(1)
    assert flashed.startswith("请修改标出的内容后再提交。 ") and "base_url" in flashed and "operations" in flashed
