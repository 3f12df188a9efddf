"""Query latency benchmark for the Stratus API over a SYNTHETIC scaled hourly table.

The data is synthetic. The six real stations of ``stratus sample-data`` (about one year of hourly
observations each) are resampled into N cities x Y years of hourly rows (100 x 5 = ~4.4M rows):
city k takes station k % 6's series, re-stamped onto consecutive calendar years (keeping month,
day and hour; Feb 29 repeats Feb 28), with a per-city temperature offset and seeded noise on
temperature, humidity and wind. The rows are written with the project's own
``Lakehouse.overwrite(registry.HOURLY, ...)`` (its partitioning and writer properties) into a
lakehouse under ``<data-dir>/home-<cities>c-<years>y``, which is kept and reused by later runs.
The table is handed to the writer as one ts-ordered record batch, so every city file is in time
order; ``--chunked-write`` hands it over as one chunk per city-year instead, which delta-rs 1.6
may write interleaved (files out of ts order, overlapping row-group date ranges; it is racy).

Measured (warm: the first 10 runs are discarded; p50/p95 of ``time.perf_counter``):

* one city, 7 days (168 rows): ``GET /api/v1/weather`` through Flask's test client, through a
  real gunicorn server (``stratus serve``, 1 worker, keep-alive ``requests.Session``), and the
  lower bound: DuckDB alone over that city's Parquet files (file list computed up front);
* one city, 1 year by month: ``GET /api/v1/weather/summary?granularity=month`` the same three ways
  (the DuckDB lower bound computes the aggregates but not the most frequent description);
* the 7-day test-client query on a 10-city table too, to check that pruning keeps latency flat.

Run: ``python benchmarks/query.py [--cities 100] [--years 5] [--repeat 200] [--quick]``.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime as dt
import gc
import io
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import requests
from deltalake import DeltaTable

from _common import free_port, stop  # benchmarks/_common.py
from stratus.api import create_app
from stratus.catalog import registry
from stratus.config import Settings
from stratus.context import Stratus
from stratus.weather.schema import BOUNDS, CITIES_SCHEMA, HOURLY_FIELDS, HOURLY_SCHEMA

BUILD_FORMAT = 2  # bump when the synthetic data changes, so cached lakehouses are rebuilt
SEED = 20240601
WARMUP = 10
DAYS = 7
TARGET_RATIO, TARGET_SLACK_MS = 2.0, 5.0  # API p50 < 2 x DuckDB p50 + 5 ms
FLAT_TARGET = 1.5  # p50 at many cities <= 1.5 x p50 at few cities
MARKER = "benchmark-build.json"


def say(text: str = "") -> None:
    print(text, flush=True)


# ---- synthetic data ------------------------------------------------------------------------
@dataclass(frozen=True)
class Stations:
    ids: list[str]
    series: dict[str, pa.Table]  # month, day, hour, temp, wind_speed, description, ...
    cities: pa.Table  # the real stations' cities table


def load_stations(data_dir: Path) -> tuple[Stations, float]:
    """The real sample observations (``build_sample_data``), one series per station."""
    from stratus.weather.sample import build_sample_data

    t0 = time.perf_counter()
    report = build_sample_data(data_dir / "sample" / "weather.csv")
    weather = pacsv.read_csv(
        report.weather_path,
        convert_options=pacsv.ConvertOptions(
            column_types={
                "city_id": pa.string(),
                "date": pa.date32(),
                "hour": pa.string(),
                "temp": pa.float64(),
                "wind_speed": pa.float64(),
                "description": pa.string(),
                "precipitation": pa.float64(),
                "humidity": pa.float64(),
            },
            strings_can_be_null=True,
        ),
    )
    cities = pacsv.read_csv(
        report.cities_path,
        convert_options=pacsv.ConvertOptions(
            column_types={f.name: f.type for f in CITIES_SCHEMA}, strings_can_be_null=True
        ),
    )
    # Month and day of each observation; one row per (month, day, hour) (first one wins).
    days = weather["date"].to_numpy().astype("datetime64[D]")
    months = days.astype("datetime64[M]")
    weather = weather.append_column(
        "month", pa.array((months.astype(np.int64) % 12 + 1).astype(np.int32))
    ).append_column("day", pa.array((days - months).astype(np.int64).astype(np.int32) + 1))
    series = {}
    ids = sorted(set(weather["city_id"].to_pylist()))
    for sid in ids:
        t = weather.filter(pc.equal(weather["city_id"], sid)).sort_by(
            [("month", "ascending"), ("day", "ascending"), ("hour", "ascending")]
        )
        key = np.char.add(
            np.char.add(t["month"].to_numpy().astype(str), "/"),
            np.char.add(
                np.char.add(t["day"].to_numpy().astype(str), "/"),
                np.array(t["hour"].to_pylist(), dtype=str),
            ),
        )
        _, first = np.unique(key, return_index=True)
        series[sid] = t.take(np.sort(first))
    return Stations(ids, series, cities), time.perf_counter() - t0


def station_year(series: pa.Table, year: int) -> pa.Table:
    """A station's series re-stamped onto ``year`` (Feb 29 from Feb 28 when missing), by ts."""
    month = series["month"].to_numpy()
    day = series["day"].to_numpy()
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    feb29 = (month == 2) & (day == 29)
    keep = ~feb29 if not leap else np.ones(len(month), dtype=bool)
    parts = [series.filter(pa.array(keep))]
    if leap and not feb29.any():
        extra = series.filter(pa.array((month == 2) & (day == 28)))
        extra = extra.set_column(
            extra.schema.get_field_index("day"), "day", pa.array(np.full(extra.num_rows, 29, "i4"))
        )
        parts.append(extra)
    t = pa.concat_tables(parts)
    m = t["month"].to_numpy().astype(np.int64)
    d = t["day"].to_numpy().astype(np.int64)
    dates = (np.datetime64(f"{year}-01", "M") + (m - 1).astype("timedelta64[M]")).astype(
        "datetime64[D]"
    ) + (d - 1).astype("timedelta64[D]")
    hh = pc.cast(pc.utf8_slice_codeunits(t["hour"], 0, 2), pa.int64()).to_numpy()
    mm = pc.cast(pc.utf8_slice_codeunits(t["hour"], 2, 4), pa.int64()).to_numpy()
    minutes = hh * 60 + mm  # "2400" -> the next midnight
    ts = dates.astype("datetime64[us]") + (minutes * 60_000_000).astype("timedelta64[us]")
    t = t.drop_columns(["date", "city_id"])
    t = t.append_column("date", pa.array(dates)).append_column("ts", pa.array(ts))
    return t.sort_by("ts")


