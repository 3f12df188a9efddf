"""Delta table access: open once, refresh cheaply, prune files, write atomically.

Each table is opened once per process and kept; before a read it is brought up to date with
``update_incremental()`` only when its log may have changed (local: the ``_delta_log`` folder's
mtime; remote: at most every ``refresh_interval`` seconds). File pruning uses the add actions'
partition values and min/max statistics, cached per table version, so a query touches only the
files that can hold its rows. Every write is one Delta commit: it happens entirely or not at all.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
from deltalake import DeltaTable, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from stratus.catalog import TableSpec
from stratus.lakehouse.storage import Storage, StorageError, storage_io, unavailable

log = logging.getLogger(__name__)

# Row groups small enough that a 7-day read of a 5-year city file touches one or two of them
# (measured in benchmarks/query.py), large enough to keep metadata small.
ROW_GROUP_SIZE = 8_760
COMMIT_RETRIES = 10  # enough for 8+ writers racing on one table (tests/test_faults.py)


class WriteConflictError(RuntimeError):
    """A concurrent writer won every retry; nothing was written."""


@dataclass
class _Cached:
    table: DeltaTable
    version: int
    checked_at: float
    log_mtime: float
    files: pa.Table | None = None  # add actions of `version`
    files_version: int = -1
    index: list[FileEntry] | None = None  # the same, as plain Python for fast pruning


@dataclass(frozen=True)
class FileEntry:
    """One data file: its URI, partition values and per-column (min, max) statistics."""

    uri: str
    partition: dict[str, str | None]
    stats: dict[str, tuple[object, object]]


@dataclass(frozen=True)
class MergeResult:
    inserted: int
    updated: int
    version: int | None


class Lakehouse:
    def __init__(self, storage: Storage, refresh_interval: float = 1.0) -> None:
        self.storage = storage
        self.refresh_interval = refresh_interval
        self._cache: dict[str, _Cached] = {}
        # One lock per table, held while that table is opened or refreshed (storage I/O) and
        # its cached state read; the shared lock only guards the dictionaries, never I/O, so a
        # hung object store stalls the requests of one table for one timeout, not everyone.
        self._lock = threading.Lock()
        self._table_locks: dict[str, threading.RLock] = {}
        # the last failure to reach each table: raised again for `refresh_interval` seconds
        # instead of every waiting request trying (and timing out) in turn
        self._failed: dict[str, tuple[float, str]] = {}
        self._prepare_lock = threading.Lock()
        self._prepared = False

    def prepare(self) -> None:
        """Create the root folder or container once per process (before the first open)."""
        if self._prepared:
            return
        with self._prepare_lock:
            if not self._prepared:
                self.storage.prepare()
                self._prepared = True

    # ---- reading -------------------------------------------------------------------------
    def url(self, spec: TableSpec) -> str:
        return self.storage.table_url(spec.path)

    def _log_mtime(self, spec: TableSpec) -> float:
        if not self.storage.is_local:
            return 0.0
        try:
            return os.stat(os.path.join(self.url(spec), "_delta_log")).st_mtime
        except FileNotFoundError:
            return -1.0

    def _table_lock(self, spec: TableSpec) -> threading.RLock:
        with self._lock:
            lock = self._table_locks.get(spec.full_name)
            if lock is None:
                lock = self._table_locks[spec.full_name] = threading.RLock()
            return lock

    def _current(self, spec: TableSpec) -> _Cached | None:
        """The cache entry at the latest version, opened or refreshed as needed, or None if the
        table does not exist yet. The caller holds the table's lock."""
        name = spec.full_name
        failed = self._failed.get(name)
        if failed is not None and time.monotonic() - failed[0] < self.refresh_interval:
            raise StorageError(failed[1])
        try:
            cached = self._open_or_refresh(spec)
        except StorageError as exc:
            self._failed[name] = (time.monotonic(), str(exc))
            raise
        self._failed.pop(name, None)
        return cached

    def _open_or_refresh(self, spec: TableSpec) -> _Cached | None:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(spec.full_name)
        if cached is not None:
            stale = (
                self._log_mtime(spec) != cached.log_mtime
                if self.storage.is_local
                else now - cached.checked_at >= self.refresh_interval
            )
            if stale:
                mtime = self._log_mtime(spec)
                with storage_io(f"cannot refresh table {spec.full_name}"):
                    cached.table.update_incremental()
                cached.log_mtime = mtime
                cached.version = cached.table.version()
                cached.checked_at = now
            return cached
        self.prepare()
        mtime = self._log_mtime(spec)
        try:
            dt_ = DeltaTable(self.url(spec), storage_options=self.storage.options)
        except TableNotFoundError:
            return None
        except (DeltaError, OSError) as exc:
            raise unavailable(f"cannot open table {spec.full_name}", exc) from None
        cached = _Cached(dt_, dt_.version(), now, mtime)
        with self._lock:
            self._cache[spec.full_name] = cached
        return cached

    def table(self, spec: TableSpec) -> DeltaTable | None:
        """The table at its latest version, or None if it does not exist yet."""
        with self._table_lock(spec):
            cached = self._current(spec)
            return None if cached is None else cached.table

    def invalidate(self, spec: TableSpec) -> None:
        with self._table_lock(spec), self._lock:
            self._cache.pop(spec.full_name, None)
            self._failed.pop(spec.full_name, None)

    @staticmethod
    def _files_of(cached: _Cached) -> pa.Table:
        if cached.files is None or cached.files_version != cached.version:
            cached.files = pa.table(cached.table.get_add_actions(flatten=True))
            cached.files_version = cached.version
            cached.index = None
        return cached.files

    def files(self, spec: TableSpec) -> pa.Table | None:
        """Add actions (path, row count, partition values, min/max stats), latest version."""
        with self._table_lock(spec):
            cached = self._current(spec)
            return None if cached is None else self._files_of(cached)

    def _index(self, spec: TableSpec) -> list[FileEntry]:
        return self.entries(spec)[1]

    def entries(self, spec: TableSpec) -> tuple[int, list[FileEntry]]:
        """The latest version and its data files (-1 and none if the table does not exist)."""
        with self._table_lock(spec):
            cached = self._current(spec)
            if cached is None:
                return -1, []
            return cached.version, self._index_of(cached, spec)

    def _index_of(self, cached: _Cached, spec: TableSpec) -> list[FileEntry]:
        with self._table_lock(spec):
            files = self._files_of(cached)
            if cached.index is None:
                root = self.url(spec)
                cols = files.column_names
                parts = [c.removeprefix("partition.") for c in cols if c.startswith("partition.")]
                stat_cols = [
                    c.removeprefix("min.")
                    for c in cols
                    if c.startswith("min.") and "max." + c.removeprefix("min.") in cols
                ]
                data = files.to_pydict()
                cached.index = [
                    FileEntry(
                        uri=f"{root}/{data['path'][i]}",
                        partition={p: data[f"partition.{p}"][i] for p in parts},
                        stats={c: (data[f"min.{c}"][i], data[f"max.{c}"][i]) for c in stat_cols},
                    )
                    for i in range(files.num_rows)
                ]
            return cached.index

    def partition_values(self, spec: TableSpec, column: str) -> set[str | None]:
        return {e.partition.get(column) for e in self._index(spec)}

    def prune(
        self,
        spec: TableSpec,
        partition: dict[str, Sequence[str]] | None = None,
        ranges: dict[str, tuple[object, object]] | None = None,
    ) -> list[str]:
        """Data files that may hold rows with the given partition values and column ranges.

        ``ranges`` maps a column to an inclusive (low, high) interval; files whose min/max
        statistics lie wholly outside it are skipped (files without statistics are kept).
        """
        wanted = {col: set(values) for col, values in (partition or {}).items()}
        out = []
        for entry in self._index(spec):
            if any(entry.partition.get(col) not in vals for col, vals in wanted.items()):
                continue
            keep = True
            for col, (low, high) in (ranges or {}).items():
                mn, mx = entry.stats.get(col, (None, None))
                if (mx is not None and mx < low) or (mn is not None and mn > high):
                    keep = False
                    break
            if keep:
                out.append(entry.uri)
        return out

    def version(self, spec: TableSpec) -> int | None:
        dt_ = self.table(spec)
        return None if dt_ is None else dt_.version()

    # ---- writing -------------------------------------------------------------------------
    def _writer_properties(self) -> WriterProperties:
        return WriterProperties(max_row_group_size=ROW_GROUP_SIZE, compression="ZSTD")

    def ensure(self, spec: TableSpec) -> DeltaTable:
        """Open the table, creating it (an empty version 0) if it does not exist."""
        existing = self.table(spec)
        if existing is not None:
            return existing
        try:
            DeltaTable.create(
                self.url(spec),
                schema=spec.schema,
                partition_by=spec.partition_by or None,
                mode="ignore",
                name=spec.short_name,
                description=spec.comment,
                storage_options=self.storage.options,
            )
        except (DeltaError, OSError) as exc:
            raise unavailable(f"cannot create table {spec.full_name}", exc) from None
        self.invalidate(spec)
        table = self.table(spec)
        assert table is not None
        return table

    def _prepare_rows(self, spec: TableSpec, data: pa.Table) -> pa.Table:
        """Schema order and types, sorted by the table's sort key in one chunk: delta-rs writes
        chunks of a multi-chunk table interleaved, which would scramble row-group statistics."""
        data = data.select(spec.schema.names).cast(spec.schema)
        if spec.sort_by:
            data = data.sort_by([(c, "ascending") for c in spec.sort_by])
        return data.combine_chunks()

    def append(self, spec: TableSpec, data: pa.Table) -> int:
        self.ensure(spec)
        with storage_io(f"cannot write table {spec.full_name}"):
            write_deltalake(
                self.url(spec),
                self._prepare_rows(spec, data),
                mode="append",
                partition_by=spec.partition_by or None,
                storage_options=self.storage.options,
                writer_properties=self._writer_properties(),
            )
        return self._after_write(spec)

    def overwrite(self, spec: TableSpec, data: pa.Table) -> int:
        self.prepare()
        with storage_io(f"cannot write table {spec.full_name}"):
            write_deltalake(
                self.url(spec),
                self._prepare_rows(spec, data),
                mode="overwrite",
                partition_by=spec.partition_by or None,
                storage_options=self.storage.options,
                writer_properties=self._writer_properties(),
            )
        return self._after_write(spec)

    def merge(self, spec: TableSpec, data: pa.Table, *, update: bool = True) -> MergeResult:
        """Upsert ``data`` on the table's key in one commit, retrying on write conflicts."""
        if data.num_rows == 0:
            return MergeResult(0, 0, None)
        data = self._prepare_rows(spec, data)
        predicate = " AND ".join(f"t.{k} = s.{k}" for k in spec.key)
        self.ensure(spec)
        for attempt in range(1, COMMIT_RETRIES + 1):
            try:
                with storage_io(f"cannot write table {spec.full_name}"):
                    table = DeltaTable(self.url(spec), storage_options=self.storage.options)
                    merger = table.merge(
                        data,
                        predicate=predicate,
                        source_alias="s",
                        target_alias="t",
                        writer_properties=self._writer_properties(),
                    )
                    if update:
                        merger = merger.when_matched_update_all()
                    metrics = merger.when_not_matched_insert_all().execute()
            except CommitFailedError as exc:
                log.warning(
                    "merge into %s conflicted (attempt %d): %s", spec.full_name, attempt, exc
                )
                # jitter: writers that collided must not all come back at the same moment
                time.sleep(random.uniform(0.02, 0.1) * attempt)  # noqa: S311 - not crypto
                continue
            self.invalidate(spec)
            return MergeResult(
                inserted=int(metrics.get("num_target_rows_inserted", 0)),
                updated=int(metrics.get("num_target_rows_updated", 0)),
                version=table.version(),  # our commit's (the latest may be another writer's)
            )
        raise WriteConflictError(
            f"{spec.full_name}: concurrent writers won {COMMIT_RETRIES} times in a row; nothing "
            "was written (try again)"
        )

    def _after_write(self, spec: TableSpec) -> int:
        self.invalidate(spec)
        version = self.version(spec)
        assert version is not None
        return version
