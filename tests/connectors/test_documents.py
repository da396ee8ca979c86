"""The documents connector: Render → ToPdf → Seal → Sign → Verify, on real LibreOffice, pikepdf and pyhanko.

Keys are made at test time (a throwaway CA and signer); nothing secret is committed. Calls go through a
small in-memory ConnectorContext, and one test goes through the engine's EngineContext on a real database.
"""
from __future__ import annotations

import base64
import gc
import hashlib
import io
import os
import shutil
import subprocess
import tempfile
import threading
import uuid
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import docx
import pikepdf
import pypdf
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from jsonschema import Draft202012Validator
from PIL import Image

from connectors.base import ConnectorContext, ConnectorError
from connectors.documents import DOCX, DocumentsConnector
from connectors.documents.signing import CJK_FONTS, _single_font

PASSPHRASE = "test-only-pass"
FIELDS = {
    "执法机关": "广西壮族自治区应急管理厅",
    "文书编号": "（桂）应急责改〔2026〕12号",
    "被检查单位": "南宁市兴宁区某化工有限公司",
    "问题": [
        {"内容": "二号罐区可燃气体检测报警器未定期检定", "依据": "《危险化学品安全管理条例》第二十条",
         "要求": "立即停用并送检"},
        {"内容": "动火作业票证审批流于形式", "依据": "GB 30871-2022 第5.2条", "要求": "重新培训，严格审批"},
    ],
    "整改期限": "2026年7月15日",
    "复议机关": "广西壮族自治区人民政府",
    "诉讼法院": "南宁铁路运输法院",
    "执法人员": "王芳、李娜",
    "执法证号": "45000123、45000456",
    "签发日期": "2026年6月30日",
}


class MemoryContext(ConnectorContext):
    """ConnectorContext over a dict of files: enough platform for a connector call in a unit test."""

    def __init__(self, timeout: float = 120.0):
        self.idempotency_key = "test-call"
        self.instance_id = 1
        self.timeout = timeout
        self.files: dict[str, tuple[dict, bytes]] = {}

    def now(self) -> datetime:
        return datetime.now(UTC)

    def next_number(self, sequence: str, year: int) -> int:
        return 1

    def notify(self, usernames, title, body="", category="reminder") -> int:
        return 0

    def task_assignees(self, bpmn_id: str) -> list[str]:
        return []

    def read_file(self, ref: dict) -> bytes:
        found = self.files.get(str(ref.get("id")))
        if found is None:
            raise ConnectorError("file not found", retryable=False, code="file_not_found")
        return found[1]

    def store_file(self, name: str, content: bytes, content_type: str) -> dict:
        ref = {"id": str(uuid.uuid4()), "filename": name, "content_type": content_type, "size": len(content),
               "sha256": hashlib.sha256(content).hexdigest()}
        self.files[ref["id"]] = (ref, content)
        return ref

    def rate_limit(self, key: str, limit: int, window_seconds: int) -> bool:
        return True

    def put(self, name: str, content: bytes, content_type: str = "application/pdf") -> dict:
        return self.store_file(name, content, content_type)

    def content(self, ref: dict) -> bytes:
        return self.files[ref["id"]][1]


# -- keys ---------------------------------------------------------------------------------------------
def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "广西壮族自治区应急管理厅"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca(cn: str):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


@pytest.fixture(scope="module")
def pki():
    """A throwaway root CA, a signer under it (PKCS#12 with a passphrase), and an unrelated root."""
    ca_key, ca_cert = _ca("emflow 测试根证书")
    signer_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    signer_cert = (
        x509.CertificateBuilder().subject_name(_name("张伟")).issuer_name(ca_cert.subject)
        .public_key(signer_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256()))
    p12 = pkcs12.serialize_key_and_certificates(
        b"signer", signer_key, signer_cert, [ca_cert], serialization.BestAvailableEncryption(PASSPHRASE.encode()))
    _, other_cert = _ca("someone else's root")
    pem = ca_cert.public_bytes(serialization.Encoding.PEM).decode()
    return {
        "config": {"signer_pkcs12": base64.b64encode(p12).decode(), "signer_passphrase": PASSPHRASE,
                   "trust_roots_pem": pem},
        "other_root_pem": other_cert.public_bytes(serialization.Encoding.PEM).decode(),
    }