def _noisy(
    values: pa.ChunkedArray, noise: np.ndarray, lo: float, hi: float, places: int
) -> pa.Array:
    arr = values.to_numpy(zero_copy_only=False).astype(np.float64) + noise
    arr = np.round(np.clip(arr, lo, hi), places)
    return pa.array(arr, type=pa.float64(), from_pandas=True)  # NaN (missing) -> null


def synthetic_city(k: int, template: pa.Table) -> pa.Table:
    """City k: its station's multi-year template + a per-city offset and seeded noise."""
    rng = np.random.default_rng(SEED + k)
    n = template.num_rows
    offset = rng.uniform(-3.0, 3.0)
    temp = _noisy(template["temp"], offset + rng.normal(0.0, 0.4, n), *BOUNDS["temp"], 2)
    hum = _noisy(template["humidity"], rng.normal(0.0, 2.0, n), *BOUNDS["humidity"], 2)
    wind_raw = template["wind_speed"].to_numpy(zero_copy_only=False).astype(np.float64)
    wind_raw = np.where(wind_raw > BOUNDS["wind_speed"][1], np.nan, wind_raw)  # EWR's bad reading
    wind = pa.array(
        np.round(np.clip(wind_raw * rng.normal(1.0, 0.05, n), 0.0, None), 2), from_pandas=True
    )
    return pa.table(
        {
            "city_id": pa.repeat(city_id(k), n),
            "date": template["date"],
            "hour": template["hour"],
            "ts": template["ts"],
            "temp": temp,
            "wind_speed": wind,
            "description": template["description"],
            "precipitation": template["precipitation"],
            "humidity": hum,
        },
        schema=HOURLY_SCHEMA,
    )


