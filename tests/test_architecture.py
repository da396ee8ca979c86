"""Who may import whom (ARCHITECTURE.md, fixed): checked by walking every import with ast.

engine/           never flask (nor flask_* extensions), webapp, or a concrete connector (connectors.base only)
connectors/<x>/   connectors.base plus stdlib and vendor libraries: never engine, webapp or another connector
edge/             never engine or webapp: it talks to the platform over HTTP only
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """Every module a file imports, absolute, with its line: import, from-import (relative ones resolved)
    and importlib.import_module / __import__ with a literal name."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.append((node.lineno, target))
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names if alias.name != "*"]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in ("import_module", "__import__"):
                found.append((node.lineno, node.args[0].value))
    return found


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def breach(importer: str, imported: str) -> str | None:
    """Why ``importer`` may not import ``imported``, or None."""
    top = importer.split(".")[0]
    if top == "engine":
        if imported.split(".")[0].startswith("flask") or within(imported, "webapp"):
            return "engine/ never imports Flask (or its extensions) or the web app"
        if within(imported, "connectors") and imported != "connectors" and not within(imported, "connectors.base"):
            return "engine/ reaches connectors only through connectors.base"
    elif top == "connectors":
        if within(imported, "engine") or within(imported, "webapp"):
            return "connectors/ never import the engine or the web app"
        own = ".".join(importer.split(".")[:2])
        if within(imported, "connectors") and imported != "connectors" and not within(imported, "connectors.base") \
                and not within(imported, own):
            return "a connector imports only connectors.base, not another connector"
    elif top == "edge" and (within(imported, "engine") or within(imported, "webapp")):
        return "edge/ never imports the engine or the web app"
    return None


def python_files() -> list[Path]:
    return sorted(p for folder in ("engine", "connectors", "edge") for p in (ROOT / folder).rglob("*.py"))


def breaches(path: Path) -> list[str]:
    module = module_name(path)
    found = imports(path.read_text(encoding="utf-8"), module, path.name == "__init__.py")
    return [f"{path.relative_to(ROOT)}:{line}: imports {name}: {why}"
            for line, name in found if (why := breach(module, name))]


@pytest.mark.parametrize("path", python_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_forbidden_imports(path):
    assert breaches(path) == []


def test_the_walk_covers_every_package():
    seen = {module_name(p).split(".")[0] for p in python_files()}
    assert seen == {"engine", "connectors", "edge"}
    assert any(module_name(p) == "connectors.base" for p in python_files())


# -- the checker itself catches what it must -----------------------------------------------------------

PACKAGES = {"connectors.base", "connectors.docnumber", "edge"}


def found_breaches(module: str, source: str) -> list[str]:
    return [name for _, name in imports(source, module, module in PACKAGES) if breach(module, name)]


@pytest.mark.parametrize(("module", "source"), [
    ("engine.runtime", "import flask"),
    ("engine.runtime", "from flask import current_app"),
    ("engine.runtime", "from flask_babel import gettext"),
    ("engine.runtime", "def f():\n    import webapp.views"),
    ("engine.runtime", "from connectors.docnumber import DocNumberConnector"),
    ("engine.runtime", "from connectors import notify"),
    ("engine.runtime", "import importlib\nimportlib.import_module('webapp')"),
    ("connectors.docnumber", "from engine.models import User"),
    ("connectors.docnumber", "from engine import numbering"),
    ("connectors.docnumber", "import webapp"),
    ("connectors.docnumber", "from connectors.notify import NotifyConnector"),
    ("connectors.docnumber", "from ..notify import NotifyConnector"),
    ("connectors.base", "from engine.errors import EngineError"),
    ("edge", "from engine import messages"),
    ("edge.collector", "import webapp.api"),
    ("edge.collector", "__import__('engine.db')"),
])
def test_the_checker_catches_a_forbidden_import(module, source):
    assert found_breaches(module, source)


@pytest.mark.parametrize(("module", "source"), [
    ("engine.connectors", "from connectors.base import Connector, Operation"),
    ("engine.connectors", "import connectors.base"),
    ("engine.connectors", "from connectors import base"),
    ("engine.runtime", "from .bpmn.compact import compact\nfrom . import audit\nimport sqlalchemy"),
    ("connectors.docnumber", "from connectors.base import Connector\nimport re\nimport httpx"),
    ("connectors.docnumber", "from . import helpers\nfrom .helpers import x"),
    ("edge.collector", "import json\nimport httpx\nfrom . import buffer"),
])
def test_the_checker_allows_what_is_allowed(module, source):
    assert found_breaches(module, source) == []


def test_relative_imports_are_resolved():
    assert (1, "connectors.notify.NotifyConnector") in imports(
        "from ..notify import NotifyConnector", "connectors.docnumber", is_package=True)
    assert (1, "engine.bpmn.compact") in imports("from .compact import x", "engine.bpmn.scripting", is_package=False)
