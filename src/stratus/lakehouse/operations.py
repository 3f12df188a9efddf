"""Delta operations beyond append/overwrite/upsert: row-level changes (one delta-rs MERGE),
time travel (files of an earlier version), history, RESTORE, OPTIMIZE (compact, Z-order) and
VACUUM. Each write is one Delta commit, tagged in the commit's ``custom_metadata`` with the SQL
operation, statement id and user (``stratus.operation``, ``stratus.statement_id``,
``stratus.user``; see :mod:`stratus.lakehouse.origin`), so ``DESCRIBE HISTORY`` shows what ran
and for whom. Nothing here checks privileges: the callers (``stratus.sql``, the CLI,
the maintenance job) do.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute
from deltalake import CommitProperties, DeltaTable
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from stratus.catalog import TableSpec
from stratus.catalog.errors import CatalogError, InvalidArgument
from stratus.lakehouse import origin
from stratus.lakehouse.origin import OPERATION_KEY, STATEMENT_KEY, USER_KEY
from stratus.lakehouse.storage import storage_io, unavailable
from stratus.lakehouse.tables import Lakehouse, NoSuchVersion, WriteConflictError

DEFAULT_RETAIN_HOURS = 168.0  # Databricks' VACUUM default (7 days)
SOURCE_BATCH_ROWS = 65_536


class VersionUnavailable(InvalidArgument):
    """A version (or timestamp) that the table does not have, or whose files were vacuumed."""

    error_code = "VERSION_NOT_AVAILABLE"


class ConcurrentChange(CatalogError):
    """Another writer changed the rows a statement read before it could commit."""

    status = 409
    error_code = "CONCURRENT_MODIFICATION"


def _props(operation: str) -> CommitProperties:
    """``operation`` and the statement and user of :func:`origin.committing_as`."""
    return CommitProperties(custom_metadata=origin.commit_metadata(operation), max_commit_retries=0)


def _open(lakehouse: Lakehouse, spec: TableSpec, version: int | None = None) -> DeltaTable:
    lakehouse.prepare()
    try:
        with storage_io(f"cannot open table {spec.full_name}"):
            return DeltaTable(
                lakehouse.url(spec), version=version, storage_options=lakehouse.storage.options
            )
    except TableNotFoundError:
        raise VersionUnavailable(f"{spec.full_name} has no data yet") from None
    except DeltaError as exc:
        if version is not None:
            raise VersionUnavailable(
                f"{spec.full_name} has no version {version} ({_first_line(exc)})"
            ) from None
        raise unavailable(f"cannot open table {spec.full_name}", exc) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


# ---- time travel --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Snapshot:
    version: int
    files: list[str]  # data file URIs
    schema: pa.Schema  # the physical (Delta) schema at that version


def parse_timestamp(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text.strip().replace(" ", "T", 1))
    except ValueError:
        raise InvalidArgument(
            f"{text!r} is not a timestamp (use 'YYYY-MM-DD[ HH:MM:SS][+HH:MM]')"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def snapshot(
    lakehouse: Lakehouse,
    spec: TableSpec,
    version: int | None = None,
    timestamp: str | dt.datetime | None = None,
) -> Snapshot:
    """The table as it was at ``version`` (or the latest at or before ``timestamp``); 400
    (:class:`VersionUnavailable`) if that version does not exist or its files were vacuumed."""
    if version is not None and not 0 <= version < 2**62:
        raise VersionUnavailable(f"{spec.full_name} has no version {version}")
    if timestamp is not None:
        when = parse_timestamp(timestamp) if isinstance(timestamp, str) else timestamp
        at_ms = when.timestamp() * 1000
        earlier = [v for v, ms in lakehouse.history(spec) if ms <= at_ms]
        if not earlier:
            raise VersionUnavailable(
                f"{spec.full_name} has no version at or before {when.isoformat()}"
            )
        version = max(earlier)
    try:
        past = lakehouse.snapshot(spec, version)  # past versions cached by the lakehouse
    except NoSuchVersion:
        raise VersionUnavailable(f"{spec.full_name} has no version {version}") from None
    if past is None:
        raise VersionUnavailable(f"{spec.full_name} has no data yet")
    root = lakehouse.url(spec).rstrip("/")
    files = [f"{root}/{path}" for path in past.files.column("path").to_pylist()]
    # the latest version's files are there (VACUUM keeps them): only past ones are checked
    past_one = past.version != lakehouse.version(spec)
    paths = past.files.column("path").to_pylist()
    missing = _missing_files(lakehouse, spec, paths, files) if past_one else []
    if missing:
        raise VersionUnavailable(
            f"{spec.full_name} version {past.version}: {len(missing)} of its data files "
            "were removed by VACUUM"
        )
    schema = past.arrow_schema if past.arrow_schema is not None else spec.schema
    return Snapshot(past.version, files, schema)


def _missing_files(
    lakehouse: Lakehouse, spec: TableSpec, paths: list[str], uris: list[str]
) -> list[str]:
    """Data files of a version that are gone (VACUUM): a stat each on local disk, one HEAD
    each on object storage (time travel is rare; a vacuumed version must be a 400, not a
    read failure halfway through)."""
    storage = lakehouse.storage
    if storage.is_local:
        return [f for f in uris if not os.path.exists(unquote(storage.local_path(f)))]
    from deltalake.fs import DeltaStorageHandler
    from pyarrow.fs import FileType

    handler = DeltaStorageHandler(lakehouse.url(spec), storage.options)
    with storage_io(f"cannot read table {spec.full_name}"):
        infos = handler.get_file_info([unquote(p) for p in paths])
    return [i.path for i in infos if i.type == FileType.NotFound]


@dataclass(frozen=True)
class AsOf:
    """A point in a table's history: a version, or the latest version at a moment."""

    version: int | None = None
    timestamp: str | None = None


