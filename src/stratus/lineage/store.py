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

import logging
import uuid
from typing import Any

import pyarrow as pa

from stratus.batching import BatchedWriter
from stratus.catalog.registry import TableSpec
from stratus.engine import LocalEngine, TableScan
from stratus.lakehouse.tables import Lakehouse
from stratus.lineage.model import LineageEvent

log = logging.getLogger(__name__)

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
    parts = full_name.split(".") if full_name else []
    if len(parts) != 3:
        parts = [None, None, None]  # type: ignore[list-item]
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


class LineageStore(BatchedWriter[LineageEvent]):
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
        super().__init__(
            "lineage-writer", "lineage run(s)", flush_interval=flush_interval, batch_size=batch_size
        )

    def _write(self, events: list[LineageEvent]) -> None:
        """One commit per table for the rows of ``events``."""
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

    # ---- reading -------------------------------------------------------------------------
    def version(self, spec: TableSpec) -> int | None:
        return self.lakehouse.version(spec)

    def query(self, spec: TableSpec, sql: str, params: list[object] | None = None) -> pa.Table:
        """``sql`` over the whole of ``spec`` (named ``{t}``); empty if the table is missing."""
        files = self.lakehouse.prune(spec) if self.lakehouse.version(spec) is not None else []
        return self.engine.query(sql, {"t": TableScan(spec, files)}, params or [])
