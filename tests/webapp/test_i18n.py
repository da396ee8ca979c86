"""The zh_CN catalogue covers every message in the code and templates, and its .mo is current."""
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[2]
PO = ROOT / "webapp/translations/zh_Hans_CN/LC_MESSAGES/messages.po"
METHODS = [("webapp/**.py", "python"), ("engine/**.py", "python"), ("webapp/templates/**.html", "jinja2")]
KEYWORDS = {"_": None, "_l": None, "N_": None, "gettext": None, "lazy_gettext": None}


def _extracted() -> set[str]:
    ids = set()
    for _filename, _lineno, message, _comments, _context in extract_from_dir(
            str(ROOT), METHODS, keywords=KEYWORDS, comment_tags=()):
        ids.add(message if isinstance(message, str) else message[0])
    return ids


def test_every_message_is_translated():
    with open(PO, "rb") as f:
        catalog = read_po(f)
    translated = {m.id: m.string for m in catalog if m.id}
    missing = sorted(m for m in _extracted() if not translated.get(m))
    assert not missing, f"untranslated (run pybabel extract/update, see README): {missing}"


def test_compiled_catalogue_matches_the_po_file():
    with open(PO, "rb") as f:
        po = {m.id: m.string for m in read_po(f) if m.id}
    with open(PO.with_suffix(".mo"), "rb") as f:
        mo = {m.id: m.string for m in read_mo(f) if m.id}
    assert po == mo, "messages.mo is stale: run pybabel compile -d webapp/translations"
