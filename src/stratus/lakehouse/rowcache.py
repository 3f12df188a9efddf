"""Recently read Parquet row groups of Delta tables, kept in memory as Arrow record batches.

One cache per worker process, bounded in bytes (``STRATUS_ROW_CACHE_MB``), least recently used
first out. Delta data files never change once written, so a cached row group is keyed by its
file and index alone; when a table moves to a new version, only the row groups of files that
version removed are dropped (:meth:`RowGroupCache.retain`). Each file's Parquet footer (row-group
statistics) is cached alongside, at a few hundred bytes per file.

Files are opened by ``opener`` (:meth:`stratus.lakehouse.storage.Storage.open_file`): local
paths, or the bytes of Azure blobs, fetched on a miss; the last ``FETCHED_FILES`` fetched files
are kept, so a file's footer and its row groups come from one download.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

_EPOCH_DAY = dt.date(1970, 1, 1)
FETCHED_FILES = 4  # whole remote files kept between a footer read and its row-group reads


@dataclass(frozen=True)
class RowGroupInfo:
    index: int
    num_rows: int
    date_min: dt.date | None  # None: no statistics (the row group may hold any date)
    date_max: dt.date | None


@dataclass
class CachedGroup:
    """One row group cast to the table's schema, with its sort columns as NumPy views.

    ``regular``: ``ts`` has no nulls and never decreases, and ``date`` has no nulls and never
    decreases along it, so date and timestamp ranges are contiguous slices found by binary
    search. Row groups that are not regular are never answered from the cache.
    ``derived``: values computed from the rows once and kept with them (the JSON text of each
    row for a field list), counted in the cache's bytes as ``derived_bytes``."""

    batch: pa.RecordBatch
    ts: np.ndarray  # int64 microseconds
    date: np.ndarray  # int32 days since 1970-01-01
    regular: bool
    nbytes: int
    key: tuple[str, int] = ("", -1)  # (file, row group index)
    derived: dict[Hashable, Any] = field(default_factory=dict)
    derived_bytes: int = 0

    @property
    def size(self) -> int:
        return self.nbytes + self.derived_bytes


def date_days(value: dt.date) -> int:
    return (value - _EPOCH_DAY).days


def _sorted(values: np.ndarray) -> bool:
    return bool(values.size < 2 or (values[1:] >= values[:-1]).all())