def snapshot_files(
    lakehouse: Lakehouse,
    spec: TableSpec,
    as_of: AsOf,
    partition: str,
    values: Sequence[str],
) -> list[str]:
    """The data files of a past version holding the given partition values (hive paths)."""
    snap = snapshot(lakehouse, spec, as_of.version, as_of.timestamp)
    if partition not in spec.partition_by:
        return snap.files
    wanted = {f"/{partition}={v}/" for v in values}
    return [f for f in snap.files if any(w in f for w in wanted)]


def latest_version(lakehouse: Lakehouse, spec: TableSpec) -> int:
    version = lakehouse.version(spec)
    if version is None:
        raise VersionUnavailable(f"{spec.full_name} has no data yet")
    return version


def history(lakehouse: Lakehouse, spec: TableSpec, limit: int | None = None) -> list[dict]:
    entries = lakehouse.commit_log(spec, limit, _open(lakehouse, spec))
    out = []
    for e in entries:
        ts = e.get("timestamp")
        out.append(
            {
                "version": e.get("version"),
                "timestamp": dt.datetime.fromtimestamp(ts / 1000, dt.UTC) if ts else None,
                "operation": e.get(OPERATION_KEY) or e.get("operation"),
                "delta_operation": e.get("operation"),
                "statement_id": e.get(STATEMENT_KEY),
                "user": e.get(USER_KEY),
                "operation_parameters": e.get("operationParameters") or {},
                "operation_metrics": e.get("operationMetrics") or {},
            }
        )
    return out


def restore(
    lakehouse: Lakehouse,
    spec: TableSpec,
    version: int | None,
    timestamp: str | None,
) -> dict[str, Any]:
    target = snapshot(lakehouse, spec, version, timestamp)  # 400 if missing or vacuumed
    table = _open(lakehouse, spec)
    try:
        with storage_io(f"cannot restore {spec.full_name}"):
            metrics = table.restore(target.version, commit_properties=_props("RESTORE"))
    except CommitFailedError:
        raise ConcurrentChange(f"{spec.full_name} changed while restoring: try again") from None
    except DeltaError as exc:
        raise VersionUnavailable(f"cannot restore {spec.full_name}: {_first_line(exc)}") from None
    lakehouse.invalidate(spec)
    return {"version": target.version, **metrics}


