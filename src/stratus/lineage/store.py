"""The lineage system tables, ``system.access.table_lineage`` and ``system.access.column_lineage``.

Their columns are those of the Databricks system tables that mean something here (no account or
workspace ids), plus ``transformation`` on column lineage. One row per (source, target) pair of a
run: a statement that only reads has rows without a target, a write without a source (INSERT ...
VALUES) a row without a source, so the tables also answer "who read / wrote this table when".
Column lineage has rows only for target columns derived from source columns.

Runs are queued in memory and a background thread turns them into rows and appends them in
batches, one Delta commit per table per batch (every ``flush_interval`` seconds or
``batch_size`` runs), so a statement only pays for a queue put. ``flush()`` writes what is queued
now; ``close()`` drains the queue (also at interpreter exit).
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

import pyarrow as pa

from stratus.catalog.registry import TableSpec
from stratus.engine import LocalEngine, TableScan
from stratus.lakehouse.storage import StorageError
from stratus.lakehouse.tables import Lakehouse
from stratus.lineage.model import LineageEvent

log = logging.getLogger(__name__)
T = TypeVar("T")

_COMMON = [
    pa.field("metastore_id", pa.string()),
    pa.field("entity_type", pa.string()),  # SQL | INGEST | JOB
    pa.field("entity_id", pa.string()),  # the job name: sql, ingest, job:<name>
    pa.field("entity_run_id", pa.string()),  # the run id
    pa.field("statement_id", pa.string()),  # the run id (a statement is one run)
    pa.field("record_id", pa.string()),
    pa.field("source_table_full_name", pa.string()),
    pa.field("source_table_catalog", pa.string()),
    pa.field("source_table_schema", pa.string()),
    pa.field("source_table_name", pa.string()),
    pa.field("source_path", pa.string()),
    pa.field("source_type", pa.string()),  # TABLE | PATH
    pa.field("target_table_full_name", pa.string()),
    pa.field("target_table_catalog", pa.string()),
    pa.field("target_table_schema", pa.string()),
    pa.field("target_table_name", pa.string()),
    pa.field("target_path", pa.string()),
    pa.field("target_type", pa.string()),  # TABLE
    pa.field("created_by", pa.string()),
    pa.field("event_time", pa.timestamp("us", tz="UTC")),
    pa.field("event_date", pa.date32()),
]
TABLE_LINEAGE_SCHEMA = pa.schema(_COMMON)
COLUMN_LINEAGE_SCHEMA = pa.schema(
    [
        *_COMMON[:-2],
        pa.field("source_column_name", pa.string()),
        pa.field("target_column_name", pa.string()),
        pa.field("transformation", pa.string()),  # IDENTITY, TRANSFORMATION, AGGREGATION, ...
        *_COMMON[-2:],
    ]
)
TABLE_LINEAGE = TableSpec(
    full_name="system.access.table_lineage",
    schema=TABLE_LINEAGE_SCHEMA,
    key=("record_id",),
    partition_by=["event_date"],
    comment="Table lineage: one row per source -> target of every statement, ingest and job run",
)
COLUMN_LINEAGE = TableSpec(
    full_name="system.access.column_lineage",
    schema=COLUMN_LINEAGE_SCHEMA,
    key=("record_id",),
    partition_by=["event_date"],
    comment="Column lineage: one row per source column -> target column of every run",
)
SPECS = (TABLE_LINEAGE, COLUMN_LINEAGE)


def _table_part(prefix: str, full_name: str | None) -> dict[str, Any]:
    parts: list[str | None] = [*full_name.split(".")] if full_name else []
    if len(parts) != 3:
        parts = [None, None, None]
    return {
        f"{prefix}_table_full_name": full_name,
        f"{prefix}_table_catalog": parts[0],
        f"{prefix}_table_schema": parts[1],
        f"{prefix}_table_name": parts[2],
        f"{prefix}_path": None,
        f"{prefix}_type": "TABLE" if full_name else None,
    }


def _path_part(path: str) -> dict[str, Any]:
    return {**_table_part("source", None), "source_path": path, "source_type": "PATH"}


def table_rows(event: LineageEvent, metastore_id: str | None) -> list[dict[str, Any]]:
    """The ``table_lineage`` rows of one run."""
    base = _base(event, metastore_id)
    target = _table_part("target", event.target_table)
    sources = [_table_part("source", t) for t in dict.fromkeys(event.source_tables)]
    sources += [_path_part(p) for p in dict.fromkeys(event.source_paths)]
    if not sources:
        if event.target_table is None:
            return []
        sources = [_table_part("source", None)]
    return [{**base, **s, **target, "record_id": uuid.uuid4().hex} for s in sources]


def column_rows(event: LineageEvent, metastore_id: str | None) -> list[dict[str, Any]]:
    """The ``column_lineage`` rows of one run (none without a target)."""
    if event.target_table is None:
        return []
    base = _base(event, metastore_id)
    target = _table_part("target", event.target_table)
    return [
        {
            **base,
            **_table_part("source", e.source_table),
            **target,
            "record_id": uuid.uuid4().hex,
            "source_column_name": e.source_column,
            "target_column_name": e.target_column,
            "transformation": e.transformation,
        }
        for e in dict.fromkeys(event.column_edges)
    ]


def _base(event: LineageEvent, metastore_id: str | None) -> dict[str, Any]:
    return {
        "metastore_id": metastore_id,
        "entity_type": event.entity_type,
        "entity_id": event.job_name,
        "entity_run_id": event.run_id,
        "statement_id": event.run_id,
        "created_by": event.principal,
        "event_time": event.event_time,
        "event_date": event.event_time.date(),
    }


class BatchWorker(Generic[T]):
    """A queue drained by one daemon thread that hands ``handle`` batches of items.

    A batch is what arrived within ``flush_interval`` seconds of its first item, at most
    ``batch_size`` items, or less when a flush or close asks for it now. ``handle`` must not
    raise (exceptions are logged and the batch is dropped). With ``max_queue``, items that do
    not fit are dropped and counted in ``dropped`` instead of blocking the caller.
    """

    def __init__(
        self,
        name: str,
        handle: Callable[[list[T]], None],
        *,
        flush_interval: float = 1.0,
        batch_size: int = 500,
        max_queue: int = 0,
    ) -> None:
        self.name = name
        self.handle = handle
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self._queue: queue.Queue[object] = queue.Queue(max_queue)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.dropped = 0

    def put(self, item: T) -> None:
        if self._thread is None:
            self._start()
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1

    def _start(self) -> None:
        with self._lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
                atexit.register(self.close)

    def _run(self) -> None:
        while True:
            try:
                items = [self._queue.get(timeout=self.flush_interval)]
            except queue.Empty:
                continue
            deadline = time.monotonic() + self.flush_interval
            while len(items) < self.batch_size and not _urgent(items[-1]):
                wait = deadline - time.monotonic()
                if wait <= 0:
                    break
                try:
                    items.append(self._queue.get(timeout=wait))
                except queue.Empty:
                    break
            # what is left once the sentinels are filtered out are the T items
            batch = cast(
                list[T], [i for i in items if i is not _STOP and not isinstance(i, _Flush)]
            )
            if batch:
                try:
                    self.handle(batch)
                except Exception:
                    log.exception("%s: dropped a batch of %d", self.name, len(batch))
            for i in items:
                if isinstance(i, _Flush):
                    i.done.set()
            if any(i is _STOP for i in items):
                return

    def flush(self, timeout: float = 30.0) -> None:
        """Return once everything queued before the call has been handled."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        marker = _Flush()
        self._queue.put(marker)
        marker.done.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        if thread is None:
            return
        self._queue.put(_STOP)
        thread.join(timeout)