def city_id(k: int) -> str:
    return f"syn-{k:03d}"


def synthetic_cities(stations: Stations, n: int) -> pa.Table:
    meta = {r["city_id"]: r for r in stations.cities.to_pylist()}
    rows = []
    for k in range(n):
        sid = stations.ids[k % len(stations.ids)]
        m = meta.get(sid, {})
        rng = np.random.default_rng(SEED + 100_000 + k)
        rows.append(
            {
                "city_id": city_id(k),
                "name": f"Synthetic {k:03d} (from {m.get('name', sid)})",
                "latitude": round((m.get("latitude") or 0.0) + rng.uniform(-0.5, 0.5), 6),
                "longitude": round((m.get("longitude") or 0.0) + rng.uniform(-0.5, 0.5), 6),
                "timezone": m.get("timezone") or "UTC",
                "source": f"SYNTHETIC benchmark data resampled from {sid} ({m.get('source')})",
            }
        )
    return pa.Table.from_pylist(rows, schema=CITIES_SCHEMA)


@dataclass
class Lake:
    cities: int
    years: int
    first_year: int
    home: Path
    rows: int
    build_seconds: float
    reused: bool

    @property
    def city_ids(self) -> list[str]:
        return [city_id(k) for k in range(self.cities)]

    def stratus(self) -> Stratus:
        return Stratus.from_settings(Settings(home=self.home))


class StationCache:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._stations: Stations | None = None

    def get(self) -> Stations:
        if self._stations is None:
            self._stations, secs = load_stations(self.data_dir)
            rows = sum(t.num_rows for t in self._stations.series.values())
            say(
                f"  real sample: {len(self._stations.ids)} stations, {rows:,} hourly rows "
                f"(build_sample_data + read: {secs:.1f} s)"
            )
        return self._stations


def home_name(n_cities: int, years: int, chunked: bool) -> str:
    return f"home-{n_cities}c-{years}y" + ("-chunked" if chunked else "")


def build_lake(
    data_dir: Path,
    n_cities: int,
    years: int,
    first_year: int,
    stations: StationCache,
    rebuild: bool = False,
    chunked: bool = False,
) -> Lake:
    home = data_dir / home_name(n_cities, years, chunked)
    marker = home / MARKER
    wanted = {
        "format": BUILD_FORMAT,
        "cities": n_cities,
        "years": years,
        "first_year": first_year,
        "chunked": chunked,
    }
    if marker.is_file() and not rebuild:
        info = json.loads(marker.read_text())
        if {k: info.get(k) for k in wanted} == wanted:
            return Lake(
                n_cities, years, first_year, home, info["rows"], info["build_seconds"], True
            )
    if home.exists():
        shutil.rmtree(home)
    st = stations.get()
    t0 = time.perf_counter()
    templates = {
        sid: pa.concat_tables(
            [station_year(st.series[sid], y) for y in range(first_year, first_year + years)]
        )
        for sid in st.ids
    }
    table = pa.concat_tables(
        [synthetic_city(k, templates[st.ids[k % len(st.ids)]]) for k in range(n_cities)]
    )
    if not chunked:
        # One record batch: delta-rs (1.6) writes the batches of a multi-chunk table in
        # parallel and interleaves them, so each city file would not be in ts order and its
        # row groups' date ranges would overlap (see --chunked-write).
        table = table.combine_chunks()
    gen_secs = time.perf_counter() - t0
    stratus = Stratus.from_settings(Settings(home=home))
    t1 = time.perf_counter()
    stratus.lakehouse.overwrite(registry.HOURLY, table)
    stratus.lakehouse.overwrite(registry.CITIES, synthetic_cities(st, n_cities))
    write_secs = time.perf_counter() - t1
    rows = table.num_rows
    say(
        f"  generated {rows:,} rows ({table.nbytes / 2**20:.0f} MiB in Arrow) in {gen_secs:.1f} s; "
        f"Lakehouse.overwrite (hourly + cities) in {write_secs:.1f} s"
    )
    del table
    total = time.perf_counter() - t0
    marker.write_text(json.dumps({**wanted, "rows": rows, "build_seconds": round(total, 2)}))
    return Lake(n_cities, years, first_year, home, rows, total, False)


