"""``OPTIMIZE t [ZORDER BY (c, ...)]`` and ``VACUUM t [RETAIN n HOURS] [DRY RUN]``.

Both need MODIFY on the table (system tables: metastore admins). OPTIMIZE compacts small files
(or Z-orders by the given non-partition columns) in one commit; reads see the same rows.
VACUUM deletes data files no version within the retention needs (default 168 hours, as
Databricks); a shorter retention is refused unless ``STRATUS_VACUUM_RETENTION_CHECK`` is off,
because time travel to, and readers still on, versions inside it would lose their files.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pyarrow as pa

from stratus.catalog.errors import InvalidArgument, PermissionDenied
from stratus.catalog.registry import TableSpec
from stratus.lakehouse import operations as ops
from stratus.security.actions import Resource
from stratus.security.authz import Identity
from stratus.sql import parse as p
from stratus.sql.execution import Parameters

if TYPE_CHECKING:
    from stratus.sql.service import SqlResult, SqlService


def _table(svc: SqlService, stmt: p.Statement, who: Identity) -> tuple[str, TableSpec]:
    full_name = svc.resolve_table(stmt.args["name"])
    svc.authz.require(who, "table.modify", Resource("table", full_name))
    if full_name.split(".")[0] == "system" and not who.is_admin:
        raise PermissionDenied(f"{full_name} is a system table: only admins maintain it")
    table = svc.metastore.get_table(full_name)
    if table.table_type == "VIEW":
        raise InvalidArgument(f"{full_name} is a view: {stmt.kind} works on tables")
    spec, pii = svc.table_info(full_name)
    return full_name, svc.protector.physical_spec(spec, pii)


def check_retention(hours: float | None, enforce: bool) -> float:
    value = ops.DEFAULT_RETAIN_HOURS if hours is None else hours
    if value < 0:
        raise InvalidArgument("VACUUM RETAIN needs a number of hours >= 0")
    if enforce and value < ops.DEFAULT_RETAIN_HOURS:
        raise InvalidArgument(
            f"VACUUM RETAIN {value:g} HOURS is below the {ops.DEFAULT_RETAIN_HOURS:g}-hour safety "
            "minimum: versions inside it would lose their files (time travel, running readers); "
            "set STRATUS_VACUUM_RETENTION_CHECK=false to allow it",
            parameter="statement",
        )
    return value


def optimize(svc: SqlService) -> Callable[..., SqlResult]:
    def run(sid: str, stmt: p.Statement, params: Parameters, who: Identity) -> SqlResult:
        from stratus.sql.service import SqlResult

        full_name, physical = _table(svc, stmt, who)
        zorder = stmt.args["zorder"]
        if zorder:
            by_lower = {n.lower(): n for n in physical.schema.names}
            names = []
            for c in zorder:
                if c.lower() not in by_lower:
                    raise InvalidArgument(
                        f"ZORDER BY names {c!r}, which is not a column of {full_name}"
                    )
                name = by_lower[c.lower()]
                if name in physical.partition_by:
                    raise InvalidArgument(
                        f"ZORDER BY {name}: a partition column cannot be Z-ordered"
                    )
                names.append(name)
            zorder = names
        metrics = ops.optimize(svc.lakehouse, physical, zorder)
        data = pa.table(
            {
                "num_files_added": pa.array([int(metrics.get("numFilesAdded", 0))], pa.int64()),
                "num_files_removed": pa.array([int(metrics.get("numFilesRemoved", 0))], pa.int64()),
                "partitions_optimized": pa.array(
                    [int(metrics.get("partitionsOptimized", 0))], pa.int64()
                ),
            }
        )
        return SqlResult(sid, stmt.kind, data, table=full_name)

    return run


def vacuum(svc: SqlService) -> Callable[..., SqlResult]:
    def run(sid: str, stmt: p.Statement, params: Parameters, who: Identity) -> SqlResult:
        from stratus.sql.service import SqlResult

        full_name, physical = _table(svc, stmt, who)
        hours = check_retention(stmt.args["retain_hours"], svc.settings.vacuum_retention_check)
        removed = ops.vacuum(svc.lakehouse, physical, hours, stmt.args["dry_run"])
        root = svc.lakehouse.url(physical).rstrip("/") + "/"
        paths = [f.removeprefix(root) for f in removed]
        data = pa.table({"path": pa.array(paths, pa.string())})
        return SqlResult(sid, stmt.kind, data, affected_rows=len(paths), table=full_name)

    return run


__all__ = ["check_retention", "optimize", "vacuum"]