class RowGroupCache:
    def __init__(self, max_bytes: int, opener: Callable[[str], Any] | None = None) -> None:
        """``opener(path)``: what ``pq.ParquetFile`` reads (default: the local path itself)."""
        self.max_bytes = max_bytes
        self._opener: Callable[[str], Any] = opener or (lambda path: path)
        # the last few files fetched whole (object storage): a footer and then a row group, or
        # several row groups, of one file are read from one download
        self._fetched: OrderedDict[str, Any] = OrderedDict()
        self._groups: OrderedDict[tuple[str, int], CachedGroup] = OrderedDict()
        self._footers: dict[str, list[RowGroupInfo]] = {}
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def _open(self, path: str) -> Any:
        """What ``pq.ParquetFile`` reads: the local path, or a reader of the file's bytes."""
        with self._lock:
            data = self._fetched.get(path)
            if data is not None:
                self._fetched.move_to_end(path)
        if data is None:
            data = self._opener(path)
            if isinstance(data, str):  # a local path: nothing to keep
                return data
            with self._lock:
                self._fetched[path] = data
                while len(self._fetched) > FETCHED_FILES:
                    self._fetched.popitem(last=False)
        return pa.BufferReader(data)  # one reader per use: readers are not shared by threads

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def __len__(self) -> int:
        return len(self._groups)

    # ---- footers ---------------------------------------------------------------------------
    def row_groups(self, path: str) -> list[RowGroupInfo]:
        """The row groups of a local Parquet file, with their ``date`` statistics."""
        info = self._footers.get(path)
        if info is not None:
            return info
        meta = pq.ParquetFile(self._open(path)).metadata
        names = [meta.schema.column(i).name for i in range(meta.num_columns)]
        col = names.index("date") if "date" in names else None
        info = []
        for i in range(meta.num_row_groups):
            rg = meta.row_group(i)
            lo = hi = None
            if col is not None:
                stats = rg.column(col).statistics
                if stats is not None and stats.has_min_max:
                    lo, hi = stats.min, stats.max
                    if not isinstance(lo, dt.date) or not isinstance(hi, dt.date):
                        lo = hi = None
            info.append(RowGroupInfo(i, rg.num_rows, lo, hi))
        with self._lock:
            self._footers[path] = info
        return info

    # ---- row groups ------------------------------------------------------------------------
    def get(self, path: str, index: int, schema: pa.Schema) -> CachedGroup:
        """Row group ``index`` of ``path`` as ``schema`` (the table's columns that the file
        holds; partition columns are not in Delta data files), read on a miss."""
        key = (path, index)
        with self._lock:
            hit = self._groups.get(key)
            if hit is not None:
                self._groups.move_to_end(key)
                self.hits += 1
                return hit
            self.misses += 1
        group = self._load(path, index, schema)
        group.key = key
        with self._lock:
            if key not in self._groups and group.nbytes <= self.max_bytes:
                self._groups[key] = group
                self.bytes += group.nbytes
                self._evict()
        return group

    def _evict(self) -> None:
        evicted = False
        while self.bytes > self.max_bytes and self._groups:
            _, old = self._groups.popitem(last=False)
            self.bytes -= old.size
            self.evictions += 1
            evicted = True
        if evicted:
            # hand freed pages back to the OS: the allocator would otherwise keep them, and
            # the worker's memory grow well past the cache's bound
            pa.default_memory_pool().release_unused()

    def derived(
        self, group: CachedGroup, key: Hashable, build: Callable[[], tuple[Any, int]]
    ) -> Any:
        """``group.derived[key]``, built (``build() -> (value, nbytes)``) on first use and kept
        while the group is cached and the bytes fit."""
        value = group.derived.get(key)
        if value is not None:
            return value
        value, nbytes = build()
        nbytes = int(nbytes)
        with self._lock:
            cached = self._groups.get(group.key) is group
            if key not in group.derived and cached and group.size + nbytes <= self.max_bytes:
                group.derived[key] = value
                group.derived_bytes += nbytes
                self.bytes += nbytes
                self._evict()
        return value

    def _load(self, path: str, index: int, schema: pa.Schema) -> CachedGroup:
        table = pq.ParquetFile(self._open(path)).read_row_group(index)
        missing = [n for n in schema.names if n not in table.column_names]
        if missing:  # an older file without a later column: the engine answers
            empty = np.empty(0, np.int64)
            return CachedGroup(pa.record_batch([], schema=pa.schema([])), empty, empty, False, 0)
        table = table.select(schema.names).cast(schema).combine_chunks()
        batches = table.to_batches()
        batch = batches[0] if batches else pa.RecordBatch.from_pylist([], schema=schema)
        ts_col, date_col = batch.column("ts"), batch.column("date")
        regular = ts_col.null_count == 0 and date_col.null_count == 0
        ts = ts_col.cast(pa.int64()).to_numpy(zero_copy_only=False)
        date = date_col.cast(pa.int32()).to_numpy(zero_copy_only=False)
        regular = regular and _sorted(ts) and _sorted(date)
        size = int(batch.nbytes) + int(ts.nbytes) + int(date.nbytes)
        return CachedGroup(batch, ts, date, regular, size)

    # ---- invalidation ----------------------------------------------------------------------
    def retain(self, paths: Iterable[str]) -> int:
        """Drop everything cached for files not in ``paths`` (a new version's live files);
        returns the number of row groups dropped."""
        live = set(paths)
        with self._lock:
            gone = [k for k in self._groups if k[0] not in live]
            for k in gone:
                self.bytes -= self._groups.pop(k).size
            for p in [p for p in self._footers if p not in live]:
                del self._footers[p]
            for p in [p for p in self._fetched if p not in live]:
                del self._fetched[p]
        return len(gone)

    def clear(self) -> None:
        with self._lock:
            self._groups.clear()
            self._footers.clear()
            self._fetched.clear()
            self.bytes = 0
