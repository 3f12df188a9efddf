"""Hourly and summary weather queries over the lakehouse (engine-agnostic SQL).

Reads are pruned twice: by ``city_id`` partition and by the files' ``date`` min/max statistics,
then the engine's Parquet reader skips row groups by the same statistics.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson
import pyarrow as pa

from stratus.catalog import registry
from stratus.engine import Engine, TableScan
from stratus.lakehouse import operations as ops
from stratus.lakehouse.operations import AsOf
from stratus.lakehouse.tables import Lakehouse
from stratus.weather.fastpath import HourlyFastPath, RowEncoder

DEFAULT_ROW_CACHE_BYTES = 256 * 2**20


class UnknownCityError(LookupError):
    def __init__(self, city_ids: Sequence[str]) -> None:
        super().__init__(", ".join(city_ids))
        self.city_ids = list(city_ids)


class BadCursorError(ValueError):
    pass


SUMMARY_FIELDS = (
    "city_id",
    "period",
    "temp_min",
    "temp_max",
    "temp_mean",
    "precipitation_total",
    "humidity_mean",
    "wind_speed_max",
    "description_most_frequent",
    "hours_observed",
)


@dataclass(frozen=True)
class Page:
    table: pa.Table
    next_cursor: str | None
    # the rows as JSON from the hot path's per-row-group encodings (None: encode ``table``):
    # given the API's row encoder, the JSON array in pieces
    json: Callable[[RowEncoder], list[bytes | memoryview]] | None = None


def encode_cursor(ts: dt.datetime, city_id: str) -> str:
    raw = orjson.dumps([ts.isoformat(), city_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts, city = orjson.loads(raw)
        return dt.datetime.fromisoformat(ts), str(city)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise BadCursorError("cursor is not one this API returned") from None


class WeatherQueries:
    def __init__(
        self,
        lakehouse: Lakehouse,
        engine: Engine,
        row_cache_bytes: int = DEFAULT_ROW_CACHE_BYTES,
    ) -> None:
        self.lakehouse = lakehouse
        self.engine = engine
        # recently read row groups of the hourly table, per process (0: every read by the engine)
        self.fast = HourlyFastPath(lakehouse, row_cache_bytes)

    # ---- cities --------------------------------------------------------------------------
    def _data_stats(self) -> dict[str, dict[str, object]]:
        """Row count and date span per city from the Delta log (no data file is read)."""
        files = self.lakehouse.files(registry.HOURLY)
        if files is None or files.num_rows == 0:
            return {}
        grouped = files.group_by("partition.city_id").aggregate(
            [("num_records", "sum"), ("min.date", "min"), ("max.date", "max")]
        )
        return {
            row["partition.city_id"]: {
                "rows": row["num_records_sum"],
                "first_date": row["min.date_min"],
                "last_date": row["max.date_max"],
            }
            for row in grouped.to_pylist()
        }

    def cities(self) -> list[dict[str, object]]:
        stats = self._data_stats()
        scan = TableScan(registry.CITIES, self.lakehouse.prune(registry.CITIES))
        meta = self.engine.query("SELECT * FROM {c} ORDER BY city_id", {"c": scan}).to_pylist()
        by_id = {m["city_id"]: m for m in meta}
        out = []
        for cid in sorted(set(by_id) | set(stats)):
            row = dict(by_id.get(cid) or {"city_id": cid})
            s = stats.get(cid, {"rows": 0, "first_date": None, "last_date": None})
            row.update(s)
            out.append(row)
        return out

    def known_city_ids(self) -> set[str]:
        ids = {c for c in self.lakehouse.partition_values(registry.HOURLY, "city_id") if c}
        scan = TableScan(registry.CITIES, self.lakehouse.prune(registry.CITIES))
        if scan.files:
            ids |= set(
                self.engine.query("SELECT city_id FROM {c}", {"c": scan})["city_id"].to_pylist()
            )
        return ids

    def check_cities(self, city_ids: Sequence[str]) -> None:
        with_data = self.lakehouse.partition_values(registry.HOURLY, "city_id")
        missing = [c for c in city_ids if c not in with_data]
        if missing:
            missing = [c for c in missing if c not in self.known_city_ids()]
        if missing:
            raise UnknownCityError(missing)

    # ---- hourly --------------------------------------------------------------------------
    def _scan(
        self, city_ids: Sequence[str], start: dt.date, end: dt.date, as_of: AsOf | None = None
    ) -> TableScan:
        if as_of is not None:  # time travel: that version's files of these cities
            files = ops.snapshot_files(self.lakehouse, registry.HOURLY, as_of, "city_id", city_ids)
            return TableScan(registry.HOURLY, files)
        files = self.lakehouse.prune(
            registry.HOURLY, partition={"city_id": city_ids}, ranges={"date": (start, end)}
        )
        return TableScan(registry.HOURLY, files)

    def hourly(
        self,
        city_ids: Sequence[str],
        start: dt.date,
        end: dt.date,
        *,
        fields: Sequence[str],
        limit: int,
        cursor: str | None = None,
        as_of: AsOf | None = None,
        engine_only: bool = False,
    ) -> Page:
        """One page of hourly rows ordered by (ts, city_id); from cached row groups when
        possible, else (time travel, or with ``engine_only``) from the engine."""
        after = decode_cursor(cursor) if cursor else None
        cols = list(dict.fromkeys(["city_id", "ts", *fields]))
        fast = None
        if self.fast.enabled and not engine_only and as_of is None:
            with_data = self.fast.cities_with_data()
            if any(c not in with_data for c in city_ids):
                self.check_cities(city_ids)
            fast = self.fast.hourly(city_ids, start, end, cols, limit, after)
        else:
            self.check_cities(city_ids)
        if fast is not None:
            table = fast.table
        else:
            table = self._hourly_engine(city_ids, start, end, cols, limit, after, as_of)
        next_cursor = None
        if table.num_rows > limit:
            table = table.slice(0, limit)
            last = table.slice(limit - 1, 1).select(["ts", "city_id"]).to_pylist()[0]
            next_cursor = encode_cursor(last["ts"], last["city_id"])
        json = None
        if fast is not None and fast.pieces is not None:
            pieces, rows, names = fast.pieces, table.num_rows, list(fields)

            def json(encoder: RowEncoder) -> list[bytes | memoryview]:
                return self.fast.json_rows(pieces, names, rows, encoder)

        return Page(table.select(list(fields)), next_cursor, json)

    def _hourly_engine(
        self,
        city_ids: Sequence[str],
        start: dt.date,
        end: dt.date,
        cols: Sequence[str],
        limit: int,
        after: tuple[dt.datetime, str] | None,
        as_of: AsOf | None = None,
    ) -> pa.Table:
        select = ", ".join(f'"{c}"' for c in cols)
        # the scan holds only these cities' partitions: no city predicate needed
        where = "date BETWEEN ? AND ?"
        params: list[object] = [start, end]
        if after:
            where += " AND (ts > ? OR (ts = ? AND city_id > ?))"
            params += [after[0], after[0], after[1]]
        sql = f"SELECT {select} FROM {{hourly}} WHERE {where} ORDER BY ts, city_id LIMIT ?"
        params.append(limit + 1)
        return self.engine.query(sql, {"hourly": self._scan(city_ids, start, end, as_of)}, params)

    # ---- summary -------------------------------------------------------------------------
    def summary(
        self,
        city_ids: Sequence[str],
        start: dt.date,
        end: dt.date,
        granularity: str,
        as_of: AsOf | None = None,
    ) -> pa.Table:
        self.check_cities(city_ids)
        period = {"day": "date", "month": "date_trunc('month', date)::DATE"}[granularity]
        # Two levels: per (city, period, description) first, so the most frequent description
        # (ties: alphabetical) falls out of the same pass as the other aggregates. Sums are
        # exact DECIMALs (the sources have at most 1-2 decimals): a sum of doubles depends on
        # the order the threads add them in, and a rounded mean could then differ by 0.01
        # between two runs over the same data.
        sql = f"""
        WITH g AS (
          SELECT city_id, {period} AS period, description, count(*) AS n,
                 min(temp) AS mn, max(temp) AS mx,
                 sum(temp::DECIMAL(18, 4)) AS st, count(temp) AS ct,
                 sum(precipitation::DECIMAL(18, 4)) AS sp,
                 sum(humidity::DECIMAL(18, 4)) AS sh, count(humidity) AS ch,
                 max(wind_speed) AS mw
          FROM {{hourly}}
          WHERE date BETWEEN ? AND ?
          GROUP BY ALL
        )
        SELECT city_id, period,
               min(mn) AS temp_min, max(mx) AS temp_max,
               round(sum(st)::DOUBLE / sum(ct), 2) AS temp_mean,
               round(sum(sp)::DOUBLE, 2) AS precipitation_total,
               round(sum(sh)::DOUBLE / nullif(sum(ch), 0), 2) AS humidity_mean,
               max(mw) AS wind_speed_max,
               first(description ORDER BY n DESC, description)
                 FILTER (WHERE description IS NOT NULL) AS description_most_frequent,
               sum(n)::BIGINT AS hours_observed
        FROM g
        GROUP BY city_id, period
        ORDER BY period, city_id
        """
        scan = self._scan(city_ids, start, end, as_of)
        return self.engine.query(sql, {"hourly": scan}, [start, end])
