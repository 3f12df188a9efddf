"""Lineage graphs: the lineage tables aggregated into edges, walked from a table or column.

An edge is one (source, target) pair over every run that linked them: the ids of its most recent
statements (at most ``MAX_STATEMENT_IDS``), how many runs there were and when the last one was.
The aggregate is rebuilt only when a lineage table's Delta version changes.

A walk goes ``upstream`` (towards sources), ``downstream`` (towards targets) or ``both`` (each
separately from the root, so siblings of the root are not reached), at most ``depth`` hops.
Nodes the caller may not see are left out and not walked through: what lies behind them is not
shown either (an edge to an invisible table would tell that it exists; a hop across it would
tell that something connects the two sides).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from stratus.lineage.store import COLUMN_LINEAGE, TABLE_LINEAGE, LineageStore

Direction = Literal["upstream", "downstream", "both"]
MAX_STATEMENT_IDS = 100
MAX_DEPTH = 10
NodeKey = tuple[str, str]  # (type, id): ("table", full name), ("path", path), ("column", t.c)


@dataclass
class Edge:
    source: NodeKey
    target: NodeKey
    statement_ids: list[str]
    runs: int
    last_event_time: dt.datetime
    transformation: str | None = None  # column edges: that of the latest run

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "source": self.source[1],
            "target": self.target[1],
        }
        if self.transformation is not None:
            out["transformation"] = self.transformation
        out["statement_ids"] = self.statement_ids
        out["statement_count"] = self.runs
        out["last_event_time"] = self.last_event_time.astimezone(dt.UTC).isoformat()
        return out


@dataclass
class Index:
    """Edges by target (for walking upstream) and by source (downstream)."""

    up: dict[NodeKey, list[Edge]] = field(default_factory=dict)
    down: dict[NodeKey, list[Edge]] = field(default_factory=dict)

    @classmethod
    def of(cls, edges: Iterable[Edge]) -> Index:
        index = cls()
        for e in edges:
            index.up.setdefault(e.target, []).append(e)
            index.down.setdefault(e.source, []).append(e)
        return index

    def knows(self, node: NodeKey) -> bool:
        return node in self.up or node in self.down

    def columns_of(self, table: str) -> set[str]:
        """Columns of ``table`` that take part in column lineage."""
        out = set()
        for kind, ident in (*self.up, *self.down):
            if kind == "column" and ident.startswith(table + "."):
                out.add(ident[len(table) + 1 :])
        return out


_TABLE_EDGES = f"""
SELECT
    CASE WHEN source_type = 'PATH' THEN 'path' ELSE 'table' END AS source_kind,
    coalesce(source_table_full_name, source_path) AS source,
    target_table_full_name AS target,
    count(*) AS runs,
    max(event_time) AS last_event_time,
    list(statement_id ORDER BY event_time DESC)[1:{MAX_STATEMENT_IDS}] AS statement_ids
FROM {{t}}
WHERE target_table_full_name IS NOT NULL
  AND coalesce(source_table_full_name, source_path) IS NOT NULL
GROUP BY ALL
"""
_COLUMN_EDGES = f"""
SELECT
    source_table_full_name || '.' || source_column_name AS source,
    target_table_full_name || '.' || target_column_name AS target,
    count(*) AS runs,
    max(event_time) AS last_event_time,
    list(statement_id ORDER BY event_time DESC)[1:{MAX_STATEMENT_IDS}] AS statement_ids,
    arg_max(transformation, event_time) AS transformation
FROM {{t}}
WHERE source_table_full_name IS NOT NULL AND target_table_full_name IS NOT NULL
GROUP BY ALL
"""


class GraphCache:
    """The aggregated edges of both lineage tables, reloaded when a table's version moves."""

    def __init__(self, store: LineageStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._tables: tuple[int | None, Index] | None = None
        self._columns: tuple[int | None, Index] | None = None

    def tables(self) -> Index:
        version = self.store.version(TABLE_LINEAGE)
        cached = self._tables
        if cached is not None and cached[0] == version:
            return cached[1]
        with self._lock:
            cached = self._tables
            if cached is not None and cached[0] == version:
                return cached[1]
            rows = self.store.query(TABLE_LINEAGE, _TABLE_EDGES).to_pylist()
            index = Index.of(
                Edge(
                    source=(r["source_kind"], r["source"]),
                    target=("table", r["target"]),
                    statement_ids=[s for s in r["statement_ids"] if s],
                    runs=r["runs"],
                    last_event_time=r["last_event_time"],
                )
                for r in rows
            )
            self._tables = (version, index)
            return index

    def columns(self) -> Index:
        version = self.store.version(COLUMN_LINEAGE)
        cached = self._columns
        if cached is not None and cached[0] == version:
            return cached[1]
        with self._lock:
            cached = self._columns
            if cached is not None and cached[0] == version:
                return cached[1]
            rows = self.store.query(COLUMN_LINEAGE, _COLUMN_EDGES).to_pylist()
            index = Index.of(
                Edge(
                    source=("column", r["source"]),
                    target=("column", r["target"]),
                    statement_ids=[s for s in r["statement_ids"] if s],
                    runs=r["runs"],
                    last_event_time=r["last_event_time"],
                    transformation=r["transformation"],
                )
                for r in rows
            )
            self._columns = (version, index)
            return index


def walk(
    index: Index,
    root: NodeKey,
    direction: Direction,
    depth: int,
    visible: Callable[[NodeKey], bool],
) -> tuple[list[NodeKey], list[Edge]]:
    """Nodes (root first, then in the order reached) and edges within ``depth`` hops of
    ``root``, leaving out nodes for which ``visible`` is false and all that lies behind them."""
    nodes: dict[NodeKey, None] = {root: None}
    edges: dict[tuple[NodeKey, NodeKey], Edge] = {}
    seen_visible: dict[NodeKey, bool] = {root: True}

    def can_see(node: NodeKey) -> bool:
        if node not in seen_visible:
            seen_visible[node] = visible(node)
        return seen_visible[node]

    ways = ("upstream", "downstream") if direction == "both" else (direction,)
    for way in ways:
        adjacency = index.up if way == "upstream" else index.down
        frontier = [root]
        reached = {root}
        for _ in range(depth):
            nxt: list[NodeKey] = []
            for node in frontier:
                for e in adjacency.get(node, ()):
                    other = e.source if way == "upstream" else e.target
                    if not can_see(other):
                        continue
                    edges[(e.source, e.target)] = e
                    nodes.setdefault(other, None)
                    if other not in reached:
                        reached.add(other)
                        nxt.append(other)
            if not nxt:
                break
            frontier = nxt
    return list(nodes), list(edges.values())
