"""The REST API: authentication, the contract's shapes, and every error status."""
import io

from engine.models import Attachment
from tests.conftest import DEMO_PASSWORD
from tests.webapp.conftest import LIMITS
from tests.webapp.flows import DRAFT, complete, start, task_of, to_review, upload


def test_token_and_wrong_password(client):
    ok = client.post("/api/v1/auth/token", json={"username": "li.na", "password": "Demo2026x"})
    assert ok.status_code == 200
    body = ok.get_json()
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0 and body["access_token"]
    bad = client.post("/api/v1/auth/token", json={"username": "li.na", "password": "wrong12345"})
    assert bad.status_code == 401
    assert bad.get_json() == {"code": "bad_credentials", "status": 401, "message": "用户名或密码错误。", "errors": {}}


def test_token_request_is_validated(client):
    response = client.post("/api/v1/auth/token", json={"username": "li.na"})
    assert response.status_code == 422
    assert "password" in response.get_json()["errors"]


def test_every_endpoint_needs_a_token(client):
    for method, path in [("get", "/api/v1/tasks"), ("get", "/api/v1/process-instances"),
                         ("post", "/api/v1/process-instances"), ("get", "/api/v1/process-models"),
                         ("post", "/api/v1/messages"), ("get", "/api/v1/notifications"),
                         ("get", "/api/v1/connectors"), ("get", "/api/v1/nothing-here")]:
        response = getattr(client, method)(path)
        assert response.status_code == 401, path
        assert response.get_json()["code"] == "token_missing"
    garbage = client.get("/api/v1/tasks", headers={"Authorization": "Bearer not-a-token"})
    assert garbage.status_code == 401 and garbage.get_json()["code"] == "token_invalid"


def test_session_cookie_does_not_authenticate_the_api(web, client):
    web.login("li.na")
    assert client.get("/api/v1/tasks").status_code == 401