# -- shared documents (LibreOffice runs once per module) --------------------------------------------------
@pytest.fixture(scope="module")
def soffice():
    found = shutil.which("soffice")
    if found is None:
        pytest.fail("LibreOffice is missing: apt-get install libreoffice-writer-nogui fonts-noto-cjk")
    return found


@pytest.fixture(scope="module")
def notice_docx() -> bytes:
    ctx = MemoryContext()
    ref = DocumentsConnector({}).call("Render", {"template": "documents/notice.docx", "fields": FIELDS,
                                                 "output_name": "整改指令书"}, ctx)
    return ctx.content(ref)


@pytest.fixture(scope="module")
def notice_pdf(soffice, notice_docx) -> bytes:
    ctx = MemoryContext()
    ref = ctx.put("整改指令书.docx", notice_docx, DOCX)
    return ctx.content(DocumentsConnector({}).call("ToPdf", {"file": ref}, ctx))


@pytest.fixture(scope="module")
def signed_pdf(pki, notice_pdf) -> bytes:
    ctx = MemoryContext()
    ref = ctx.put("整改指令书.pdf", notice_pdf)
    result = DocumentsConnector(pki["config"]).call("Sign", {"file": ref, "reason": "签发", "location": "南宁"}, ctx)
    return ctx.content(result["file"])


def _text(pdf: bytes) -> str:
    return "".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages)


def _call(operation: str, params: dict, ctx: MemoryContext | None = None, config: dict | None = None):
    return DocumentsConnector(config or {}).call(operation, params, ctx or MemoryContext())


def _verify(pdf: bytes, config: dict) -> dict:
    ctx = MemoryContext()
    return DocumentsConnector(config).call("Verify", {"file": ctx.put("x.pdf", pdf)}, ctx)


# -- the protocol -------------------------------------------------------------------------------------------
def test_schemas_are_valid_json_schema_and_describe_serializes():
    for schema in [DocumentsConnector.config_schema] + [s for op in DocumentsConnector.operations.values()
                                                         for s in (op.params, op.result)]:
        Draft202012Validator.check_schema(schema)
    described = DocumentsConnector.describe()
    assert set(described["operations"]) == {"Render", "ToPdf", "Seal", "Sign", "Verify"}
    params = DocumentsConnector.operations["Seal"].params
    assert Draft202012Validator(params).is_valid({"file": "an-attachment-id", "anchor_text": "2026年6月30日"})
    assert not Draft202012Validator(params).is_valid({"file": "x", "page": 0})


