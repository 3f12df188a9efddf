"""SQL benchmark: sections run in order by ``main`` and report their targets at the end.

Section "aggregate" (part 2 of the issue's benchmark): a weather aggregate through
``POST /api/v1/sql`` (Flask test client, admin token: parsing, authorization, pruning, the
DuckDB run and JSON encoding all included) versus the same query in DuckDB directly over the
table's Parquet files (file list computed up front, Parquet metadata cached: the lower bound).
The data is ``benchmarks/query.py``'s SYNTHETIC hourly table (100 cities x 5 years, ~4.4M
rows, built once and cached under ``--data-dir``). Two queries, measured interleaved, the first
runs of each discarded:

* all cities, one year: count, mean temperature, maximum wind, total precipitation per city
  (~876k rows scanned; target: API p50 within 1.5x of DuckDB's);
* one city, one year by month (for information: fixed per-request costs dominate).

Section "lineage" (part 1, run first): lineage capture overhead per statement. The same N
``INSERT INTO main.bench.dinner SELECT ... FROM menu JOIN menu_tags`` statements (a Delta commit
with table and column lineage each) through the SQL service with lineage on (the real
LineageService, its writer and OpenLineage threads running during the measurement) and off (a
null sink), interleaved, in a temporary home; p50 / p95 of each, the p50 difference (target
under 5 ms) and the median of the per-round differences.

Sections are functions returning :class:`Verdict` rows, listed in ``SECTIONS``.

Run: ``python benchmarks/sql.py [--cities 100] [--years 5] [--repeat 40] [--lineage-statements 300]
[--section lineage|aggregate] [--quick]``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
from deltalake import DeltaTable

import query as weather_bench  # benchmarks/query.py: the cached synthetic lakehouse
from stratus.api import create_app
from stratus.catalog import registry

TARGET_RATIO = 1.5
WARMUP = 5

ALL_CITIES = """
SELECT city_id, count(*) AS hours, round(avg(temp), 2) AS temp_mean,
       max(wind_speed) AS wind_max, round(sum(precipitation), 1) AS precipitation
FROM {table}
WHERE date BETWEEN {start} AND {end}
GROUP BY city_id
ORDER BY city_id
"""
ONE_CITY = """
SELECT date_trunc('month', date) AS month, min(temp) AS temp_min, max(temp) AS temp_max,
       round(avg(temp), 2) AS temp_mean, count(*) AS hours
FROM {table}
WHERE city_id = {city} AND date BETWEEN {start} AND {end}
GROUP BY 1
ORDER BY 1
"""


def say(text: str = "") -> None:
    print(text, flush=True)


@dataclass(frozen=True)
class Verdict:
    passed: bool
    text: str


@dataclass(frozen=True)
class Stat:
    p50: float
    p95: float
    n: int


def timed(jobs: dict[str, Callable[[], object]], runs: int) -> dict[str, Stat]:
    """Each job ``runs`` times, interleaved; the first WARMUP of each discarded; ms."""
    times: dict[str, list[float]] = {name: [] for name in jobs}
    gc.collect()
    for i in range(runs + WARMUP):
        for name, fn in jobs.items():
            t0 = time.perf_counter()
            fn()
            elapsed = (time.perf_counter() - t0) * 1000
            if i >= WARMUP:
                times[name].append(elapsed)
    out = {}
    for name, values in times.items():
        q = statistics.quantiles(values, n=20, method="inclusive")
        out[name] = Stat(statistics.median(values), q[18], len(values))
    return out


def fmt(s: Stat) -> str:
    return f"p50 {s.p50:8.2f} ms   p95 {s.p95:8.2f} ms   (n={s.n})"


# ---- part 1: lineage capture overhead per statement ------------------------------------------
LINEAGE_TARGET_MS = 5.0
LINEAGE_WARMUP = 10
LINEAGE_SETUP = """
CREATE SCHEMA main.bench;
CREATE TABLE main.bench.menu (dish_id INT NOT NULL, name STRING, category STRING,
  price DECIMAL(6, 2), calories INT) TBLPROPERTIES ('stratus.key' = 'dish_id');
