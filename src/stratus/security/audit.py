"""The audit log: one record per request that touches a securable, in ``system.access.audit``.

Records are queued in memory and a background thread appends them to the Delta table in batches
(every ``flush_interval`` seconds or ``batch_size`` records), so the request path only pays for a
queue put. ``close()`` drains the queue: it runs on clean shutdown (atexit, gunicorn worker exit),
so nothing acknowledged is lost then. Parameters are scrubbed of secrets before they are queued.
"""

from __future__ import annotations

import atexit
import datetime as dt
import logging
import queue
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import orjson
import pyarrow as pa

from stratus.catalog.registry import TableSpec
from stratus.lakehouse.storage import StorageError
from stratus.lakehouse.tables import Lakehouse

log = logging.getLogger(__name__)

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


class AuditLog:
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
        self._queue: queue.Queue[AuditRecord | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.written = 0
        self.failures = 0

    def record(self, rec: AuditRecord) -> None:
        if not self.enabled:
            return
        if self._thread is None:
            self._start()
        self._queue.put(rec)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
                self._thread.start()
                atexit.register(self.close)

    def _run(self) -> None:
        while True:
            try:
                items: list[object] = [self._queue.get(timeout=self.flush_interval)]
            except queue.Empty:
                continue
            # One Delta commit per batch: gather until flush_interval has passed since the
            # first record, batch_size records, or a flush()/close() asks for them now. (A
            # commit per record made many tiny files, and each commit's table reload held the
            # lakehouse lock that queries need.)
            deadline = time.monotonic() + self.flush_interval
            while len(items) < self.batch_size and not _urgent(items[-1]):
                wait = deadline - time.monotonic()
                if wait <= 0:
                    break
                try:
                    items.append(self._queue.get(timeout=wait))
                except queue.Empty:
                    break
            records = [i for i in items if isinstance(i, AuditRecord)]
            if records:
                self._write(records)
            for i in items:
                if isinstance(i, _Marker):
                    i.event.set()
            if any(i is None for i in items):
                return

    def _write(self, records: list[AuditRecord]) -> None:
        try:
            table = pa.Table.from_pylist([r.row() for r in records], schema=AUDIT_SCHEMA)
            self.lakehouse.append(AUDIT, table)
            self.written += len(records)
        except StorageError as exc:  # the store is down: one line, not a traceback
            self.failures += len(records)
            log.error("could not write %d audit records: %s", len(records), exc)
        except Exception:  # never let auditing kill the writer thread
            self.failures += len(records)
            log.exception("could not write %d audit records", len(records))

    def flush(self, timeout: float = 30.0) -> None:
        """Write everything queued so far (used by tests and on shutdown)."""
        if self._thread is None:
            return
        done = threading.Event()
        # a flush marker travels in the record queue; the writer tells the two apart
        self._queue.put(_Marker(done))  # type: ignore[arg-type]
        done.wait(timeout)

    def close(self) -> None:
        with self._lock:
            if self._closed or self._thread is None:
                self._closed = True
                return
            self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=30)


class _Marker:
    def __init__(self, event: threading.Event) -> None:
        self.event = event


def _urgent(item: object) -> bool:
    """A flush marker or the close sentinel: write what is gathered without waiting."""
    return item is None or isinstance(item, _Marker)
