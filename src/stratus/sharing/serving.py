"""How a share table is served: its plan (what is shared of which source), and the Delta table
recipients read (the source's own files, or a derived copy), through the lakehouse's table cache.

A table without PII whose every column is shared is served from its own files (pruned by the
row filter, which names partition columns only and so selects whole files exactly); anything
else from a derived copy (:mod:`stratus.sharing.derived`). A table whose Delta protocol needs
reader features this server does not serve (deletion vectors, column mapping) is refused: its
files alone do not hold its rows.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from deltalake import DeltaTable
from deltalake.exceptions import DeltaError
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from stratus.catalog.errors import InvalidArgument, NotFound
from stratus.catalog.registry import TableSpec
from stratus.lakehouse.storage import StorageError
from stratus.lakehouse.tables import Lakehouse, NoSuchVersion
from stratus.security.authz import Authorizer
from stratus.sharing import models as sm
from stratus.sharing import protocol as p
from stratus.sharing.common import CACHE_SECONDS, CDF, Plan, RecipientContext, Snapshot
from stratus.sharing.common import unserved_features as unserved
from stratus.sharing.derived import DerivedCopies, Sessions
from stratus.tables.service import TableService


class SharedTables:
    def __init__(
        self,
        lakehouse: Lakehouse,
        tables: TableService,
        authorizer: Authorizer,
        derived: DerivedCopies,
        reader: Sessions,
        writer: Sessions,
    ) -> None:
        self.lakehouse = lakehouse
        self.tables = tables
        self.authorizer = authorizer
        self.derived = derived
        self._reader = reader
        self._writer = writer
        self._plans: dict[tuple[Any, ...], tuple[float, Plan]] = {}
        self._guard = threading.Lock()

    def forget(self) -> None:
        """Drop cached plans (after any change to shares, grants or recipients)."""
        with self._guard:
            self._plans.clear()

    # ---- plans ---------------------------------------------------------------------------
    def granted(self, s: Any, ctx: RecipientContext, share: str) -> sm.Share:
        row = s.scalar(
            select(sm.Share)
            .options(selectinload(sm.Share.tables))
            .join(sm.ShareGrant, sm.ShareGrant.share_id == sm.Share.id)
            .where(
                sm.ShareGrant.recipient_id == ctx.id,
                func.lower(sm.Share.name) == str(share).lower(),
            )
        )
        if row is None:  # absent or not granted: the same answer, so names never leak
            raise NotFound(f"share {share} does not exist")
        return row

    def find(self, ctx: RecipientContext, share: str, schema: str, table: str) -> Plan:
        """The plan of a table of a share granted to the recipient (NotFound otherwise),
        cached briefly; PII tags changed in this process apply at once (metastore generation)."""
        key = (
            ctx.id,
            share.lower(),
            schema.lower(),
            table.lower(),
            self.authorizer.snapshot().generation,
        )
        now = time.monotonic()
        with self._guard:
            hit = self._plans.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        with self._reader() as s:
            row = self.granted(s, ctx, share)
            st = next(
                (
                    t
                    for t in row.tables
                    if t.schema_name.lower() == schema.lower() and t.name.lower() == table.lower()
                ),
                None,
            )
            if st is None:
                raise NotFound(f"table {share}.{schema}.{table} does not exist")
            table_id, share_name = st.id, row.name
        plan = self.plan(table_id, share_name)
        with self._guard:
            if len(self._plans) > 10_000:
                self._plans.clear()
            self._plans[key] = (now + CACHE_SECONDS, plan)
        return plan

    def plan(self, table_id: str, share_name: str) -> Plan:
        with self._reader() as s:
            st = s.get(sm.ShareTable, table_id)
            if st is None:
                raise NotFound("the shared table no longer exists")
            try:
                source = self.tables.spec(st.source_table)
            except (NotFound, KeyError):
                raise NotFound(f"the source of {st.shared_name} no longer exists") from None
            physical, pii = self.tables.physical(source)
            names = list(source.schema.names)
            columns = [c for c in names if st.columns is None or c in st.columns]
            if st.pii_mode != "mask":
                columns = [c for c in columns if c not in pii]
            if not columns:
                raise NotFound(f"table {st.shared_name} has no shareable columns left")
            return Plan(
                share_id=st.share_id,
                share_name=share_name,
                table_id=st.id,
                schema_name=st.schema_name,
                name=st.name,
                comment=st.comment,
                history=st.history_shared,
                history_start=st.history_start_version,
                pii_mode=st.pii_mode,
                source=source,
                physical=physical,
                pii=pii,
                columns=columns,
                row_filter=p.parse_sql(st.row_filter) if st.row_filter else None,
                # files hold ciphertext and token columns when there is PII; protocol clients
                # read whole files, so a column subset needs its own files too
                derived=bool(pii) or len(columns) != len(names),
            )

    # ---- the Delta table recipients read -------------------------------------------------
    def snapshot(self, spec: TableSpec, version: int | None = None) -> Snapshot | None:
        try:
            found = self.lakehouse.snapshot(spec, version)
        except NoSuchVersion as exc:
            raise InvalidArgument(str(exc), parameter="version") from None
        return None if found is None else Snapshot.of(found)

    def history(self, spec: TableSpec) -> list[tuple[int, int]]:
        return self.lakehouse.history(spec)

    def commit(self, spec: TableSpec, version: int) -> list[dict[str, Any]]:
        try:
            return self.lakehouse.commit(spec, version)
        except NoSuchVersion as exc:
            raise InvalidArgument(str(exc), parameter="version") from None

    @staticmethod
    def refuse_unserved(plan: Plan, snap: Snapshot) -> None:
        """InvalidArgument naming the reader features the server cannot serve, if any."""
        missing = unserved(snap.table)
        if missing:
            raise InvalidArgument(
                f"table {plan.source.full_name} cannot be shared: its Delta protocol needs "
                f"reader feature(s) this server does not serve: {', '.join(missing)}",
                parameter="table",
            )

    def serve(self, plan: Plan) -> tuple[TableSpec, Snapshot, int]:
        """(the Delta table recipients read, its latest snapshot, first version whose history is
        shared)."""
        source = self.snapshot(plan.physical)
        if source is not None:
            self.refuse_unserved(plan, source)
        if plan.derived:
            spec = self.derived.refresh(plan, source)
            snap = self.snapshot(spec)
            assert snap is not None
            return spec, snap, 0
        spec = plan.physical
        snap = source
        if snap is None:
            self.lakehouse.ensure(spec)
            snap = self.snapshot(spec)
            assert snap is not None
        floor = plan.history_start
        if plan.history and floor is None:
            floor = self._enable_history(plan, snap)
            snap = self.snapshot(spec) or snap
        return spec, snap, snap.version if floor is None else floor

    def _enable_history(self, plan: Plan, snap: Snapshot) -> int:
        """Turn on the change data feed of a table served from its own files; history is
        shared from the version that did it on."""
        spec = plan.physical
        with self.derived.lock_for(plan.table_id):
            if snap.configuration.get(CDF, "").lower() != "true":
                try:
                    table = DeltaTable(
                        self.lakehouse.url(spec), storage_options=self.lakehouse.storage.options
                    )
                    table.alter.set_table_properties({CDF: "true"})
                except (DeltaError, OSError) as exc:
                    raise StorageError(f"cannot enable the change data feed: {exc}") from None
                self.lakehouse.invalidate(spec)
            latest = self.snapshot(spec)
            version = latest.version if latest is not None else snap.version
            with self._writer() as s:
                row = s.get(sm.ShareTable, plan.table_id)
                if row is not None and row.history_start_version is None:
                    row.history_start_version = version
                elif row is not None:
                    version = int(row.history_start_version or version)
            self.forget()
            return version
