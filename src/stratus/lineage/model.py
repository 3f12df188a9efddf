"""The contract between what produces lineage (SQL, ingest, jobs) and what records it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class ColumnEdge:
    """``target_column`` of the event's target table is derived from a source column."""

    source_table: str  # catalog.schema.table
    source_column: str
    target_column: str
    # OpenLineage transformation type/subtype: IDENTITY (copied), TRANSFORMATION (computed),
    # AGGREGATION (aggregated), FILTER/JOIN/GROUP_BY/SORT (indirect: used to select rows)
    transformation: str = "IDENTITY"


@dataclass(frozen=True)
class LineageEvent:
    """One statement, ingest or job run that read sources and wrote (at most) one table."""

    run_id: str  # a UUID; also the statement id
    job_name: str  # e.g. "sql", "ingest", "job:daily_summary"
    entity_type: str  # as in the Databricks system table; ours: SQL, INGEST, JOB
    principal: str
    event_time: dt.datetime
    target_table: str | None
    source_tables: tuple[str, ...] = ()
    source_paths: tuple[str, ...] = ()  # files or volume paths read (ingest)
    column_edges: tuple[ColumnEdge, ...] = ()
    sql: str | None = None
    target_schema: tuple[tuple[str, str], ...] = field(default=())  # (column, type) of target


class LineageSink(Protocol):
    """Where producers report runs. ``start`` before the work, then ``complete`` or ``fail``."""

    def start(self, event: LineageEvent) -> None: ...

    def complete(self, event: LineageEvent) -> None: ...

    def fail(self, event: LineageEvent, error: str) -> None: ...
