"""The web pages through the test client: forms, errors that lose nothing, scope, admin."""
import io
import re

from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from engine.models import Attachment, HumanTask
from tests.webapp.conftest import LIMITS, Browser, csrf_token
from tests.webapp.flows import complete, start, task_of, to_review

TASK_LINK = re.compile(r'href="/tasks/([0-9a-f-]{36})"')


def _start_dispatch(web, client):
    response = web.post("/start/document_dispatch", page="/start")
    assert response.status_code == 302
    return response.headers["Location"]


def _submit(client, path, fields, files=None):
    data = {"csrf_token": csrf_token(client, path), **fields}
    for name, (content, filename, ctype) in (files or {}).items():
        data[name] = (io.BytesIO(content), filename, ctype)
    return client.post(path, data=data, content_type="multipart/form-data")


DRAFT_FIELDS = {"f.title": "关于开展安全生产大检查的通知", "f.doc_type": "通知", "f.secrecy": "公开",
                "f.urgency": "平件", "f.main_recipients": "各市应急管理局"}
BODY = {"upload.body_file": (b"%PDF-1.4 body", "正文.pdf", "application/pdf")}


def test_draft_form_renders_every_widget_in_chinese(web, client):
    web.login("zhang.wei")
    page = client.get(_start_dispatch(web, client)).get_data(as_text=True)
    for text in ("标题", "文种", "密级", "紧急程度", "主送", "正文", "附件", "会签单位", "政策法规处", "提交",
                 "办理记录与意见", "流程图"):
        assert text in page, text
    assert 'name="f.title"' in page and 'type="file" name="upload.body_file"' in page
    assert 'type="checkbox" name="f.countersign_units" value="ZCFGC"' in page


def test_invalid_submission_shows_field_errors_and_keeps_the_upload(web, client, db):
    web.login("zhang.wei")
    path = _start_dispatch(web, client)
    response = _submit(client, path, {"f.title": "x", "f.secrecy": "秘密"}, BODY)
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "至少输入 2 个字符" in page and "此项为必填项" in page  # title too short; secrecy period missing
    with db.session() as s:
        attachment = s.scalar(select(Attachment))
    assert attachment is not None and f'value="{attachment.id}" checked' in page
    assert 'value="秘密" selected' in page  # what was entered is still there
    fixed = _submit(client, path, {**DRAFT_FIELDS, "f.body_file": attachment.id})
    assert fixed.status_code == 302


def test_whole_dispatch_through_the_pages(web, client, db, config, registry):
    from engine import jobs

    web.login("zhang.wei")
    path = _start_dispatch(web, client)
    assert _submit(client, path, {**DRAFT_FIELDS, "f.countersign_units": "ZCFGC"}, BODY).status_code == 302

    def act(username, fields):
        web.login(username)
        inbox = client.get("/inbox").get_data(as_text=True)
        task_path = "/tasks/" + TASK_LINK.search(inbox).group(1)
        assert _submit(client, task_path, fields).status_code == 302
        return task_path

    act("li.na", {"f.review_decision": "approve", "opinion": "同意，请会签"})
    act("wang.fang", {"f.countersign_decision": "agree", "opinion": "无意见"})
    act("liu.yang", {"f.sign_decision": "approve", "opinion": "同意印发"})
    for job_id in jobs.due_jobs(db):
        assert jobs.execute(db, config, registry, job_id) == "done"
    web.login("zhang.wei")
    group = client.get("/inbox?tab=group").get_data(as_text=True)
    task_path = "/tasks/" + TASK_LINK.search(group).group(1)
    assert "认领" in client.get(task_path).get_data(as_text=True)
    assert web.post(task_path + "/claim", page=task_path).status_code == 302
    page = client.get(task_path).get_data(as_text=True)
    assert "桂应急发〔" in page and "分发记录" in page
    done = _submit(client, task_path, {"f.seal_applied": "true", "f.print_copies": "30",
                                       "f.distribution.0.recipient": "南宁市应急管理局",
                                       "f.distribution.0.copies": "2", "f.distribution.0.method": "机要交换",
                                       "f.distribution.1.recipient": "", "f.distributed_on": "2026-12-01"})
    assert done.status_code == 302
    with db.session() as s:
        instance_id = s.scalar(select(HumanTask.instance_id))
    page = client.get(f"/instances/{instance_id}").get_data(as_text=True)
    for text in ("已完成", "同意，请会签", "无意见", "同意印发", "李娜", "王芳", "刘洋", "流程办结"):
        assert text in page, text