def admin_token(stratus: Stratus) -> str:
    """A fresh one-day admin API token (the API requires one)."""
    stratus.bootstrap()
    secret, _ = stratus.governance.metastore.create_token("admin", days=1, comment="benchmark")
    return secret


# ---- measurement ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Stat:
    p50: float
    p95: float
    n: int


Job = tuple[Callable[[str, dt.date], object], list[tuple[str, dt.date]]]


def timed(jobs: dict[str, Job]) -> dict[str, Stat]:
    """Run every job over its workload, interleaved (run i of each job, then run i + 1, ...),
    so that drift (CPU clocks, caches, other load) affects all of them alike. The first WARMUP
    runs of each are discarded. Milliseconds."""
    times: dict[str, list[float]] = {name: [] for name in jobs}
    rounds = min(len(work) for _, work in jobs.values())
    gc.collect()
    for i in range(rounds):
        for name, (fn, work) in jobs.items():
            city, start = work[i]
            t0 = time.perf_counter()
            fn(city, start)
            elapsed = (time.perf_counter() - t0) * 1000
            if i >= WARMUP:
                times[name].append(elapsed)
    out = {}
    for name, values in times.items():
        q = statistics.quantiles(values, n=100, method="inclusive")
        out[name] = Stat(statistics.median(values), q[94], len(values))
    return out


def week_work(lake: Lake, n: int, seed: int = SEED) -> list[tuple[str, dt.date]]:
    rng = np.random.default_rng(seed)
    first = dt.date(lake.first_year, 1, 1)
    span = (dt.date(lake.first_year + lake.years - 1, 12, 31) - first).days - (DAYS - 1)
    ids = lake.city_ids
    return [
        (ids[int(rng.integers(len(ids)))], first + dt.timedelta(days=int(rng.integers(span + 1))))
        for _ in range(n)
    ]


def year_work(lake: Lake, n: int, seed: int = SEED + 1) -> list[tuple[str, dt.date]]:
    rng = np.random.default_rng(seed)
    ids = lake.city_ids
    return [
        (
            ids[int(rng.integers(len(ids)))],
            dt.date(lake.first_year + int(rng.integers(lake.years)), 1, 1),
        )
        for _ in range(n)
    ]


def week_url(city: str, start: dt.date) -> str:
    end = start + dt.timedelta(days=DAYS - 1)
    return f"/api/v1/weather?city_id={city}&start={start}&end={end}"


def year_url(city: str, start: dt.date) -> str:
    return (
        f"/api/v1/weather/summary?city_id={city}&start={start.year}-01-01"
        f"&end={start.year}-12-31&granularity=month"
    )


class Direct:
    """The lower bound: DuckDB alone over one city's Parquet files (listed once, up front)."""

    WEEK = (
        "SELECT ?::VARCHAR AS city_id, date, hour, ts, temp, wind_speed, description, "
        "precipitation, humidity FROM read_parquet([{files}]) "
        "WHERE date BETWEEN ? AND ? ORDER BY ts"
    )
    YEAR = (
        "SELECT date_trunc('month', date)::DATE AS period, min(temp) AS temp_min, "
        "max(temp) AS temp_max, round(avg(temp), 2) AS temp_mean, "
        "round(sum(precipitation), 2) AS precipitation_total, "
        "round(avg(humidity), 2) AS humidity_mean, max(wind_speed) AS wind_speed_max, "
        "count(*) AS hours_observed FROM read_parquet([{files}]) "
        "WHERE date BETWEEN ? AND ? GROUP BY period ORDER BY period"
    )

    def __init__(self, lake: Lake) -> None:
        url = lake.stratus().lakehouse.url(registry.HOURLY)
        uris = DeltaTable(url).file_uris()
        self.files: dict[str, list[str]] = {}
        for c in lake.city_ids:
            mine = [u.removeprefix("file://") for u in uris if f"/city_id={c}/" in u]
            self.files[c] = mine
        self.con = duckdb.connect()
        self.con.execute("SET parquet_metadata_cache = true")
        # execute() is a little faster than con.sql() here; its "extra copy" of ~168 rows is free
        warnings.filterwarnings("ignore", message="Arrow output on a DB-API result")
        self._sql: dict[tuple[str, str], str] = {}
        for c, files in self.files.items():
            lst = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
            self._sql[("week", c)] = self.WEEK.format(files=lst)
            self._sql[("year", c)] = self.YEAR.format(files=lst)

    def week(self, city: str, start: dt.date) -> pa.Table:
        end = start + dt.timedelta(days=DAYS - 1)
        return self.con.execute(self._sql[("week", city)], [city, start, end]).to_arrow_table()

    def year(self, city: str, start: dt.date) -> pa.Table:
        lo, hi = dt.date(start.year, 1, 1), dt.date(start.year, 12, 31)
        return self.con.execute(self._sql[("year", city)], [lo, hi]).to_arrow_table()


