"""Time travel: ``SELECT ... FROM t VERSION AS OF n | TIMESTAMP AS OF '...'``, ``DESCRIBE
HISTORY t`` and ``RESTORE TABLE t TO VERSION AS OF n | TIMESTAMP AS OF '...'``.

A reference with a version reads that version's data files (same grants and masks as the
latest: SELECT, PII decrypted only for UNMASK holders). A version that does not exist, is
older than the log keeps, or whose files VACUUM removed is a 400 naming the version. A
version whose columns differ from today's (CREATE OR REPLACE changed them) is refused too.
DESCRIBE HISTORY needs SELECT; RESTORE needs MODIFY and is one commit (its own version).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

import pyarrow as pa
from sqlglot import exp

from stratus.catalog.errors import InvalidArgument, PermissionDenied
from stratus.lakehouse import operations as ops
from stratus.security.actions import Resource
from stratus.security.authz import Identity
from stratus.sql import parse as p
from stratus.sql import parse_ext
from stratus.sql.errors import UnsupportedStatement
from stratus.sql.execution import Parameters, Source

if TYPE_CHECKING:
    from stratus.sql.service import SqlResult, SqlService

_PINNED = "stratus_version"


def pinned(node: exp.Table) -> parse_ext.Version | None:
    """The version a table reference asks for (taken off the node: DuckDB reads files)."""
    if _PINNED in node.meta:
        return node.meta[_PINNED]
    if node.args.get("version") is None:
        return None
    version = parse_ext.check_version(node)
    node.set("version", None)
    node.meta[_PINNED] = version
    return version


def pin(svc: SqlService, src: Source, version: parse_ext.Version) -> None:
    physical = svc.protector.physical_spec(src.spec, src.pii)
    snap = ops.snapshot(svc.lakehouse, physical, version.number, version.timestamp)
    then = [f.name for f in snap.schema]
    now = [f.name for f in physical.schema]
    if sorted(then) != sorted(now):
        raise UnsupportedStatement(
            f"{src.full_name} {version.text()}: its columns were different then ({', '.join(then)})"
        )
    src.files = snap.files


def _not_a_view(svc: SqlService, full_name: str, what: str) -> None:
    if svc.metastore.get_table(full_name).table_type == "VIEW":
        raise InvalidArgument(f"{full_name} is a view: {what} works on tables")


def describe_history(svc: SqlService) -> Callable[..., SqlResult]:
    def run(sid: str, stmt: p.Statement, params: Parameters, who: Identity) -> SqlResult:
        from stratus.sql.service import SqlResult

        full_name = svc.resolve_table(stmt.args["name"])
        svc.authz.require(who, "table.read", Resource("table", full_name))
        _not_a_view(svc, full_name, "DESCRIBE HISTORY")
        spec, pii = svc.table_info(full_name)
        physical = svc.protector.physical_spec(spec, pii)
        entries = ops.history(svc.lakehouse, physical, stmt.args["limit"])
        data = pa.table(
            {
                "version": pa.array([e["version"] for e in entries], pa.int64()),
                "timestamp": pa.array([e["timestamp"] for e in entries], pa.timestamp("us", "UTC")),
                "operation": pa.array([e["operation"] for e in entries], pa.string()),
                "delta_operation": pa.array([e["delta_operation"] for e in entries], pa.string()),
                "statement_id": pa.array([e["statement_id"] for e in entries], pa.string()),
                "userName": pa.array([e["user"] for e in entries], pa.string()),
                "operationParameters": pa.array(
                    [json.dumps(e["operation_parameters"], default=str) for e in entries]
                ),
                "operationMetrics": pa.array(
                    [json.dumps(e["operation_metrics"], default=str) for e in entries]
                ),
            }
        )
        return SqlResult(sid, stmt.kind, data, table=full_name)

    return run


def restore(svc: SqlService) -> Callable[..., SqlResult]:
    def run(sid: str, stmt: p.Statement, params: Parameters, who: Identity) -> SqlResult:
        from stratus.sql.service import SqlResult

        full_name = svc.resolve_table(stmt.args["name"])
        svc.authz.require(who, "table.modify", Resource("table", full_name))
        if full_name.split(".")[0] == "system":
            raise PermissionDenied(f"{full_name} is a system table: RESTORE cannot change it")
        _not_a_view(svc, full_name, "RESTORE")
        spec, pii = svc.table_info(full_name)
        physical = svc.protector.physical_spec(spec, pii)
        version = parse_ext.Version(stmt.args["version"], stmt.args["timestamp"])
        target = ops.snapshot(svc.lakehouse, physical, version.number, version.timestamp)
        if sorted(f.name for f in target.schema) != sorted(physical.schema.names):
            raise UnsupportedStatement(
                f"RESTORE {full_name} to {version.text()}: its columns were different then"
            )
        metrics = ops.restore(svc.lakehouse, physical, target.version, None)
        data = pa.table(
            {
                "restored_version": pa.array([target.version], pa.int64()),
                "num_removed_files": pa.array([int(metrics.get("numRemovedFile", 0))], pa.int64()),
                "num_restored_files": pa.array(
                    [int(metrics.get("numRestoredFile", 0))], pa.int64()
                ),
            }
        )
        return SqlResult(sid, stmt.kind, data, table=full_name)

    return run


__all__ = ["describe_history", "pin", "pinned", "restore"]
