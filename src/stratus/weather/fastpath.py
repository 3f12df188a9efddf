"""The hot path for hourly range reads: cached row groups, binary search, zero-copy slices.

A ``/weather`` page is the rows of some cities between two dates, ordered by ``(ts, city_id)``,
after an optional cursor. Each city's rows are in its own partition's files, written sorted by
``ts`` (the table's sort key), so the rows of one row group between two dates are one contiguous
run: two binary searches on its ``date`` column find it, a third on ``ts`` applies the cursor,
and the answer is a zero-copy slice of the cached Arrow batch. Several slices (several cities,
row groups or files) are merged by ``(ts, city_id)`` after each is cut to the page size.

Local disk and Azure Blob alike: files are opened by the storage (an Azure blob is downloaded
whole, once for its footer and row groups, and then served from memory). Anything this path
cannot answer exactly (a row group whose rows are not in order or hold nulls in ``ts``/``date``,
a cursor with a time zone, a file missing a column) returns None, and the engine answers
instead: both give the same rows (tests/test_weather_fastpath.py, on both storages).
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stratus.catalog import registry
from stratus.lakehouse.rowcache import CachedGroup, RowGroupCache, date_days
from stratus.lakehouse.tables import Lakehouse

_EPOCH = dt.datetime(1970, 1, 1)
_US = dt.timedelta(microseconds=1)
SPEC = registry.HOURLY


@dataclass(frozen=True)
class _FileRef:
    path: str
    date_min: dt.date | None
    date_max: dt.date | None


@dataclass(frozen=True)
class Piece:
    """Rows ``start`` to ``start + length`` of a cached row group of ``city``."""

    group: CachedGroup
    city: str
    start: int
    length: int


@dataclass(frozen=True)
class FastResult:
    table: pa.Table  # up to limit + 1 rows, in page order
    pieces: list[Piece] | None  # the same rows as consecutive pieces (None: merged by sort)


RowEncoder = Callable[[list[str], list[pa.Array]], pa.Array]


@dataclass(frozen=True)
class _Index:
    version: int
    by_city: dict[str, list[_FileRef]]


class HourlyFastPath:
    def __init__(self, lakehouse: Lakehouse, max_bytes: int) -> None:
        self.lakehouse = lakehouse
        self.cache = RowGroupCache(max_bytes, lakehouse.storage.open_file)
        self._index: _Index | None = None
        self._lock = threading.Lock()
        self._file_schema = pa.schema([f for f in SPEC.schema if f.name not in SPEC.partition_by])
        self.answered = 0  # pages served here (tests check the path is taken)
        self.declined = 0

    @property
    def enabled(self) -> bool:
        return self.cache.enabled

    def index(self) -> _Index:
        """Files per city at the table's latest version; a new version drops from the cache
        only the files it removed."""
        version, entries = self.lakehouse.entries(SPEC)
        current = self._index
        if current is not None and current.version == version:
            return current
        with self._lock:
            current = self._index
            if current is not None and current.version == version:
                return current
            by_city: dict[str, list[_FileRef]] = {}
            storage = self.lakehouse.storage
            for e in entries:
                city = e.partition.get("city_id")
                if city is None:
                    continue
                lo, hi = e.stats.get("date", (None, None))
                ref = _FileRef(
                    storage.local_path(e.uri),
                    lo if isinstance(lo, dt.date) else None,
                    hi if isinstance(hi, dt.date) else None,
                )
                by_city.setdefault(city, []).append(ref)
            self.cache.retain(r.path for refs in by_city.values() for r in refs)
            self._index = _Index(version, by_city)
            return self._index

    def cities_with_data(self) -> dict[str, list[_FileRef]]:
        return self.index().by_city

    def hourly(
        self,
        city_ids: Sequence[str],
        start: dt.date,
        end: dt.date,
        cols: Sequence[str],
        limit: int,
        after: tuple[dt.datetime, str] | None,
    ) -> FastResult | None:
        """Up to ``limit + 1`` rows (``cols``, which include city_id and ts) in page order, or
        None when the engine must answer."""
        if not self.enabled:
            return None
        if after is not None and after[0].tzinfo is not None:
            self.declined += 1
            return None
        by_city = self.index().by_city
        lo_day, hi_day = np.int32(date_days(start)), np.int32(date_days(end))
        after_us = np.int64((after[0] - _EPOCH) // _US) if after else None
        want = limit + 1
        pieces: list[Piece] = []
        for city in city_ids:
            for ref in by_city.get(city, ()):
                if (ref.date_max is not None and ref.date_max < start) or (
                    ref.date_min is not None and ref.date_min > end
                ):
                    continue
                for rg in self.cache.row_groups(ref.path):
                    if (rg.date_max is not None and rg.date_max < start) or (
                        rg.date_min is not None and rg.date_min > end
                    ):
                        continue
                    group = self.cache.get(ref.path, rg.index, self._file_schema)
                    if not group.regular:
                        self.declined += 1
                        return None
                    lo = int(np.searchsorted(group.date, lo_day, "left"))
                    hi = int(np.searchsorted(group.date, hi_day, "right"))
                    if after_us is not None and lo < hi:
                        # (ts, city) > (after_ts, after_city): ts > t, or ts = t and city > c
                        side: Literal["left", "right"] = (
                            "left" if city > after[1] else "right"  # type: ignore[index]
                        )
                        lo = max(lo, lo + int(np.searchsorted(group.ts[lo:hi], after_us, side)))
                    if lo < hi:
                        pieces.append(Piece(group, city, lo, min(hi - lo, want)))
        self.answered += 1
        return _merge(self.cache, pieces, cols, want)

    def json_rows(
        self, pieces: list[Piece], fields: Sequence[str], rows: int, encoder: RowEncoder
    ) -> list[bytes | memoryview]:
        """The JSON array of the first ``rows`` rows of ``pieces`` (``fields`` of each), as
        pieces of bytes: ranges of each row group's rows encoded once by ``encoder`` (which
        gives one ``{...},`` string per row) and kept with the cached group."""
        out: list[bytes | memoryview] = [b"["]
        left = rows
        for piece in pieces:
            take = min(piece.length, left)
            if take <= 0:
                break
            offsets, data = self.cache.derived(
                piece.group,
                ("json", tuple(fields)),
                functools.partial(_encode_group, piece.group, piece.city, fields, encoder),
            )
            out.append(data[offsets[piece.start] : offsets[piece.start + take]])
            left -= take
        if len(out) > 1:
            out[-1] = out[-1][:-1]  # the last row's comma
        out.append(b"]")
        return out


def _encode_group(
    group: CachedGroup, city: str, fields: Sequence[str], encoder: RowEncoder
) -> tuple[tuple[np.ndarray, memoryview], int]:
    n = group.batch.num_rows
    columns = [
        pa.repeat(pa.scalar(city, pa.string()), n) if f == "city_id" else group.batch.column(f)
        for f in fields
    ]
    rows = encoder(list(fields), columns)
    _, offsets, data = rows.buffers()
    off = np.frombuffer(offsets, dtype=np.int32)[rows.offset : rows.offset + n + 1]
    view = memoryview(data) if data is not None else memoryview(b"")
    return (off, view), int(off.nbytes) + (int(off[-1]) - int(off[0]) if n else 0)


def _with_city(cache: RowGroupCache, piece: Piece, cols: Sequence[str]) -> list[pa.Array]:
    """The piece's columns, its city's (a partition value, not in the file) included."""
    group, start, length = piece.group, piece.start, piece.length
    arrays = []
    for c in cols:
        if c == "city_id":
            city = cache.derived(group, "city", lambda: _city_column(group, piece.city))
            arrays.append(city.slice(start, length))
        else:
            arrays.append(group.batch.column(c).slice(start, length))
    return arrays


def _city_column(group: CachedGroup, city: str) -> tuple[pa.Array, int]:
    col = pa.repeat(pa.scalar(city, pa.string()), group.batch.num_rows)
    return col, int(col.nbytes)


def _merge(cache: RowGroupCache, pieces: list[Piece], cols: Sequence[str], want: int) -> FastResult:
    schema = _schema(tuple(cols))
    if not pieces:
        return FastResult(schema.empty_table(), [])
    if len(pieces) == 1:
        table = pa.Table.from_arrays(_with_city(cache, pieces[0], cols), schema=schema)
        return FastResult(table, pieces)
    batches = [
        pa.RecordBatch.from_arrays(_with_city(cache, p, cols), schema=schema) for p in pieces
    ]
    table = pa.Table.from_batches(batches, schema=schema)
    # one city whose pieces follow each other in time (the usual case): already in order
    if len({p.city for p in pieces}) == 1 and _ascending(pieces):
        return FastResult(table.slice(0, want), pieces)
    order = pc.sort_indices(table, [("ts", "ascending"), ("city_id", "ascending")])
    return FastResult(table.take(order[:want]), None)


@functools.lru_cache(maxsize=512)
def _schema(cols: tuple[str, ...]) -> pa.Schema:
    return pa.schema([SPEC.schema.field(c) for c in cols])


def _ascending(pieces: list[Piece]) -> bool:
    last = None
    for p in pieces:
        ts = p.group.ts
        if last is not None and ts[p.start] < last:
            return False
        last = ts[p.start + p.length - 1]
    return True
