"""The handling sheet as an A4 PDF (reportlab), with an embedded CJK TrueType font.

reportlab embeds only TrueType outlines, so Noto Sans CJK (CFF) cannot be used; WenQuanYi Zen Hei
(Debian package fonts-wqy-zenhei) can. EMFLOW_PDF_FONT names another TrueType font file (.ttf/.ttc).
"""
from __future__ import annotations

import io
import os
import threading
from pathlib import Path
from xml.sax.saxutils import escape

from flask_babel import gettext as _
from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFError, TTFont
from reportlab.platypus import Image, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from engine.sheet import Sheet, field_rows

FONT_NAME = "EmflowCJK"
FONT_PATHS = (
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",  # Debian/Ubuntu: fonts-wqy-zenhei
    "/usr/share/fonts/wqy-zenhei/wqy-zenhei.ttc",  # Fedora, Arch
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",  # Debian/Ubuntu: fonts-wqy-microhei
)
SIGNATURE_WIDTH = 40 * mm
SIGNATURE_MAX_HEIGHT = 20 * mm
ROW_LINES = 6  # lines of a long opinion per table row: rows move to the next page whole
RED, INK, MUTED, LINE, SHADE = (colors.HexColor(c) for c in ("#b0271d", "#1f2933", "#66707a", "#8a949e", "#f1f3f6"))
_lock = threading.Lock()


class FontMissing(RuntimeError):
    """No usable CJK TrueType font for the PDF."""


def _font() -> str:
    """Register the CJK font once; the first usable of EMFLOW_PDF_FONT and the known paths."""
    with _lock:
        if FONT_NAME in pdfmetrics.getRegisteredFontNames():
            return FONT_NAME
        configured = os.environ.get("EMFLOW_PDF_FONT")
        for path in ([configured] if configured else []) + list(FONT_PATHS):
            if not Path(path).is_file():
                continue
            try:
                pdfmetrics.registerFont(TTFont(FONT_NAME, path, subfontIndex=0))
            except TTFError as exc:
                raise FontMissing(f"the PDF font {path} is not usable ({exc}); reportlab needs TrueType "
                                  "outlines, e.g. the Debian package fonts-wqy-zenhei") from exc
            return FONT_NAME
        raise FontMissing("no CJK TrueType font found for PDFs: install the Debian package fonts-wqy-zenhei "
                          "(apt-get install fonts-wqy-zenhei) or set EMFLOW_PDF_FONT to a .ttf/.ttc file"
                          + (f" (EMFLOW_PDF_FONT={configured} does not exist)" if configured else ""))


def _styles(font: str) -> dict[str, ParagraphStyle]:
    # wordWrap CJK breaks lines between any two Chinese characters, as Chinese text is set.
    base = ParagraphStyle("base", fontName=font, fontSize=10.5, leading=15, textColor=INK, wordWrap="CJK")
    return {
        "org": ParagraphStyle("org", base, fontSize=15, leading=20, alignment=TA_CENTER, textColor=RED),
        "title": ParagraphStyle("title", base, fontSize=24, leading=32, alignment=TA_CENTER, textColor=RED),
        "meta": ParagraphStyle("meta", base, fontSize=8.5, leading=12, textColor=MUTED, alignment=TA_CENTER),
        "label": ParagraphStyle("label", base, textColor=MUTED),
        "cell": base,
        "small": ParagraphStyle("small", base, fontSize=9, leading=12),
        "head": ParagraphStyle("head", base, fontSize=12, leading=18, spaceBefore=12, spaceAfter=4),
    }


def _para(text: str, style: ParagraphStyle) -> Paragraph:
    return Paragraph(escape(text).replace("\n", "<br/>"), style)


def _signature(png: bytes) -> Image | None:
    """The signature scaled to 40 mm wide (less if it would be taller than 20 mm)."""
    try:
        width, height = ImageReader(io.BytesIO(png)).getSize()
    except Exception:  # a damaged image must not cost the whole sheet
        return None
    scale = min(SIGNATURE_WIDTH / width, SIGNATURE_MAX_HEIGHT / height)
    return Image(io.BytesIO(png), width=width * scale, height=height * scale, hAlign="LEFT")


def _fields_table(sheet: Sheet, st: dict, width: float) -> Table:
    """Label | value | label | value; a field alone on its row spans the row."""
    label_w = 24 * mm
    value_w = width / 2 - label_w
    rows, style = [], [("GRID", (0, 0), (-1, -1), 0.6, LINE), ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                       ("BACKGROUND", (0, 0), (0, -1), SHADE), ("TOPPADDING", (0, 0), (-1, -1), 5),
                       ("BOTTOMPADDING", (0, 0), (-1, -1), 5)]
    for r, row in enumerate(field_rows(sheet.fields)):
        cells = [c for f in row for c in (_para(f.title, st["label"]), _para(f.value, st["cell"]))]
        rows.append(cells + [""] * (4 - len(cells)))
        style.append(("BACKGROUND", (2, r), (2, r), SHADE) if len(row) == 2 else ("SPAN", (1, r), (3, r)))
    return Table(rows, colWidths=[label_w, value_w, label_w, value_w], style=TableStyle(style),
                 splitInRow=1)


