"""Fill ``{{field}}`` placeholders in a .docx template with python-docx, keeping the template's formatting."""
from __future__ import annotations

import copy
import io
import re
from collections.abc import Iterator

import docx
from docx.document import Document
from docx.oxml.ns import qn
from docx.table import Table, _Cell
from docx.text.paragraph import Paragraph

PLACEHOLDER = re.compile(r"\{\{\s*([\w.]+)\s*\}\}")


class MissingFields(Exception):
    """The template names fields the caller did not supply."""

    def __init__(self, names: list[str]):
        super().__init__(", ".join(names))
        self.names = names


def format_value(value) -> str:
    """How one field value reads in a document."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, list):
        return "、".join(format_value(v) for v in value)
    return str(value)


def _fill_paragraph(paragraph: Paragraph, lookup, missing: set[str]) -> None:
    """Replace every placeholder, even when Word split it over several runs (it often does)."""
    runs = paragraph.runs
    if not runs:
        return
    texts = [r.text for r in runs]
    full = "".join(texts)
    if "{{" not in full:
        return
    # Replace from the end so earlier offsets stay valid.
    for match in reversed(list(PLACEHOLDER.finditer(full))):
        name = match.group(1)
        value = lookup(name)
        if value is _MISSING:
            missing.add(name)
            value = ""
        start, end = match.span()
        pos = 0
        first = True
        for i, text in enumerate(texts):
            run_start, run_end = pos, pos + len(text)
            pos = run_end
            if run_end <= start or run_start >= end:
                continue
            a, b = max(start, run_start) - run_start, min(end, run_end) - run_start
            # The run holding the opening braces carries the value, so it keeps that run's formatting.
            texts[i] = text[:a] + (format_value(value) if first else "") + text[b:]
            first = False
    for run, text in zip(runs, texts, strict=True):
        if run.text != text:
            run.text = text  # python-docx turns "\n" into a line break and "\t" into a tab


_MISSING = object()


def _lookup(fields: dict, extra: dict | None = None):
    def get(name: str):
        if extra is not None and name in extra:
            return extra[name]
        return fields.get(name, _MISSING)
    return get


def _row_list(row_text: str, fields: dict) -> str | None:
    """The list field a table row repeats over: a row naming ``{{items.col}}`` with ``items`` a list."""
    for match in PLACEHOLDER.finditer(row_text):
        head, dot, _ = match.group(1).partition(".")
        if dot and isinstance(fields.get(head), list):
            return head
    return None


def _row_text(tr) -> str:
    return "".join(t.text or "" for t in tr.iter(qn("w:t")))


def _fill_table(table: Table, fields: dict, missing: set[str]) -> None:
    for tr in list(table._tbl.tr_lst):
        name = _row_list(_row_text(tr), fields)
        if name is None:
            _fill_cells(tr, table, _lookup(fields), fields, missing)
            continue
        # A repeating row: one copy per item, in order, then the template row goes.
        anchor = tr
        for index, item in enumerate(fields[name], start=1):
            clone = copy.deepcopy(tr)
            anchor.addnext(clone)
            anchor = clone
            values = {f"{name}.{k}": v for k, v in item.items()} if isinstance(item, dict) else {}
            values[f"{name}.序号"] = values[f"{name}.index"] = index
            _fill_cells(clone, table, _lookup(fields, values), fields, missing)
        tr.getparent().remove(tr)


def _fill_cells(tr, table: Table, lookup, fields: dict, missing: set[str]) -> None:
    for tc in tr.tc_lst:  # the row's own cells: Row.cells would repeat merged ones and reach into other rows
        cell = _Cell(tc, table)
        for paragraph in cell.paragraphs:
            _fill_paragraph(paragraph, lookup, missing)
        for inner in cell.tables:
            _fill_table(inner, fields, missing)


def _parts(document: Document) -> Iterator[tuple[list[Paragraph], list[Table]]]:
    """The body, then every header and footer of every section (first-page and even-page ones too)."""
    yield document.paragraphs, document.tables
    for section in document.sections:
        for part in (section.header, section.footer, section.first_page_header, section.first_page_footer,
                     section.even_page_header, section.even_page_footer):
            if not part.is_linked_to_previous:
                yield part.paragraphs, part.tables


def placeholders(content: bytes) -> list[str]:
    """Every placeholder name a template uses, in order of first appearance (for describing templates)."""
    document = docx.Document(io.BytesIO(content))
    names: list[str] = []
    for paragraphs, tables in _parts(document):
        texts = [p.text for p in paragraphs] + [_row_text(tr) for t in tables for tr in t._tbl.tr_lst]
        for text in texts:
            names += [m.group(1) for m in PLACEHOLDER.finditer(text) if m.group(1) not in names]
    return names


def render(content: bytes, fields: dict, allow_missing: bool = False) -> bytes:
    """The template with placeholders filled; raises MissingFields unless ``allow_missing``."""
    document = docx.Document(io.BytesIO(content))
    missing: set[str] = set()
    for paragraphs, tables in _parts(document):
        for paragraph in paragraphs:
            _fill_paragraph(paragraph, _lookup(fields), missing)
        for table in tables:
            _fill_table(table, fields, missing)
    if missing and not allow_missing:
        raise MissingFields(sorted(missing))
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()
