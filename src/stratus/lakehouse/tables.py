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
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
from deltalake import DeltaTable, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from stratus.catalog import TableSpec
from stratus.lakehouse import origin
from stratus.lakehouse.storage import Storage, StorageError, storage_io, unavailable

log = logging.getLogger(__name__)

# Row groups small enough that a 7-day read of a 5-year city file touches one or two of them
# (measured in benchmarks/query.py), large enough to keep metadata small.
ROW_GROUP_SIZE = 8_760
COMMIT_RETRIES = 10  # enough for 8+ writers racing on one table (tests/test_faults.py)
_VERSIONS = 64  # past versions (immutable) kept in memory by `snapshot`
_HISTORY_ATTEMPTS = 5  # listings of a table's log tried while other writers keep committing


class NoSuchVersion(LookupError):
    """The table has no such version (never made, or no longer in its log)."""


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
    snapshot: TableVersion | None = None  # `version` as plain data


@dataclass(frozen=True)
class TableVersion:
    """One version of a Delta table as plain, immutable data (safe to share between threads):
    its add actions, schema, metadata and protocol. ``memo`` holds what readers derive from it
    (it is immutable too, so derived values never go stale)."""

    version: int
    files: pa.Table  # add actions, flattened (``get_add_actions(flatten=True)``)
    schema_json: str
    arrow_schema: pa.Schema | None  # None for a schema Arrow cannot express
    partition_columns: list[str]
    configuration: dict[str, str]
    table_id: str
    name: str | None
    description: str | None
    created_time: int | None
    min_reader_version: int
    min_writer_version: int
    reader_features: tuple[str, ...]
    writer_features: tuple[str, ...]
    memo: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def of(cls, table: DeltaTable) -> TableVersion:
        meta = table.metadata()
        proto = table.protocol()
        schema = table.schema()
        try:
            arrow: pa.Schema | None = pa.schema(schema.to_arrow())
        except Exception:  # an exotic schema: readers lose typed pruning, nothing else
            arrow = None
        return cls(
            version=table.version(),
            files=pa.table(table.get_add_actions(flatten=True)),
            schema_json=schema.to_json(),
            arrow_schema=arrow,
            partition_columns=list(meta.partition_columns),
            configuration=dict(meta.configuration or {}),
            table_id=str(meta.id),
            name=meta.name,
            description=meta.description,
            created_time=meta.created_time,
            min_reader_version=int(proto.min_reader_version),
            min_writer_version=int(proto.min_writer_version),
            reader_features=tuple(proto.reader_features or ()),
            writer_features=tuple(proto.writer_features or ()),
        )


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
        self._versions: OrderedDict[tuple[str, int], TableVersion] = OrderedDict()

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
        partition: Mapping[str, Iterable[Any]] | None = None,
        ranges: Mapping[str, tuple[Any, Any]] | None = None,
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

    # ---- versions, history and commits ------------------------------------------------------
    def snapshot(self, spec: TableSpec, version: int | None = None) -> TableVersion | None:
        """The table at ``version`` (latest: None) as plain data, or None if there is no table.
        The latest follows the table's refreshes (with the outage memo above); past versions
        are immutable and the last few are kept. NoSuchVersion for a version it does not have."""
        with self._table_lock(spec):
            cached = self._current(spec)
            if cached is None:
                if version is None:
                    return None
                raise NoSuchVersion(f"{spec.full_name} has no version {version}")
            if version is None or version == cached.version:
                if cached.snapshot is None or cached.snapshot.version != cached.version:
                    with storage_io(f"cannot read table {spec.full_name}"):
                        cached.snapshot = TableVersion.of(cached.table)
                return cached.snapshot
            if version > cached.version:
                raise NoSuchVersion(f"{spec.full_name} has no version {version} yet")
        key = (spec.full_name, version)
        with self._lock:
            found = self._versions.get(key)
            if found is not None:
                self._versions.move_to_end(key)
                return found
        try:
            with storage_io(f"cannot read table {spec.full_name}"):
                past = TableVersion.of(
                    DeltaTable(
                        self.url(spec), version=version, storage_options=self.storage.options
                    )
                )
        except StorageError:
            raise
        except DeltaError as exc:
            raise NoSuchVersion(f"version {version} cannot be read: {exc}") from None
        with self._lock:
            self._versions[key] = past
            while len(self._versions) > _VERSIONS:
                self._versions.popitem(last=False)
        return past

    def history(self, spec: TableSpec) -> list[tuple[int, int]]:
        """(version, commit timestamp in ms) of every version still in the log, oldest first."""
        rows = self.commit_log(spec)
        out = [(int(r["version"]), int(r.get("timestamp") or 0)) for r in rows if "version" in r]
        return sorted(out)

    def commit_log(
        self, spec: TableSpec, limit: int | None = None, table: DeltaTable | None = None
    ) -> list[dict[str, Any]]:
        """The commit infos of the table's log, newest first, each with its right ``version``
        (``[]`` if the table has no data). Use this, never ``DeltaTable.history()`` directly.

        delta-rs lists the commits from the newest one in storage but numbers them down from
        the *loaded* snapshot's version: when a commit landed after the table was loaded (a
        second writer or instance, or a cached table not yet refreshed) every number is off.
        After listing, the newest version is read again: if it is still the snapshot's, the
        numbers are right; otherwise the listing's top entry is matched against the commit
        files in between to find its version, and the list is renumbered from it.
        """
        if table is None:
            table = self.table(spec)
            if table is None:
                return []
        what = f"cannot read the history of {spec.full_name}"
        for _ in range(_HISTORY_ATTEMPTS):
            with self._table_lock(spec), storage_io(what):
                loaded = table.version()
                # (at an older snapshot delta-rs may list more than ``limit`` entries)
                entries = table.history(limit)[:limit]
            if not entries:
                return entries
            with storage_io(what):
                fresh = DeltaTable(self.url(spec), storage_options=self.storage.options)
            latest = fresh.version()
            if latest == loaded:
                return entries
            top = self._version_of(spec, entries[0], range(loaded, latest + 1))
            if top is not None:
                return [{**e, "version": top - i} for i, e in enumerate(entries)]
            table = fresh  # identical commit infos: list again from a newer snapshot
        raise StorageError(f"{what}: it kept changing while it was read (try again)")

    def _version_of(self, spec: TableSpec, entry: dict[str, Any], candidates: range) -> int | None:
        """The one version among ``candidates`` whose commit info is ``entry`` (None if none or
        several match)."""
        info = {k: v for k, v in entry.items() if k != "version"}
        found = []
        for version in candidates:
            try:
                actions = self.commit(spec, version)
            except NoSuchVersion:
                continue
            if any(a.get("commitInfo") == info for a in actions):
                found.append(version)
        return found[0] if len(found) == 1 else None

    def commit(self, spec: TableSpec, version: int) -> list[dict[str, Any]]:
        """The actions of one commit (``_delta_log/<version>.json``); NoSuchVersion if the log
        no longer has it."""
        name = f"_delta_log/{version:020d}.json"
        url = self.url(spec)
        try:
            if self.storage.is_local:
                raw = Path(url, name).read_bytes()
            else:
                import pyarrow.fs as pafs
                from deltalake.fs import DeltaStorageHandler

                fs = pafs.PyFileSystem(DeltaStorageHandler(url, self.storage.options))
                with fs.open_input_stream(name) as fh:
                    raw = fh.read()
        except (FileNotFoundError, OSError):
            raise NoSuchVersion(f"version {version} is no longer in the table's log") from None
        return [orjson.loads(line) for line in raw.splitlines() if line.strip()]

    # ---- writing -------------------------------------------------------------------------
    def writer_properties(self) -> WriterProperties:
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
                writer_properties=self.writer_properties(),
                commit_properties=origin.commit_properties(),
            )
        return self._after_write(spec)

    def overwrite(self, spec: TableSpec, data: pa.Table, *, replace_schema: bool = False) -> int:
        """Replace the table's rows in one commit (``replace_schema``: its schema too, e.g.
        when a column becomes encrypted)."""
        self.prepare()
        with storage_io(f"cannot write table {spec.full_name}"):
            write_deltalake(
                self.url(spec),
                self._prepare_rows(spec, data),
                mode="overwrite",
                schema_mode="overwrite" if replace_schema else None,
                partition_by=spec.partition_by or None,
                storage_options=self.storage.options,
                writer_properties=self.writer_properties(),
                commit_properties=origin.commit_properties(),
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
                        writer_properties=self.writer_properties(),
                        commit_properties=origin.commit_properties(),
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
