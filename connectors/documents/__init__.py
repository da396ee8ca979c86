"""Official documents: fill a Word template, convert it to PDF, stamp a seal image, sign (PAdES) and verify.

The usual chain in a process is Render → ToPdf → Seal → Sign; Verify checks uploaded signed PDFs.
Templates are .docx files under ``forms/`` (``templates_dir`` in the config overrides that folder).
"""
from __future__ import annotations

import base64
import binascii
import re
import sys
from pathlib import Path, PurePosixPath

from connectors.base import Connector, ConnectorContext, ConnectorError, Operation

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
PDF = "application/pdf"
DEMO_SEAL = "documents/seal-demo.png"

_FILE = {"anyOf": [{"type": "string", "minLength": 1},
                   {"type": "object", "properties": {"id": {"type": "string", "minLength": 1}}, "required": ["id"]}],
         "description": "a stored file: the value of a form file field (its id) or a reference returned by a call"}
_REF = {"type": "object",
        "properties": {"id": {"type": "string"}, "filename": {"type": "string"}, "content_type": {"type": "string"},
                       "size": {"type": "integer"}, "sha256": {"type": "string"}},
        "required": ["id", "filename", "content_type", "size", "sha256"]}
_NAME = {"type": "string", "minLength": 1, "maxLength": 200, "description": "file name of the result"}
_MM = {"type": "number", "minimum": 0, "maximum": 2000}
_BAD_NAME = re.compile(r'[\\/:*?"<>|\x00-\x1f]')


def _forms_dir() -> Path:
    """forms/ in the source tree, else the installed copy under share/emflow (as the engine finds it)."""
    here = Path(__file__).resolve().parents[2] / "forms"
    return here if here.is_dir() else Path(sys.prefix) / "share" / "emflow" / "forms"


def _fail(message: str, reason: str, retryable: bool = False) -> ConnectorError:
    return ConnectorError(message, retryable=retryable, code=f"documents.{reason}")


def _output_name(name: str | None, default: str, suffix: str) -> str:
    """A plain file name ending in ``suffix``: no folders, no characters that break downloads."""
    stem = _BAD_NAME.sub("_", (name or default).strip()).strip(". ") or "document"
    if not stem.lower().endswith(suffix):
        stem = stem.rsplit(".", 1)[0] if stem.lower().endswith((".docx", ".pdf")) else stem
        stem += suffix
    return stem


def _ref(value) -> dict:
    return value if isinstance(value, dict) else {"id": str(value)}


