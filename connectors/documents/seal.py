"""Stamp a seal image (PNG with transparency) onto a PDF page with pikepdf."""
from __future__ import annotations

import io
import zlib

import pikepdf
from PIL import Image

MM = 72 / 25.4  # PDF points per millimetre


class SealError(Exception):
    """The seal cannot be placed as asked (no such page, anchor text not found, signed document)."""


def is_signed(pdf: pikepdf.Pdf) -> bool:
    """Does the document carry a filled signature field? Rewriting it would break that signature."""
    acroform = pdf.Root.get("/AcroForm")
    stack = list(acroform.get("/Fields", [])) if acroform is not None else []
    while stack:
        field = stack.pop()
        if field.get("/FT") == "/Sig" and "/V" in field:
            return True
        stack += list(field.get("/Kids", []))
    return False


def _image(pdf: pikepdf.Pdf, png: bytes) -> pikepdf.Stream:
    """An image XObject with the PNG's alpha channel as its soft mask, so the page shows through."""
    with Image.open(io.BytesIO(png)) as img:
        rgba = img.convert("RGBA")
    width, height = rgba.size
    mask = pikepdf.Stream(pdf, zlib.compress(rgba.getchannel("A").tobytes()), Type=pikepdf.Name.XObject,
                          Subtype=pikepdf.Name.Image, Width=width, Height=height,
                          ColorSpace=pikepdf.Name.DeviceGray, BitsPerComponent=8, Filter=pikepdf.Name.FlateDecode)
    return pikepdf.Stream(pdf, zlib.compress(rgba.convert("RGB").tobytes()), Type=pikepdf.Name.XObject,
                          Subtype=pikepdf.Name.Image, Width=width, Height=height, ColorSpace=pikepdf.Name.DeviceRGB,
                          BitsPerComponent=8, Filter=pikepdf.Name.FlateDecode, SMask=mask)


def _width(text: str, size: float) -> float:
    """Approximate advance of ``text``: CJK and full-width glyphs are one em, the rest about half."""
    return sum(size if ord(ch) > 0x2E7F else size / 2 for ch in text)


def find_text(content: bytes, page_index: int, text: str) -> tuple[float, float] | None:
    """Where ``text`` sits on a page, in points of user space: the centre of its first occurrence.

    Text is drawn in fragments; positions come from pypdf's text visitor and the horizontal centre is
    estimated from the font size (CJK glyphs are one em wide, others about half).
    """
    import pypdf

    page = pypdf.PdfReader(io.BytesIO(content)).pages[page_index]
    fragments: list[tuple[str, float, float, float]] = []

    def visit(chunk, cm, tm, _font, size):
        if chunk.strip():
            a, b, _c, d, e, f = pypdf.mult(tm, cm)
            fragments.append((chunk, e, f, size * (abs(d) or abs(a) or 1)))

    page.extract_text(visitor_text=visit)
    # Fragments of one line may split the anchor: search in runs of consecutive fragments on one baseline.
    for i, (_, x, y, size) in enumerate(fragments):
        joined, j = "", i
        while j < len(fragments) and abs(fragments[j][2] - y) < size / 2 and len(joined) < len(text) + 200:
            joined += fragments[j][0]
            j += 1
            at = joined.find(text)
            if at >= 0 and at < len(fragments[i][0]):
                return x + _width(joined[:at], size) + _width(text, size) / 2, y + size / 3
    return None


def stamp(content: bytes, png: bytes, page: int, size_mm: float, x_mm: float | None = None,
          y_mm: float | None = None, anchor_text: str = "") -> tuple[bytes, dict]:
    """The PDF with the seal drawn centred at (x_mm, y_mm) or over ``anchor_text``; also where it went."""
    with pikepdf.open(io.BytesIO(content)) as pdf:
        if is_signed(pdf):
            raise SealError("the document is already signed: seal it before signing")
        count = len(pdf.pages)
        index = page - 1 if page > 0 else count + page
        if not 0 <= index < count:
            raise SealError(f"the document has {count} page(s), there is no page {page}")
        target = pikepdf.Page(pdf.pages[index])
        box = [float(v) for v in target.mediabox]
        if anchor_text:
            found = find_text(content, index, anchor_text)
            if found is None:
                raise SealError(f"text {anchor_text!r} not found on page {index + 1}")
            cx, cy = found[0] - box[0], found[1] - box[1]
        else:
            cx, cy = (x_mm or 0) * MM, (y_mm or 0) * MM
        side = size_mm * MM
        name = target.add_resource(_image(pdf, png), pikepdf.Name.XObject, prefix="Seal")
        x0, y0 = box[0] + cx - side / 2, box[1] + cy - side / 2  # mm count from the media box's corner
        # Bracket the old content in q/Q so its leftover graphics state cannot move or clip the seal.
        target.contents_add(pdf.make_stream(b"q\n"), prepend=True)
        target.contents_add(pdf.make_stream(f"Q\nq {side:.3f} 0 0 {side:.3f} {x0:.3f} {y0:.3f} cm {name} Do Q\n"
                                            .encode()))
        out = io.BytesIO()
        pdf.save(out)
    return out.getvalue(), {"page": index + 1, "x_mm": round(cx / MM, 1), "y_mm": round(cy / MM, 1),
                            "size_mm": size_mm}