def test_openapi_document(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    for path in ("/api/v1/auth/token", "/api/v1/process-instances", "/api/v1/tasks/{task_id}/complete",
                 "/api/v1/messages", "/api/v1/process-models/{key}/versions"):
        assert path in doc["paths"], path


def test_models_and_versions(client, api):
    h = api("li.na")
    models = client.get("/api/v1/process-models", headers=h).get_json()
    assert [m["key"] for m in models] == ["alarm_closure", "document_dispatch", "document_receipt"]
    versions = client.get("/api/v1/process-models/document_dispatch/versions", headers=h).get_json()
    assert versions[0]["version"] == 1 and len(versions[0]["sha256"]) == 64
    assert client.get("/api/v1/process-models/nope/versions", headers=h).status_code == 404


def test_deploy_upload_requires_permission_and_is_idempotent(client, api, config):
    folder = config.processes_dir / "document_dispatch"
    forms = config.forms_dir / "document_dispatch"

    def files():
        paths = [folder / "document_dispatch.bpmn", *sorted(forms.glob("*.json"))]
        return [(io.BytesIO(p.read_bytes()), p.name) for p in paths]

    payload = {"key": "document_dispatch", "name": "发文", "category": "公文"}
    denied = client.post("/api/v1/process-models", headers=api("li.na"), data={**payload, "files": files()},
                         content_type="multipart/form-data")
    assert denied.status_code == 403
    first = client.post("/api/v1/process-models", headers=api("admin"), data={**payload, "files": files()},
                        content_type="multipart/form-data")
    assert first.status_code == 201 and first.get_json()["version"]["version"] == 2
    again = client.post("/api/v1/process-models", headers=api("admin"), data={**payload, "files": files()},
                        content_type="multipart/form-data")
    assert again.status_code == 200 and again.get_json()["created"] is False


def test_deploy_upload_rejects_malformed_bpmn(client, api):
    response = client.post("/api/v1/process-models", headers=api("admin"),
                           data={"key": "broken", "name": "x",
                                 "files": [(io.BytesIO(b"<bpmn:definitions"), "broken.bpmn")]},
                           content_type="multipart/form-data")
    assert response.status_code == 422
    body = response.get_json()
    assert body["code"] == "invalid_process" and "broken.bpmn" in body["message"] and "line 1" in body["message"]


def test_start_and_read_instance(client, api):
    h = api("zhang.wei")
    inst = start(client, h, business_key="FW-2026-001", title="测试发文", data={"note": "x"})
    assert inst["status"] == "running" and inst["process_key"] == "document_dispatch" and inst["version"] == 1
    assert inst["business_key"] == "FW-2026-001" and inst["title"] == "测试发文"
    draft = task_of(inst, "draft")
    assert draft["assignee"] == "zhang.wei" and draft["name"] == "拟稿"
    assert [e["kind"] for e in inst["history"]][:2] == ["started", "task_created"]
    read = client.get(f"/api/v1/process-instances/{inst['id']}", headers=h).get_json()
    assert read["id"] == inst["id"] and read["data"]["note"] == "x" and read["tasks"][0]["id"] == draft["id"]


def test_start_errors(client, api):
    h = api("zhang.wei")
    missing = client.post("/api/v1/process-instances", headers=h, json={"process_key": "nope"})
    assert missing.status_code == 404
    bad = client.post("/api/v1/process-instances", headers=h, json={"process_key": "document_dispatch",
                                                                    "data": {"_x": 1}})
    assert bad.status_code == 422
    enterprise = client.post("/api/v1/process-instances", headers=api("qiye.hg001"),
                             json={"process_key": "document_dispatch"})
    assert enterprise.status_code == 403


def test_list_instances_paging_filters_and_scope(client, api):
    for _ in range(3):
        start(client, api("chen.jie"))
    start(client, api("zhao.min"))
    nanning = client.get("/api/v1/process-instances?per_page=2", headers=api("chen.jie")).get_json()
    assert nanning["total"] == 3 and len(nanning["items"]) == 2 and nanning["page"] == 1
    assert {i["region_code"] for i in nanning["items"]} == {"450100"}
    liuzhou = client.get("/api/v1/process-instances", headers=api("zhao.min")).get_json()
    assert liuzhou["total"] == 1
    province = client.get("/api/v1/process-instances?status=running", headers=api("li.na")).get_json()
    assert province["total"] == 4
    other = nanning["items"][0]["id"]
    assert client.get(f"/api/v1/process-instances/{other}", headers=api("zhao.min")).status_code == 404


def test_task_lifecycle_and_errors(client, api):
    inst = to_review(client, api, countersign=["ZCFGC"])
    review = task_of(inst, "review")
    h = api("li.na")
    detail = client.get(f"/api/v1/tasks/{review['id']}", headers=h).get_json()
    assert detail["form_schema"]["title"] == "核稿" and detail["data"]["title"] == DRAFT["title"]
    assert detail["can_act"] is True
    invalid = client.post(f"/api/v1/tasks/{review['id']}/complete", headers=h,
                          json={"data": {"review_decision": "return"}})
    assert invalid.status_code == 422 and "opinion" in invalid.get_json()["errors"]
    assert invalid.get_json()["errors"]["opinion"] == ["此项为必填项。"]
    other = client.post(f"/api/v1/tasks/{review['id']}/complete", headers=api("wang.fang"),
                        json={"data": {"review_decision": "approve"}})
    assert other.status_code == 403
    outside = client.get(f"/api/v1/tasks/{review['id']}", headers=api("zhao.min"))
    assert outside.status_code == 404
    done = complete(client, h, review["id"], {"review_decision": "approve", "opinion": "同意"})
    assert task_of(done, "countersign")["assignee"] == "wang.fang"
    twice = client.post(f"/api/v1/tasks/{review['id']}/complete", headers=h,
                        json={"data": {"review_decision": "approve"}})
    assert twice.status_code == 409 and twice.get_json()["code"] == "task_closed"
    body = client.post(f"/api/v1/tasks/{review['id']}/complete", headers=h, json={"nodata": 1})
    assert body.status_code == 422


def test_a_completion_answers_with_the_open_tasks_the_database_holds(client, api):
    def held(answer: dict) -> list[dict]:  # the same instance read afresh: its open tasks come from a query
        read = client.get(f"/api/v1/process-instances/{answer['id']}", headers=api("admin")).get_json()
        return sorted(read["tasks"], key=lambda t: t["id"])

    inst = to_review(client, api, countersign=["ZCFGC", "GHCWC"])  # the draft was the only open task
    assert [t["bpmn_id"] for t in inst["tasks"]] == ["review"] and inst["tasks"] == held(inst)
    inst = complete(client, api("li.na"), task_of(inst, "review")["id"], {"review_decision": "approve"})
    assert [t["bpmn_id"] for t in inst["tasks"]] == ["countersign"] * 2
    assert sorted(inst["tasks"], key=lambda t: t["id"]) == held(inst)
    first = task_of(inst, "countersign")  # its sibling stays open: the answer asks the database
    inst = complete(client, api(first["assignee"]), first["id"], {"countersign_decision": "agree"})
    assert [t["bpmn_id"] for t in inst["tasks"]] == ["countersign"] and inst["tasks"] == held(inst)


def test_inbox_scopes_and_claim(client, api):
    inst = to_review(client, api)
    h_li = api("li.na")
    inst = complete(client, h_li, task_of(inst, "review")["id"], {"review_decision": "approve"})
    inst = complete(client, api("liu.yang"), task_of(inst, "sign_off")["id"], {"sign_decision": "approve"})
    assert client.get("/api/v1/tasks?scope=done", headers=h_li).get_json()["total"] == 1
    assert client.get("/api/v1/tasks?scope=unassigned", headers=h_li).status_code == 403
    assert client.get("/api/v1/tasks?scope=bogus", headers=h_li).status_code == 422


def test_messages_endpoint_errors(client, api):
    denied = client.post("/api/v1/messages", headers=api("zhang.wei"), json={"name": "x"})
    assert denied.status_code == 403
    nobody = client.post("/api/v1/messages", headers=api("admin"), json={"name": "nobody_waits",
                                                                         "correlations": {"k": 1}})
    assert nobody.status_code == 404 and nobody.get_json()["code"] == "no_receiver"
    invalid = client.post("/api/v1/messages", headers=api("admin"), json={"correlations": {}})
    assert invalid.status_code == 422


def test_attachments(client, api):
    h = api("zhang.wei")
    attachment_id = upload(client, h)
    own = client.get(f"/api/v1/attachments/{attachment_id}", headers=h)
    assert own.status_code == 200 and own.data.startswith(b"%PDF")
    own.close()
    assert client.get(f"/api/v1/attachments/{attachment_id}", headers=api("li.na")).status_code == 404
    wrong_type = client.post("/api/v1/attachments", headers=h, content_type="multipart/form-data",
                             data={"file": (io.BytesIO(b"MZ\x90\x00binary"), "tool.exe", "application/x-msdownload")})
    assert wrong_type.status_code == 422
    fake_pdf = client.post("/api/v1/attachments", headers=h, content_type="multipart/form-data",
                           data={"file": (io.BytesIO(b"not a pdf"), "x.pdf", "application/pdf")})
    assert fake_pdf.status_code == 422
    empty = client.post("/api/v1/attachments", headers=h, content_type="multipart/form-data", data={})
    assert empty.status_code == 422


def test_oversized_upload_is_refused(limited_client, db):
    token = limited_client.post("/api/v1/auth/token", json={"username": "zhang.wei", "password": DEMO_PASSWORD})
    headers = {"Authorization": f"Bearer {token.get_json()['access_token']}"}

    def send(size):
        pdf = io.BytesIO(b"%PDF-1.4\n" + b"0" * (size - 9))
        return limited_client.post("/api/v1/attachments", headers=headers, content_type="multipart/form-data",
                                   data={"file": (pdf, "big.pdf", "application/pdf")})

    one_too_many = send(LIMITS["max_upload_bytes"] + 1)  # the file: a field error that speaks of megabytes
    assert one_too_many.status_code == 422
    assert one_too_many.get_json()["errors"] == {"file": ["文件超过 0.6 MB。"]}
    over_the_cap = send(LIMITS["max_request_bytes"] + 1)  # the request: refused before it is read
    assert over_the_cap.status_code == 413 and over_the_cap.get_json()["status"] == 413
    ok = send(LIMITS["max_upload_bytes"])
    assert ok.status_code == 201, ok.get_json()
    with db.session() as s:
        assert s.query(Attachment).count() == 1  # nothing of the refused ones was kept


def test_notifications_and_connectors(client, api):
    h = api("li.na")
    listing = client.get("/api/v1/notifications", headers=h).get_json()
    assert listing == {"items": [], "page": 1, "per_page": 20, "total": 0}
    assert client.post("/api/v1/notifications/read", headers=h, json={}).get_json() == {"updated": 0}
    connectors = client.get("/api/v1/connectors", headers=h).get_json()
    names = {c["name"]: c for c in connectors}
    assert "Allocate" in names["docnumber"]["operations"] and "RemindAssignees" in names["notify"]["operations"]


def test_password_change_revokes_tokens(client, api, db, app):
    from sqlalchemy import select

    from engine.auth import set_password
    from engine.models import User

    app.extensions["emflow"].revocations.interval = 0  # poll on every request in this test
    headers = api("li.na")
    assert client.get("/api/v1/tasks", headers=headers).status_code == 200
    with db.transaction() as s:
        set_password(s.scalar(select(User).where(User.username == "li.na")), "NewPassw0rd")
    response = client.get("/api/v1/tasks", headers=headers)
    assert response.status_code == 401 and response.get_json()["code"] == "token_revoked"


def test_a_deactivated_user_loses_api_access(client, api, db, app):
    from sqlalchemy import select

    from engine.auth import revoke_tokens
    from engine.models import User

    app.extensions["emflow"].revocations.interval = 0
    headers = api("wang.fang")
    with db.transaction() as s:
        user = s.scalar(select(User).where(User.username == "wang.fang"))
        user.is_active = False
        revoke_tokens(user)
    assert client.get("/api/v1/tasks", headers=headers).status_code == 401