@contextlib.contextmanager
def gunicorn(
    lake: Lake, log_path: Path, workers: int = 1, extra_env: Mapping[str, str] | None = None
) -> Iterator[str]:
    """``stratus serve`` on a free loopback port over ``lake``; yields its base URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATUS_")}
    env.update(
        STRATUS_HOME=str(lake.home),
        STRATUS_PORT=str(port),
        STRATUS_HOST="127.0.0.1",
        STRATUS_WORKERS=str(workers),
        STRATUS_LOG_LEVEL="WARNING",
    )
    env.update(extra_env or {})
    exe = Path(sys.executable).with_name("stratus")
    cmd = [str(exe), "serve"] if exe.exists() else [sys.executable, "-m", "stratus", "serve"]
    base = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"stratus serve exited ({proc.returncode}); see {log_path}")
                try:
                    if requests.get(base + "/health", timeout=2).status_code == 200:
                        break
                except (requests.ConnectionError, requests.Timeout):
                    pass  # not listening yet, or a worker still starting on a loaded machine
                if time.monotonic() > deadline:
                    raise RuntimeError(f"stratus serve did not answer /health; see {log_path}")
                time.sleep(0.1)
            yield base
        finally:
            stop(proc)


def client_fn(client, url_of: Callable[[str, dt.date], str]) -> Callable[[str, dt.date], None]:
    def run(city: str, start: dt.date) -> None:
        resp = client.get(url_of(city, start))
        if resp.status_code != 200:
            raise RuntimeError(f"{url_of(city, start)} -> {resp.status_code}: {resp.data[:300]!r}")

    return run


def session_fn(
    session: requests.Session, base: str, url_of: Callable[[str, dt.date], str]
) -> Callable[[str, dt.date], None]:
    def run(city: str, start: dt.date) -> None:
        resp = session.get(base + url_of(city, start), timeout=30)
        if resp.status_code != 200:
            raise RuntimeError(f"{url_of(city, start)} -> {resp.status_code}: {resp.text[:300]}")

    return run


def cross_check(client, direct: Direct, work: list[tuple[str, dt.date]]) -> str:
    """The API and the DuckDB lower bound return the same rows (a few samples, untimed)."""
    for city, start in work:
        body = client.get(week_url(city, start)).get_json()
        ref = direct.week(city, start)
        api_temps = [r["temp"] for r in body["data"]]
        if body["count"] != ref.num_rows or api_temps != ref["temp"].to_pylist():
            raise RuntimeError(f"API and DuckDB disagree for {city} {start}")
        body = client.get(year_url(city, start)).get_json()
        ref = direct.year(city, start)
        if [r["hours_observed"] for r in body["data"]] != ref["hours_observed"].to_pylist():
            raise RuntimeError(f"summary: API and DuckDB disagree for {city} {start.year}")
    return f"{len(work)} queries agree"


# ---- layout --------------------------------------------------------------------------------
def spread(values: list[int]) -> str:
    """``median`` or ``median (min-max)``."""
    mid = f"{statistics.median(values):g}"
    return mid if min(values) == max(values) else f"{mid} ({min(values)}-{max(values)})"


def layout(lake: Lake, work: list[tuple[str, dt.date]]) -> dict[str, list[int]]:
    stratus = lake.stratus()
    lh = stratus.lakehouse
    files = lh.files(registry.HOURLY)
    assert files is not None
    root = lh.url(registry.HOURLY)
    per_city_files: dict[str, int] = {}
    per_city_rgs: dict[str, int] = {}
    rg_rows = []
    meta_by_path = {}
    for path, cid in zip(
        files["path"].to_pylist(), files["partition.city_id"].to_pylist(), strict=True
    ):
        md = pq.ParquetFile(f"{root}/{path}").metadata
        meta_by_path[f"{root}/{path}"] = md
        per_city_files[cid] = per_city_files.get(cid, 0) + 1
        per_city_rgs[cid] = per_city_rgs.get(cid, 0) + md.num_row_groups
        rg_rows += [md.row_group(i).num_rows for i in range(md.num_row_groups)]
    date_col = None
    pruned, touched = [], []
    for city, start in work:
        end = start + dt.timedelta(days=DAYS - 1)
        paths = lh.prune(
            registry.HOURLY, partition={"city_id": [city]}, ranges={"date": (start, end)}
        )
        pruned.append(len(paths))
        n = 0
        for p in paths:
            md = meta_by_path[p]
            if date_col is None:
                names = [md.schema.column(i).name for i in range(md.num_columns)]
                date_col = names.index("date")
            for i in range(md.num_row_groups):
                s = md.row_group(i).column(date_col).statistics
                if s is None or not s.has_min_max or not (s.max < start or s.min > end):
                    n += 1
        touched.append(n)

    return {
        "data files (hourly table)": [files.num_rows],
        "data files per city": list(per_city_files.values()),
        "row groups per city": list(per_city_rgs.values()),
        "rows per row group": rg_rows,
        f"files returned by prune() for a {DAYS}-day query": pruned,
        f"row groups overlapping a {DAYS}-day query": touched,
    }


# ---- profile -------------------------------------------------------------------------------
def profile(client, work: list[tuple[str, dt.date]], top: int) -> str:
    prof = cProfile.Profile()
    run = client_fn(client, week_url)
    for city, start in work[:WARMUP]:
        run(city, start)
    prof.enable()
    for city, start in work[WARMUP:]:
        run(city, start)
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.strip_dirs()
    out.write(f"-- by own time ({len(work) - WARMUP} requests) --\n")
    stats.sort_stats("tottime").print_stats(top)
    out.write("-- by cumulative time --\n")
    stats.sort_stats("cumulative").print_stats(top)
    lines = [ln for ln in out.getvalue().splitlines() if ln.strip()]
    return "\n".join(ln for ln in lines if not ln.startswith(("Ordered by", "   List reduced")))


# ---- main ----------------------------------------------------------------------------------
def fmt_stat(s: Stat) -> str:
    return f"p50 {s.p50:8.2f} ms   p95 {s.p95:8.2f} ms   (n={s.n})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cities", type=int, default=100)
    ap.add_argument("--years", type=int, default=5)
    ap.add_argument("--first-year", type=int, default=2019)
    ap.add_argument("--small-cities", type=int, default=10, help="table for the flatness check")
    ap.add_argument("--repeat", type=int, default=200, help="timed runs per measurement")
    ap.add_argument("--data-dir", type=Path, default=Path(__file__).parent / ".data")
    ap.add_argument("--quick", action="store_true", help="smoke run: 20 cities x 2 years")
    ap.add_argument("--rebuild", action="store_true", help="ignore the cached lakehouses")
    ap.add_argument(
        "--chunked-write",
        action="store_true",
        help="write the table as one chunk per city-year (delta-rs then interleaves them)",
    )
    ap.add_argument("--no-server", action="store_true", help="skip the gunicorn measurements")
    ap.add_argument("--profile", type=int, default=0, metavar="N", help="cProfile: top N rows")
    args = ap.parse_args(argv)
    if args.quick:
        args.cities, args.years, args.repeat = 20, 2, 40
        args.small_cities = min(args.small_cities, 5)
    data_dir = args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    n = args.repeat + WARMUP
    t_start = time.perf_counter()

    say("Stratus query benchmark")
    say("=" * 78)
    say(
        f"DATA IS SYNTHETIC: the 6 real sample stations (~1 year hourly each) resampled into "
        f"{args.cities} cities x {args.years} years ({args.first_year}-"
        f"{args.first_year + args.years - 1}),"
    )
    how = "one chunk per city-year" if args.chunked_write else "one ts-ordered record batch"
    say(f"per-city temperature offset + seeded noise; written by Lakehouse.overwrite() as {how}.")
    say(f"Latency: warm, first {WARMUP} runs discarded, {args.repeat} timed runs each; ms.")
    say(f"Python {sys.version.split()[0]}, duckdb {duckdb.__version__}, {os.cpu_count()} CPUs")
    say()

    stations = StationCache(data_dir)
    lakes: dict[int, Lake] = {}
    for count in dict.fromkeys([args.cities, args.small_cities]):
        home = data_dir / home_name(count, args.years, args.chunked_write)
        say(f"[build] {count} cities x {args.years} years -> {home}")
        lake = build_lake(
            data_dir, count, args.years, args.first_year, stations, args.rebuild, args.chunked_write
        )
        how = "reused cache (built earlier in" if lake.reused else "built in"
        say(f"  {lake.rows:,} rows; {how} {lake.build_seconds:.1f} s{')' if lake.reused else ''}")
        lakes[count] = lake
    big = lakes[args.cities]
    say()

    wk, yr = week_work(big, n), year_work(big, n)

    say(f"[layout] {big.cities}-city table")
    lay = layout(big, wk)
    say("  (median, with min-max where they differ)")
    for k, v in lay.items():
        say(f"  {k:<44} {spread(v)}")
    say()

    say(f"[measure] {big.cities}-city table")
    direct = Direct(big)
    stratus = big.stratus()
    app = create_app(stratus=stratus)
    client = app.test_client()
    token = admin_token(stratus)  # auth is mandatory; gunicorn shares this metastore
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    say(f"  correctness: {cross_check(client, direct, wk[:3])}")
    rows = [direct.week(c, s).num_rows for c, s in wk[:50]]
    say(f"  rows per {DAYS}-day query: mean {statistics.mean(rows):.1f} (168 = no gaps)")

    def service_week(c: str, s: dt.date) -> object:
        end = s + dt.timedelta(days=DAYS - 1)
        return stratus.weather.hourly([c], s, end, fields=list(HOURLY_FIELDS), limit=5000)

    def service_year(c: str, s: dt.date) -> object:
        lo, hi = dt.date(s.year, 1, 1), dt.date(s.year, 12, 31)
        return stratus.weather.summary([c], lo, hi, "month")

    jobs: dict[str, Job] = {
        "week/duckdb": (direct.week, wk),
        "week/service": (service_week, wk),
        "week/client": (client_fn(client, week_url), wk),
        "year/duckdb": (direct.year, yr),
        "year/service": (service_year, yr),
        "year/client": (client_fn(client, year_url), yr),
    }
    small = lakes.get(args.small_cities) if args.small_cities != args.cities else None
    if small is not None:
        small_stratus = small.stratus()
        small_client = create_app(stratus=small_stratus).test_client()
        small_client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {admin_token(small_stratus)}"
        jobs["week/client-small"] = (client_fn(small_client, week_url), week_work(small, n))
    with contextlib.ExitStack() as stack:
        if not args.no_server:
            base = stack.enter_context(gunicorn(big, data_dir / "gunicorn.log"))
            session = stack.enter_context(requests.Session())
            session.headers["Authorization"] = f"Bearer {token}"
            jobs["week/gunicorn"] = (session_fn(session, base, week_url), wk)
            jobs["year/gunicorn"] = (session_fn(session, base, year_url), yr)
            say(f"  gunicorn: `stratus serve`, 1 worker (gthread), {base}")
        say(f"  {len(jobs)} measurements, interleaved, {n} runs each ...")
        results = timed(jobs)
    for name, stat in results.items():
        say(f"  {name:<18} {fmt_stat(stat)}")
    say()

    flat: dict[int, Stat] = {}
    if small is not None:
        say(f"[flatness] {DAYS}-day test-client query: {small.cities} vs {big.cities} cities")
        flat = {small.cities: results["week/client-small"], big.cities: results["week/client"]}
        for c, st in flat.items():
            say(f"  {c:>4} cities  {lakes[c].rows:>10,} rows  {fmt_stat(st)}")
        say()

    # ---- summary -----------------------------------------------------------------------
    say("Summary (p50 / p95 ms)")
    say("-" * 78)
    labels = {
        "duckdb": "DuckDB direct (lower bound)",
        "service": "WeatherQueries (no HTTP)",
        "client": "API, Flask test client",
        "gunicorn": "API, gunicorn + requests",
    }
    say(f"  {'path':<30} {f'{DAYS}-day hourly (1 city)':>24} {'1-year monthly summary':>24}")
    for key, label in labels.items():
        w, y = results.get(f"week/{key}"), results.get(f"year/{key}")
        if w is None:
            continue
        cells = [f"{s.p50:8.2f} / {s.p95:8.2f}" if s else "-" for s in (w, y)]
        say(f"  {label:<30} {cells[0]:>24} {cells[1]:>24}")
    if "week/client-small" in results:
        s_small = results["week/client-small"]
        label = f"API, test client, {args.small_cities} cities"
        say(f"  {label:<30} {f'{s_small.p50:8.2f} / {s_small.p95:8.2f}':>24} {'-':>24}")
    say(
        f"  layout, {big.cities} cities: {spread(lay['data files per city'])} file(s) and "
        f"{spread(lay['row groups per city'])} row groups per city;"
    )
    pruned = spread(lay[f"files returned by prune() for a {DAYS}-day query"])
    touched = spread(lay[f"row groups overlapping a {DAYS}-day query"])
    say(f"  a {DAYS}-day query: prune() -> {pruned} file(s); {touched} row group(s) overlap it")
    say()
    say("Ratios of p50 to DuckDB direct p50")
    for key in ("client", "gunicorn"):
        if f"week/{key}" not in results:
            continue
        rw = results[f"week/{key}"].p50 / results["week/duckdb"].p50
        ry = results[f"year/{key}"].p50 / results["year/duckdb"].p50
        dw = results[f"week/{key}"].p50 - results["week/duckdb"].p50
        dy = results[f"year/{key}"].p50 - results["year/duckdb"].p50
        say(
            f"  {labels[key]:<30} {DAYS}-day {rw:5.2f}x (+{dw:5.2f} ms)   "
            f"summary {ry:5.2f}x (+{dy:5.2f} ms)"
        )
    say()
    say("Targets")
    limit = TARGET_RATIO * results["week/duckdb"].p50 + TARGET_SLACK_MS
    for key in ("client", "gunicorn"):
        if f"week/{key}" not in results:
            continue
        p50 = results[f"week/{key}"].p50
        verdict = "PASS" if p50 < limit else "MISS"
        say(
            f"  {verdict}  {labels[key]}: {DAYS}-day p50 {p50:.2f} ms < "
            f"{TARGET_RATIO:g} x {results['week/duckdb'].p50:.2f} + {TARGET_SLACK_MS:g} = "
            f"{limit:.2f} ms"
        )
    if flat:
        (few, s_few), (many, s_many) = sorted(flat.items())
        ratio = s_many.p50 / s_few.p50
        verdict = "PASS" if ratio <= FLAT_TARGET else "MISS"
        say(
            f"  {verdict}  pruning flatness: p50 {s_many.p50:.2f} ms at {many} cities / "
            f"{s_few.p50:.2f} ms at {few} cities = {ratio:.2f}x (target <= {FLAT_TARGET:g}x)"
        )
    say()
    say(f"total wall time {time.perf_counter() - t_start:.1f} s")

    if args.profile:
        say()
        say(f"[profile] cProfile of the {DAYS}-day test-client query ({big.cities} cities)")
        say(profile(client, wk, args.profile))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
