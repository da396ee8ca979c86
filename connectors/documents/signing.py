"""PAdES signatures with pyhanko: sign with a PKCS#12 key, verify every signature against configured roots."""
from __future__ import annotations

import asyncio
import contextlib
import io
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pyhanko.keys import load_certs_from_pemder_data
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.general import SigningError
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko.stamp import TextStampStyle
from pyhanko_certvalidator import ValidationContext

MM = 72 / 25.4
# CJK fonts for the visible signature's text (Debian fonts-noto-cjk, fonts-wqy-zenhei): pyhanko's built-in
# font has no Chinese glyphs, and signer names are Chinese.
CJK_FONTS = ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")


class SigningFailed(Exception):
    """The key material or the document is unusable for signing."""


def off_loop(fn, *args):
    """Call one of pyhanko's synchronous functions. They run an event loop of their own (asyncio.run), which
    fails in a thread whose loop is already running (an async caller), so there they run in a fresh thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn(*args)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn, *args).result()


def load_signer(pkcs12: bytes, passphrase: str) -> signers.SimpleSigner:
    """The signer in a PKCS#12 archive; a wrong passphrase or damaged archive raises SigningFailed."""
    try:
        return signers.SimpleSigner.load_pkcs12_data(pkcs12, other_certs=None,
                                                     passphrase=passphrase.encode() if passphrase else None)
    except ValueError as exc:
        raise SigningFailed("the signing key cannot be opened: wrong passphrase or damaged PKCS#12 data") \
            from exc


def subject(cert) -> str:
    """A certificate's subject as people read it (CN=…, O=…)."""
    return cert.subject.human_friendly


def _single_font(path: str) -> str:
    """A font file pyhanko can embed: collections (.ttc) yield their Simplified Chinese face, cached on disk."""
    if not path.lower().endswith(".ttc"):
        return path
    from fontTools import ttLib

    stat = os.stat(path)
    cached = Path(tempfile.gettempdir()) / "emflow-fonts" / f"{Path(path).stem}-{stat.st_size}-{int(stat.st_mtime)}.otf"
    if not cached.is_file():
        with ttLib.TTCollection(path, lazy=True) as collection:  # lazy: it reads from the open file until saved
            names = [f["name"].getDebugName(1) or "" for f in collection.fonts]
            face = next((i for i, n in enumerate(names) if n.endswith(" SC")), 0)
            cached.parent.mkdir(parents=True, exist_ok=True)
            part = cached.with_suffix(f".{os.getpid()}.part")  # then an atomic rename: parallel calls may race here
            collection.fonts[face].save(str(part))
        os.replace(part, cached)
    return str(cached)


def stamp_style(font: str = "") -> TextStampStyle:
    """How a visible signature looks: signer and time in a CJK font, or plain ASCII text without one."""
    found = next((f for f in ([font] if font else CJK_FONTS) if f and os.path.isfile(f)), None)
    if found is None:
        return TextStampStyle(stamp_text="Digitally signed\n%(ts)s")
    from pyhanko.pdf_utils.font.opentype import GlyphAccumulator, GlyphAccumulatorFactory
    from pyhanko.pdf_utils.text import TextBoxStyle

    class InMemoryFont(GlyphAccumulatorFactory):
        """pyhanko's factory opens the font file and never closes it; hand it the bytes instead."""

        def create_font_engine(self, writer, obj_stream=None) -> GlyphAccumulator:
            if obj_stream is None and writer.stream_xrefs and self.create_objstream_if_needed:
                obj_stream = writer.prepare_object_stream()
            return GlyphAccumulator(writer=writer, font_handle=io.BytesIO(Path(self.font_file).read_bytes()),
                                    font_size=self.font_size, obj_stream=obj_stream)

    return TextStampStyle(stamp_text="数字签名：%(signer)s\n签名时间：%(ts)s",
                          text_box_style=TextBoxStyle(font=InMemoryFont(_single_font(found))))


def sign(content: bytes, signer: signers.SimpleSigner, field_name: str, reason: str = "", location: str = "",
         page: int | None = None, box_mm: list[float] | None = None, font: str = "") -> bytes:
    """The PDF with a PAdES (B-B) signature appended as an incremental update; visible when ``box_mm`` is given."""
    try:
        writer = IncrementalPdfFileWriter(io.BytesIO(content), strict=False)
    except (PdfError, ValueError) as exc:
        raise SigningFailed(f"the file is not a readable PDF: {exc}") from exc
    spec = None
    if box_mm:
        pages = int(writer.root["/Pages"]["/Count"])
        index = (page - 1 if page and page > 0 else pages + (page or -1))
        if not 0 <= index < pages:
            raise SigningFailed(f"the document has {pages} page(s), there is no page {page}")
        spec = fields.SigFieldSpec(field_name, on_page=index, box=tuple(round(v * MM) for v in box_mm))
    meta = signers.PdfSignatureMetadata(field_name=field_name, md_algorithm="sha256",
                                        subfilter=fields.SigSeedSubFilter.PADES, reason=reason or None,
                                        location=location or None)
    try:
        pdf_signer = signers.PdfSigner(meta, signer=signer, new_field_spec=spec,
                                       stamp_style=stamp_style(font) if spec is not None else None)
        out = off_loop(pdf_signer.sign_pdf, writer)
    except (SigningError, PdfError) as exc:
        raise SigningFailed(str(exc)) from exc
    return out.getvalue()


def trust_context(trust_roots_pem: str) -> ValidationContext:
    """Trust only the configured roots; revocation is checked if the signature embeds it, never fetched."""
    roots = list(load_certs_from_pemder_data(trust_roots_pem.encode())) if trust_roots_pem.strip() else []
    return ValidationContext(trust_roots=roots, allow_fetching=False, revocation_mode="soft-fail")


def verify(content: bytes, trust_roots_pem: str) -> list[dict]:
    """One verdict per signature, in document order; a damaged or tampered file reports, never raises."""
    reader = PdfFileReader(io.BytesIO(content), strict=False)
    verdicts = []
    for embedded in reader.embedded_signatures:
        verdict = {"field": embedded.field_name, "signer": "", "signing_time": None, "intact": False,
                   "valid": False, "trusted": False, "whole_document": False, "coverage": "unclear",
                   "modified_after_signing": True, "modification": None, "ok": False, "summary": ""}
        try:
            status = off_loop(validate_pdf_signature, embedded, trust_context(trust_roots_pem))
        except Exception as exc:  # noqa: BLE001 - any failure inside a hostile file is a failed verdict
            verdict["summary"] = f"cannot be validated: {type(exc).__name__}: {exc}"
            with contextlib.suppress(Exception):  # in a mangled signature the signer stays unknown
                verdict["signer"] = subject(embedded.signer_cert)
            verdicts.append(verdict)
            continue
        coverage = status.coverage
        signed_at = status.signer_reported_dt
        verdict.update(
            signer=subject(status.signing_cert),
            signing_time=signed_at.isoformat() if signed_at else None,
            intact=bool(status.intact), valid=bool(status.valid), trusted=bool(status.trusted),
            whole_document=coverage == SignatureCoverageLevel.ENTIRE_FILE,
            coverage=coverage.name.lower() if coverage is not None else "unclear",
            modified_after_signing=coverage != SignatureCoverageLevel.ENTIRE_FILE,
            modification=status.modification_level.name.lower() if status.modification_level is not None else None,
            ok=bool(status.bottom_line), summary=status.summary(),
        )
        verdicts.append(verdict)
    return verdicts