class DocumentsConnector(Connector):
    name = "documents"
    title = "公文制作与电子签章"
    config_schema = {
        "type": "object",
        "properties": {
            "templates_dir": {"type": "string", "description": "folder of .docx templates and seal images; "
                                                             "default: the platform's forms/ folder"},
            "soffice": {"type": "string", "description": "LibreOffice executable; default: soffice on PATH"},
            "seal_image": {"type": "string", "description": f"PNG under the templates folder; default {DEMO_SEAL}"},
            "signer_pkcs12": {"type": "string", "description": "the signing key and certificate, PKCS#12, base64"},
            "signer_passphrase": {"type": "string", "description": "passphrase of signer_pkcs12"},
            "trust_roots_pem": {"type": "string", "description": "PEM certificates that Verify trusts"},
            "stamp_font": {"type": "string", "description": "font file (.otf/.ttf/.ttc) for visible signatures; "
                                                          "default: Noto Sans CJK or WenQuanYi Zen Hei"},
        },
        "additionalProperties": False,
    }
    operations = {
        "Render": Operation(
            method="render",
            description="Fill {{field}} placeholders of a .docx template (body, tables, headers, footers); "
                        "a table row naming {{list.column}} repeats once per item of that list.",
            params={"type": "object",
                    "properties": {"template": {"type": "string", "minLength": 1, "maxLength": 300,
                                                "description": "a .docx under forms/, e.g. documents/notice.docx"},
                                   "fields": {"type": "object"}, "output_name": _NAME,
                                   "allow_missing": {"type": "boolean", "description": "blank unknown fields "
                                                                                       "instead of failing"}},
                    "required": ["template", "fields"], "additionalProperties": False},
            result=_REF, timeout=30.0, retries=1,
        ),
        "ToPdf": Operation(
            method="to_pdf",
            description="Convert a stored .docx to PDF with LibreOffice.",
            params={"type": "object", "properties": {"file": _FILE, "output_name": _NAME},
                    "required": ["file"], "additionalProperties": False},
            result=_REF, timeout=120.0, retries=2,
        ),
        "Seal": Operation(
            method="seal",
            description="Stamp the seal image on a PDF page, centred at x_mm/y_mm from the bottom-left corner "
                        "or over the first occurrence of anchor_text (e.g. the signing date).",
            params={"type": "object",
                    "properties": {"file": _FILE, "output_name": _NAME,
                                   "page": {"type": "integer", "minimum": -100, "maximum": 10000, "not": {"const": 0},
                                            "description": "1 is the first page, -1 the last (default)"},
                                   "x_mm": _MM, "y_mm": _MM,
                                   "anchor_text": {"type": "string", "minLength": 1, "maxLength": 100},
                                   "size_mm": {"type": "number", "minimum": 10, "maximum": 80}},
                    "required": ["file"], "additionalProperties": False},
            result={"type": "object", "properties": {"file": _REF, "page": {"type": "integer"},
                                                     "x_mm": {"type": "number"}, "y_mm": {"type": "number"},
                                                     "size_mm": {"type": "number"}},
                    "required": ["file", "page"]},
            timeout=30.0, retries=1,
        ),
        "Sign": Operation(
            method="sign",
            description="Apply a PAdES digital signature with the configured PKCS#12 key; visible when box_mm "
                        "([x1, y1, x2, y2] from the bottom-left corner) is given.",
            params={"type": "object",
                    "properties": {"file": _FILE, "output_name": _NAME,
                                   "field_name": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_]{0,39}$"},
                                   "reason": {"type": "string", "maxLength": 200},
                                   "location": {"type": "string", "maxLength": 200},
                                   "page": {"type": "integer", "minimum": -100, "maximum": 10000, "not": {"const": 0}},
                                   "box_mm": {"type": "array", "items": _MM, "minItems": 4, "maxItems": 4}},
                    "required": ["file"], "additionalProperties": False},
            result={"type": "object", "properties": {"file": _REF, "signer": {"type": "string"}},
                    "required": ["file", "signer"]},
            timeout=60.0, retries=1,
        ),
        "Verify": Operation(
            method="verify",
            description="Verify every signature of a stored PDF against the configured trust roots.",
            params={"type": "object", "properties": {"file": _FILE}, "required": ["file"],
                    "additionalProperties": False},
            result={"type": "object",
                    "properties": {"readable": {"type": "boolean"}, "signed": {"type": "boolean"},
                                   "all_valid": {"type": "boolean"},
                                   "signatures": {"type": "array", "items": {"type": "object"}}},
                    "required": ["readable", "signed", "all_valid", "signatures"]},
            timeout=60.0, retries=1,
        ),
    }

    # -- configuration --------------------------------------------------------------------------------
    def _root(self) -> Path:
        return Path(self.config.get("templates_dir") or _forms_dir()).resolve()

    def _data_file(self, name: str, suffix: str, what: str) -> bytes:
        """A file under the templates folder, refusing anything that could escape it."""
        if not isinstance(name, str) or not name.strip():
            raise _fail(f"no {what} named", "invalid_path")
        path = PurePosixPath(name)
        if (path.is_absolute() or "\\" in name or ":" in name or "\x00" in name
                or any(part in ("..", ".", "") for part in name.split("/"))):
            raise _fail(f"{what} {name!r} must be a plain path under forms/", "invalid_path")
        if path.suffix.lower() != suffix:
            raise _fail(f"{what} {name!r} is not a {suffix} file", "invalid_type")
        root = self._root()
        target = (root / path).resolve()
        # resolve() follows symlinks: a link pointing outside the folder is refused like '..'.
        if not target.is_relative_to(root):
            raise _fail(f"{what} {name!r} must be a plain path under forms/", "invalid_path")
        if not target.is_file():
            raise _fail(f"{what} {name!r} not found", "template_not_found")
        return target.read_bytes()

    def _signer(self):
        from .signing import SigningFailed, load_signer

        raw = self.config.get("signer_pkcs12")
        if not raw:
            raise _fail("no signing key configured (signer_pkcs12)", "signer_missing")
        try:
            pkcs12 = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise _fail("signer_pkcs12 is not base64", "signer_invalid") from None
        try:
            return load_signer(pkcs12, self.config.get("signer_passphrase") or "")
        except SigningFailed as exc:
            raise _fail(str(exc), "signer_invalid") from None

    def check(self) -> None:
        from .convert import find_soffice

        if not self._root().is_dir():
            raise _fail(f"templates folder {self._root()} does not exist", "config_invalid")
        if find_soffice(self.config.get("soffice", "")) is None:
            raise _fail("LibreOffice (soffice) is not installed", "soffice_missing")
        if self.config.get("signer_pkcs12"):
            self._signer()
        if self.config.get("trust_roots_pem"):
            from .signing import trust_context

            try:
                trust_context(self.config["trust_roots_pem"])
            except Exception as exc:  # noqa: BLE001 - any parse failure means the setting is unusable
                raise _fail(f"trust_roots_pem cannot be read: {exc}", "config_invalid") from None

    # -- operations -----------------------------------------------------------------------------------
    def render(self, context: ConnectorContext, template: str, fields: dict, output_name: str | None = None,
               allow_missing: bool = False) -> dict:
        from .render import MissingFields
        from .render import render as fill

        if not isinstance(fields, dict):
            raise _fail("fields must be an object", "invalid_params")
        content = self._data_file(template, ".docx", "template")
        try:
            filled = fill(content, fields, allow_missing=bool(allow_missing))
        except MissingFields as exc:
            raise _fail(f"template {template!r} needs fields that were not given: {exc}", "missing_fields") \
                from None
        except (KeyError, ValueError) as exc:  # python-docx on a file that only looks like .docx
            raise _fail(f"template {template!r} cannot be read: {exc}", "invalid_template") from None
        name = _output_name(output_name, PurePosixPath(template).name, ".docx")
        return context.store_file(name, filled, DOCX)

    def to_pdf(self, context: ConnectorContext, file, output_name: str | None = None) -> dict:
        from .convert import ConversionFailed, find_soffice
        from .convert import to_pdf as convert

        ref = _ref(file)
        content = context.read_file(ref)
        if not content.startswith(b"PK\x03\x04"):
            raise _fail("the file is not a .docx document", "invalid_type")
        soffice = find_soffice(self.config.get("soffice", ""))
        if soffice is None:
            raise _fail("LibreOffice (soffice) is not installed", "soffice_missing")
        try:
            pdf = convert(content, soffice, timeout=float(getattr(context, "timeout", 0) or 120.0))
        except ConversionFailed as exc:
            # A hang may be load on the machine (retry); a refusal means the document itself is bad.
            raise _fail(str(exc), "convert_timeout" if exc.timed_out else "convert_failed",
                        retryable=exc.timed_out) from None
        name = _output_name(output_name, ref.get("filename") or "document", ".pdf")
        return context.store_file(name, pdf, PDF)

    def seal(self, context: ConnectorContext, file, output_name: str | None = None, page: int = -1,
             x_mm: float | None = None, y_mm: float | None = None, anchor_text: str = "",
             size_mm: float = 40.0) -> dict:
        from .seal import SealError, stamp

        if not anchor_text and (x_mm is None or y_mm is None):
            raise _fail("give either x_mm and y_mm or anchor_text", "invalid_params")
        image = self._data_file(self.config.get("seal_image") or DEMO_SEAL, ".png", "seal image")
        ref = _ref(file)
        content = self._pdf(context, ref)
        try:
            sealed, placed = stamp(content, image, int(page), float(size_mm), x_mm, y_mm, anchor_text)
        except SealError as exc:
            raise _fail(str(exc), "seal_failed") from None
        name = _output_name(output_name, ref.get("filename") or "document", ".pdf")
        return {"file": context.store_file(name, sealed, PDF), **placed}

    def sign(self, context: ConnectorContext, file, output_name: str | None = None, field_name: str = "Signature1",
             reason: str = "", location: str = "", page: int = -1, box_mm: list[float] | None = None) -> dict:
        from .signing import SigningFailed, subject
        from .signing import sign as apply

        signer = self._signer()
        ref = _ref(file)
        content = self._pdf(context, ref)
        if box_mm and not (box_mm[0] < box_mm[2] and box_mm[1] < box_mm[3]):
            raise _fail("box_mm must be [x1, y1, x2, y2] with x1 < x2 and y1 < y2", "invalid_params")
        try:
            signed = apply(content, signer, field_name, reason, location, page, box_mm,
                           self.config.get("stamp_font") or "")
        except SigningFailed as exc:
            raise _fail(str(exc), "sign_failed") from None
        name = _output_name(output_name, ref.get("filename") or "document", ".pdf")
        return {"file": context.store_file(name, signed, PDF), "signer": subject(signer.signing_cert)}

    def verify(self, context: ConnectorContext, file) -> dict:
        from .signing import verify as check_all

        content = self._pdf(context, _ref(file))
        try:
            signatures = check_all(content, self.config.get("trust_roots_pem") or "")
        except Exception as exc:  # noqa: BLE001 - a file too damaged to parse is a verdict, not a crash
            return {"readable": False, "signed": False, "all_valid": False, "signatures": [],
                    "error": f"{type(exc).__name__}: {exc}"[:500]}
        return {"readable": True, "signed": bool(signatures),
                "all_valid": bool(signatures) and all(s["ok"] for s in signatures), "signatures": signatures}

    @staticmethod
    def _pdf(context: ConnectorContext, ref: dict) -> bytes:
        content = context.read_file(ref)
        if not content.startswith(b"%PDF-"):
            raise _fail("the file is not a PDF", "invalid_type")
        return content
