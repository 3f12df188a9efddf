"""The Spark engine against a real local Spark Connect server started from the pyspark package:
every job type gives the same rows as the embedded engine; Spark reads the Delta snapshot's
file list, never the folder. If the server cannot start, these tests FAIL (never skip)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from stratus.api import create_app
from stratus.catalog import registry
from stratus.catalog.registry import TableSpec
from stratus.config import Settings
from stratus.context import Stratus
from stratus.engine import TableScan
from stratus.jobs.definitions import JOB_TYPES
from stratus.jobs.engines.spark import SparkEngine
from stratus.jobs.engines.spark_server import LocalSparkConnect, SparkServerError
from stratus.jobs.validation import parse_submission
from stratus.security.governance import LOCAL_ADMIN
from stratus.weather.sample import cities_path_for
from tests.conftest import client_for, token_for

pytestmark = pytest.mark.spark

CITIES = ["greensboro", "miami", "new-york-jfk", "new-york-lga", "newark-ewr", "sand-point"]
ROUNDED = ("temp_mean", "humidity_mean", "precipitation_total")  # see test_jobs.same_summary
WAIT = 300.0
BODIES = {
    "daily_summary": {},
    "climate_stats": {},
    "anomalies": {"z": 2.5},
}


@pytest.fixture(scope="session")
def spark_remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = LocalSparkConnect(tmp_path_factory.mktemp("spark-connect"))
    try:
        server.start()
    except SparkServerError as exc:
        pytest.fail(f"cannot start a local Spark Connect server: {exc}")
    print(f"Spark Connect server up in {server.startup_seconds:.1f}s at {server.remote}")
    yield server.remote
    server.stop()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, sample_csv: Path) -> Path:
    home = tmp_path_factory.mktemp("jobs-spark") / "home"
    stratus = Stratus.from_settings(Settings(home=home, job_workers=0))
    stratus.ingest.ingest(cities_path_for(sample_csv), "cities")
    stratus.ingest.ingest(sample_csv, "hourly")
    stratus.bootstrap()
    stratus.close()
    return home


def run_all(stratus: Stratus, suffix: str) -> dict[str, Any]:
    """Every job type over every city and date, on ``stratus``'s engine."""
    ids = {}
    for name, options in BODIES.items():
        body = {
            "type": name,
            "city_ids": CITIES,
            "start": "1950-01-01",
            "end": "2030-12-31",
            "options": options,
            "output": f"main.jobs.{name}_{suffix}",
        }
        job, _ = stratus.jobs.submit(LOCAL_ADMIN, parse_submission(body))
        ids[name] = job.id
    stratus.jobs.start()
    return {name: stratus.jobs.wait(job_id, timeout=WAIT) for name, job_id in ids.items()}


@pytest.fixture(scope="module")
def runs(home: Path, spark_remote: str) -> Iterator[dict[str, Any]]:
    """The same jobs on the embedded engine, then (its pool stopped) on Spark."""
    local = Stratus.from_settings(Settings(home=home, job_workers=2))
    t0 = time.monotonic()
    local_jobs = run_all(local, "local")
    local_seconds = time.monotonic() - t0
    local.close()
    spark = Stratus.from_settings(
        Settings(home=home, engine="spark", spark_remote=spark_remote, job_workers=2)
    )
    spark.jobs.engine.cities_per_step = 4  # two steps: results of several steps are combined
    t0 = time.monotonic()
    spark_jobs = run_all(spark, "spark")
    print(f"jobs: local {local_seconds:.1f}s, spark {time.monotonic() - t0:.1f}s (3 types)")
    yield {"stratus": spark, "local": local_jobs, "spark": spark_jobs}
    spark.close()


def table_rows(stratus: Stratus, name: str, key: tuple[str, ...]) -> list[dict[str, Any]]:
    spec = stratus.tables.spec(name)
    rows = DeltaTable(stratus.lakehouse.url(spec)).to_pyarrow_table().to_pylist()
    return sorted(rows, key=lambda r: tuple(r[k] for k in key))