def test_table_errors_are_reported_and_rows_kept(web, client, api, db, config, registry):
    from engine import jobs

    inst = to_review(client, api)
    inst = complete(client, api("li.na"), task_of(inst, "review")["id"], {"review_decision": "approve"})
    complete(client, api("liu.yang"), task_of(inst, "sign_off")["id"], {"sign_decision": "approve"})
    for job_id in jobs.due_jobs(db):
        jobs.execute(db, config, registry, job_id)
    with db.session() as s:
        task_id = s.scalar(select(HumanTask.id).where(HumanTask.bpmn_id == "distribute"))
    web.login("zhang.wei")
    response = _submit(client, f"/tasks/{task_id}", {
        "f.seal_applied": "true", "f.print_copies": "30", "f.distributed_on": "2026-12-01",
        "f.distribution.0.recipient": "南宁市应急管理局", "f.distribution.0.copies": "两份",
        "f.distribution.0.method": "机要交换"})
    page = response.get_data(as_text=True)
    assert response.status_code == 422 and "请输入有效的值" in page
    assert 'value="南宁市应急管理局"' in page and 'value="两份"' in page


def test_complete_twice_is_a_clear_conflict(web, client, api):
    inst = to_review(client, api)
    review = task_of(inst, "review")["id"]
    web.login("li.na")
    path = f"/tasks/{review}"
    token = csrf_token(client, path)
    first = client.post(path, data={"csrf_token": token, "f.review_decision": "approve"})
    second = client.post(path, data={"csrf_token": token, "f.review_decision": "approve"})
    assert first.status_code == 302 and second.status_code == 302
    assert "该任务已办结或已取消" in client.get(second.headers["Location"]).get_data(as_text=True)


def test_task_submit_needs_csrf(web, client, api):
    inst = to_review(client, api)
    web.login("li.na")
    response = client.post(f"/tasks/{task_of(inst, 'review')['id']}", data={"f.review_decision": "approve"})
    assert response.status_code == 400


def test_other_regions_cannot_open_an_instance_or_its_files(web, client, api, db):
    inst = start(client, api("chen.jie"))
    web.login("zhao.min")
    assert client.get(f"/instances/{inst['id']}").status_code == 404
    assert client.get(f"/tasks/{task_of(inst, 'draft')['id']}").status_code == 404
    web.login("li.na")
    assert client.get(f"/instances/{inst['id']}").status_code == 200


def test_admin_pages_and_actions(web, client, api):
    web.login("li.na")
    assert client.get("/admin").status_code == 403
    inst = start(client, api("zhang.wei"))
    web.login("admin")
    page = client.get("/admin").get_data(as_text=True)
    assert "流程版本" in page and "document_dispatch" in page
    path = f"/instances/{inst['id']}"
    assert web.post(f"{path}/suspend", {"reason": "核查"}, page=path).status_code == 302
    assert "已挂起" in client.get(path).get_data(as_text=True)
    assert web.post(f"{path}/resume", page=path).status_code == 302
    assert web.post(f"{path}/terminate", {"reason": "重复发起"}, page=path).status_code == 302
    page = client.get(path).get_data(as_text=True)
    assert "已终止" in page and "重复发起" in page