def _pieces(text: str, style: ParagraphStyle, width: float) -> list[str]:
    """An opinion as paragraph markup in pieces of ROW_LINES lines, cut where reportlab wraps it."""
    # One table row per piece: the table then splits between rows (repeating its header) however long
    # the opinion is, where a single tall row would not fit a page.
    lines = []
    for part in text.split("\n"):
        paragraph = Paragraph(escape(part), style)
        # One em narrower: a line may end in hanging punctuation (。，) that must still fit the cell.
        paragraph.wrap(width - style.fontSize, 1e6)
        lines += [" ".join(words) for _extra, words in paragraph.blPara.lines] or [""]
    return ["<br/>".join(escape(line) for line in lines[i:i + ROW_LINES]) for i in range(0, len(lines), ROW_LINES)]


def _steps_table(sheet: Sheet, images: dict[str, bytes], st: dict, width: float) -> Table:
    """Step | opinion (decision first) | who, with the signature | time; the header repeats on each page."""
    widths = [26 * mm, width - 26 * mm - 44 * mm - 25 * mm, 44 * mm, 25 * mm]
    rows = [[_para(t, st["label"]) for t in (_("Step"), _("Opinion"), _("Signed by"), _("Time"))]]
    style = [("BOX", (0, 0), (-1, -1), 0.6, LINE), ("LINEAFTER", (0, 0), (-2, -1), 0.6, LINE),
             ("LINEBELOW", (0, 0), (-1, 0), 0.6, LINE), ("VALIGN", (0, 0), (-1, -1), "TOP"),
             ("BACKGROUND", (0, 0), (-1, 0), SHADE), ("TOPPADDING", (0, 0), (-1, -1), 5),
             ("BOTTOMPADDING", (0, 0), (-1, -1), 6)]
    for step in sheet.steps:
        first, *more = _pieces(step.opinion, st["cell"], widths[1] - 12) if step.opinion else [""]  # 12: paddings
        if step.decision:
            first = f'<font color="#1b4d89">{escape(step.decision)}</font>' + (f"<br/>{first}" if first else "")
        who = [_para(step.who, st["cell"])]
        image = _signature(images[step.signature_id]) if step.signature_id in images else None
        if image is not None:
            who.append(image)
        rows.append([_para(step.step, st["cell"]), Paragraph(first, st["cell"]), who,
                     _para(step.at.replace(" ", "\n"), st["small"])])
        for piece in more:  # continuation rows: no rule above, no gap, so the text reads on
            style += [("BOTTOMPADDING", (0, len(rows) - 1), (-1, len(rows) - 1), 0),
                      ("TOPPADDING", (0, len(rows)), (-1, len(rows)), 0)]
            rows.append(["", Paragraph(piece, st["cell"]), "", ""])
        style.append(("LINEBELOW", (0, len(rows) - 1), (-1, len(rows) - 1), 0.6, LINE))
    return Table(rows, colWidths=widths, style=TableStyle(style), repeatRows=1)


def render(sheet: Sheet, images: dict[str, bytes], status_label: str) -> bytes:
    """The sheet as PDF bytes; ``images`` are signature PNGs by id, ``status_label`` the status in words."""
    font = _font()
    st = _styles(font)
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(buffer, pagesize=A4, leftMargin=20 * mm, rightMargin=20 * mm, topMargin=18 * mm,
                            bottomMargin=18 * mm, title=f"{sheet.instance_title} {sheet.title}",
                            author=sheet.organisation, subject=sheet.process_name, creator="emflow")
    meta = [f"#{sheet.instance_id}", status_label, f"{_('Started')} {sheet.started_at}"]
    if sheet.business_key:
        meta.insert(1, f"{_('Business key')} {sheet.business_key}")
    if sheet.ended_at:
        meta.append(f"{_('Ended')} {sheet.ended_at}")
    story = []
    if sheet.organisation:
        story.append(_para(sheet.organisation, st["org"]))
    story += [_para(sheet.title, st["title"]), Spacer(0, 2 * mm), _para(" · ".join(meta), st["meta"]),
              Spacer(0, 5 * mm)]
    if sheet.fields:
        story.append(_fields_table(sheet, st, doc.width))
    story.append(_para(_("Opinions"), st["head"]))
    if sheet.steps:
        story.append(_steps_table(sheet, images, st, doc.width))
    else:
        story.append(_para(_("No opinions yet."), st["label"]))

    def footer(canvas, document):
        canvas.saveState()
        canvas.setFont(font, 8)
        canvas.setFillColor(MUTED)
        canvas.drawString(document.leftMargin, 10 * mm, f"{sheet.instance_title} · {sheet.title}"[:60])
        canvas.drawRightString(A4[0] - document.rightMargin, 10 * mm, _("Page %(page)s", page=document.page))
        canvas.restoreState()

    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return buffer.getvalue()
