"""Driving the 发文 process through the REST API (shared by the web tests)."""
from __future__ import annotations

import io

DRAFT = {
    "title": "关于做好汛期安全防范工作的通知", "doc_type": "通知", "secrecy": "公开", "urgency": "加急",
    "main_recipients": "各市应急管理局", "cc": "厅领导", "opinion": "请核稿",
}


def upload(client, headers, name="正文.pdf", content=b"%PDF-1.4 emflow test", ctype="application/pdf"):
    response = client.post("/api/v1/attachments", headers=headers,
                           data={"file": (io.BytesIO(content), name, ctype)}, content_type="multipart/form-data")
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def start(client, headers, **kw):
    response = client.post("/api/v1/process-instances", headers=headers,
                           json={"process_key": "document_dispatch", **kw})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def task_of(instance: dict, bpmn_id: str) -> dict:
    return next(t for t in instance["tasks"] if t["bpmn_id"] == bpmn_id)


def complete(client, headers, task_id, data, status=200):
    response = client.post(f"/api/v1/tasks/{task_id}/complete", headers=headers, json={"data": data})
    assert response.status_code == status, response.get_json()
    return response.get_json()


def to_review(client, api, countersign=()):
    """Start as zhang.wei and submit the draft; returns the instance after submission."""
    h = api("zhang.wei")
    inst = start(client, h)
    body = upload(client, h)
    return complete(client, h, task_of(inst, "draft")["id"],
                    {**DRAFT, "body_file": body, "countersign_units": list(countersign)})