class _Flush:
    def __init__(self) -> None:
        self.done = threading.Event()


_STOP = object()


def _urgent(item: object) -> bool:
    return item is _STOP or isinstance(item, _Flush)


class LineageStore:
    """Appends runs to the lineage tables (batched, asynchronous) and reads them back."""

    def __init__(
        self,
        lakehouse: Lakehouse,
        engine: LocalEngine,
        metastore_id: str | None = None,
        *,
        flush_interval: float = 1.0,
        batch_size: int = 500,
    ) -> None:
        self.lakehouse = lakehouse
        self.engine = engine
        self.metastore_id = metastore_id
        self.written = 0  # runs
        self.failures = 0  # runs whose rows could not be written
        self._worker: BatchWorker[LineageEvent] = BatchWorker(
            "lineage-writer", self._write, flush_interval=flush_interval, batch_size=batch_size
        )

    def record(self, event: LineageEvent) -> None:
        self._worker.put(event)

    def write(self, events: list[LineageEvent]) -> None:
        """Append ``events`` now, on this thread (one commit per table)."""
        self._write(events)

    def _write(self, events: list[LineageEvent]) -> None:
        try:
            tables = [r for e in events for r in table_rows(e, self.metastore_id)]
            columns = [r for e in events for r in column_rows(e, self.metastore_id)]
            if tables:
                self.lakehouse.append(
                    TABLE_LINEAGE, pa.Table.from_pylist(tables, schema=TABLE_LINEAGE_SCHEMA)
                )
            if columns:
                self.lakehouse.append(
                    COLUMN_LINEAGE, pa.Table.from_pylist(columns, schema=COLUMN_LINEAGE_SCHEMA)
                )
            self.written += len(events)
        except StorageError as exc:  # the store is down: one line, not a traceback
            self.failures += len(events)
            log.error("could not write lineage of %d run(s): %s", len(events), exc)
        except Exception:  # never let lineage kill the writer thread
            self.failures += len(events)
            log.exception("could not write lineage of %d run(s)", len(events))

    def flush(self, timeout: float = 30.0) -> None:
        self._worker.flush(timeout)

    def close(self) -> None:
        self._worker.close()

    # ---- reading -------------------------------------------------------------------------
    def version(self, spec: TableSpec) -> int | None:
        return self.lakehouse.version(spec)

    def query(self, spec: TableSpec, sql: str, params: list[object] | None = None) -> pa.Table:
        """``sql`` over the whole of ``spec`` (named ``{t}``); empty if the table is missing."""
        files = self.lakehouse.prune(spec) if self.lakehouse.version(spec) is not None else []
        return self.engine.query(sql, {"t": TableScan(spec, files)}, params or [])