# -- Render -------------------------------------------------------------------------------------------
def _template_with_every_kind_of_placeholder(path):
    document = docx.Document()
    p = document.add_paragraph("致")
    # Word often splits a placeholder across runs (spell check, an edit in the middle): keep both halves' format.
    p.add_run("{{单").bold = True
    p.add_run("位}}")
    p.add_run("：请于{{期限}}前整改。")
    document.add_paragraph("{{ 不要 }}{{问题}}")
    table = document.add_table(rows=3, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "序号", "问题"
    table.cell(1, 0).text, table.cell(1, 1).text = "{{项.序号}}", "{{项.内容}}"
    table.cell(2, 0).text, table.cell(2, 1).text = "合计", "{{合计}}"
    section = document.sections[0]
    section.header.paragraphs[0].text = "页眉 {{编号}}"
    section.footer.paragraphs[0].text = "页脚 {{编号}}"
    document.save(path)


def test_render_fills_runs_tables_repeating_rows_headers_and_footers(tmp_path):
    _template_with_every_kind_of_placeholder(tmp_path / "t.docx")
    ctx = MemoryContext()
    ref = _call("Render", {"template": "t.docx", "output_name": "结果", "fields": {
        "单位": "某化工有限公司", "期限": "2026年7月15日", "不要": None, "问题": ["甲", "乙"], "合计": 3,
        "编号": "桂应急〔2026〕1号", "项": [{"内容": "第一项"}, {"内容": "第二项"}, {"内容": "第三项\n续行"}]}},
        ctx, {"templates_dir": str(tmp_path)})
    assert ref["filename"] == "结果.docx"
    assert ref["content_type"] == DOCX
    document = docx.Document(io.BytesIO(ctx.content(ref)))
    assert document.paragraphs[0].text == "致某化工有限公司：请于2026年7月15日前整改。"
    assert document.paragraphs[0].runs[1].bold  # the value took the format of the run that opened it
    assert document.paragraphs[1].text == "甲、乙"
    rows = [[c.text for c in row.cells] for row in document.tables[0].rows]
    assert rows == [["序号", "问题"], ["1", "第一项"], ["2", "第二项"], ["3", "第三项\n续行"], ["合计", "3"]]
    assert document.sections[0].header.paragraphs[0].text == "页眉 桂应急〔2026〕1号"
    assert document.sections[0].footer.paragraphs[0].text == "页脚 桂应急〔2026〕1号"


def test_render_empty_list_drops_the_repeating_row(tmp_path):
    _template_with_every_kind_of_placeholder(tmp_path / "t.docx")
    ctx = MemoryContext()
    ref = _call("Render", {"template": "t.docx", "fields": {"项": []}, "allow_missing": True}, ctx,
                {"templates_dir": str(tmp_path)})
    document = docx.Document(io.BytesIO(ctx.content(ref)))
    assert [[c.text for c in row.cells] for row in document.tables[0].rows] == [["序号", "问题"], ["合计", ""]]


def test_render_missing_fields_are_named(tmp_path):
    _template_with_every_kind_of_placeholder(tmp_path / "t.docx")
    with pytest.raises(ConnectorError) as caught:
        _call("Render", {"template": "t.docx", "fields": {"单位": "x"}}, config={"templates_dir": str(tmp_path)})
    assert caught.value.code == "documents.missing_fields" and caught.value.retryable is False
    assert "期限" in str(caught.value) and "编号" in str(caught.value)


def test_notice_template_renders_every_field(notice_docx):
    document = docx.Document(io.BytesIO(notice_docx))
    body = "\n".join(p.text for p in document.paragraphs)
    assert "{{" not in body and "南宁市兴宁区某化工有限公司：" in body and "2026年7月15日前整改完毕" in body
    rows = [[c.text for c in row.cells] for row in document.tables[0].rows]
    assert len(rows) == 3 and rows[2][0] == "2" and rows[2][1] == "动火作业票证审批流于形式"
    assert document.sections[0].header.paragraphs[0].text == "（桂）应急责改〔2026〕12号"


@pytest.mark.parametrize(("template", "code"), [
    ("../setup.cfg.docx", "documents.invalid_path"),
    ("documents/../../README.docx", "documents.invalid_path"),
    ("/etc/passwd.docx", "documents.invalid_path"),
    ("documents\\notice.docx", "documents.invalid_path"),
    ("C:/notice.docx", "documents.invalid_path"),
    ("documents//notice.docx", "documents.invalid_path"),
    ("documents/seal-demo.png", "documents.invalid_type"),
    ("documents/notice.pdf", "documents.invalid_type"),
    ("documents/nothing-here.docx", "documents.template_not_found"),
])
def test_render_refuses_bad_template_names(template, code):
    with pytest.raises(ConnectorError) as caught:
        _call("Render", {"template": template, "fields": {}})
    assert caught.value.code == code and caught.value.retryable is False


def test_render_refuses_a_symlink_out_of_the_templates_folder(tmp_path):
    outside = tmp_path / "outside.docx"
    _template_with_every_kind_of_placeholder(outside)
    (tmp_path / "templates").mkdir()
    os.symlink(outside, tmp_path / "templates" / "link.docx")
    with pytest.raises(ConnectorError) as caught:
        _call("Render", {"template": "link.docx", "fields": {}}, config={"templates_dir": str(tmp_path / "templates")})
    assert caught.value.code == "documents.invalid_path"


# -- ToPdf --------------------------------------------------------------------------------------------------
def test_to_pdf_renders_chinese_text(notice_pdf):
    text = _text(notice_pdf).replace(" ", "")
    for expected in ("责令限期整改指令书", "南宁市兴宁区某化工有限公司", "二号罐区可燃气体", "2026年6月30日",
                     "本文书一式两份"):
        assert expected in text
    fonts = subprocess.run(["pdffonts", "-"], input=notice_pdf, capture_output=True, check=True).stdout.decode()
    # The Chinese glyphs come from an embedded CJK font (whichever installed one fontconfig picks), not boxes.
    cjk = [line for line in fonts.splitlines()[2:] if any(f in line for f in ("CJK", "WenQuanYi", "SourceHan"))]
    assert cjk and all(" yes " in line for line in cjk)


def test_parallel_conversions_do_not_collide(soffice, notice_docx):
    ctx = MemoryContext()
    ref = ctx.put("a.docx", notice_docx, DOCX)
    results, errors = [], []

    def convert():
        try:
            results.append(_call("ToPdf", {"file": ref, "output_name": "并行"}, ctx))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)
    threads = [threading.Thread(target=convert) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(results) == 2
    assert all("责令限期整改指令书" in _text(ctx.content(r)) for r in results)


def test_to_pdf_refuses_what_is_not_docx():
    ctx = MemoryContext()
    with pytest.raises(ConnectorError) as caught:
        _call("ToPdf", {"file": ctx.put("x.pdf", b"%PDF-1.4 not word")}, ctx)
    assert caught.value.code == "documents.invalid_type" and not caught.value.retryable


def test_to_pdf_reports_libreoffice_failure_without_retry(soffice):
    ctx = MemoryContext()
    ref = ctx.put("broken.docx", b"PK\x03\x04 this is no zip archive", "application/zip")
    with pytest.raises(ConnectorError) as caught:
        _call("ToPdf", {"file": ref}, ctx)
    assert caught.value.code == "documents.convert_failed" and not caught.value.retryable
    assert "LibreOffice failed" in str(caught.value)


def test_to_pdf_timeout_kills_libreoffice_and_may_be_retried(tmp_path):
    marker = tmp_path / "child.pid"
    fake = tmp_path / "soffice"
    fake.write_text(f"#!/bin/sh\nsleep 60 &\necho $! > {marker}\nwait\n")
    fake.chmod(0o755)
    ctx = MemoryContext(timeout=0.5)
    ref = ctx.put("a.docx", b"PK\x03\x04....", "application/zip")
    with pytest.raises(ConnectorError) as caught:
        _call("ToPdf", {"file": ref}, ctx, {"soffice": str(fake)})
    assert caught.value.code == "documents.convert_timeout" and caught.value.retryable is True
    child = int(marker.read_text())

    def alive() -> bool:
        try:  # a zombie waiting for its reaper counts as gone
            return Path(f"/proc/{child}/stat").read_text().split(")")[-1].split()[0] != "Z"
        except FileNotFoundError:
            return False
    for _ in range(100):  # the grandchild went with the process group; give the kernel a moment
        if not alive():
            break
        threading.Event().wait(0.05)
    assert not alive()


# -- Seal ---------------------------------------------------------------------------------------------------
def _red_share(pdf: bytes, box_mm: tuple[float, float, float, float], page: int = 1) -> float:
    """Share of clearly red pixels in a box (mm from the bottom-left corner) of a page rendered by poppler."""
    png = subprocess.run(["pdftoppm", "-r", "50", "-png", "-f", str(page), "-l", str(page), "-", ],
                         input=pdf, capture_output=True, check=True).stdout
    img = Image.open(io.BytesIO(png)).convert("RGB")
    scale = img.height / 297.0  # A4 page: pixels per mm
    x1, y1, x2, y2 = box_mm
    crop = img.crop((int(x1 * scale), int(img.height - y2 * scale), int(x2 * scale), int(img.height - y1 * scale)))
    raw = crop.tobytes()
    pixels = [raw[i:i + 3] for i in range(0, len(raw), 3)]
    return sum(1 for r, g, b in pixels if r > 150 and g < 110 and b < 110) / len(pixels)


def test_seal_at_coordinates_draws_a_transparent_image(notice_pdf):
    ctx = MemoryContext()
    result = _call("Seal", {"file": ctx.put("n.pdf", notice_pdf), "page": 1, "x_mm": 60, "y_mm": 60,
                            "size_mm": 40}, ctx)
    assert result["page"] == 1 and result["file"]["content_type"] == "application/pdf"
    sealed = ctx.content(result["file"])
    with pikepdf.open(io.BytesIO(sealed)) as pdf:
        images = [x for x in pdf.pages[0].Resources.XObject.values() if x.get("/Subtype") == "/Image"]
        assert any("/SMask" in img for img in images)
    assert _red_share(sealed, (45, 45, 75, 75)) > 0.05
    assert _red_share(notice_pdf, (45, 45, 75, 75)) == 0
    assert "责令限期整改指令书" in _text(sealed)  # the page's text is untouched


def test_seal_over_the_signing_date(notice_pdf):
    ctx = MemoryContext()
    result = _call("Seal", {"file": ctx.put("n.pdf", notice_pdf), "anchor_text": "2026年6月30日"}, ctx)
    assert result["page"] == 1 and result["x_mm"] > 105 and 20 < result["y_mm"] < 150
    x, y = result["x_mm"], result["y_mm"]
    assert _red_share(ctx.content(result["file"]), (x - 10, y - 10, x + 10, y + 10)) > 0.05


@pytest.mark.parametrize(("params", "message"), [
    ({"anchor_text": "不存在的文字"}, "not found"),
    ({"page": 5, "x_mm": 10, "y_mm": 10}, "no page 5"),
])
def test_seal_errors_are_not_retried(notice_pdf, params, message):
    ctx = MemoryContext()
    with pytest.raises(ConnectorError) as caught:
        _call("Seal", {"file": ctx.put("n.pdf", notice_pdf), **params}, ctx)
    assert caught.value.code == "documents.seal_failed" and not caught.value.retryable
    assert message in str(caught.value)


def test_seal_needs_a_position(notice_pdf):
    ctx = MemoryContext()
    with pytest.raises(ConnectorError) as caught:
        _call("Seal", {"file": ctx.put("n.pdf", notice_pdf), "x_mm": 10}, ctx)
    assert caught.value.code == "documents.invalid_params"


def test_seal_refuses_a_signed_document(signed_pdf):
    ctx = MemoryContext()
    with pytest.raises(ConnectorError) as caught:
        _call("Seal", {"file": ctx.put("s.pdf", signed_pdf), "x_mm": 10, "y_mm": 10}, ctx)
    assert "already signed" in str(caught.value)


# -- Sign and Verify ------------------------------------------------------------------------------------------
def test_signed_pdf_verifies_with_pyhanko(pki, signed_pdf):
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko.sign.validation.status import SignatureCoverageLevel

    from connectors.documents.signing import trust_context

    (embedded,) = PdfFileReader(io.BytesIO(signed_pdf)).embedded_signatures
    status = validate_pdf_signature(embedded, trust_context(pki["config"]["trust_roots_pem"]))
    assert status.intact and status.valid and status.trusted and status.bottom_line
    assert status.coverage == SignatureCoverageLevel.ENTIRE_FILE
    assert embedded.sig_object["/SubFilter"] == "/ETSI.CAdES.detached"  # PAdES
    assert "责令限期整改指令书" in _text(signed_pdf)


def test_sign_returns_the_signer_and_verify_accepts(pki, notice_pdf):
    ctx = MemoryContext()
    result = _call("Sign", {"file": ctx.put("n.pdf", notice_pdf), "output_name": "签发件"}, ctx, pki["config"])
    assert result["file"]["filename"] == "签发件.pdf" and "张伟" in result["signer"]
    report = _verify(ctx.content(result["file"]), pki["config"])
    assert report["readable"] and report["signed"] and report["all_valid"]
    (sig,) = report["signatures"]
    assert sig["intact"] and sig["valid"] and sig["trusted"] and sig["whole_document"]
    assert sig["modified_after_signing"] is False and "张伟" in sig["signer"]
    assert datetime.fromisoformat(sig["signing_time"]) > datetime.now(UTC) - timedelta(hours=1)


def test_verify_with_another_root_is_intact_but_not_trusted(pki, signed_pdf):
    report = _verify(signed_pdf, {"trust_roots_pem": pki["other_root_pem"]})
    (sig,) = report["signatures"]
    assert sig["intact"] and sig["valid"] and not sig["trusted"] and not report["all_valid"]


def test_tampered_pdf_is_not_intact(pki, signed_pdf):
    # Change one byte of a signed content stream: same length, so the file still parses.
    at = signed_pdf.index(b"stream\n", signed_pdf.index(b"/FlateDecode")) + 20
    tampered = signed_pdf[:at] + bytes([signed_pdf[at] ^ 0xFF]) + signed_pdf[at + 1:]
    report = _verify(tampered, pki["config"])
    assert report["readable"] and report["signed"] and not report["all_valid"]
    (sig,) = report["signatures"]
    assert sig["intact"] is False and sig["ok"] is False


def test_garbage_pdf_is_a_verdict_not_a_crash(pki):
    report = _verify(b"%PDF-1.7\n this is not a PDF at all", pki["config"])
    assert report == {"readable": False, "signed": False, "all_valid": False, "signatures": [],
                      "error": report["error"]}


def test_unsigned_pdf(pki, notice_pdf):
    report = _verify(notice_pdf, pki["config"])
    assert report["readable"] and not report["signed"] and not report["all_valid"]


def test_second_signature_shows_the_first_was_followed_by_changes(pki, signed_pdf):
    ctx = MemoryContext()
    result = _call("Sign", {"file": ctx.put("s.pdf", signed_pdf), "field_name": "Countersign",
                            "box_mm": [120, 20, 190, 45], "page": 1, "reason": "会签"}, ctx, pki["config"])
    twice = ctx.content(result["file"])
    first, second = _verify(twice, pki["config"])["signatures"]
    assert first["intact"] and first["valid"] and first["trusted"]
    assert first["whole_document"] is False and first["modified_after_signing"] is True
    assert first["modification"] in ("form_filling", "lta_updates")  # adding a signature is allowed
    assert second["field"] == "Countersign" and second["whole_document"] and second["ok"]
    with pikepdf.open(io.BytesIO(twice)) as pdf:
        (widget,) = [a for a in pdf.pages[0].get("/Annots", []) if a.get("/T") == "Countersign"]
        x1, y1, x2, y2 = (float(v) for v in widget.Rect)
        assert x2 - x1 > 150 and y2 - y1 > 60  # a visible field of the asked size (70 x 25 mm)


@pytest.mark.skipif(not os.path.isfile(CJK_FONTS[0]), reason="fonts-noto-cjk is not installed")
def test_extracting_a_face_from_a_font_collection_closes_the_collection(tmp_path, monkeypatch):
    # The face is cached on disk, so only the first call per machine opened the collection; a file left open
    # there failed whichever later test the garbage collector happened to run in.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        face = _single_font(CJK_FONTS[0])
        gc.collect()
    assert Path(face).parent == tmp_path / "emflow-fonts" and Path(face).stat().st_size > 1_000_000


def test_wrong_passphrase_is_a_clear_permanent_error(pki, notice_pdf):
    ctx = MemoryContext()
    config = dict(pki["config"], signer_passphrase="not-the-passphrase")
    with pytest.raises(ConnectorError) as caught:
        _call("Sign", {"file": ctx.put("n.pdf", notice_pdf)}, ctx, config)
    assert caught.value.code == "documents.signer_invalid" and caught.value.retryable is False
    assert "passphrase" in str(caught.value) and "not-the-passphrase" not in str(caught.value)
    with pytest.raises(ConnectorError):
        DocumentsConnector(config).check()


def test_sign_without_a_key_or_with_bad_base64(notice_pdf):
    ctx = MemoryContext()
    ref = ctx.put("n.pdf", notice_pdf)
    with pytest.raises(ConnectorError) as caught:
        _call("Sign", {"file": ref}, ctx)
    assert caught.value.code == "documents.signer_missing"
    with pytest.raises(ConnectorError) as caught:
        _call("Sign", {"file": ref}, ctx, {"signer_pkcs12": "***", "signer_passphrase": "x"})
    assert caught.value.code == "documents.signer_invalid"


def test_check_accepts_a_good_configuration(pki, soffice):
    DocumentsConnector(pki["config"]).check()


def test_whole_chain_results_are_json(pki, soffice):
    """Render → ToPdf → Seal → Sign → Verify, passing each result on as the next call's file."""
    import json

    ctx = MemoryContext()
    connector = DocumentsConnector(pki["config"])
    docx_ref = connector.call("Render", {"template": "documents/notice.docx", "fields": FIELDS}, ctx)
    pdf_ref = connector.call("ToPdf", {"file": docx_ref}, ctx)
    sealed = connector.call("Seal", {"file": pdf_ref, "anchor_text": FIELDS["签发日期"]}, ctx)
    signed = connector.call("Sign", {"file": sealed["file"], "reason": "签发"}, ctx)
    report = connector.call("Verify", {"file": signed["file"]["id"]}, ctx)
    for result in (docx_ref, pdf_ref, sealed, signed, report):
        assert json.loads(json.dumps(result)) == result
    assert pdf_ref["filename"] == "notice.pdf" and report["all_valid"]


# -- through the engine's context, on a real database ----------------------------------------------------------
def test_engine_context_stores_and_reads_instance_files(db, config, pki, soffice):
    from engine.connectors import EngineContext
    from engine.models import Attachment
    from tests.engine import helpers

    instance_id = helpers.start_dispatch(db, config)
    context = EngineContext(db, "job-documents-1", instance_id, timeout=120.0)
    connector = DocumentsConnector(pki["config"])
    docx_ref = connector.call("Render", {"template": "documents/notice.docx", "fields": FIELDS,
                                         "output_name": "整改指令书"}, context)
    pdf_ref = connector.call("ToPdf", {"file": docx_ref["id"]}, context)
    signed = connector.call("Sign", {"file": pdf_ref}, context)
    report = connector.call("Verify", {"file": signed["file"]}, context)
    assert report["all_valid"]
    with db.session() as s:
        row = s.get(Attachment, signed["file"]["id"])
        assert row.instance_id == instance_id and row.content_type == "application/pdf"
        assert row.uploaded_by_id == helpers.load_user(s, "zhang.wei").id  # the instance's initiator
        assert row.sha256 == hashlib.sha256(context.read_file(signed["file"])).hexdigest()
    # A file outside this instance (a fresh upload of someone else) cannot be reached through process data.
    foreign = helpers.upload(db, config, "li.na")
    with pytest.raises(ConnectorError) as caught:
        context.read_file({"id": foreign})
    assert caught.value.code == "file_not_found" and not caught.value.retryable
