"""Workflow storage: the spec once per process version, the instance state without it."""
from __future__ import annotations

import json
from uuid import UUID

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.serializer.default.workflow import BpmnWorkflowConverter
from SpiffWorkflow.bpmn.serializer.workflow import VERSION
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG
from SpiffWorkflow.spiff.serializer.task_spec import ServiceTaskConverter, SpiffMultiInstanceConverter

from .specs import AggregateParallelMI, AggregateSequentialMI, AsyncServiceTask


class StateOnlyWorkflowConverter(BpmnWorkflowConverter):
    """Writes a workflow without its spec; restores it onto spec objects handed in by the caller."""

    def to_dict(self, workflow):
        dct = super(BpmnWorkflowConverter, self).to_dict(workflow)
        dct["subprocesses"] = self.mapping_to_dict(workflow.subprocesses)
        dct["bpmn_events"] = self.registry.convert(workflow.bpmn_events)
        return dct

    def from_dict(self, dct, spec=None, subprocess_specs=None):
        if spec is None:  # a full dict (older format after migration): restore its own specs
            return super().from_dict(dct)
        workflow = self.target_class(spec, subprocess_specs, deserializing=True)
        workflow.tasks = self.mapping_from_dict(dct["tasks"], UUID, workflow=workflow)
        workflow.task_tree = workflow.tasks.get(UUID(dct["root"]))
        self.set_default_attributes(workflow, dct)
        self.subprocesses_from_dict(dct["subprocesses"], workflow)
        workflow.bpmn_events = self.registry.restore(dct.pop("bpmn_events", []))
        return workflow


def _registry():
    config = dict(SPIFF_CONFIG)
    config[AsyncServiceTask] = ServiceTaskConverter
    config[AggregateParallelMI] = SpiffMultiInstanceConverter
    config[AggregateSequentialMI] = SpiffMultiInstanceConverter
    config[BpmnWorkflow] = StateOnlyWorkflowConverter
    return BpmnWorkflowSerializer.configure(config)


REGISTRY = _registry()
SERIALIZER = BpmnWorkflowSerializer(REGISTRY)


def specs_to_json(spec, subprocess_specs: dict) -> str:
    """Serialize a process spec and its called/embedded subprocess specs (stored once per version)."""
    return json.dumps({
        "spec": REGISTRY.convert(spec),
        "subprocess_specs": {name: REGISTRY.convert(s) for name, s in subprocess_specs.items()},
    })


def specs_from_json(text: str):
    """Restore (spec, subprocess_specs) from ``specs_to_json`` output."""
    dct = json.loads(text)
    return REGISTRY.restore(dct["spec"]), {k: REGISTRY.restore(v) for k, v in dct["subprocess_specs"].items()}


def state_to_json(workflow: BpmnWorkflow) -> str:
    """Serialize an instance's state, without the spec."""
    # Not the registry's "encoder mode": it is a flag shared by every thread.
    dct = REGISTRY.convert(workflow)
    dct["serializer_version"] = VERSION
    return json.dumps(dct, cls=SERIALIZER._encoder_cls, separators=(",", ":"))


def state_from_json(text: str, spec, subprocess_specs, spec_json_loader=None) -> BpmnWorkflow:
    """Restore an instance onto cached specs; an older serializer format is migrated first."""
    dct = json.loads(text)
    if dct.get("serializer_version") == VERSION:
        dct.pop("serializer_version")
        return REGISTRY.restore(dct, spec=spec, subprocess_specs=subprocess_specs)
    full = json.loads(spec_json_loader())
    dct.update(full)
    SERIALIZER.migrate(dct)
    return SERIALIZER.from_dict(dct)