INSERT INTO main.bench.menu VALUES (1, 'Tomato soup', 'starter', 6.50, 180),
  (2, 'Burrata', 'starter', 9.00, 320), (3, 'Steak frites', 'main', 24.00, 980),
  (4, 'Mushroom risotto', 'main', 17.50, 640), (5, 'Sea bass', 'main', 22.00, 520),
  (6, 'Chocolate mousse', 'dessert', 7.00, 450), (7, 'Lemon tart', 'dessert', 6.50, 390);
CREATE TABLE main.bench.menu_tags (dish_id INT NOT NULL, tag STRING NOT NULL)
  TBLPROPERTIES ('stratus.key' = 'dish_id,tag');
INSERT INTO main.bench.menu_tags VALUES (1, 'lunch'), (2, 'dinner'), (3, 'dinner'),
  (4, 'lunch'), (4, 'dinner'), (5, 'dinner'), (6, 'dinner'), (7, 'lunch');
"""
LINEAGE_READ = (
    "SELECT m.category, count(*) AS dishes, avg(m.price) AS avg_price, "
    "max(m.calories) AS max_calories FROM main.bench.menu m "
    "JOIN main.bench.menu_tags t ON m.dish_id = t.dish_id WHERE t.tag = :tag GROUP BY m.category"
)


class NullSink:
    """Lineage off: the calls a statement makes, doing nothing."""

    def start(self, event: Any) -> None:
        pass

    def complete(self, event: Any) -> None:
        pass

    def fail(self, event: Any, error: str) -> None:
        pass


def bench_lineage(args: argparse.Namespace) -> list[Verdict]:
    """The same N statements (INSERT INTO dinner SELECT ... FROM menu JOIN menu_tags: a Delta
    commit with table and column lineage) through the SQL service, with lineage on (the real
    LineageService: batched commits to the lineage tables and OpenLineage events to the
    JSON-lines file, on background threads that run during the measurement) and off (a null
    sink), interleaved (round i: off then on, round i + 1: on then off), the first rounds
    discarded. Also timed: the lineage calls alone on synthetic events."""
    import datetime as dt
    import tempfile
    import uuid

    from stratus.config import Settings
    from stratus.context import Stratus
    from stratus.lineage import ColumnEdge, LineageEvent
    from stratus.lineage.store import COLUMN_LINEAGE, TABLE_LINEAGE

    say("[lineage] lineage capture overhead per statement: lineage on vs off (null sink)")
    n = args.lineage_statements
    with tempfile.TemporaryDirectory(prefix="stratus-bench-lineage-") as tmp:
        stratus = Stratus.from_settings(Settings(home=Path(tmp) / "home", log_level="WARNING"))
        stratus.bootstrap()
        sql, service, null = stratus.sql, stratus.lineage, NullSink()
        for statement in LINEAGE_SETUP.split(";"):
            if statement.strip():
                sql.execute(statement)
        sql.execute(f"CREATE TABLE main.bench.dinner AS {LINEAGE_READ}", {"tag": "dinner"})
        insert = f"INSERT INTO main.bench.dinner {LINEAGE_READ}"
        times: dict[str, list[float]] = {"off": [], "on": []}
        diffs: list[float] = []
        gc.collect()
        t_run = time.perf_counter()
        for i in range(n + LINEAGE_WARMUP):
            order = [("off", null), ("on", service)]
            if i % 2:
                order.reverse()
            took: dict[str, float] = {}
            for name, sink in order:
                stratus.__dict__["lineage"] = sink  # what SqlService reports to
                t0 = time.perf_counter()
                sql.execute(insert, {"tag": ("lunch", "dinner")[i % 2]})
                took[name] = (time.perf_counter() - t0) * 1000
            stratus.__dict__["lineage"] = service
            if i >= LINEAGE_WARMUP:
                for name, value in took.items():
                    times[name].append(value)
                diffs.append(took["on"] - took["off"])
        run_s = time.perf_counter() - t_run

        calls: list[float] = []  # the lineage calls alone: build an event, start, complete
        edges = (
            ColumnEdge("main.bench.menu", "category", "category"),
            ColumnEdge("main.bench.menu", "price", "avg_price", "AGGREGATION"),
            ColumnEdge("main.bench.menu", "calories", "max_calories", "AGGREGATION"),
            ColumnEdge("main.bench.menu_tags", "tag", "category", "FILTER"),
        )
        for _ in range(n):
            t0 = time.perf_counter()
            event = LineageEvent(
                run_id=str(uuid.uuid4()),
                job_name="sql",
                entity_type="SQL",
                principal="admin",
                event_time=dt.datetime.now(dt.UTC),
                target_table="main.bench.dinner",
                source_tables=("main.bench.menu", "main.bench.menu_tags"),
                column_edges=edges,
                sql=insert,
            )
            service.start(event)
            service.complete(event)
            calls.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        service.flush_all(timeout=600)
        drain_ms = (time.perf_counter() - t0) * 1000
        stats = service.stats()
        commits = [stratus.lakehouse.version(s) for s in (TABLE_LINEAGE, COLUMN_LINEAGE)]
        events = len(stratus.settings.openlineage_path.read_text().splitlines())
        stratus.close()

    off, on = times["off"], times["on"]
    q_off = statistics.quantiles(off, n=20, method="inclusive")
    q_on = statistics.quantiles(on, n=20, method="inclusive")
    overhead = statistics.median(on) - statistics.median(off)
    say(f"  {n} statements per side (+{LINEAGE_WARMUP} warm-up rounds), one run: {insert}")
    say(
        f"  lineage off (null sink)  p50 {statistics.median(off):8.2f} ms   p95 {q_off[18]:8.2f} ms"
    )
    say(f"  lineage on  (service)    p50 {statistics.median(on):8.2f} ms   p95 {q_on[18]:8.2f} ms")
    say(
        f"  p50 difference {overhead:+.2f} ms; median of per-round differences "
        f"{statistics.median(diffs):+.2f} ms"
    )
    say(
        f"  the lineage calls alone (event + start + complete): p50 "
        f"{statistics.median(calls):.3f} ms"
    )
    say(
        f"  background: {stats['runs_written']} runs in {commits[0]} + {commits[1]} Delta "
        f"commits (table + column lineage), {events} OpenLineage events, "
        f"{stats['openlineage_errors']} errors, {stats['openlineage_dropped']} dropped; "
        f"drained {drain_ms:.0f} ms after a {run_s:.1f} s run"
    )
    passed = overhead < LINEAGE_TARGET_MS
    return [
        Verdict(
            passed,
            f"{'PASS' if passed else 'FAIL'}  lineage capture overhead p50 {overhead:+.2f} ms per "
            f"statement (target < {LINEAGE_TARGET_MS:g} ms)",
        )
    ]


# ---- part 2: a weather aggregate, SQL API vs DuckDB -------------------------------------------
def bench_aggregate(args: argparse.Namespace) -> list[Verdict]:
    say("[aggregate] weather aggregate: POST /api/v1/sql vs DuckDB over the Parquet files")
    data_dir = args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    lake = weather_bench.build_lake(
        data_dir,
        args.cities,
        args.years,
        args.first_year,
        weather_bench.StationCache(data_dir),
    )
    state = "reused cache" if lake.reused else f"built in {lake.build_seconds:.1f} s"
    say(
        f"  SYNTHETIC data: {lake.cities} cities x {lake.years} years, {lake.rows:,} rows ({state})"
    )
    year = lake.first_year + lake.years - 1
    start, end = f"{year}-01-01", f"{year}-12-31"
    city = weather_bench.city_id(lake.cities // 2)

    stratus = lake.stratus()
    client = create_app(stratus=stratus).test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {weather_bench.admin_token(stratus)}"

    files = [
        u.removeprefix("file://")
        for u in DeltaTable(stratus.lakehouse.url(registry.HOURLY)).file_uris()
    ]
    listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    parquet = f"read_parquet([{listed}], hive_partitioning = true)"
    con = duckdb.connect()
    con.execute("SET parquet_metadata_cache = true")
    warnings.filterwarnings("ignore", message="Arrow output on a DB-API result")

    queries = {
        "all cities, 1 year": (ALL_CITIES, {"start": start, "end": end}),
        "1 city, 1 year by month": (ONE_CITY, {"start": start, "end": end, "city": city}),
    }
    jobs: dict[str, Callable[[], object]] = {}
    for label, (template, params) in queries.items():
        api_sql = template.format(
            table="main.weather.hourly",
            start="CAST(:start AS DATE)",
            end="CAST(:end AS DATE)",
            city=":city",
        )
        duck_sql = template.format(
            table=parquet, start="CAST($start AS DATE)", end="CAST($end AS DATE)", city="$city"
        )

        def api(sql: str = api_sql, p: dict[str, Any] = params) -> Any:
            resp = client.post("/api/v1/sql", json={"statement": sql, "parameters": p})
            if resp.status_code != 200:
                raise RuntimeError(f"{resp.status_code}: {resp.get_data(as_text=True)[:300]}")
            return resp.get_json()

        def direct(sql: str = duck_sql, p: dict[str, Any] = params) -> Any:
            return con.execute(sql, p).to_arrow_table()

        got, ref = api(), direct()
        counts = [r["hours"] for r in got["data"]]
        if got["row_count"] != ref.num_rows or counts != ref.column("hours").to_pylist():
            raise RuntimeError(f"{label}: the API and DuckDB disagree")
        say(f"  {label}: {ref.num_rows} result rows; API and DuckDB agree")
        jobs[f"{label} / API"] = api
        jobs[f"{label} / DuckDB"] = direct
    say(f"  {len(jobs)} measurements, interleaved, {args.repeat} timed runs each ...")
    results = timed(jobs, args.repeat)
    for name, stat in results.items():
        say(f"  {name:<36} {fmt(stat)}")
    verdicts = []
    for label in queries:
        a, d = results[f"{label} / API"], results[f"{label} / DuckDB"]
        ratio = a.p50 / d.p50
        text = (
            f"{label}: API p50 {a.p50:.2f} ms / DuckDB p50 {d.p50:.2f} ms = {ratio:.2f}x "
            f"(+{a.p50 - d.p50:.2f} ms)"
        )
        if label.startswith("all cities"):
            verdict = "PASS" if ratio <= TARGET_RATIO else "MISS"
            verdicts.append(
                Verdict(ratio <= TARGET_RATIO, f"{verdict}  {text}, target <= {TARGET_RATIO:g}x")
            )
        else:
            verdicts.append(Verdict(True, f"info  {text}"))
    stratus.close()
    return verdicts


Section = Callable[[argparse.Namespace], list[Verdict]]
SECTIONS: list[tuple[str, Section]] = [
    ("lineage", bench_lineage),
    ("aggregate", bench_aggregate),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--cities", type=int, default=100)
    ap.add_argument("--years", type=int, default=5)
    ap.add_argument("--first-year", type=int, default=2019)
    ap.add_argument("--repeat", type=int, default=40, help="timed runs per measurement")
    ap.add_argument("--data-dir", type=Path, default=Path(__file__).parent / ".data")
    ap.add_argument(
        "--lineage-statements", type=int, default=300, help="statements per side (lineage)"
    )
    ap.add_argument("--quick", action="store_true", help="smoke run: 20 cities x 2 years")
    ap.add_argument(
        "--section", action="append", choices=[name for name, _ in SECTIONS], help="run only..."
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.cities, args.years, args.repeat = 20, 2, 10
        args.lineage_statements = 50
    t_start = time.perf_counter()
    say("Stratus SQL benchmark")
    say("=" * 78)
    say(f"Python {sys.version.split()[0]}, duckdb {duckdb.__version__}, {os.cpu_count()} CPUs")
    say()
    verdicts: list[Verdict] = []
    for name, section in SECTIONS:
        if args.section and name not in args.section:
            continue
        verdicts += section(args)
        say()
    say("Targets")
    for verdict in verdicts:
        say(f"  {verdict.text}")
    say()
    say(f"total wall time {time.perf_counter() - t_start:.1f} s")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
