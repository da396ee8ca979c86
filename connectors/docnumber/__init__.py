"""Document numbers 机关代字〔年〕序号号: unique and gapless per prefix and year."""
from __future__ import annotations

import re

from connectors.base import Connector, ConnectorContext, ConnectorError, Operation

_PREFIX = re.compile(r"^[\w\u4e00-\u9fff()（）]{1,32}$")


class DocNumberConnector(Connector):
    name = "docnumber"
    title = "公文编号"
    operations = {
        "Allocate": Operation(
            method="allocate",
            description="Allocate the next number for an issuing-authority prefix in a year.",
            params={
                "type": "object",
                "properties": {"prefix": {"type": "string", "description": "机关代字, e.g. 桂应急发"},
                               "year": {"type": "integer", "minimum": 2000, "maximum": 2100}},
                "required": ["prefix"],
            },
            result={
                "type": "object",
                "properties": {"number": {"type": "string"}, "year": {"type": "integer"},
                               "sequence": {"type": "integer"}},
            },
        )
    }

    def check(self) -> None:
        return None

    def allocate(self, context: ConnectorContext, prefix: str, year: int | None = None) -> dict:
        if not isinstance(prefix, str) or not _PREFIX.match(prefix):
            raise ConnectorError(f"invalid document-number prefix {prefix!r}", retryable=False)
        year = int(year or context.now().year)  # the platform's clock and time zone, not the host's
        seq = context.next_number(prefix, year)
        return {"number": f"{prefix}〔{year}〕{seq}号", "year": year, "sequence": seq}
