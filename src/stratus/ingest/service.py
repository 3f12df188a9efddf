"""Ingest a file into a weather table: read, validate, quarantine, de-duplicate, upsert.

One call is one ingest. Good rows are upserted on ``(city_id, ts)`` with a single Delta MERGE
(only rows that are new or changed are written, so re-ingesting a file commits nothing); bad rows
go to ``main.weather.quarantine`` keyed by (file hash, record) with their reasons. If anything fails
before the commit, the table is exactly as it was.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import uuid
import zoneinfo
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from stratus.catalog import TableSpec, registry
from stratus.engine import LocalEngine, TableScan
from stratus.ingest.readers import Progress, RawInput, read_input
from stratus.ingest.validate import city_checks_sql, weather_checks_sql
from stratus.lakehouse.tables import Lakehouse
from stratus.weather.schema import CITY_COLUMNS, SEED_COLUMNS

log = logging.getLogger(__name__)


@dataclass
class IngestReport:
    ingest_id: str
    source: str
    table: str
    format: str
    read: int = 0
    written: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0
    quarantined: int = 0
    new_cities: list[str] = field(default_factory=list)
    version: int | None = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _invalid_timezones(values: list[str | None]) -> list[str]:
    bad = []
    for tz in {v.strip() for v in values if v}:
        try:
            zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            bad.append(tz)
    return bad


class IngestService:
    def __init__(self, lakehouse: Lakehouse, engine: LocalEngine) -> None:
        self.lakehouse = lakehouse
        self.engine = engine

    def ingest(
        self,
        path: Path,
        table: str = "main.weather.hourly",
        *,
        city_id: str | None = None,
        on_progress: Progress | None = None,
    ) -> IngestReport:
        started = dt.datetime.now(dt.UTC)
        spec = registry.resolve(table)
        if spec not in (registry.HOURLY, registry.CITIES):
            raise ValueError(f"cannot ingest into {spec.full_name}: use hourly or cities")
        columns = SEED_COLUMNS if spec is registry.HOURLY else CITY_COLUMNS
        raw, city_meta = read_input(path, columns, city_id=city_id, on_progress=on_progress)
        report = IngestReport(
            ingest_id=uuid.uuid4().hex,
            source=str(path),
            table=spec.full_name,
            format=raw.format,
            read=raw.table.num_rows,
            warnings=list(raw.warnings),
        )
        con = duckdb.connect()
        try:
            con.register("raw_input", _with_error_column(raw))
            if spec is registry.HOURLY:
                self._ingest_weather(con, report, path, city_meta)
            else:
                self._ingest_cities(con, report, path)
        finally:
            con.close()
        report.seconds = round((dt.datetime.now(dt.UTC) - started).total_seconds(), 3)
        log.info(
            "ingested %s into %s: read=%d written=%d quarantined=%d",
            path.name,
            spec.full_name,
            report.read,
            report.written,
            report.quarantined,
        )
        return report

    # ---- weather -------------------------------------------------------------------------
    def _ingest_weather(
        self,
        con: duckdb.DuckDBPyConnection,
        report: IngestReport,
        path: Path,
        city_meta: dict[str, object] | None,
    ) -> None:
        con.execute(f"CREATE TEMP TABLE checked AS {weather_checks_sql('raw_input')}")
        self._quarantine(con, report, path, list(SEED_COLUMNS))
        con.execute(
            """
            CREATE TEMP TABLE good AS
            SELECT c_city_id AS city_id, c_date AS date, c_hour AS hour, c_ts AS ts,
                   c_temp AS temp, c_wind_speed AS wind_speed, c_description AS description,
                   c_precipitation AS precipitation, c_humidity AS humidity
            FROM checked WHERE reason = ''
            QUALIFY row_number() OVER (PARTITION BY c_city_id, c_ts ORDER BY _record DESC) = 1
            """
        )
        valid = con.execute("SELECT count(*) FROM checked WHERE reason = ''").fetchall()[0]
        good = con.execute("SELECT count(*), min(ts), max(ts) FROM good").fetchall()[0]
        report.duplicates = int(valid[0]) - int(good[0])
        if good[0] == 0:
            return
        cities = [r[0] for r in con.execute("SELECT DISTINCT city_id FROM good").fetchall()]
        lo, hi = good[1], good[2]
        files = self.lakehouse.prune(
            registry.HOURLY,
            partition={"city_id": cities},
            ranges={"date": (lo.date() - dt.timedelta(days=1), hi.date())},
        )
        existing = self.engine.query(
            "SELECT * FROM {hourly} WHERE ts BETWEEN ? AND ?",
            {"hourly": TableScan(registry.HOURLY, files)},
            [lo, hi],
        )
        con.register("existing", existing)
        changes = con.sql(
            """
            SELECT g.*
            FROM good g LEFT JOIN existing e ON g.city_id = e.city_id AND g.ts = e.ts
            WHERE e.city_id IS NULL
               OR (g.date, g.hour, g.temp, g.wind_speed, g.description, g.precipitation,
                   g.humidity)
                  IS DISTINCT FROM
                  (e.date, e.hour, e.temp, e.wind_speed, e.description, e.precipitation,
                   e.humidity)
            """
        ).to_arrow_table()
        report.unchanged = int(good[0]) - changes.num_rows
        if changes.num_rows:
            result = self.lakehouse.merge(registry.HOURLY, changes)
            report.inserted, report.updated = result.inserted, result.updated
            report.written = result.inserted + result.updated
            report.version = result.version
        report.new_cities = self._register_cities(cities, city_meta, path)

    def _register_cities(
        self, cities: list[str], meta: dict[str, object] | None, path: Path
    ) -> list[str]:
        """Add cities seen for the first time (with what the input says about them)."""
        known = set()
        scan = TableScan(registry.CITIES, self.lakehouse.prune(registry.CITIES))
        if scan.files:
            known = set(
                self.engine.query("SELECT city_id FROM {c}", {"c": scan})["city_id"].to_pylist()
            )
        new = sorted(set(cities) - known)
        if not new:
            return []
        rows = []
        for cid in new:
            row = dict.fromkeys(CITY_COLUMNS)
            row.update({"city_id": cid, "source": f"ingest:{path.name}"})
            if meta and meta.get("city_id") == cid:
                row.update(meta)
            rows.append(row)
        self.lakehouse.merge(
            registry.CITIES, pa.Table.from_pylist(rows, schema=registry.CITIES.schema), update=False
        )
        return new

    # ---- cities --------------------------------------------------------------------------
    def _ingest_cities(
        self, con: duckdb.DuckDBPyConnection, report: IngestReport, path: Path
    ) -> None:
        tz_values = [r[0] for r in con.execute("SELECT timezone FROM raw_input").fetchall()]
        con.execute(
            f"CREATE TEMP TABLE checked AS {city_checks_sql('raw_input')}",
            [_invalid_timezones(tz_values)],
        ).fetchall()
        self._quarantine(con, report, path, list(CITY_COLUMNS))
        good = con.sql(
            """
            SELECT c_city_id AS city_id, c_name AS name, c_latitude AS latitude,
                   c_longitude AS longitude, c_timezone AS timezone, c_source AS source
            FROM checked WHERE reason = ''
            QUALIFY row_number() OVER (PARTITION BY c_city_id ORDER BY _record DESC) = 1
            """
        ).to_arrow_table()
        valid = con.execute("SELECT count(*) FROM checked WHERE reason = ''").fetchall()[0]
        report.duplicates = int(valid[0]) - good.num_rows
        scan = TableScan(registry.CITIES, self.lakehouse.prune(registry.CITIES))
        existing = self.engine.query("SELECT * FROM {c}", {"c": scan})
        con.register("existing", existing)
        con.register("incoming", good)
        changes = con.sql(
            """
            SELECT i.* FROM incoming i LEFT JOIN existing e USING (city_id)
            WHERE e.city_id IS NULL
               OR (i.name, i.latitude, i.longitude, i.timezone, i.source)
                  IS DISTINCT FROM (e.name, e.latitude, e.longitude, e.timezone, e.source)
            """
        ).to_arrow_table()
        report.unchanged = good.num_rows - changes.num_rows
        if changes.num_rows:
            result = self.lakehouse.merge(registry.CITIES, changes)
            report.inserted, report.updated = result.inserted, result.updated
            report.written = result.inserted + result.updated
            report.version = result.version

    # ---- quarantine ----------------------------------------------------------------------
    def _quarantine(
        self,
        con: duckdb.DuckDBPyConnection,
        report: IngestReport,
        path: Path,
        columns: list[str],
    ) -> None:
        fields = ", ".join(f"'{c}': {c}" for c in columns)
        bad = con.sql(
            f"""
            SELECT ? AS ingest_id, ? AS target_table, ? AS source, ? AS source_sha256,
                   _record AS record, reason, CAST(to_json({{{fields}}}) AS VARCHAR) AS raw,
                   now() AS quarantined_at
            FROM checked WHERE reason <> '' ORDER BY _record
            """,
            params=[report.ingest_id, report.table, str(path), file_sha256(path)],
        ).to_arrow_table()
        report.quarantined = bad.num_rows
        if bad.num_rows:
            self.lakehouse.merge(registry.QUARANTINE, bad, update=False)


def _with_error_column(raw: RawInput) -> pa.Table:
    table = raw.table
    if "_error" not in table.column_names:
        table = table.append_column("_error", pa.nulls(table.num_rows, pa.string()))
    return table


__all__ = ["IngestReport", "IngestService", "TableSpec"]
