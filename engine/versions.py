"""Deployed versions as the runtime needs them: restored specs, loaded forms, metadata (cached)."""
from __future__ import annotations

import threading
from collections import OrderedDict

from sqlalchemy import select
from sqlalchemy.orm import Session, undefer

from . import taskconfig
from .bpmn.serializer import specs_from_json
from .errors import NotFound
from .forms import Form, load_form
from .models import ProcessModel, ProcessVersion
from .taskconfig import TaskConfig


class VersionRuntime:
    """One process version, ready to run: spec objects, forms by file name, metadata."""

    def __init__(self, row: ProcessVersion):
        self.id = row.id
        self.process_key = row.process_key
        self.version = row.version
        self.meta = row.meta
        self.spec_json = row.spec_json
        self.spec, self.subprocess_specs = specs_from_json(row.spec_json)
        self.files = row.files
        self._forms: dict[str, Form] = {}
        self._configs: dict[str, TaskConfig] = {}

    @property
    def name(self) -> str:
        return self.meta.get("name", self.process_key)

    def form(self, name: str | None) -> Form | None:
        if not name:
            return None
        if name not in self._forms:
            self._forms[name] = load_form(name, self.files[name])
        return self._forms[name]

    def user_task(self, bpmn_id: str) -> dict:
        return self.meta.get("user_tasks", {}).get(bpmn_id, {})

    def task_config(self, bpmn_id: str) -> TaskConfig:
        """The operations a user task allows and its timeout and approver rules (cached)."""
        if bpmn_id not in self._configs:
            self._configs[bpmn_id] = taskconfig.from_meta(self.user_task(bpmn_id).get("ops"))
        return self._configs[bpmn_id]

    @property
    def diagram_xml(self) -> str:
        return self.files[self.meta["diagram"]]


class VersionCache:
    """An LRU of VersionRuntime objects by version id; versions are immutable, so never stale."""

    def __init__(self, size: int = 64):
        self.size = size
        self._items: OrderedDict[int, VersionRuntime] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, session: Session, version_id: int) -> VersionRuntime:
        with self._lock:
            item = self._items.get(version_id)
            if item is not None:
                self._items.move_to_end(version_id)
                return item
        row = session.scalar(select(ProcessVersion).where(ProcessVersion.id == version_id)
                             .options(undefer(ProcessVersion.files), undefer(ProcessVersion.spec_json)))
        if row is None:
            raise NotFound(f"process version {version_id} does not exist")
        item = VersionRuntime(row)
        with self._lock:
            self._items[version_id] = item
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return item


    def clear(self) -> None:
        with self._lock:
            self._items.clear()


VERSIONS = VersionCache()


def latest_version_id(session: Session, process_key: str) -> int:
    """The id of a model's newest version; NotFound if there is none."""
    row = session.execute(
        select(ProcessVersion.id).join(ProcessModel, ProcessModel.key == ProcessVersion.process_key)
        .where(ProcessVersion.process_key == process_key, ProcessVersion.version == ProcessModel.latest_version)
    ).first()
    if row is None:
        raise NotFound(f"no process model '{process_key}'")
    return row[0]
