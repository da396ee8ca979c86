"""The handling sheet (办理单): the printable page, the A4 PDF, signature images and the data scope."""
import base64
import io
import math
import re
import struct
import zlib

import pytest
from pypdf import PdfReader
from sqlalchemy import select

from engine import jobs, tasks
from engine.models import HumanTask, ProcessInstance, User
from engine.sheet import build
from tests.webapp.flows import complete, task_of, to_review

OPINIONS = ["请核稿", "同意，请会签", "无意见，同意印发", "同意。请办公室按程序印发"]
NAMES = ["张伟", "李娜", "王芳", "刘洋（张伟代录）"]
SIGNATURE_SRC = re.compile(r'src="/signatures/([0-9a-f-]{36})\.png"')


def png(width: int = 160, height: int = 60) -> bytes:
    """A small RGBA PNG with a dark wavy stroke, like a drawn signature."""
    rows = b"".join(b"\x00" + b"".join(
        bytes((20, 30, 90, 255)) if abs(y - height / 2 - 18 * math.sin(x / 12)) < 2 else bytes(4)
        for x in range(width)) for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def data_url(image: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(image).decode()


PNG, LEADER_PNG = png(), png(200, 70)


def _engine_complete(db, config, username, task_id, data, **kw):
    with db.transaction() as s:
        user = s.scalar(select(User).where(User.username == username))
        tasks.complete(s, config, user, task_id, data, **kw)


@pytest.fixture
def signed(client, api, db, config, registry):
    """A 发文 driven past sign-off: a countersign with a signature, and the 厅长's paper opinion entered
    by his clerk (代录) with his signature; the document number allocated. Returns the instance id."""
    inst = to_review(client, api, countersign=["ZCFGC"])
    inst = complete(client, api("li.na"), task_of(inst, "review")["id"],
                    {"review_decision": "approve", "opinion": OPINIONS[1]})
    _engine_complete(db, config, "wang.fang", task_of(inst, "countersign")["id"],
                     {"countersign_decision": "agree", "opinion": OPINIONS[2]}, signature=data_url(PNG))
    with db.session() as s:
        sign_off = s.scalar(select(HumanTask.id).where(HumanTask.instance_id == inst["id"],
                                                      HumanTask.bpmn_id == "sign_off"))
    _engine_complete(db, config, "zhang.wei", sign_off, {"sign_decision": "approve", "opinion": OPINIONS[3]},
                     signature=data_url(LEADER_PNG), on_behalf_of="liu.yang")
    for job_id in jobs.due_jobs(db):
        assert jobs.execute(db, config, registry, job_id) == "done"
    return inst["id"]


def _in_order(text: str, items: list[str]) -> None:
    positions = [text.find(item) for item in items]
    assert -1 not in positions, [i for i, p in zip(items, positions, strict=True) if p == -1]
    assert positions == sorted(positions), list(zip(items, positions, strict=True))


def _pdf_text(body: bytes) -> tuple[PdfReader, str]:
    reader = PdfReader(io.BytesIO(body))
    return reader, "".join(page.extract_text() for page in reader.pages).replace("\n", "").replace(" ", "")


def test_page_shows_fields_and_every_opinion_in_order(web, client, signed):
    web.login("li.na")
    response = client.get(f"/instances/{signed}/sheet")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    sheet = page[page.index('<article class="sheet">'):]  # the top bar names the reader too
    for text in ("广西壮族自治区应急管理厅", "发文稿纸", "关于做好汛期安全防范工作的通知", "文种", "通知", "紧急程度",
                 "加急", "主送", "各市应急管理局", "正文.pdf", "会签单位", "政策法规处", "发文字号", "桂应急发〔",
                 "data-print", 'src="/static/js/sheet.js"', f'href="/instances/{signed}/sheet.pdf"'):
        assert text in page, text
    _in_order(sheet, ["标题", "文种", "密级", "紧急程度", "主送", "抄送", "正文", "附件", "会签单位", "发文字号"])
    _in_order(sheet, OPINIONS)
    _in_order(sheet, NAMES)
    _in_order(sheet, ["拟稿", "核稿", "会签（政策法规处）", "签发"])
    assert sheet.count('class="sheet-decision">同意<') == 2 and 'class="sheet-decision">签发<' in sheet
    assert len(SIGNATURE_SRC.findall(sheet)) == 2
    assert "<script>" not in page  # the CSP forbids inline scripts: Print is wired in sheet.js
    assert f'href="/instances/{signed}/sheet"' in client.get(f"/instances/{signed}").get_data(as_text=True)


def test_pdf_is_a4_with_opinions_names_and_signatures(web, client, signed):
    web.login("zhang.wei")
    response = client.get(f"/instances/{signed}/sheet.pdf")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("inline;") and "filename*=UTF-8''" in disposition
    assert "%E5%8F%91%E6%96%87%E7%A8%BF%E7%BA%B8.pdf" in disposition  # …-发文稿纸.pdf
    reader, text = _pdf_text(response.data)
    assert response.data.startswith(b"%PDF-")
    assert [round(float(v)) for v in reader.pages[0].mediabox[2:]] == [595, 842]
    _in_order(text, ["发文稿纸", *OPINIONS])
    _in_order(text, NAMES)
    assert "关于做好汛期安全防范工作的通知" in text and "政策法规处" in text
    images = [i for page in reader.pages for i in page.images]
    assert len(images) == 2


def test_api_pdf_in_scope_and_documented(client, api, signed):
    response = client.get(f"/api/v1/process-instances/{signed}/sheet.pdf", headers=api("liu.yang"))
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    _reader, text = _pdf_text(response.data)
    assert all(o in text for o in OPINIONS)
    outside = client.get(f"/api/v1/process-instances/{signed}/sheet.pdf", headers=api("chen.jie"))
    assert outside.status_code == 404 and outside.get_json()["code"] == "not_found"
    spec = client.get("/api/v1/openapi.json").get_json()
    operation = spec["paths"]["/api/v1/process-instances/{instance_id}/sheet.pdf"]["get"]
    assert "application/pdf" in operation["responses"]["200"]["content"]


def test_outside_the_data_scope_is_not_found(web, client, signed):
    web.login("chen.jie")  # 南宁 does not see the province's documents
    assert client.get(f"/instances/{signed}/sheet").status_code == 404
    assert client.get(f"/instances/{signed}/sheet.pdf").status_code == 404
    assert client.get("/instances/999999/sheet").status_code == 404


def test_signature_image_only_for_those_who_see_the_instance(web, client, signed):
    web.login("wang.fang")
    page = client.get(f"/instances/{signed}/sheet").get_data(as_text=True)
    signature_id = SIGNATURE_SRC.search(page).group(1)
    response = client.get(f"/signatures/{signature_id}.png")
    assert response.status_code == 200 and response.mimetype == "image/png" and response.data == PNG
    web.login("zhao.min")  # 柳州
    assert client.get(f"/signatures/{signature_id}.png").status_code == 404
    assert client.get("/signatures/00000000-0000-0000-0000-000000000000.png").status_code == 404
    web.post("/logout")
    assert client.get(f"/signatures/{signature_id}.png").status_code == 302  # to the login page


def test_proxy_entered_opinion_names_leader_and_recorder(db, signed):
    with db.session() as s:
        sheet = build(s, s.get(ProcessInstance, signed))
    sign_off = next(step for step in sheet.steps if step.step == "签发")
    assert (sign_off.who, sign_off.decision, sign_off.opinion) == ("刘洋（张伟代录）", "签发", OPINIONS[3])
    assert sign_off.signature_id and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", sign_off.at)
    assert [s.who for s in sheet.steps] == NAMES
    assert sheet.title == "发文稿纸" and sheet.status == "running"


def test_long_opinion_wraps_onto_further_pages(client, api, web):
    inst = to_review(client, api)
    long_opinion = "请补充汛期值班安排、物资储备和转移避险预案等内容，并与各市应急管理局核对联系方式。" * 45
    complete(client, api("li.na"), task_of(inst, "review")["id"],
             {"review_decision": "return", "opinion": long_opinion[:2000]})
    web.login("zhang.wei")
    response = client.get(f"/instances/{inst['id']}/sheet.pdf")
    reader, text = _pdf_text(response.data)
    assert len(reader.pages) >= 2
    assert all([round(float(v)) for v in p.mediabox[2:]] == [595, 842] for p in reader.pages)
    assert "退回修改" in text and long_opinion[-30:] in text


def test_receipt_sheet_defaults_its_title_and_uses_the_sign_in_form(client, api, db):
    response = client.post("/api/v1/process-instances", headers=api("zhang.wei"),
                           json={"process_key": "document_receipt", "title": "关于防汛工作的通知"})
    assert response.status_code == 201, response.get_json()
    with db.session() as s:
        sheet = build(s, s.get(ProcessInstance, response.get_json()["id"]))
    assert sheet.title == "收文处理单" and sheet.organisation == "广西壮族自治区应急管理厅"
    assert [f.title for f in sheet.fields][:4] == ["标题", "来文单位", "来文文号", "份数"]
    assert "签收说明" not in [f.title for f in sheet.fields] and sheet.steps == []


def test_missing_font_names_the_debian_package(monkeypatch):
    from webapp import sheetpdf

    monkeypatch.setattr(sheetpdf, "FONT_NAME", "EmflowCJKMissing")
    monkeypatch.setattr(sheetpdf, "FONT_PATHS", ())
    monkeypatch.setenv("EMFLOW_PDF_FONT", "/nonexistent/font.ttc")
    with pytest.raises(sheetpdf.FontMissing, match="fonts-wqy-zenhei"):
        sheetpdf._font()