def test_admin_deploy_page_reports_errors(web, client):
    web.login("admin")
    token = csrf_token(client, "/admin")
    response = client.post("/admin/deploy", content_type="multipart/form-data", follow_redirects=True, data={
        "csrf_token": token, "key": "broken", "name": "坏流程",
        "files": (io.BytesIO(b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><x/>"),
                  "broken.bpmn")})
    assert "部署失败" in response.get_data(as_text=True) and "DOCTYPE" in response.get_data(as_text=True)


def test_notifications_page(web, client):
    web.login("liu.yang")
    page = client.get("/notifications").get_data(as_text=True)
    assert "暂无消息" in page
    assert web.post("/notifications/read", page="/notifications").status_code == 302


def test_user_lookup(web, client):
    web.login("zhang.wei")
    found = client.get("/lookup/users?q=li").get_json()
    assert {"username": "li.na", "name": "李娜", "unit": "厅办公室"} in found
    assert all(u["username"] != "qiye.hg001" for u in client.get("/lookup/users?q=qiye").get_json())


def test_a_form_takes_several_files_each_under_the_limit_and_says_which_one_is_too_large(limited_client, db):
    web = Browser(limited_client)
    web.login("zhang.wei")
    path = web.post("/start/document_dispatch", page="/start").headers["Location"]
    pdf = b"%PDF-1.4\n" + b"0" * (500 * 1024)  # 500 KB each: under the 600 KB limit of one file
    files = [("upload.body_file", (io.BytesIO(pdf), "正文.pdf", "application/pdf"))] + [
        ("upload.attachments", (io.BytesIO(pdf), f"附件{i}.pdf", "application/pdf")) for i in range(3)]
    # 2 MB in one request: more than one file's limit plus the 1 MB the request cap used to allow over it.
    form = MultiDict([("csrf_token", csrf_token(limited_client, path)), *DRAFT_FIELDS.items(), *files])
    sent = limited_client.post(path, data=form, content_type="multipart/form-data")
    assert sent.status_code == 302
    with db.session() as s:
        assert s.query(Attachment).count() == 4

    path = web.post("/start/document_dispatch", page="/start").headers["Location"]
    big = b"%PDF-1.4\n" + b"0" * LIMITS["max_upload_bytes"]
    refused = limited_client.post(path, data={"csrf_token": csrf_token(limited_client, path), **DRAFT_FIELDS,
                                              "upload.body_file": (io.BytesIO(big), "扫描件.pdf", "application/pdf")},
                                  content_type="multipart/form-data")
    page = refused.get_data(as_text=True)
    assert refused.status_code == 422
    body_field = page[page.index('id="field-body_file"'):page.index('id="field-attachments"')]
    assert '<div class="error" role="alert">文件超过 0.6 MB。</div>' in body_field  # at the field, in megabytes
    assert DRAFT_FIELDS["f.title"] in page  # what was typed is kept
    huge = b"%PDF-1.4\n" + b"0" * LIMITS["max_request_bytes"]
    too_much = limited_client.post(path, data={"csrf_token": csrf_token(limited_client, path), **DRAFT_FIELDS,
                                               "upload.body_file": (io.BytesIO(huge), "整卷.pdf", "application/pdf")},
                                   content_type="multipart/form-data")
    assert too_much.status_code == 413 and "上传" in too_much.get_data(as_text=True)
    with db.session() as s:
        assert s.query(Attachment).count() == 4  # nothing of the refused files was kept


def test_assigning_an_orphan_task_to_nobody_says_who_was_not_found(web, client, db, config):
    from tests.engine import helpers as h

    body = ('<bpmn:startEvent id="start"/>' + h.user_task("orphan", "无人认领", 'user("nobody")')
            + '<bpmn:endEvent id="end"/>' + h.flows(("start", "orphan"), ("orphan", "end")))
    h.deploy_bundle(db, "orphan_process", h.bpmn("orphan_process", body))
    task_id = h.only_task(db, h.start(db, config, "zhang.wei", "orphan_process")).id
    web.login("admin")
    response = web.post(f"/admin/tasks/{task_id}/assign", {"username": "no.such.person", "reason": "补派"},
                        page="/admin", follow_redirects=True)
    # The admin page marks no fields, so the message names what was wrong instead of "correct the marked fields".
    assert "用户不存在：no.such.person。" in response.get_data(as_text=True)
    with db.session() as s:
        assert s.get(HumanTask, task_id).assignee_id is None
