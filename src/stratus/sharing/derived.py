"""Derived copies: what recipients read of a shared table that cannot be served from its own files.

A table with PII, or shared with a column subset, is served from a Delta table under
``<root>/.sharing/<share id>/<share table id>`` holding only the shared columns, with PII columns
left out or masked (never decrypted into the copy) and no ``__token`` columns. It is rebuilt from
the source's current version whenever that version (or the share's settings) changed. With
history shared, a rebuild merges on the table's key, so the copy's own change data feed carries
row-level changes; its versions are the shared table's versions.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import orjson
import pyarrow as pa
from deltalake import DeltaTable, WriterProperties, write_deltalake
from deltalake.exceptions import DeltaError
from sqlalchemy.orm import Session

from stratus.catalog.registry import TableSpec
from stratus.engine import LocalEngine, TableScan
from stratus.lakehouse.storage import Storage, StorageError
from stratus.lakehouse.tables import Lakehouse
from stratus.sharing import models as sm
from stratus.sharing import protocol as p
from stratus.sharing.common import CDF, SHARING_DIR, Plan, Snapshot
from stratus.tables.protect import ColumnProtector

log = logging.getLogger(__name__)

Sessions = Callable[[], AbstractContextManager[Session]]


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class DerivedCopies:
    def __init__(
        self,
        storage: Storage,
        lakehouse: Lakehouse,
        engine: LocalEngine,
        protector: ColumnProtector,
        reader: Sessions,
        writer: Sessions,
    ) -> None:
        self.storage = storage
        self.lakehouse = lakehouse
        self.engine = engine
        self.protector = protector
        self._reader = reader
        self._writer = writer
        self._built: dict[str, tuple[int, str]] = {}  # share table id -> (source version, sig)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def lock_for(self, table_id: str) -> threading.Lock:
        """The lock serialising changes to one share table's served data."""
        with self._guard:
            return self._locks.setdefault(table_id, threading.Lock())

    def spec(self, plan: Plan) -> TableSpec:
        """The copy as a lakehouse table (outside the catalog)."""
        return TableSpec(
            full_name=f"{SHARING_DIR}.{plan.share_id}.{plan.table_id}",
            schema=self.schema(plan),
            key=tuple(k for k in plan.source.key if k in plan.columns),
            partition_by=[c for c in plan.source.partition_by if c in plan.columns],
            location=f"{SHARING_DIR}/{plan.share_id}/{plan.table_id}",
        )

    def schema(self, plan: Plan) -> pa.Schema:
        fields = []
        for name in plan.columns:
            f = plan.source.schema.field(name)
            fields.append(pa.field(name, pa.string()) if name in plan.pii else f)
        return pa.schema(fields)

    def signature(self, plan: Plan) -> str:
        doc = {
            "columns": plan.columns,
            "pii": {c: plan.pii[c] for c in plan.columns if c in plan.pii},
            "mode": plan.pii_mode,
            "filter": repr(plan.row_filter),
            "schema": self.schema(plan).to_string(),
            # the mask settings (functions have no stable repr across processes)
            "masks": sorted((k, v) for k, v in os.environ.items() if k.startswith("STRATUS_MASK_")),
        }
        return hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()

    def refresh(self, plan: Plan, source: Snapshot | None) -> TableSpec:
        """Bring the copy up to the source's current version (and settings)."""
        spec = self.spec(plan)
        with self.lock_for(plan.table_id):
            source_version = -1 if source is None else source.version
            signature = self.signature(plan)
            if self._built.get(plan.table_id) == (source_version, signature):
                return spec  # built by this process from that very version
            with self._reader() as s:
                row = s.get(sm.ShareTable, plan.table_id)
                built = (row.derived_source_version, row.derived_signature) if row else (None, None)
            current = self.lakehouse.snapshot(spec)
            if current is not None and built == (source_version, signature):
                self._built[plan.table_id] = (source_version, signature)
                return spec
            data = self._derive(plan, source)
            same_layout = current is not None and built[1] == signature
            self._write(plan, spec, data, incremental=same_layout)
            self.lakehouse.invalidate(spec)
            with self._writer() as s:
                row = s.get(sm.ShareTable, plan.table_id)
                if row is not None:
                    row.derived_source_version = source_version
                    row.derived_signature = signature
            self._built[plan.table_id] = (source_version, signature)
            log.info(
                "shared copy of %s for %s.%s.%s rebuilt from version %d (%d rows)",
                plan.source.full_name,
                plan.share_name,
                plan.schema_name,
                plan.name,
                source_version,
                data.num_rows,
            )
        return spec

    def _derive(self, plan: Plan, source: Snapshot | None) -> pa.Table:
        """The shared rows and columns of the source's current version: PII masked (``mask``)
        or absent (``omit``), token columns never read."""
        schema = self.schema(plan)
        entries = source.entries if source is not None else []
        if plan.row_filter is not None:
            types = {f.name: f.type for f in plan.source.schema}
            entries = [e for e in entries if p.matches_exactly(plan.row_filter, e, types)]
        root = self.lakehouse.url(plan.physical)
        scan = TableScan(plan.physical, [f"{root}/{e.path}" for e in entries])
        cols = ", ".join(_q(c) for c in plan.columns)
        raw = self.engine.query(f"SELECT {cols} FROM {{t}}", {"t": scan})
        pii = {c: kind for c, kind in plan.pii.items() if c in raw.column_names}
        shown = self.protector.reveal(plan.source, raw, pii, unmasked=False)
        shown = shown.select(plan.columns).cast(schema)
        key = [k for k in plan.source.key if k in plan.columns]
        if key and shown.num_rows:
            shown = shown.sort_by([(k, "ascending") for k in key])
        return shown.combine_chunks()

    def _write(self, plan: Plan, spec: TableSpec, data: pa.Table, *, incremental: bool) -> None:
        opts = self.storage.options
        url = self.lakehouse.url(spec)
        props = WriterProperties(compression="ZSTD")
        key = [k for k in plan.source.key if k in plan.columns and k not in plan.pii]
        try:
            if incremental and plan.history and key:
                # row-level changes only: the copy's change data feed is the recipients'
                table = DeltaTable(url, storage_options=opts)
                on = " AND ".join(f"t.{_q(k)} = s.{_q(k)}" for k in key)
                others = [c for c in data.column_names if c not in key]
                merger = table.merge(
                    data,
                    predicate=on,
                    source_alias="s",
                    target_alias="t",
                    writer_properties=props,
                )
                if others:
                    changed = " OR ".join(f"(t.{_q(c)} IS DISTINCT FROM s.{_q(c)})" for c in others)
                    merger = merger.when_matched_update_all(predicate=changed)
                merger.when_not_matched_insert_all().when_not_matched_by_source_delete().execute()
                return
            write_deltalake(
                url,
                data,
                mode="overwrite",
                schema_mode="overwrite",
                partition_by=spec.partition_by or None,
                configuration={CDF: "true"} if plan.history else None,
                storage_options=opts,
                writer_properties=props,
            )
        except (DeltaError, OSError) as exc:
            raise StorageError(f"cannot write the shared copy: {exc}") from None

    def forget(self, table_id: str) -> None:
        self._built.pop(table_id, None)

    def drop(self, relative: str) -> None:
        """Delete a derived copy (local disk; on object storage it is left for cleanup)."""
        if not self.storage.is_local:
            return
        target = Path(self.storage.table_url(relative))
        if target.is_dir() and SHARING_DIR in target.parts:
            shutil.rmtree(target, ignore_errors=True)