# ---- maintenance --------------------------------------------------------------------------------
def optimize(
    lakehouse: Lakehouse,
    spec: TableSpec,
    zorder: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Compact small files (or Z-order by ``zorder``) in one commit; delta-rs's metrics."""
    table = lakehouse.table(spec)
    if table is None:
        return {"numFilesAdded": 0, "numFilesRemoved": 0}
    table = _open(lakehouse, spec)
    props = lakehouse.writer_properties()
    try:
        with storage_io(f"cannot optimize {spec.full_name}"):
            if zorder:
                metrics = table.optimize.z_order(
                    list(zorder),
                    writer_properties=props,
                    commit_properties=_props("OPTIMIZE"),
                )
            else:
                metrics = table.optimize.compact(
                    writer_properties=props, commit_properties=_props("OPTIMIZE")
                )
    except CommitFailedError:
        raise WriteConflictError(f"{spec.full_name} changed while optimizing: try again") from None
    lakehouse.invalidate(spec)
    return dict(metrics)


def vacuum(
    lakehouse: Lakehouse,
    spec: TableSpec,
    retain_hours: float | None = None,
    dry_run: bool = False,
) -> list[str]:
    """Delete files no version newer than ``retain_hours`` ago needs (default 7 days)."""
    table = lakehouse.table(spec)
    if table is None:
        return []
    table = _open(lakehouse, spec)
    hours = DEFAULT_RETAIN_HOURS if retain_hours is None else retain_hours
    with storage_io(f"cannot vacuum {spec.full_name}"):
        removed = table.vacuum(
            retention_hours=int(hours),
            dry_run=dry_run,
            enforce_retention_duration=False,
            commit_properties=_props("VACUUM"),
        )
    lakehouse.invalidate(spec)
    return list(removed)


def delete_all(lakehouse: Lakehouse, spec: TableSpec) -> int:
    """DELETE FROM t without WHERE: every row, one commit; how many rows were deleted."""
    if lakehouse.table(spec) is None:
        return 0
    table = _open(lakehouse, spec)
    try:
        with storage_io(f"cannot write table {spec.full_name}"):
            metrics = table.delete(commit_properties=_props("DELETE"))
    except CommitFailedError:
        raise ConcurrentChange(f"{spec.full_name} changed during the DELETE: try again") from None
    finally:
        lakehouse.invalidate(spec)
    return int(metrics.get("num_deleted_rows", 0))


# ---- row-level changes --------------------------------------------------------------------------
@dataclass
class ChangeSet:
    """What one DML statement does, as a delta-rs MERGE of ``source`` into the table.

    ``source`` rows carry ``__clause`` (which action) and, for rows that change or remove
    target rows, the target row's original physical values in ``__o_<column>``: they are
    matched on every column, so exactly the rows the statement read are changed.
    """

    source: pa.Table
    match_columns: list[str]  # physical columns compared (null-safe) with __o_<column>
    updates: list[tuple[int, dict[str, str]]] = field(default_factory=list)  # clause, col->expr
    deletes: list[int] = field(default_factory=list)
    inserts: list[tuple[int, dict[str, str]]] = field(default_factory=list)


def original(column: str) -> str:
    return f"__o_{column}"


def _quote(column: str) -> str:
    return "`" + column.replace("`", "``") + "`"


def _one_partition(spec: TableSpec, source: pa.Table) -> str | None:
    """``(t.p = 'v')`` when every changed or removed row is in partition ``p = v`` (one value:
    delta-rs prunes files on an equality; a multi-value IN is left out)."""
    clause = source.column("__clause")
    rows = source.filter(pa.compute.less(clause, 100))
    if rows.num_rows == 0:
        return None
    parts = []
    for column in spec.partition_by:
        values = rows.column(original(column)).unique().to_pylist()
        if len(values) != 1:
            continue
        value = values[0]
        if isinstance(value, str):
            parts.append(f"(t.{_quote(column)} = '{value.replace(chr(39), chr(39) * 2)}')")
        elif isinstance(value, int) and not isinstance(value, bool):
            parts.append(f"(t.{_quote(column)} = {value})")
    return " AND ".join(parts) or None


# replaced by tests to make a statement fail while delta-rs is writing its files
def source_batches(table: pa.Table) -> Iterator[pa.RecordBatch]:
    yield from table.to_batches(max_chunksize=SOURCE_BATCH_ROWS)


def apply_changes(
    lakehouse: Lakehouse,
    spec: TableSpec,
    read_version: int,
    changes: ChangeSet,
    operation: str,
    batches: Callable[[pa.Table], Iterator[pa.RecordBatch]] | None = None,
) -> dict[str, int]:
    """One commit on top of ``read_version`` (the version the rows were read at): a
    concurrent commit that touches the same files fails it (409) rather than lose rows."""
    if changes.source.num_rows == 0:
        return {"updated": 0, "deleted": 0, "inserted": 0}
    table = _open(lakehouse, spec, read_version)
    match = " AND ".join(
        f"(t.{_quote(c)} IS NOT DISTINCT FROM s.{_quote(original(c))})"
        for c in changes.match_columns
    )
    predicate = f"s.__clause < 100 AND {match}"
    narrow = _one_partition(spec, changes.source)
    if narrow:  # lets delta-rs skip the other partitions' files (the source is streamed)
        predicate = f"{narrow} AND {predicate}"
    produce = batches or source_batches
    reader = pa.RecordBatchReader.from_batches(changes.source.schema, produce(changes.source))
    try:
        with storage_io(f"cannot write table {spec.full_name}"):
            merger = table.merge(
                reader,
                predicate=predicate,
                source_alias="s",
                target_alias="t",
                writer_properties=lakehouse.writer_properties(),
                commit_properties=_props(operation),
                streamed_exec=True,
            )
            for clause, updates in changes.updates:
                merger = merger.when_matched_update(updates, predicate=f"s.__clause = {clause}")
            for clause in changes.deletes:
                merger = merger.when_matched_delete(predicate=f"s.__clause = {clause}")
            for clause, values in changes.inserts:
                merger = merger.when_not_matched_insert(values, predicate=f"s.__clause = {clause}")
            metrics = merger.execute()
    except CommitFailedError:
        raise ConcurrentChange(
            f"{spec.full_name} was changed by another writer while the statement ran; nothing "
            "was written (run it again)"
        ) from None
    finally:
        lakehouse.invalidate(spec)
    return {
        "updated": int(metrics.get("num_target_rows_updated", 0)),
        "deleted": int(metrics.get("num_target_rows_deleted", 0)),
        "inserted": int(metrics.get("num_target_rows_inserted", 0)),
    }


__all__ = [
    "ChangeSet",
    "ConcurrentChange",
    "Snapshot",
    "VersionUnavailable",
    "apply_changes",
    "history",
    "optimize",
    "restore",
    "snapshot",
    "vacuum",
]
