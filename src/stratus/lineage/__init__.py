"""Lineage: table- and column-level lineage captured from SQL, ingest and jobs, stored in
``system.access.table_lineage`` / ``system.access.column_lineage``, served as graphs, and
emitted as OpenLineage run events."""

from stratus.lineage.model import ColumnEdge, LineageEvent, LineageSink

__all__ = ["ColumnEdge", "LineageEvent", "LineageSink"]
