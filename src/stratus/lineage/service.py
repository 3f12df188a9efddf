"""The lineage service: what producers report runs to, and what the lineage API reads.

``start`` / ``complete`` / ``fail`` (the :class:`~stratus.lineage.model.LineageSink` protocol)
never raise and cost a statement two queue puts: the rows of a completed run go to the lineage
system tables in batched commits (:mod:`stratus.lineage.store`) and every report becomes an
OpenLineage run event (:mod:`stratus.lineage.openlineage`), both on background threads.

PII propagation: :meth:`LineageService.inherited_pii` tells the SQL engine which target columns
derive from PII-tagged source columns, so it tags (and so encrypts and masks) them before
writing. Only DIRECT derivations propagate (IDENTITY, TRANSFORMATION, AGGREGATION: the value is
made from the source value); a column that merely filtered, joined or sorted rows does not pass
its tag on. Aggregates propagate conservatively (``max(email)`` is an e-mail; ``count(email)``
is tagged too: the engine may leave that edge out if it knows better).

Graphs (:meth:`table_graph`, :meth:`column_graph`) show only what the caller may see: the root
must be visible to the caller (otherwise :class:`NotFound`, worded as for a missing table), other
tables and columns the caller cannot see are left out together with what lies behind them (see
:mod:`stratus.lineage.graph`). A file path is shown as the source of a visible table (a volume
path only if the caller can see the volume).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stratus.catalog.errors import NotFound
from stratus.catalog.metastore import MetastoreService
from stratus.lineage.graph import MAX_DEPTH, Direction, GraphCache, NodeKey, walk
from stratus.lineage.model import ColumnEdge, LineageEvent
from stratus.lineage.openlineage import (
    DIRECT,
    OpenLineageEmitter,
    dataset_namespace,
    transports_for,
)
from stratus.lineage.store import LineageStore
from stratus.security.authz import Authorizer, Identity
from stratus.tables.protect import ColumnProtector

if TYPE_CHECKING:
    from stratus.config import Settings
    from stratus.engine import LocalEngine
    from stratus.lakehouse.tables import Lakehouse

log = logging.getLogger(__name__)
MIXED_PII = "pii"  # the kind of a column derived from PII columns of different kinds


class PiiTags:
    """``ColumnProtector.pii_columns`` per table, cached until the metastore changes: changes
    committed by this process are seen at once, other processes' within ``check_interval``
    seconds (the authorizer's rule), so a statement does not pay two metastore queries per
    source table."""

    def __init__(
        self, protector: ColumnProtector, metastore: MetastoreService, check_interval: float = 0.2
    ) -> None:
        self.protector = protector
        self.metastore = metastore
        self.check_interval = check_interval
        self._cache: dict[str, Mapping[str, str]] = {}
        self._changes = -1
        self._generation = -1
        self._checked = 0.0
        self._lock = threading.Lock()

    def __call__(self, table: str) -> Mapping[str, str]:
        now = time.monotonic()
        with self._lock:
            changes = self.metastore.changes
            if changes != self._changes or now - self._checked >= self.check_interval:
                generation = self.metastore.generation()  # read after `changes`
                if changes != self._changes or generation != self._generation:
                    self._cache.clear()
                self._changes, self._generation, self._checked = changes, generation, now
            found = self._cache.get(table)
        if found is None:
            found = self.protector.pii_columns(table)
            with self._lock:
                if self.metastore.changes == self._changes:
                    self._cache[table] = found
        return found


class LineageService:
    def __init__(
        self,
        store: LineageStore,
        emitter: OpenLineageEmitter,
        metastore: MetastoreService,
        protector: ColumnProtector,
        authorizer: Authorizer,
        pii: PiiTags | None = None,
    ) -> None:
        self.store = store
        self.emitter = emitter
        self.metastore = metastore
        self.protector = protector
        self.authorizer = authorizer
        self.pii = pii or PiiTags(protector, metastore)
        self.graphs = GraphCache(store)
        self.errors = 0  # reports that failed before reaching a queue

    @classmethod
    def create(
        cls,
        settings: Settings,
        metastore: MetastoreService,
        lakehouse: Lakehouse,
        engine: LocalEngine,
        protector: ColumnProtector,
        authorizer: Authorizer,
    ) -> LineageService:
        """The service with its store (system.access lineage tables) and OpenLineage emitter
        built from settings."""
        try:
            metastore_id: str | None = metastore.metastore().id
        except Exception:
            metastore_id = None
        pii = PiiTags(protector, metastore)
        store = LineageStore(
            lakehouse,
            engine,
            metastore_id,
            flush_interval=settings.audit_flush_seconds,
        )
        try:
            transports = transports_for(settings)
        except Exception:  # a bad endpoint or an unwritable file must not stop statements
            log.exception("OpenLineage transport not available; no OpenLineage events")
            transports = []
        emitter = OpenLineageEmitter(transports, dataset_namespace(settings.lakehouse_url), pii)
        return cls(store, emitter, metastore, protector, authorizer, pii)

    # ---- the LineageSink protocol --------------------------------------------------------
    def start(self, event: LineageEvent) -> None:
        try:
            self.emitter.start(event)
        except Exception:
            self._failed("start", event)

    def complete(self, event: LineageEvent) -> None:
        try:
            self.store.record(event)
            self.emitter.complete(event)
        except Exception:
            self._failed("complete", event)

    def fail(self, event: LineageEvent, error: str) -> None:
        try:
            self.emitter.fail(event, error)
        except Exception:
            self._failed("fail", event)

    def _failed(self, what: str, event: LineageEvent) -> None:
        self.errors += 1
        log.exception("lineage %s of run %s not recorded", what, event.run_id)

    # ---- producers' helpers --------------------------------------------------------------
    def record_ingest(
        self, path: str | Path, table: str, principal: str, *, when: dt.datetime | None = None
    ) -> LineageEvent:
        """Record that ``principal`` loaded the file ``path`` into ``table`` (PATH -> TABLE)."""
        source = str(path)
        if "://" not in source:
            source = str(Path(source).resolve())
        event = LineageEvent(
            run_id=str(uuid.uuid4()),
            job_name="ingest",
            entity_type="INGEST",
            principal=principal,
            event_time=when or dt.datetime.now(dt.UTC),
            target_table=table,
            source_paths=(source,),
            target_schema=self._schema_of(table),
        )
        # A file has no tagged columns to pass on: this is a no-op, kept so every recorded run
        # goes through the same propagation step (ingest tags PII by detection instead).
        self.inherited_pii(event.column_edges)
        self.start(event)
        self.complete(event)
        return event

    def _schema_of(self, table: str) -> tuple[tuple[str, str], ...]:
        try:
            columns = self.metastore.get_table(table).columns or []
        except Exception:
            return ()
        return tuple(
            (c["name"], str(c.get("type_text") or c.get("type_name") or "")) for c in columns
        )

    def inherited_pii(self, edges: Sequence[ColumnEdge]) -> dict[str, str]:
        """Target column -> the PII kind it inherits from its DIRECT source columns (``pii``
        when they are PII of different kinds). Columns without a PII source are absent."""
        tags: dict[str, Mapping[str, str]] = {}
        kinds: dict[str, set[str]] = {}
        for e in edges:
            if e.transformation not in DIRECT:
                continue
            if e.source_table not in tags:
                tags[e.source_table] = self.pii(e.source_table)
            kind = tags[e.source_table].get(e.source_column)
            if kind:
                kinds.setdefault(e.target_column, set()).add(kind)
        return {
            column: (next(iter(found)) if len(found) == 1 else MIXED_PII)
            for column, found in kinds.items()
        }

    # ---- graphs --------------------------------------------------------------------------
    def table_graph(
        self, who: Identity, full_name: str, direction: Direction = "both", depth: int = 3
    ) -> dict[str, Any]:
        index = self.graphs.tables()
        root: NodeKey = ("table", full_name)
        self._require_root(who, full_name, lambda: index.knows(root))
        nodes, edges = walk(index, root, direction, min(depth, MAX_DEPTH), self._visible(who))
        return {
            "root": full_name,
            "direction": direction,
            "depth": depth,
            "nodes": [self._table_node(n) for n in nodes],
            "edges": [e.to_dict() for e in edges],
        }

    def column_graph(
        self,
        who: Identity,
        full_name: str,
        column: str,
        direction: Direction = "both",
        depth: int = 3,
    ) -> dict[str, Any]:
        index = self.graphs.columns()
        root: NodeKey = ("column", f"{full_name}.{column}")
        self._require_root(who, full_name, lambda: index.knows(root))
        if not index.knows(root) and column not in self._columns_of(full_name):
            raise NotFound(f"column {column} of table {full_name} does not exist")
        nodes, edges = walk(index, root, direction, min(depth, MAX_DEPTH), self._visible(who))
        pii: dict[str, Mapping[str, str]] = {}
        out = []
        for _, ident in nodes:
            table, _, name = ident.rpartition(".")
            if table not in pii:
                pii[table] = self.pii(table)
            out.append(
                {
                    "id": ident,
                    "type": "column",
                    "table": table,
                    "column": name,
                    "pii": pii[table].get(name),
                }
            )
        return {
            "root": root[1],
            "direction": direction,
            "depth": depth,
            "nodes": out,
            "edges": [e.to_dict() for e in edges],
        }

    def _require_root(self, who: Identity, full_name: str, in_lineage: Any) -> None:
        missing = NotFound(f"table {full_name} does not exist")
        if not self.authorizer.can_see(who, "table", full_name):
            raise missing
        if who.is_admin and not self._exists(full_name) and not in_lineage():
            raise missing  # an admin sees dropped tables' lineage, not names never used

    def _exists(self, full_name: str) -> bool:
        try:
            self.metastore.get_table(full_name)
        except NotFound:
            return False
        return True

    def _columns_of(self, full_name: str) -> list[str]:
        try:
            return [c["name"] for c in self.metastore.get_table(full_name).columns or []]
        except NotFound:
            return []

    def _visible(self, who: Identity) -> Any:
        authz = self.authorizer

        def visible(node: NodeKey) -> bool:
            kind, ident = node
            if kind == "table":
                return authz.can_see(who, "table", ident)
            if kind == "column":
                return authz.can_see(who, "table", ident.rsplit(".", 1)[0])
            parts = ident.split("/")
            if ident.startswith("/Volumes/") and len(parts) > 5:  # /Volumes/c/s/v/...
                return authz.can_see(who, "volume", ".".join(parts[2:5]))
            return True  # a file: reached only as the source of a visible table

        return visible

    def _table_node(self, node: NodeKey) -> dict[str, Any]:
        kind, ident = node
        if kind == "path":
            return {"id": ident, "type": "path", "full_name": None, "path": ident}
        out: dict[str, Any] = {"id": ident, "type": "table", "full_name": ident}
        try:
            table = self.metastore.get_table(ident)
        except NotFound:
            out["exists"] = False  # dropped since (only admins reach these)
            return out
        out["columns"] = [c["name"] for c in table.columns or []]
        out["pii_columns"] = sorted(self.pii(ident))
        return out

    # ---- lifecycle -----------------------------------------------------------------------
    def flush(self, timeout: float = 30.0) -> None:
        """Write the runs queued so far (the API does this before reading)."""
        self.store.flush(timeout)

    def flush_all(self, timeout: float = 30.0) -> None:
        """Also deliver the OpenLineage events queued so far."""
        self.store.flush(timeout)
        self.emitter.flush(timeout)

    def stats(self) -> dict[str, int]:
        return {
            "runs_written": self.store.written,
            "runs_not_written": self.store.failures,
            "openlineage_emitted": self.emitter.emitted,
            "openlineage_errors": self.emitter.errors,
            "openlineage_dropped": self.emitter.dropped,
            "errors": self.errors,
        }

    def close(self) -> None:
        self.store.close()
        self.emitter.close()
