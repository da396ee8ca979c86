"""Approval operations over the REST API and on the task and instance pages, on the 收文 process."""
from __future__ import annotations

import base64
import re
import struct
import zlib
from datetime import timedelta

from sqlalchemy import select

from engine import clock, jobs
from engine.models import HumanTask, InstanceEvent, TaskCopy
from tests.engine.helpers import local_now
from tests.webapp.conftest import csrf_token
from tests.webapp.flows import upload

SIGN_IN = {"title": "关于做好寒潮防御工作的通知", "source_unit": "应急管理部", "source_number": "应急〔2026〕12号",
           "copies": 2, "secrecy": "公开", "urgency": "加急", "received_on": "2026-11-29", "handling_type": "办理"}


def png_data_url(width: int = 240, height: int = 80) -> str:
    """A valid PNG (a black diagonal stroke on white) as a data URL, like the signature pad sends."""
    rows = b"".join(b"\x00" + bytes((0 if abs(x // 3 - y) < 2 else 255) for x in range(width)) for y in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    return "data:image/png;base64," + base64.b64encode(png).decode()


def post(client, headers, path, body=None, status=200):
    response = client.post(f"/api/v1{path}", headers=headers, json=body or {})
    assert response.status_code == status, response.get_json()
    return response.get_json()


def open_task(client, headers, instance_id, bpmn_id):
    inst = client.get(f"/api/v1/process-instances/{instance_id}", headers=headers).get_json()
    return next(t for t in inst["tasks"] if t["bpmn_id"] == bpmn_id and t["state"] == "open")


def receipt_to(client, api, db, config, registry, step: str) -> int:
    """Drive a 收文 through the API to ``step`` (screen, propose, instruct or handle); returns its id."""
    clerk = api("zhang.wei")
    inst = post(client, clerk, "/process-instances", {"process_key": "document_receipt"}, 201)
    sign_in = next(t for t in inst["tasks"] if t["bpmn_id"] == "sign_in")
    post(client, clerk, f"/tasks/{sign_in['id']}/claim")
    deadline = (local_now(config).date() + timedelta(days=5)).isoformat()  # 承办 is not overdue until the clock moves
    post(client, clerk, f"/tasks/{sign_in['id']}/approve",
         {"data": {**SIGN_IN, "deadline": deadline, "file": upload(client, clerk)}})
    for job_id in jobs.due_jobs(db):
        assert jobs.execute(db, config, registry, job_id) == "done"
    order = [("screen", "zhang.wei", {}), ("propose", "li.na", {"lead_unit": "ZCFGC"}),
             ("instruct", "liu.yang", {}), ("handle", None, None)]
    for bpmn_id, username, data in order:
        if bpmn_id == step:
            return inst["id"]
        task = open_task(client, clerk, inst["id"], bpmn_id)
        post(client, api(username), f"/tasks/{task['id']}/approve", {"data": data, "opinion": "同意"})
    raise AssertionError(step)


# -- REST API ----------------------------------------------------------------------------------------------
def test_task_detail_offers_the_configured_operations(client, api, db, config, registry):
    instance_id = receipt_to(client, api, db, config, registry, "instruct")
    task = open_task(client, api("liu.yang"), instance_id, "instruct")
    detail = client.get(f"/api/v1/tasks/{task['id']}", headers=api("liu.yang")).get_json()
    assert [b["action"] for b in detail["buttons"]] == ["approve", "return", "transfer", "delegate", "addSigner", "cc"]
    assert detail["buttons"][0]["label"] == "批示" and detail["buttons"][1]["label"] == "退回"  # own, default
    assert detail["signature"] == "optional"
    assert detail["require_opinion"] == ["approve", "return"] and detail["proxy_for"] == []
    clerk_view = client.get(f"/api/v1/tasks/{task['id']}", headers=api("zhang.wei")).get_json()
    assert clerk_view["proxy_for"] == ["liu.yang"]  # the clerk may record the leader's paper opinion
    targets = client.get(f"/api/v1/tasks/{task['id']}/return-targets", headers=api("liu.yang")).get_json()
    assert [t["bpmn_id"] for t in targets] == ["propose", "screen", "sign_in"]
    assert targets[0]["completed_by"] == "李娜"


def test_approve_needs_an_opinion_and_keeps_the_signature(client, api, db, config, registry):
    instance_id = receipt_to(client, api, db, config, registry, "instruct")
    task = open_task(client, api("liu.yang"), instance_id, "instruct")
    h = api("liu.yang")
    missing = post(client, h, f"/tasks/{task['id']}/approve", {"data": {}}, 422)
    assert missing["errors"]["opinion"] == ["此项为必填项。"]
    bad = post(client, h, f"/tasks/{task['id']}/approve", {"data": {}, "opinion": "同意",
                                                           "signature": "data:image/gif;base64,R0lG"}, 422)
    assert "signature" in bad["errors"]
    done = post(client, h, f"/tasks/{task['id']}/approve", {"data": {}, "opinion": "同意，请政策法规处办理",
                                                            "signature": png_data_url()})
    assert [t["bpmn_id"] for t in done["tasks"]] == ["handle"]
    event = client.get(f"/api/v1/process-instances/{instance_id}", headers=h).get_json()["history"]
    completed = [e for e in event if e["kind"] == "task_completed" and e["task_name"] == "批办"][0]
    assert completed["opinion"] == "同意，请政策法规处办理" and completed["actor"] == "刘洋"
    assert completed["detail"]["decision"] == "approve" and completed["detail"]["signature"]


def test_proxy_entry_keeps_both_names(client, api, db, config, registry):
    instance_id = receipt_to(client, api, db, config, registry, "instruct")
    task = open_task(client, api("liu.yang"), instance_id, "instruct")
    refused = post(client, api("li.na"), f"/tasks/{task['id']}/approve",
                   {"data": {}, "opinion": "同意", "on_behalf_of": "liu.yang"}, 403)
    assert refused["code"] == "not_a_proxy"
    post(client, api("zhang.wei"), f"/tasks/{task['id']}/approve",
         {"data": {}, "opinion": "同意（纸质批示）", "on_behalf_of": "liu.yang"})
    with db.session() as s:
        event = s.scalar(select(InstanceEvent).where(InstanceEvent.instance_id == instance_id,
                                                     InstanceEvent.kind == "task_completed",
                                                     InstanceEvent.bpmn_id == "instruct"))
    assert event.actor_name == "张伟" and event.detail["on_behalf_of"]["name"] == "刘洋"


def test_return_straight_back_and_refusals(client, api, db, config, registry):
    instance_id = receipt_to(client, api, db, config, registry, "instruct")
    h = api("liu.yang")
    task = open_task(client, h, instance_id, "instruct")
    no_reason = post(client, h, f"/tasks/{task['id']}/return", {"target": "propose"}, 422)
    assert "opinion" in no_reason["errors"]
    wrong = post(client, h, f"/tasks/{task['id']}/return", {"target": "handle", "opinion": "x"}, 409)
    assert wrong["code"] == "not_a_return_target"
    back = post(client, h, f"/tasks/{task['id']}/return", {"target": "propose", "opinion": "请补充协办单位",
                                                           "straight_back": True})
    propose = next(t for t in back["tasks"] if t["bpmn_id"] == "propose")
    assert propose["assignee"] == "li.na" and propose["returned_from"] == "instruct" and propose["straight_back"]
    again = post(client, api("li.na"), f"/tasks/{propose['id']}/approve",
                 {"data": {"lead_unit": "ZCFGC", "assist_units": ["GHCWC"]}, "opinion": "已补充"})
    assert [t["bpmn_id"] for t in again["tasks"]] == ["instruct"]  # straight back to the leader
    stale = post(client, h, f"/tasks/{task['id']}/approve", {"data": {}, "opinion": "同意"}, 409)
    assert stale["code"] == "task_closed"


def test_transfer_delegate_and_signers(client, api, db, config, registry):
    instance_id = receipt_to(client, api, db, config, registry, "handle")
    handle = open_task(client, api("wang.fang"), instance_id, "handle")
    h = api("wang.fang")
    assert post(client, h, f"/tasks/{handle['id']}/delegate", {"to": "nobody.here"}, 422)["errors"]["to"]
    assert post(client, h, f"/tasks/{handle['id']}/transfer", {"to": "wang.fang"}, 409)["code"] == "same_user"
    delegated = post(client, h, f"/tasks/{handle['id']}/delegate", {"to": "zhou.qiang", "opinion": "请周处协办"})
    assert delegated["assignee"] == "zhou.qiang" and delegated["delegated_by"] == "wang.fang"
    assert post(client, h, f"/tasks/{handle['id']}/approve", {"data": {"result": "x"}}, 403)["code"] == "not_your_task"
    back = post(client, api("zhou.qiang"), f"/tasks/{handle['id']}/complete",
                {"data": {"result": "已拟定方案"}, "opinion": "方案已拟"})
    assert open_task(client, h, back["id"], "handle")["assignee"] == "wang.fang"
    signers = post(client, h, f"/tasks/{handle['id']}/signers", {"users": ["zhou.qiang", "chen.jie"],
                                                                "position": "before"}, 201)
    assert {s["assignee"] for s in signers} == {"zhou.qiang", "chen.jie"} and signers[0]["kind"] == "signer"
    blocked = post(client, h, f"/tasks/{handle['id']}/approve", {"data": {"result": "已办结"}}, 409)
    assert blocked["code"] == "waiting_for_signers"
    chen = next(s for s in signers if s["assignee"] == "chen.jie")
    post(client, h, f"/tasks/{chen['id']}/remove-signer", {"opinion": "无需市局会签"})
    zhou = next(s for s in signers if s["assignee"] == "zhou.qiang")
    post(client, api("zhou.qiang"), f"/tasks/{zhou['id']}/approve", {"opinion": "同意"})
    assert post(client, h, f"/tasks/{zhou['id']}/remove-signer", {}, 409)["code"] == "signer_acted"
    detail = client.get(f"/api/v1/tasks/{handle['id']}", headers=h).get_json()
    assert [s["state"] for s in detail["signers"]] == ["completed", "cancelled"] and not detail["blocked"]
    moved = post(client, h, f"/tasks/{handle['id']}/transfer", {"to": "zhou.qiang", "opinion": "转周处办理"})
    assert moved["assignee"] == "zhou.qiang"
    done = post(client, api("zhou.qiang"), f"/tasks/{handle['id']}/approve", {"data": {"result": "已办结"}})
    assert [t["bpmn_id"] for t in done["tasks"]] == ["conclude"]


def test_withdraw_while_the_next_step_is_untouched(client, api, db, config, registry):
    instance_id = receipt_to(client, api, db, config, registry, "propose")
    h = api("li.na")
    propose = open_task(client, h, instance_id, "propose")
    post(client, h, f"/tasks/{propose['id']}/approve", {"data": {"lead_unit": "ZCFGC"}, "opinion": "拟请刘厅长批示"})
    assert post(client, api("zhang.wei"), f"/tasks/{propose['id']}/withdraw", {}, 403)["code"] == "not_completer"
    back = post(client, h, f"/tasks/{propose['id']}/withdraw", {"opinion": "补充协办单位"})
    assert [(t["bpmn_id"], t["assignee"]) for t in back["tasks"]] == [("propose", "li.na")]
    again = open_task(client, h, instance_id, "propose")
    post(client, h, f"/tasks/{again['id']}/approve", {"data": {"lead_unit": "ZCFGC"}, "opinion": "拟请刘厅长批示"})
    instruct = open_task(client, h, instance_id, "instruct")
    post(client, api("liu.yang"), f"/tasks/{instruct['id']}/return", {"target": "propose", "opinion": "再议"})
    late = post(client, h, f"/tasks/{again['id']}/withdraw", {}, 409)
    assert late["code"] in ("next_step_acted", "task_closed")


def test_copy_to_read_receipts_and_cc_scope(client, api, db, config, registry):
    instance_id = receipt_to(client, api, db, config, registry, "handle")
    handle = open_task(client, api("wang.fang"), instance_id, "handle")
    h = api("wang.fang")
    assert post(client, h, f"/tasks/{handle['id']}/cc", {}, 422)["errors"]["users"]
    assert post(client, h, f"/tasks/{handle['id']}/cc", {"units": ["NOPE"]}, 422)["errors"]["units"]
    copied = post(client, h, f"/tasks/{handle['id']}/cc", {"users": ["chen.jie"], "units": ["GHCWC"],
                                                          "note": "请阅知"}, 201)
    assert copied == {"copied": 2}  # chen.jie, and zhou.qiang as GHCWC's only member
    inbox = client.get("/api/v1/tasks?scope=cc", headers=api("chen.jie")).get_json()
    assert inbox["total"] == 1 and inbox["items"][0]["instance_title"] == SIGN_IN["title"]
    assert inbox["items"][0]["sender"] == "王芳" and inbox["items"][0]["read_at"] is None
    # chen.jie works in Nanning: the copy is what lets him read a provincial document
    assert client.get(f"/api/v1/process-instances/{instance_id}", headers=api("chen.jie")).status_code == 200
    assert post(client, api("chen.jie"), f"/process-instances/{instance_id}/read") == {"updated": 1}
    receipts = client.get(f"/api/v1/process-instances/{instance_id}/copies", headers=h).get_json()
    by_name = {r["name"]: r for r in receipts}
    assert by_name["陈杰"]["read_at"] and by_name["周强"]["read_at"] is None
    notes = client.get("/api/v1/notifications?unread=true", headers=api("chen.jie")).get_json()
    assert any(n["category"] == "cc" and n["instance_id"] == instance_id for n in notes["items"])
    assert client.get(f"/api/v1/process-instances/{instance_id}", headers=api("zhao.min")).status_code == 404


def test_urge_is_rate_limited_and_cancel_is_for_the_initiator(client, api, db, config, registry):
    instance_id = receipt_to(client, api, db, config, registry, "handle")
    assert post(client, api("wang.fang"), f"/process-instances/{instance_id}/urge", {}, 403)["code"] == "not_urger"
    assert post(client, api("zhang.wei"), f"/process-instances/{instance_id}/urge",
                {"opinion": "请于周五前办结"}) == {"notified": 1}
    again = post(client, api("zhang.wei"), f"/process-instances/{instance_id}/urge", {}, 409)
    assert again["code"] == "urged_recently"
    assert post(client, api("li.na"), f"/process-instances/{instance_id}/urge", {}) == {"notified": 1}
    clock.advance(timedelta(minutes=31))
    assert post(client, api("zhang.wei"), f"/process-instances/{instance_id}/urge", {}) == {"notified": 1}
    notes = client.get("/api/v1/notifications", headers=api("wang.fang")).get_json()["items"]
    assert [n["category"] for n in notes].count("urge") == 3 and notes[0]["title"].startswith("催办")
    assert post(client, api("li.na"), f"/process-instances/{instance_id}/cancel", {}, 403)["code"] == "not_initiator"
    cancelled = post(client, api("zhang.wei"), f"/process-instances/{instance_id}/cancel", {"opinion": "来文已撤回"})
    assert cancelled["status"] == "terminated" and cancelled["tasks"] == []
    assert cancelled["history"][-1]["kind"] == "cancelled" and cancelled["history"][-1]["opinion"] == "来文已撤回"
    assert post(client, api("zhang.wei"), f"/process-instances/{instance_id}/urge", {}, 409)


def test_dispatch_cannot_be_cancelled_by_its_initiator(client, api):
    from tests.webapp.flows import to_review

    inst = to_review(client, api)
    refused = post(client, api("zhang.wei"), f"/process-instances/{inst['id']}/cancel", {}, 409)
    assert refused["code"] == "operation_not_allowed"


def test_overdue_list_for_supervisors(client, api, db, config, registry):
    instance_id = receipt_to(client, api, db, config, registry, "handle")
    assert client.get("/api/v1/tasks?scope=overdue", headers=api("chen.jie")).status_code == 403
    assert client.get("/api/v1/tasks?scope=overdue", headers=api("li.na")).get_json()["total"] == 0
    clock.advance(timedelta(days=10))
    overdue = client.get("/api/v1/tasks?scope=overdue", headers=api("li.na")).get_json()
    assert [(t["instance_id"], t["bpmn_id"]) for t in overdue["items"]] == [(instance_id, "handle")]


def test_common_opinions(client, api):
    h = api("liu.yang")
    shared = client.get("/api/v1/opinions", headers=h).get_json()
    assert "同意" in [p["text"] for p in shared] and not any(p["own"] for p in shared)
    mine = post(client, h, "/opinions", {"text": "请政策法规处阅处"}, 201)
    assert mine["own"] is True
    assert client.get("/api/v1/opinions", headers=h).get_json()[-1]["text"] == "请政策法规处阅处"
    assert post(client, h, "/opinions", {"text": ""}, 422)
    assert client.delete(f"/api/v1/opinions/{mine['id']}", headers=api("li.na")).status_code == 404
    assert client.delete(f"/api/v1/opinions/{mine['id']}", headers=h).status_code == 204
    assert client.get("/api/v1/opinions", headers=h).get_json() == shared


def test_operations_need_a_token(client):
    assert client.post("/api/v1/tasks/x/approve", json={}).status_code == 401
    assert client.get("/api/v1/opinions").status_code == 401


# -- pages -------------------------------------------------------------------------------------------------
def _task_id(db, instance_id, bpmn_id) -> str:
    with db.session() as s:
        return s.scalar(select(HumanTask.id).where(HumanTask.instance_id == instance_id, HumanTask.bpmn_id == bpmn_id,
                                                   HumanTask.state == "open"))


def test_task_page_shows_buttons_phrases_signature_and_proxy(web, client, api, db, config, registry):
    instance_id = receipt_to(client, api, db, config, registry, "instruct")
    path = f"/tasks/{_task_id(db, instance_id, 'instruct')}"
    web.login("liu.yang")
    page = client.get(path).get_data(as_text=True)
    for text in ('name="action" value="approve"', ">批示</button>", "data-phrase=\"已阅\"", "手写签名",
                 "<summary>退回</summary>", "<summary>加签</summary>", "<summary>抄送</summary>", "原路返回"):
        assert text in page, text
    assert "on_behalf_of" not in page
    web.login("zhang.wei")
    assert "代录 刘洋 的纸质意见" in client.get(path).get_data(as_text=True)


def test_page_approve_without_opinion_keeps_what_was_entered(web, client, api, db, config, registry):
    instance_id = receipt_to(client, api, db, config, registry, "instruct")
    path = f"/tasks/{_task_id(db, instance_id, 'instruct')}"
    web.login("liu.yang")
    signature = png_data_url()
    response = client.post(path, data={"csrf_token": csrf_token(client, path), "action": "approve", "opinion": " ",
                                       "signature": signature}, content_type="multipart/form-data")
    page = response.get_data(as_text=True)
    assert response.status_code == 422 and "此项为必填项" in page and signature in page
    done = client.post(path, data={"csrf_token": csrf_token(client, path), "action": "approve",
                                   "opinion": "同意，请政策法规处办理", "signature": signature},
                       content_type="multipart/form-data")
    assert done.status_code == 302
    page = client.get(f"/instances/{instance_id}").get_data(as_text=True)
    assert "同意，请政策法规处办理" in page and 'class="signature-img"' in page
    image = page.split('class="signature-img" src="')[1].split('"')[0]
    assert client.get(image).data.startswith(b"\x89PNG")


def test_page_operations_return_signers_cc_withdraw(web, client, api, db, config, registry):
    instance_id = receipt_to(client, api, db, config, registry, "instruct")
    instruct = _task_id(db, instance_id, "instruct")
    web.login("liu.yang")
    path = f"/tasks/{instruct}"
    refused = web.post(f"{path}/return", {"target": "propose"}, page=path, follow_redirects=True)
    assert "此项为必填项" in refused.get_data(as_text=True)
    web.post(f"{path}/return", {"target": "propose", "opinion": "请补充", "straight_back": "1"}, page=path)
    web.login("li.na")
    propose = _task_id(db, instance_id, "propose")
    page = client.get(f"/tasks/{propose}").get_data(as_text=True)
    assert "此环节已被退回给您" in page and "直接返回退回此件的环节" in page
    post(client, api("li.na"), f"/tasks/{propose}/approve", {"data": {"lead_unit": "ZCFGC"}, "opinion": "已补充"})
    web.login("liu.yang")
    instruct = _task_id(db, instance_id, "instruct")
    path = f"/tasks/{instruct}"
    added = web.post(f"{path}/signers", {"users": "wang.fang", "position": "before"}, page=path, follow_redirects=True)
    page = added.get_data(as_text=True)
    assert "已加签" in page and "王芳" in page and "须先签署" in page
    web.post(f"{path}/cc", {"users": "zhou.qiang", "note": "请阅"}, page=path)
    web.login("zhou.qiang")
    cc = client.get("/inbox?tab=cc").get_data(as_text=True)
    assert "抄送我的" in cc and "关于做好寒潮防御工作的通知" in cc and "未读" in cc
    assert client.get(f"/instances/{instance_id}").status_code == 200
    with db.session() as s:
        assert s.scalar(select(TaskCopy.read_at).where(TaskCopy.instance_id == instance_id)) is not None
    web.login("wang.fang")
    signer = next(t for t in client.get("/inbox").get_data(as_text=True).split('href="/tasks/')[1:])[:36]
    page = client.get(f"/tasks/{signer}").get_data(as_text=True)
    assert "您被加签到" in page and ">签署</button>" in page
    client.post(f"/tasks/{signer}", data={"csrf_token": csrf_token(client, f"/tasks/{signer}"), "action": "approve",
                                          "opinion": "政策上可行"}, content_type="multipart/form-data")
    web.login("liu.yang")
    client.post(path, data={"csrf_token": csrf_token(client, path), "action": "approve", "opinion": "同意"},
                content_type="multipart/form-data")
    done_page = client.get(path).get_data(as_text=True)
    assert "撤回" in done_page
    back = web.post(f"{path}/withdraw", {"opinion": "补充批示"}, page=path)
    assert back.status_code == 302 and back.headers["Location"].startswith("/tasks/")
    assert "已撤回" in client.get(back.headers["Location"]).get_data(as_text=True)


def test_instance_page_urge_cancel_and_receipts(web, client, api, db, config, registry):
    instance_id = receipt_to(client, api, db, config, registry, "handle")
    web.login("zhang.wei")
    path = f"/instances/{instance_id}"
    page = client.get(path).get_data(as_text=True)
    assert "催办" in page and "撤销流程" in page and "办理单" in page
    first = web.post(f"{path}/urge", {"opinion": "请抓紧"}, page=path, follow_redirects=True)
    assert "已催办，通知 1 人" in first.get_data(as_text=True)
    second = web.post(f"{path}/urge", {}, page=path, follow_redirects=True)
    assert "您刚催办过本流程" in second.get_data(as_text=True)
    web.login("wang.fang")
    notes = client.get("/notifications").get_data(as_text=True)
    assert "催办：关于做好寒潮防御工作的通知" in notes and '<span class="tag">催办</span>' in notes
    note_id = int(re.search(r"/notifications/(\d+)/open", notes).group(1))
    opened = web.post(f"/notifications/{note_id}/open", page="/notifications")
    assert opened.headers["Location"] == path
    assert client.get("/api/v1/notifications?unread=true", headers=api("wang.fang")).get_json()["total"] == 0
    assert web.post(f"/notifications/{note_id + 1000}/open", page="/notifications").headers["Location"] \
        == "/notifications"
    assert "撤销流程" not in client.get(path).get_data(as_text=True)
    web.login("zhang.wei")
    web.post(f"{path}/cancel", {"opinion": "来文单位已撤回"}, page=path)
    page = client.get(path).get_data(as_text=True)
    assert "来文单位已撤回" in page and "已终止" in page


def test_common_opinions_page(web, client):
    web.login("li.na")
    web.post("/opinions", {"text": "请政策法规处阅处"}, page="/opinions")
    page = client.get("/opinions").get_data(as_text=True)
    assert "请政策法规处阅处" in page
    saved = client.post("/opinions", data={"text": "拟同意", "csrf_token": csrf_token(client, "/opinions")},
                        headers={"Accept": "application/json"})
    assert saved.status_code == 201 and saved.get_json()["text"] == "拟同意"
    empty = client.post("/opinions", data={"text": "", "csrf_token": csrf_token(client, "/opinions")},
                        headers={"Accept": "application/json"})
    assert empty.status_code == 422
    no_csrf = client.post("/opinions", data={"text": "x"})
    assert no_csrf.status_code == 400


def test_inbox_overdue_tab_only_for_supervisors(web, client, api, db, config, registry):
    receipt_to(client, api, db, config, registry, "handle")
    clock.advance(timedelta(days=10))
    web.login("li.na")
    page = client.get("/inbox?tab=overdue").get_data(as_text=True)
    assert "承办" in page and "超期" in page
    web.login("chen.jie")
    assert client.get("/inbox?tab=overdue").status_code == 404
    assert "超期</a>" not in client.get("/inbox").get_data(as_text=True)


def test_oversized_signature_is_refused(client, api, db, config, registry):
    instance_id = receipt_to(client, api, db, config, registry, "instruct")
    task = open_task(client, api("liu.yang"), instance_id, "instruct")
    huge = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(600 * 1024)).decode()
    refused = post(client, api("liu.yang"), f"/tasks/{task['id']}/approve",
                   {"data": {}, "opinion": "同意", "signature": huge}, 422)
    assert "signature" in refused["errors"]
    assert open_task(client, api("liu.yang"), instance_id, "instruct")["id"] == task["id"]  # nothing lost




def test_an_outside_system_starts_a_receipt_through_the_messages_api(client, api):
    payload = {"title": "关于开展安全生产大检查的通知", "source_unit": "应急管理部", "copies": 1, "secrecy": "公开",
               "urgency": "特急", "received_on": "2026-11-29", "handling_type": "办理"}
    refused = client.post("/api/v1/messages", headers=api("zhang.wei"),
                          json={"name": "incoming_document", "payload": payload})
    assert refused.status_code == 403
    sent = post(client, api("admin"), "/messages", {"name": "incoming_document", "payload": payload,
                                                    "correlations": {"business_key": "EXT-30"}})
    [instance_id] = sent["started"]
    sign_in = open_task(client, api("zhang.wei"), instance_id, "sign_in")
    assert sign_in["candidate_groups"] == ["office_clerks"]
    shown = client.get(f"/api/v1/tasks/{sign_in['id']}", headers=api("zhang.wei")).get_json()["data"]
    assert shown["title"] == payload["title"] and shown["urgency"] == "特急"
