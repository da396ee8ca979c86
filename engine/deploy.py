"""Deploying process bundles: validation with precise messages, immutable versions by sha256."""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.events.start_event import StartEvent
from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit, taskconfig
from .assignment import parse_rule
from .bpmn.parser import EmflowParser
from .bpmn.sandbox import check_source
from .bpmn.serializer import specs_to_json
from .errors import AssignmentError, DeployError
from .forms import load_form
from .models import ProcessModel, ProcessVersion, User

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
SPIFF_NS = "http://spiffworkflow.org/bpmn/schema/1.0/core"
NS = {"bpmn": BPMN_NS, "spiffworkflow": SPIFF_NS}
KEY_RE = re.compile(r"^[a-z][a-z0-9_]{1,63}$")
FORM_PROPERTY = "formJsonSchemaFilename"
RULE_PROPERTIES = ("assignee", "candidates")


@dataclass
class Bundle:
    """A process to deploy: metadata plus its files (BPMN, DMN, forms) as text."""

    key: str
    name: str
    files: dict[str, str]
    category: str = ""
    description: str = ""
    options: dict = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        h = hashlib.sha256()
        h.update(json.dumps({"key": self.key, "name": self.name, "category": self.category,
                             "options": self.options}, sort_keys=True, ensure_ascii=False).encode())
        for name in sorted(self.files):
            h.update(name.encode() + b"\0" + self.files[name].encode() + b"\0")
        return h.hexdigest()


def bundle_from_dir(path: Path, forms_root: Path | None = None) -> Bundle:
    """Read processes/<key>/ (process.json + BPMN/DMN) and the forms it references from forms/<key>/."""
    meta_file = path / "process.json"
    if not meta_file.is_file():
        raise DeployError("process.json is missing", file=str(meta_file))
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DeployError(f"not valid JSON: {exc.msg}", file=str(meta_file), line=exc.lineno) from None
    files = {p.name: p.read_text(encoding="utf-8") for p in sorted(path.iterdir())
             if p.suffix in (".bpmn", ".dmn") or p.name.endswith(".schema.json")}
    forms_dir = (forms_root / meta.get("key", path.name)) if forms_root else None
    if forms_dir and forms_dir.is_dir():
        for p in sorted(forms_dir.glob("*.json")):
            files.setdefault(p.name, p.read_text(encoding="utf-8"))
    return Bundle(key=meta.get("key", path.name), name=meta.get("name", path.name), files=files,
                  category=meta.get("category", ""), description=meta.get("description", ""),
                  options={k: v for k, v in meta.items() if k not in ("key", "name", "category", "description")})


def _line_of(roots: dict[str, etree._Element], element_id: str | None) -> tuple[str | None, int | None]:
    if not element_id:
        return None, None
    for filename, root in roots.items():
        found = root.xpath("//*[@id=$i]", i=element_id)
        if found:
            return filename, found[0].sourceline
    return None, None


def _properties(node) -> dict[str, tuple[str, int]]:
    out = {}
    for prop in node.xpath("./bpmn:extensionElements/spiffworkflow:properties/spiffworkflow:property", namespaces=NS):
        out[prop.get("name")] = (prop.get("value", ""), prop.sourceline)
    return out


def _check_scripts(filename: str, root) -> None:
    """Every script and expression must compile under the sandbox; report file, line and element."""
    checks = []
    for node in root.iter(f"{{{BPMN_NS}}}script"):
        checks.append((node, node.text or "", "exec"))
    for tag in ("conditionExpression", "completionCondition", "timeDuration", "timeDate", "timeCycle"):
        for node in root.iter(f"{{{BPMN_NS}}}{tag}"):
            checks.append((node, node.text or "", "eval"))
    for tag in ("preScript", "postScript"):
        for node in root.iter(f"{{{SPIFF_NS}}}{tag}"):
            checks.append((node, node.text or "", "exec"))
    for node in root.iter(f"{{{SPIFF_NS}}}parameter"):
        checks.append((node, node.get("value", ""), "eval"))
    for node, source, mode in checks:
        if not source.strip():
            continue
        problem = check_source(source.strip() if mode == "eval" else source, mode)
        if problem:
            owner = node  # the BPMN element it belongs to (spiffworkflow:parameter has an id of its own)
            while owner is not None and (owner.get("id") is None or not owner.tag.startswith(f"{{{BPMN_NS}}}")):
                owner = owner.getparent()
            raise DeployError(f"script refused: {problem}", file=filename, line=node.sourceline,
                              element=owner.get("id") if owner is not None else None)


