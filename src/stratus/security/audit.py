"""The audit log: one record per request that touches a securable, in ``system.access.audit``.

Records are queued in memory and a background thread (:class:`stratus.batching.BatchWorker`, the
one batch writer lineage uses too) appends them to the Delta table in batches (every
``flush_interval`` seconds or ``batch_size`` records), so the request path only pays for a queue
put. ``close()`` drains the queue: it runs on clean shutdown (atexit, gunicorn worker exit),
so nothing acknowledged is lost then. Parameters are scrubbed of secrets before they are queued.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import orjson
import pyarrow as pa

from stratus.batching import BatchedWriter
from stratus.catalog.registry import TableSpec
from stratus.lakehouse.tables import Lakehouse

AUDIT_SCHEMA = pa.schema(
    [
        pa.field("event_time", pa.timestamp("us", tz="UTC")),
        pa.field("event_date", pa.date32()),
        pa.field("request_id", pa.string()),
        pa.field("service_name", pa.string()),
        pa.field("action_name", pa.string()),
        pa.field("user_identity", pa.string()),
        pa.field("securable_type", pa.string()),
        pa.field("securable_full_name", pa.string()),
        pa.field("request_params", pa.string()),
        pa.field("outcome", pa.string()),
        pa.field("status_code", pa.int32()),
        pa.field("error_message", pa.string()),
        pa.field("source_ip_address", pa.string()),
        pa.field("user_agent", pa.string()),
    ]
)
AUDIT = TableSpec(
    full_name="system.access.audit",
    schema=AUDIT_SCHEMA,
    key=("request_id",),
    partition_by=["event_date"],
    comment="Audit log: every request that touched a securable, allowed or not",
)

SECRET_KEYS = re.compile(r"(token|secret|password|key|authorization|credential)", re.I)


def scrub(params: Mapping[str, Any]) -> dict[str, Any]:
    """Request parameters with secrets replaced (PII scrubbing hooks in here later)."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        if SECRET_KEYS.search(k):
            out[k] = "[REDACTED]"
        elif isinstance(v, Mapping):
            out[k] = scrub(v)
        else:
            out[k] = v
    return out


@dataclass
class AuditRecord:
    event_time: dt.datetime
    request_id: str
    service_name: str
    action_name: str
    user_identity: str | None
    securable_type: str | None
    securable_full_name: str | None
    request_params: dict[str, Any]
    outcome: str  # allowed | denied | error
    status_code: int
    error_message: str | None
    source_ip_address: str | None
    user_agent: str | None

    def row(self) -> dict[str, Any]:
        d = asdict(self)
        d["event_date"] = self.event_time.date()
        d["request_params"] = orjson.dumps(scrub(self.request_params), default=str).decode()
        return d


class AuditLog(BatchedWriter[AuditRecord]):
    def __init__(
        self,
        lakehouse: Lakehouse,
        *,
        flush_interval: float = 1.0,
        batch_size: int = 500,
        enabled: bool = True,
    ) -> None:
        self.lakehouse = lakehouse
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.enabled = enabled
        super().__init__(
            "audit-writer", "audit records", flush_interval=flush_interval, batch_size=batch_size
        )

    def record(self, item: AuditRecord) -> None:
        if self.enabled:
            super().record(item)

    def record_cli(
        self,
        principal: str,
        action: str,
        securable_type: str | None,
        name: str | None,
        params: dict[str, Any],
        *,
        outcome: str = "allowed",
        status: int = 200,
        error: str | None = None,
    ) -> None:
        """Audit a command-line action (the ``stratus`` commands that change or read
        securables), as the API audits a request."""
        self.record(
            AuditRecord(
                event_time=dt.datetime.now(dt.UTC),
                request_id=uuid.uuid4().hex,
                service_name="cli",
                action_name=action,
                user_identity=principal,
                securable_type=securable_type,
                securable_full_name=name,
                request_params=params,
                outcome=outcome,
                status_code=status,
                error_message=error,
                source_ip_address=None,
                user_agent="stratus-cli",
            )
        )

    def _write(self, records: list[AuditRecord]) -> None:
        table = pa.Table.from_pylist([r.row() for r in records], schema=AUDIT_SCHEMA)
        self.lakehouse.append(AUDIT, table)