@pytest.mark.parametrize("job_type", list(BODIES))
def test_every_job_type_gives_the_same_rows_on_both_engines(
    runs: dict[str, Any], job_type: str
) -> None:
    local, spark = runs["local"][job_type], runs["spark"][job_type]
    assert local.state == spark.state == "succeeded", (local.error, spark.error)
    assert (local.engine, spark.engine) == ("local", "spark")
    assert spark.metrics["steps"] == 2 and local.metrics["steps"] == 1
    key = JOB_TYPES[job_type].key
    a = table_rows(runs["stratus"], local.output_table, key)
    b = table_rows(runs["stratus"], spark.output_table, key)
    assert len(a) == len(b) == local.rows_written == spark.rows_written > 0
    for ra, rb in zip(a, b, strict=True):
        assert ra.keys() == rb.keys()
        for k, va in ra.items():
            vb = rb[k]
            if isinstance(va, float) and isinstance(vb, float):
                # sums in another order: 1e-9 relative; a rounded mean may fall on a tie
                tol = 0.01 + 1e-9 if job_type == "daily_summary" and k in ROUNDED else 1e-9
                assert vb == pytest.approx(va, rel=1e-9, abs=tol), (ra, k)
            else:
                assert va == vb, (ra, k)


def test_spark_reads_the_snapshot_not_the_folder(
    runs: dict[str, Any], tmp_path: Path, spark_remote: str
) -> None:
    """After an overwrite the folder still holds the old files (no vacuum): a folder read would
    count them, the snapshot's file list does not."""
    stratus = runs["stratus"]
    spec = TableSpec(
        full_name="main.scratch.overwritten",
        schema=pa.schema([("city_id", pa.string()), ("v", pa.int64())]),
        key=("city_id", "v"),
        partition_by=["city_id"],
    )
    stratus.lakehouse.overwrite(spec, pa.table({"city_id": ["a", "a", "b"], "v": [1, 2, 3]}))
    stratus.lakehouse.overwrite(spec, pa.table({"city_id": ["a"], "v": [10]}))
    engine = SparkEngine(spark_remote, stratus.storage)
    try:
        scan = TableScan(spec, stratus.lakehouse.prune(spec))
        got = engine.query("SELECT city_id, sum(v) AS s FROM {t} GROUP BY city_id", {"t": scan})
        assert got.to_pylist() == [{"city_id": "a", "s": 10}]
        folder = engine.uri(stratus.lakehouse.url(spec))
        stale = engine.session.read.parquet(f"{folder}/city_id=*/*.parquet").count()
        assert stale == 4  # what a glob would have resurrected
    finally:
        engine.close()


def test_spark_engine_speaks_the_engine_protocol(runs: dict[str, Any], spark_remote: str) -> None:
    stratus = runs["stratus"]
    sql = (
        "SELECT city_id, count(*) AS n, round(max(temp), 1) AS hottest FROM {hourly} "
        "WHERE date BETWEEN ? AND ? GROUP BY city_id ORDER BY city_id"
    )
    files = stratus.lakehouse.prune(registry.HOURLY, partition={"city_id": ["new-york-jfk"]})
    scan = TableScan(registry.HOURLY, files)
    params = [dt.date(2013, 7, 1), dt.date(2013, 7, 31)]
    engine = SparkEngine(spark_remote, stratus.storage)
    try:
        spark_rows = engine.query(sql, {"hourly": scan}, params).to_pylist()
    finally:
        engine.close()
    local_rows = stratus.engine.query(sql, {"hourly": scan}, params).to_pylist()
    assert spark_rows == local_rows and spark_rows[0]["n"] == 744


def test_a_job_through_the_api_on_spark(runs: dict[str, Any]) -> None:
    stratus = runs["stratus"]
    client = client_for(create_app(stratus=stratus), token_for(stratus))
    body = {
        "type": "anomalies",
        "city_ids": ["newark-ewr"],
        "start": "2013-01-01",
        "end": "2013-03-31",
        "options": {"z": 2},
    }
    resp = client.post("/api/v1/jobs", json=body)
    assert resp.status_code == 202, resp.get_json()
    stratus.jobs.wait(resp.get_json()["id"], timeout=WAIT)
    doc = client.get(resp.headers["Location"]).get_json()
    assert doc["state"] == "succeeded" and doc["engine"] == "spark", doc
    assert doc["rows_written"] > 0 and doc["output_table"] == "main.jobs.anomalies"


def test_an_unreachable_spark_fails_the_job_clearly(home: Path) -> None:
    stratus = Stratus.from_settings(
        Settings(home=home, engine="spark", spark_remote="sc://127.0.0.1:9", job_workers=1)
    )
    stratus.jobs.engine.spark.max_retries = 2  # the client's default waits 10+ minutes
    try:
        body = {"type": "daily_summary", "city_ids": ["miami"], "start": "1961-02-01"}
        job, _ = stratus.jobs.submit(
            LOCAL_ADMIN,
            parse_submission({**body, "end": "1961-02-02", "output": "main.jobs.unreachable"}),
        )
        stratus.jobs.start()
        done = stratus.jobs.wait(job.id, timeout=WAIT)
        assert done.state == "failed" and (done.error or "").startswith("spark error")
    finally:
        stratus.close()
