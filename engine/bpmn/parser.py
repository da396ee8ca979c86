"""Hardened BPMN parsing: no DTDs, no entities, no network; our task classes plugged in."""
from __future__ import annotations

import re

from lxml import etree
from SpiffWorkflow.bpmn.parser.BpmnParser import full_tag
from SpiffWorkflow.spiff.parser.process import VALIDATOR, SpiffBpmnParser
from SpiffWorkflow.spiff.parser.task_spec import ServiceTaskParser, UserTaskParser
from SpiffWorkflow.spiff.specs.defaults import UserTask

from ..errors import DeployError
from .specs import AggregateParallelMI, AggregateSequentialMI, AsyncServiceTask

_DOCTYPE = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
MAX_XML_BYTES = 5 * 1024 * 1024


def _xml_parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                           huge_tree=False, remove_pis=True)


def parse_xml(data: bytes, filename: str) -> etree._Element:
    """Parse untrusted XML (BPMN, DMN); DOCTYPE and entity declarations are refused outright."""
    if len(data) > MAX_XML_BYTES:
        raise DeployError(f"file is larger than {MAX_XML_BYTES // 1024 // 1024} MB", file=filename)
    if _DOCTYPE.search(data):
        raise DeployError("DOCTYPE and ENTITY declarations are not allowed", file=filename,
                          line=data[: _DOCTYPE.search(data).start()].count(b"\n") + 1)
    try:
        root = etree.fromstring(data, _xml_parser())
    except etree.XMLSyntaxError as exc:
        raise DeployError(f"invalid XML: {exc.msg}", file=filename, line=exc.lineno) from None
    if root.getroottree().docinfo.doctype:  # declared in an encoding the byte scan cannot see (UTF-16)
        raise DeployError("DOCTYPE and ENTITY declarations are not allowed", file=filename)
    return root


class _UserTaskParser(UserTaskParser):
    PARALLEL_MI_CLASS = AggregateParallelMI
    SEQUENTIAL_MI_CLASS = AggregateSequentialMI


class EmflowParser(SpiffBpmnParser):
    """SpiffBpmnParser with XSD validation, async service tasks and aggregate MI conditions."""

    OVERRIDE_PARSER_CLASSES = {
        **SpiffBpmnParser.OVERRIDE_PARSER_CLASSES,
        full_tag("serviceTask"): (ServiceTaskParser, AsyncServiceTask),
        full_tag("userTask"): (_UserTaskParser, UserTask),
    }

    def __init__(self):
        super().__init__(validator=VALIDATOR)

    def add_bpmn_bytes(self, data: bytes, filename: str) -> etree._Element:
        """Parse and add one BPMN document; returns its root for further checks."""
        root = parse_xml(data, filename)
        self.add_bpmn_xml(root, filename)
        return root

    def add_dmn_bytes(self, data: bytes, filename: str) -> etree._Element:
        root = parse_xml(data, filename)
        self.add_dmn_xml(root, filename)
        return root