def validate(bundle: Bundle, connectors: dict | None = None) -> tuple[str, dict]:
    """Check a bundle thoroughly; return (spec JSON, metadata) or raise DeployError."""
    if not KEY_RE.match(bundle.key or ""):
        raise DeployError(f"process key '{bundle.key}' must be lower-case letters, digits and _ (2-64 chars)")
    bpmn_files = {n: t for n, t in bundle.files.items() if n.endswith(".bpmn")}
    if not bpmn_files:
        raise DeployError("the bundle has no .bpmn file")
    parser = EmflowParser()
    roots: dict[str, etree._Element] = {}
    for name, text in bpmn_files.items():
        try:
            roots[name] = parser.add_bpmn_bytes(text.encode("utf-8"), name)
        except ValidationException as exc:
            raise DeployError(str(exc).split("\n")[0], file=exc.file_name or name,
                              line=exc.line_number or None, element=exc.id or None) from None
    for name, text in bundle.files.items():
        if name.endswith(".dmn"):
            try:
                parser.add_dmn_bytes(text.encode("utf-8"), name)
            except ValidationException as exc:
                raise DeployError(str(exc).split("\n")[0], file=name, line=exc.line_number or None) from None
    if bundle.key not in parser.get_process_ids():
        known = ", ".join(parser.get_process_ids()) or "none"
        raise DeployError(f"unknown process id '{bundle.key}': the BPMN defines {known}",
                          file=next(iter(bpmn_files)))
    for name, root in roots.items():
        _check_scripts(name, root)

    forms = {}
    user_tasks = {}
    user_task_ids = {n.get("id") for root in roots.values() for n in root.iter(f"{{{BPMN_NS}}}userTask")}
    for filename, root in roots.items():
        for node in root.iter(f"{{{BPMN_NS}}}userTask"):
            tid, props = node.get("id"), _properties(node)
            form_name = props.get(FORM_PROPERTY, ("", 0))[0]
            if not form_name:
                raise DeployError(f"user task has no form (spiffworkflow:property {FORM_PROPERTY})",
                                  file=filename, line=node.sourceline, element=tid)
            if form_name not in bundle.files:
                raise DeployError(f"form file '{form_name}' is not in the bundle", file=filename,
                                  line=props[FORM_PROPERTY][1], element=tid)
            if form_name not in forms:
                forms[form_name] = load_form(form_name, bundle.files[form_name])
            rules = {}
            for prop in RULE_PROPERTIES:
                if prop in props:
                    try:
                        parse_rule(props[prop][0])
                    except AssignmentError as exc:
                        raise DeployError(exc.message, file=filename, line=props[prop][1], element=tid) from None
                    rules[prop] = props[prop][0]
            if not rules:
                raise DeployError("user task has no assignee or candidates property", file=filename,
                                  line=node.sourceline, element=tid)
            ops = taskconfig.parse({k: v[0] for k, v in props.items()}, user_task_ids,
                                   {"file": filename, "line": node.sourceline, "element": tid})
            known = (FORM_PROPERTY, *RULE_PROPERTIES, *taskconfig.PROPERTIES)
            user_tasks[tid] = {"name": node.get("name") or tid, "form": form_name, **rules,
                               "ops": taskconfig.to_meta(ops),
                               **{k: v[0] for k, v in props.items() if k not in known and not k.startswith("label.")}}
    if connectors is not None:
        for filename, root in roots.items():
            for node in root.iter(f"{{{SPIFF_NS}}}serviceTaskOperator"):
                operation = node.get("id", "")
                if operation not in connectors:
                    owner = node.getparent().getparent()
                    raise DeployError(f"unknown connector operation '{operation}'", file=filename,
                                      line=node.sourceline, element=owner.get("id"))
    try:
        spec = parser.get_spec(bundle.key)
        subprocess_specs = parser.get_subprocess_specs(bundle.key)
    except ValidationException as exc:
        file, line = _line_of(roots, exc.id)
        raise DeployError(str(exc).split("\n")[0], file=file or exc.file_name, line=line, element=exc.id) from None
    message_starts = sorted(
        ts.event_definition.name for ts in spec.task_specs.values()
        if isinstance(ts, StartEvent) and isinstance(getattr(ts, "event_definition", None), MessageEventDefinition)
    )
    meta = {"name": bundle.name, "category": bundle.category, "user_tasks": user_tasks,
            "message_starts": message_starts, "diagram": next(iter(bpmn_files)), **bundle.options}
    return specs_to_json(spec, subprocess_specs), meta


def deploy(session: Session, bundle: Bundle, actor: User | None = None,
           connectors: dict | None = None) -> tuple[ProcessVersion, bool]:
    """Validate and store a bundle; returns (version, created). Same content = same version."""
    digest = bundle.sha256
    existing = session.scalar(select(ProcessVersion).where(
        ProcessVersion.process_key == bundle.key, ProcessVersion.sha256 == digest))
    if existing is not None:
        return existing, False
    spec_json, meta = validate(bundle, connectors)
    model = session.scalars(select(ProcessModel).where(ProcessModel.key == bundle.key).with_for_update()).first()
    if model is None:
        model = ProcessModel(key=bundle.key, name=bundle.name, category=bundle.category,
                             description=bundle.description, latest_version=0)
        session.add(model)
    model.name, model.category, model.description = bundle.name, bundle.category, bundle.description
    model.latest_version += 1
    version = ProcessVersion(process_key=bundle.key, version=model.latest_version, sha256=digest,
                             files=bundle.files, spec_json=spec_json, meta=meta,
                             deployed_by_id=actor.id if actor else None)
    session.add(version)
    session.flush()
    audit.record_system(session, "process_deployed", actor, target=bundle.key, version=version.version,
                        sha256=digest)
    return version, True
