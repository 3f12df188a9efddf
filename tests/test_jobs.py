"""Processing jobs on the embedded engine: numbers, API, idempotency, cancel, restarts,
concurrent writers, grants, bad input, lineage and audit (real sample data, real metastore)."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import os
import signal
import socket
import statistics
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from stratus.api import create_app
from stratus.catalog.errors import NotFound
from stratus.config import ConfigError, Settings
from stratus.context import Stratus
from stratus.jobs import output as job_output
from stratus.jobs.definitions import DAILY_SUMMARY, JOB_TYPES
from stratus.jobs.models import Job
from stratus.jobs.service import runner_is_dead
from stratus.jobs.validation import parse_submission
from stratus.lakehouse.tables import WriteConflictError
from stratus.lineage.model import LineageEvent
from stratus.security.audit import AUDIT
from stratus.security.governance import LOCAL_ADMIN
from stratus.weather.sample import cities_path_for
from tests.conftest import ROOT, azure_settings, client_for, token_for

TAG = uuid.uuid4().hex[:6]
ALL_TIME = ("1950-01-01", "2030-12-31")
NYC = ["new-york-jfk", "new-york-lga", "newark-ewr"]
WAIT = 120.0


# ---- fixtures and helpers ------------------------------------------------------------------
def load(stratus: Stratus, weather_csv: Path, cities_csv: Path) -> Stratus:
    stratus.ingest.ingest(cities_csv, "cities")
    stratus.ingest.ingest(weather_csv, "hourly")
    stratus.bootstrap()
    return stratus


@pytest.fixture(scope="module")
def lake(
    tmp_path_factory: pytest.TempPathFactory, sample_csv: Path, metastore_url: str | None
) -> Iterator[Stratus]:
    """A local lakehouse with the whole sample, written to by the jobs of this module (its
    metastore on SQLite and on PostgreSQL)."""
    home = tmp_path_factory.mktemp("jobs") / "home"
    settings = Settings(home=home, metastore_url=metastore_url)
    stratus = load(Stratus.from_settings(settings), sample_csv, cities_path_for(sample_csv))
    yield stratus
    stratus.close()


@pytest.fixture(scope="module")
def app(lake: Stratus) -> Flask:
    return create_app(stratus=lake)  # registering the jobs blueprint starts the worker pool


@pytest.fixture(scope="module")
def admin(app: Flask, lake: Stratus) -> FlaskClient:
    return client_for(app, token_for(lake))


@pytest.fixture(scope="module")
def source(sample_csv: Path, lake: Stratus) -> dict[str, list[dict[str, Any]]]:
    """The sample CSV's rows per city, for the cities ingested without quarantined rows."""
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    with sample_csv.open() as fh:
        for r in csv.DictReader(fh):
            rows[r["city_id"]].append(
                {
                    "date": dt.date.fromisoformat(r["date"]),
                    "hour": r["hour"],
                    "temp": float(r["temp"]) if r["temp"] else None,
                    "precipitation": float(r["precipitation"]) if r["precipitation"] else None,
                    "humidity": float(r["humidity"]) if r["humidity"] else None,
                    "wind_speed": float(r["wind_speed"]) if r["wind_speed"] else None,
                    "description": r["description"] or None,
                }
            )
    stored = {c["city_id"]: c["rows"] for c in lake.weather.cities()}
    complete = {c: v for c, v in rows.items() if stored.get(c) == len(v)}
    assert {"greensboro", "miami", "new-york-jfk", "sand-point"} <= set(complete)
    return complete


def minute(row: dict[str, Any]) -> int:
    days = (row["date"] - dt.date(1970, 1, 1)).days
    return days * 1440 + int(row["hour"][:2]) * 60 + int(row["hour"][2:])


# DuckDB adds doubles in no fixed order, so the summary API itself can round a mean that lies
# on a x.xx5 tie either way from one call to the next: these may differ by one unit (0.01).
ROUNDED = ("temp_mean", "humidity_mean", "precipitation_total")


def same_summary(row: dict[str, Any], want: dict[str, Any]) -> None:
    for key, value in want.items():
        if key in ROUNDED and value is not None:
            assert row[key] == pytest.approx(value, abs=0.01 + 1e-9), key
        else:
            assert row[key] == value, key


def submit(client: FlaskClient, body: dict[str, Any], **headers: str) -> Any:
    return client.post("/api/v1/jobs", json=body, headers=headers)


def run(client: FlaskClient, stratus: Stratus, body: dict[str, Any]) -> dict[str, Any]:
    resp = submit(client, body)
    assert resp.status_code == 202, resp.get_json()
    job_id = resp.get_json()["id"]
    stratus.jobs.wait(job_id, timeout=WAIT)
    doc = client.get(f"/api/v1/jobs/{job_id}").get_json()
    assert doc["state"] == "succeeded", doc
    return doc


def output_rows(stratus: Stratus, table: str) -> list[dict[str, Any]]:
    spec = stratus.tables.spec(table)
    return DeltaTable(stratus.lakehouse.url(spec)).to_pyarrow_table().to_pylist()


def grant(stratus: Stratus, kind: str, name: str, principal: str, *privs: str) -> None:
    ms = stratus.governance.metastore
    ms.update_grants(
        kind, ms.securable(kind, name).id, [{"principal": principal, "add": list(privs)}]
    )


def revoke(stratus: Stratus, kind: str, name: str, principal: str, *privs: str) -> None:
    ms = stratus.governance.metastore
    ms.update_grants(
        kind, ms.securable(kind, name).id, [{"principal": principal, "remove": list(privs)}]
    )


def user(stratus: Stratus, name: str) -> str:
    stratus.governance.metastore.create_principal(name, "user")
    return token_for(stratus, name)


def can_read_weather(stratus: Stratus, name: str) -> None:
    grant(stratus, "catalog", "main", name, "USE CATALOG")
    grant(stratus, "schema", "main.weather", name, "USE SCHEMA")
    grant(stratus, "table", "main.weather.hourly", name, "SELECT")


class Paused:
    """Keep the module's worker pool from claiming jobs while the block runs."""

    def __init__(self, stratus: Stratus, monkeypatch: pytest.MonkeyPatch) -> None:
        self.stratus, self.mp = stratus, monkeypatch

    def __enter__(self) -> Paused:
        self.mp.setattr(self.stratus.jobs.store, "claim", lambda *a, **k: None)
        return self

    def __exit__(self, *exc: object) -> None:
        self.mp.undo()
        self.stratus.jobs._wake.set()


# ---- the three job types against independent computations -----------------------------------
def test_daily_summary_equals_the_summary_api(admin: FlaskClient, lake: Stratus) -> None:
    cities = ["greensboro", "miami", *NYC]
    out = f"main.jobs.daily_{TAG}"
    doc = run(
        admin,
        lake,
        {
            "type": "daily_summary",
            "city_ids": cities,
            "start": "1961-01-01",
            "end": "2013-06-30",
            "output": out,
        },
    )
    assert doc["output_table"] == out and doc["engine"] == "local" and doc["progress"] == 1.0
    assert doc["timings"]["run_seconds"] is not None and doc["timings"]["compute_seconds"] >= 0
    qs = "&".join(f"city_id={c}" for c in cities)
    api = admin.get(
        f"/api/v1/weather/summary?{qs}&start=1961-01-01&end=2013-06-30&granularity=day"
    ).get_json()["data"]
    api_rows = {(r.pop("city_id"), r.pop("period")): r for r in api}
    table = output_rows(lake, out)
    assert doc["rows_written"] == len(table) == len(api_rows) > 1000
    for row in table:
        same_summary(row, api_rows[(row["city_id"], row["date"].isoformat())])
    # served by the rows API too, as a catalog table the submitter owns
    meta = lake.governance.metastore.get_table(out)
    assert meta.owner == "admin" and [c["name"] for c in meta.columns] == DAILY_SUMMARY.schema.names
    history = lake.sql.execute(f"DESCRIBE HISTORY {out} LIMIT 1").data.to_pylist()
    assert history[0]["userName"] == "admin"  # the job's principal made the commit
    rows = admin.get(f"/api/v1/tables/{out}/rows?city_id=miami&limit=5").get_json()
    assert rows["count"] == 5


def test_daily_summary_matches_the_source_csv(
    admin: FlaskClient, lake: Stratus, source: dict[str, list[dict[str, Any]]]
) -> None:
    out = f"main.jobs.daily_csv_{TAG}"
    run(
        admin,
        lake,
        {
            "type": "daily_summary",
            "city_ids": ["greensboro", "miami"],
            "start": ALL_TIME[0],
            "end": ALL_TIME[1],
            "output": out,
        },
    )
    got = {(r["city_id"], r["date"]): r for r in output_rows(lake, out)}
    n = 0
    for city in ("greensboro", "miami"):
        by_day: dict[dt.date, list[dict[str, Any]]] = defaultdict(list)
        for r in source[city]:
            by_day[r["date"]].append(r)
        for day, rows in by_day.items():
            row = got[(city, day)]
            temps = [r["temp"] for r in rows if r["temp"] is not None]
            precip = [r["precipitation"] for r in rows if r["precipitation"] is not None]
            hums = [r["humidity"] for r in rows if r["humidity"] is not None]
            counts = Counter(r["description"] for r in rows if r["description"])
            top = max(counts.values())
            assert row["hours_observed"] == len(rows)
            assert (row["temp_min"], row["temp_max"]) == (min(temps), max(temps))
            assert row["temp_mean"] == pytest.approx(statistics.fmean(temps), abs=0.005 + 1e-9)
            if precip:
                assert row["precipitation_total"] == pytest.approx(sum(precip), abs=0.005 + 1e-9)
            else:
                assert row["precipitation_total"] is None  # miami has no precipitation
            assert row["humidity_mean"] == pytest.approx(statistics.fmean(hums), abs=0.005 + 1e-9)
            assert row["wind_speed_max"] == max(r["wind_speed"] for r in rows)
            assert row["description_most_frequent"] == min(d for d, c in counts.items() if c == top)
            n += 1
    assert n == len(got) == 730


def expected_climate(rows: list[dict[str, Any]]) -> dict[dt.date, dict[str, Any]]:
    by_month: dict[dt.date, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_month[r["date"].replace(day=1)].append(r)
    out = {}
    for month, mrows in by_month.items():
        temps = [r["temp"] for r in mrows if r["temp"] is not None]
        q = statistics.quantiles(temps, n=10, method="inclusive")  # linear, like numpy
        days: dict[dt.date, list[float]] = defaultdict(list)
        for r in mrows:
            if r["temp"] is not None:
                days[r["date"]].append(r["temp"])
        means = [statistics.fmean(v) for v in days.values()]
        precip = [r["precipitation"] for r in mrows if r["precipitation"] is not None]
        longest = run_len = 0
        last = None
        for r in sorted(mrows, key=minute):
            if r["precipitation"] == 0:
                run_len = run_len + 1 if last is not None and minute(r) == last + 60 else 1
                last = minute(r)
                longest = max(longest, run_len)
            else:
                run_len, last = 0, None
        out[month] = {
            "days_observed": len({r["date"] for r in mrows}),
            "hours_observed": len(mrows),
            "temp_p10": q[0],
            "temp_p50": q[4],
            "temp_p90": q[8],
            "heating_degree_days": sum(max(18.0 - m, 0.0) for m in means),
            "cooling_degree_days": sum(max(m - 18.0, 0.0) for m in means),
            "precipitation_total": sum(precip) if precip else None,
            "rainy_hours": sum(1 for p in precip if p > 0),
            "longest_dry_spell_hours": longest,
        }
    return out


def test_climate_stats_match_an_independent_computation(
    admin: FlaskClient, lake: Stratus, source: dict[str, list[dict[str, Any]]]
) -> None:
    cities = ["greensboro", "miami", "new-york-jfk", "sand-point"]
    out = f"main.jobs.climate_{TAG}"
    doc = run(
        admin,
        lake,
        {
            "type": "climate_stats",
            "city_ids": cities,
            "start": ALL_TIME[0],
            "end": ALL_TIME[1],
            "output": out,
        },
    )
    got = {(r["city_id"], r["month"]): r for r in output_rows(lake, out)}
    assert doc["rows_written"] == len(got)
    checked = 0
    for city in cities:
        for month, want in expected_climate(source[city]).items():
            row = got[(city, month)]
            for key, value in want.items():
                if value is None or isinstance(value, int):
                    assert row[key] == value, (city, month, key)
                else:
                    assert row[key] == pytest.approx(value, rel=1e-9, abs=1e-9), (city, month, key)
            checked += 1
    assert checked == len(got) >= 48
    # the dry spells are real: a NYC month has both rain and long dry runs; miami has no data
    jfk = [r for (c, _), r in got.items() if c == "new-york-jfk"]
    assert all(r["rainy_hours"] > 0 and r["longest_dry_spell_hours"] > 24 for r in jfk)
    assert all(r["longest_dry_spell_hours"] == 0 for (c, _), r in got.items() if c == "miami")


def test_climate_stats_of_a_partial_range_replace_only_their_months(
    admin: FlaskClient, lake: Stratus, source: dict[str, list[dict[str, Any]]]
) -> None:
    out = f"main.jobs.climate_part_{TAG}"
    body = {"type": "climate_stats", "city_ids": ["new-york-jfk"], "output": out}
    run(admin, lake, {**body, "start": "2013-01-01", "end": "2013-12-31"})
    run(admin, lake, {**body, "start": "2013-03-10", "end": "2013-04-20"})
    got = {r["month"]: r for r in output_rows(lake, out)}
    assert len(got) == 12  # replaced in place, no duplicates
    part = [
        r
        for r in source["new-york-jfk"]
        if dt.date(2013, 3, 10) <= r["date"] <= dt.date(2013, 4, 20)
    ]
    want = expected_climate(part)
    assert (
        got[dt.date(2013, 3, 1)]["days_observed"]
        == want[dt.date(2013, 3, 1)]["days_observed"]
        == 22
    )
    full = expected_climate(source["new-york-jfk"])
    assert got[dt.date(2013, 5, 1)]["hours_observed"] == full[dt.date(2013, 5, 1)]["hours_observed"]


def expected_anomalies(
    rows: list[dict[str, Any]], start: dt.date, end: dt.date, z: float
) -> dict[str, float]:
    groups: dict[tuple[int, int], list[float]] = defaultdict(list)
    for r in rows:
        if r["temp"] is not None:
            hod = ((int(r["hour"][:2]) * 60 + int(r["hour"][2:])) // 60) % 24
            groups[(r["date"].month, hod)].append(r["temp"])
    out = {}
    for r in rows:
        if r["temp"] is None or not start <= r["date"] <= end:
            continue
        hod = ((int(r["hour"][:2]) * 60 + int(r["hour"][2:])) // 60) % 24
        values = groups[(r["date"].month, hod)]
        if len(values) < 2:
            continue
        sd = statistics.stdev(values)
        if sd > 0 and abs((r["temp"] - statistics.fmean(values)) / sd) > z:
            out[f"{r['date']} {r['hour']}"] = (r["temp"] - statistics.fmean(values)) / sd
    return out


def test_anomalies_match_an_independent_computation(
    admin: FlaskClient, lake: Stratus, source: dict[str, list[dict[str, Any]]]
) -> None:
    out = f"main.jobs.anomalies_{TAG}"
    start, end = dt.date(2013, 1, 1), dt.date(2013, 8, 31)
    body = {
        "type": "anomalies",
        "city_ids": ["new-york-jfk"],
        "start": str(start),
        "end": str(end),
        "options": {"z": 2.5},
        "output": out,
    }
    doc = run(admin, lake, body)
    assert doc["options"] == {"z": 2.5}
    got = {f"{r['date']} {r['hour']}": r for r in output_rows(lake, out)}
    want = expected_anomalies(source["new-york-jfk"], start, end, 2.5)
    assert set(got) == set(want) and len(want) > 20
    for k, z in want.items():
        assert got[k]["z_score"] == pytest.approx(z, rel=1e-9)
        assert abs(got[k]["z_score"]) > 2.5 and got[k]["baseline_hours"] >= 2
    # the default threshold (3) on the same slice replaces it with fewer rows
    doc3 = run(admin, lake, {**body, "options": {}})
    assert doc3["options"] == {"z": 3.0}
    rows3 = output_rows(lake, out)
    assert (
        len(rows3) == len(expected_anomalies(source["new-york-jfk"], start, end, 3.0)) < len(want)
    )


# ---- idempotency, listing, cancel ---------------------------------------------------------
def test_idempotency_key_returns_the_same_job_or_409(admin: FlaskClient, lake: Stratus) -> None:
    key = f"idem-{TAG}"
    body = {
        "type": "daily_summary",
        "city_ids": ["miami", "greensboro"],
        "start": "1961-01-01",
        "end": "1961-12-31",
        "output": f"main.jobs.idem_{TAG}",
    }
    first = submit(admin, body, **{"Idempotency-Key": key})
    assert (
        first.status_code == 202
        and first.headers["Location"] == f"/api/v1/jobs/{first.get_json()['id']}"
    )
    # same request spelled differently (city order, explicit default options): same job
    again = submit(
        admin,
        {**body, "city_ids": ["greensboro", "miami"], "options": {}},
        **{"Idempotency-Key": key},
    )
    assert again.status_code == 202 and again.get_json()["id"] == first.get_json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    other = submit(admin, {**body, "end": "1962-12-31"}, **{"Idempotency-Key": key})
    assert other.status_code == 409 and other.get_json()["parameter"] == "Idempotency-Key"
    # without a key, every POST is a new job
    assert submit(admin, body).get_json()["id"] != first.get_json()["id"]
    lake.jobs.wait(first.get_json()["id"], timeout=WAIT)


def test_concurrent_submissions_with_one_key_make_one_job(lake: Stratus) -> None:
    sub = parse_submission(
        {
            "type": "daily_summary",
            "city_ids": ["miami"],
            "start": "1961-02-01",
            "end": "1961-02-02",
            "output": f"main.jobs.race_{TAG}",
        }
    )
    barrier = threading.Barrier(4)
    ids: list[str] = []

    def go() -> None:
        barrier.wait()
        job, _ = lake.jobs.submit(LOCAL_ADMIN, sub, f"race-{TAG}")
        ids.append(job.id)

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 4 and len(set(ids)) == 1
    lake.jobs.wait(ids[0], timeout=WAIT)


def test_listing_is_per_caller_and_paged(app: Flask, lake: Stratus) -> None:
    name = f"lister-{TAG}"
    client = client_for(app, user(lake, name))
    can_read_weather(lake, name)
    grant(lake, "schema", "main.jobs", name, "USE SCHEMA", "CREATE TABLE")
    ids = []
    for i in range(3):
        body = {
            "type": "daily_summary",
            "city_ids": ["miami"],
            "start": f"196{i + 1}-03-01",
            "end": f"196{i + 1}-03-05",
            "output": f"main.jobs.list_{TAG}",
        }
        resp = submit(client, body)
        assert resp.status_code == 202, resp.get_json()
        ids.append(resp.get_json()["id"])
    for job_id in ids:
        lake.jobs.wait(job_id, timeout=WAIT)
    page1 = client.get("/api/v1/jobs?limit=2").get_json()
    assert [j["id"] for j in page1["data"]] == ids[::-1][:2] and page1["next_page_token"]
    page2 = client.get(f"/api/v1/jobs?limit=2&page_token={page1['next_page_token']}").get_json()
    assert [j["id"] for j in page2["data"]] == [ids[0]] and page2["next_page_token"] is None
    assert {j["principal"] for j in page1["data"] + page2["data"]} == {name}
    done = client.get("/api/v1/jobs?state=succeeded").get_json()
    assert done["count"] == 3
    assert client.get("/api/v1/jobs?page_token=garbage").get_json()["parameter"] == "page_token"
    assert client.get("/api/v1/jobs?state=done").get_json()["parameter"] == "state"
    assert client.get("/api/v1/jobs?limit=0").get_json()["parameter"] == "limit"
    # someone else's job does not exist for this caller; the admin sees it
    other = lake.jobs.store.list("admin", limit=1)[0]
    assert client.get(f"/api/v1/jobs/{other.id}").status_code == 404
    assert client.delete(f"/api/v1/jobs/{other.id}").status_code == 404
    assert client_for(app, token_for(lake)).get(f"/api/v1/jobs/{ids[0]}").status_code == 200


def test_cancel_a_queued_job(
    admin: FlaskClient, lake: Stratus, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = f"main.jobs.cancel_q_{TAG}"
    with Paused(lake, monkeypatch):
        resp = submit(
            admin,
            {
                "type": "climate_stats",
                "city_ids": ["miami"],
                "start": ALL_TIME[0],
                "end": ALL_TIME[1],
                "output": out,
            },
        )
        job_id = resp.get_json()["id"]
        assert admin.get(f"/api/v1/jobs/{job_id}").get_json()["state"] == "queued"
        cancelled = admin.delete(f"/api/v1/jobs/{job_id}")
        assert cancelled.status_code == 200
        assert cancelled.get_json()["state"] == "cancelled"
    time.sleep(1.5)  # the pool runs again: the cancelled job stays cancelled
    doc = admin.get(f"/api/v1/jobs/{job_id}").get_json()
    assert doc["state"] == "cancelled" and doc["timings"]["started_at"] is None
    assert admin.delete(f"/api/v1/jobs/{job_id}").status_code == 200  # idempotent
    with pytest.raises(NotFound):
        lake.governance.metastore.get_table(out)


def test_cancel_a_running_job_stops_at_the_next_step(
    admin: FlaskClient, lake: Stratus, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = f"main.jobs.cancel_r_{TAG}"
    entered, release = threading.Event(), threading.Event()
    real = lake.jobs.engine.compute

    def slow(*args: Any, **kwargs: Any) -> pa.Table:
        entered.set()
        assert release.wait(WAIT)
        return real(*args, **kwargs)

    monkeypatch.setattr(lake.jobs.engine, "compute", slow)
    job_id = submit(
        admin,
        {
            "type": "daily_summary",
            "city_ids": ["miami"],
            "start": ALL_TIME[0],
            "end": ALL_TIME[1],
            "output": out,
        },
    ).get_json()["id"]
    assert entered.wait(WAIT)
    assert admin.get(f"/api/v1/jobs/{job_id}").get_json()["state"] == "running"
    resp = admin.delete(f"/api/v1/jobs/{job_id}")
    assert resp.status_code == 202
    assert resp.get_json()["state"] == "running" and resp.get_json()["cancel_requested"] is True
    release.set()
    final = lake.jobs.wait(job_id, timeout=WAIT)
    assert final.state == "cancelled" and "cancelled by admin" in (final.error or "")
    assert final.rows_written is None
    with pytest.raises(NotFound):  # nothing registered, nothing committed
        lake.governance.metastore.get_table(out)
    finished = admin.delete(f"/api/v1/jobs/{job_id}")
    assert finished.status_code == 200  # cancelling a cancelled job is a no-op


def test_a_finished_job_cannot_be_cancelled(admin: FlaskClient, lake: Stratus) -> None:
    doc = run(
        admin,
        lake,
        {
            "type": "daily_summary",
            "city_ids": ["miami"],
            "start": "1961-02-01",
            "end": "1961-02-03",
            "output": f"main.jobs.fin_{TAG}",
        },
    )
    resp = admin.delete(f"/api/v1/jobs/{doc['id']}")
    assert resp.status_code == 409 and "already succeeded" in resp.get_json()["detail"]


# ---- concurrency -----------------------------------------------------------------------------
def test_concurrent_jobs_into_one_table(
    admin: FlaskClient, lake: Stratus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both workers compute at once (a barrier in the engine) and commit into one table with
    overlapping slices: every job succeeds, no key is duplicated, every row is right."""
    out = f"main.jobs.concurrent_{TAG}"
    barrier = threading.Barrier(2, timeout=30)
    real = lake.jobs.engine.compute

    def together(*args: Any, **kwargs: Any) -> pa.Table:
        result = real(*args, **kwargs)
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()  # the two running jobs leave compute together, then write together
        return result

    monkeypatch.setattr(lake.jobs.engine, "compute", together)
    sets = [
        ["greensboro", "miami"],
        ["miami", "new-york-jfk"],
        ["new-york-jfk", "greensboro"],
        ["miami"],
    ]
    ids = [
        submit(
            admin,
            {
                "type": "daily_summary",
                "city_ids": s,
                "start": ALL_TIME[0],
                "end": ALL_TIME[1],
                "output": out,
            },
        ).get_json()["id"]
        for s in sets
    ]
    jobs = [lake.jobs.wait(i, timeout=WAIT) for i in ids]
    assert [j.state for j in jobs] == ["succeeded"] * 4, [j.error for j in jobs]
    rows = output_rows(lake, out)
    keys = [(r["city_id"], r["date"]) for r in rows]
    assert len(keys) == len(set(keys)) == 365 + 365 + 364  # NYC's data ends on Dec 30
    api = lake.weather.summary(
        ["greensboro", "miami", "new-york-jfk"], dt.date(1950, 1, 1), dt.date(2030, 12, 31), "day"
    )
    want = {(r.pop("city_id"), r.pop("period")): r for r in api.to_pylist()}
    for row in rows:
        same_summary(row, want[(row["city_id"], row["date"])])


def test_concurrent_commits_on_one_partition_are_retried(lake: Stratus) -> None:
    """Six writers replace the same partition at the same moment: delta-rs rejects all but one
    commit per round (a concurrent transaction added data) and each loser retries."""
    spec = DAILY_SUMMARY.output_spec(f"main.jobs.retry_{TAG}")
    base = lake.weather.summary(["greensboro"], dt.date(1950, 1, 1), dt.date(2030, 12, 31), "day")
    base = base.rename_columns(["date" if c == "period" else c for c in base.column_names])
    job_output.replace_slice(
        lake.lakehouse, spec, base, "city_id IN ('greensboro')", {"stratus.job_id": "seed"}
    )
    barrier = threading.Barrier(6)
    results: dict[int, Any] = {}

    def write(i: int) -> None:
        data = base.set_column(
            base.schema.get_field_index("hours_observed"),
            "hours_observed",
            pa.array([i] * base.num_rows, pa.int64()),
        )
        barrier.wait()
        try:
            results[i] = job_output.replace_slice(
                lake.lakehouse,
                spec,
                data,
                "city_id IN ('greensboro')",
                {"stratus.job_id": f"w{i}"},
                retries=10,
            )
        except Exception as exc:  # pragma: no cover - reported by the assertion below
            results[i] = exc

    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(isinstance(r, job_output.WriteResult) for r in results.values()), results
    table = DeltaTable(lake.lakehouse.url(spec)).to_pyarrow_table()
    assert table.num_rows == base.num_rows  # one writer's rows, never a mix or a duplicate
    assert len(set(table["hours_observed"].to_pylist())) == 1
    assert max(r.attempts for r in results.values()) > 1  # conflicts happened and were retried


def test_a_write_that_keeps_conflicting_fails_the_job_clearly(
    admin: FlaskClient, lake: Stratus, monkeypatch: pytest.MonkeyPatch
) -> None:
    def conflict(*args: Any, **kwargs: Any) -> None:
        raise CommitFailedError("Commit failed: a concurrent transactions added new data")

    monkeypatch.setattr(job_output, "write_deltalake", conflict)
    monkeypatch.setattr(job_output.time, "sleep", lambda s: None)
    resp = submit(
        admin,
        {
            "type": "daily_summary",
            "city_ids": ["miami"],
            "start": "1961-02-01",
            "end": "1961-02-03",
            "output": f"main.jobs.conflict_{TAG}",
        },
    )
    job = lake.jobs.wait(resp.get_json()["id"], timeout=WAIT)
    assert job.state == "failed"
    assert "concurrent writers" in (job.error or "") and "nothing was written" in (job.error or "")
    with pytest.raises(WriteConflictError):
        job_output.replace_slice(
            lake.lakehouse,
            DAILY_SUMMARY.output_spec(f"main.jobs.conflict_{TAG}"),
            DAILY_SUMMARY.schema.empty_table(),
            "city_id IN ('x')",
            {"stratus.job_id": "x"},
        )


# ---- grants ---------------------------------------------------------------------------------
def test_grants_are_checked_at_submit_and_at_run_time(
    app: Flask, lake: Stratus, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, other, nobody = f"jo-{TAG}", f"jo-other-{TAG}", f"jo-nobody-{TAG}"
    jo, jo_other, jo_nobody = (client_for(app, user(lake, n)) for n in (name, other, nobody))
    body = {
        "type": "daily_summary",
        "city_ids": ["miami"],
        "start": "1961-02-01",
        "end": "1961-02-28",
    }
    # no privilege at all: the input table is invisible
    assert submit(jo_nobody, body).status_code == 404
    can_read_weather(lake, name)
    # SELECT but nothing on the output schema
    denied = submit(jo, body)
    assert denied.status_code == 403 and denied.get_json()["parameter"] == "output"
    assert (
        "USE SCHEMA" in denied.get_json()["detail"] or "CREATE TABLE" in denied.get_json()["detail"]
    )
    grant(lake, "schema", "main.jobs", name, "USE SCHEMA")
    denied = submit(jo, body)
    assert denied.status_code == 403 and "CREATE TABLE" in denied.get_json()["detail"]
    grant(lake, "schema", "main.jobs", name, "CREATE TABLE")
    out = f"main.jobs.granted_{TAG}"
    doc = run(jo, lake, {**body, "output": out})
    assert doc["principal"] == name
    assert lake.governance.metastore.get_table(out).owner == name  # the submitter owns it
    # the table exists now: another user needs MODIFY on it, CREATE TABLE is not enough
    can_read_weather(lake, other)
    grant(lake, "schema", "main.jobs", other, "USE SCHEMA", "CREATE TABLE")
    grant(lake, "table", out, other, "SELECT")
    resp = submit(jo_other, {**body, "output": out})
    assert resp.status_code == 403 and "MODIFY" in resp.get_json()["detail"]
    grant(lake, "table", out, other, "MODIFY")
    assert run(jo_other, lake, {**body, "output": out})["principal"] == other
    # a schema that does not exist needs CREATE SCHEMA on the catalog
    resp = submit(jo, {**body, "output": f"main.new_{TAG}.t"})
    assert resp.status_code == 403 and "CREATE SCHEMA" in resp.get_json()["detail"]
    # revoked between submit and run: the job fails as denied, nothing is written
    out2 = f"main.jobs.revoked_{TAG}"
    with Paused(lake, monkeypatch):
        job_id = submit(jo, {**body, "output": out2}).get_json()["id"]
        revoke(lake, "schema", "main.jobs", name, "CREATE TABLE")
    job = lake.jobs.wait(job_id, timeout=WAIT)
    assert job.state == "failed" and "PermissionDenied" in (job.error or "")
    assert "CREATE TABLE" in (job.error or "")
    with pytest.raises(NotFound):
        lake.governance.metastore.get_table(out2)


# ---- bad input -------------------------------------------------------------------------------
GOOD = {"type": "anomalies", "city_ids": ["miami"], "start": "1961-02-01", "end": "1961-02-28"}
BAD_BODIES = [
    ({**GOOD, "type": "forecast"}, 400, "type"),
    ({**GOOD, "type": None}, 400, "type"),
    ({k: v for k, v in GOOD.items() if k != "type"}, 400, "type"),
    ({**GOOD, "start": "1961-2-01"}, 400, "start"),
    ({**GOOD, "start": "1961-02-30"}, 400, "start"),
    ({**GOOD, "end": "1961-01-01"}, 400, "end"),
    ({k: v for k, v in GOOD.items() if k != "end"}, 400, "end"),
    ({**GOOD, "city_ids": []}, 400, "city_ids"),
    ({**GOOD, "city_ids": "miami"}, 400, "city_ids"),
    ({**GOOD, "city_ids": ["bad id!"]}, 400, "city_ids"),
    ({**GOOD, "city_ids": [f"c{i}" for i in range(101)]}, 400, "city_ids"),
    ({**GOOD, "city_ids": ["atlantis"]}, 404, "city_ids"),
    ({**GOOD, "options": {"z": 0}}, 400, "options.z"),
    ({**GOOD, "options": {"z": 11}}, 400, "options.z"),
    ({**GOOD, "options": {"z": "high"}}, 400, "options.z"),
    ({**GOOD, "options": {"zz": 2}}, 400, "options.zz"),
    ({**GOOD, "type": "daily_summary", "options": {"z": 2}}, 400, "options.z"),
    ({**GOOD, "options": [1]}, 400, "options"),
    ({**GOOD, "output": "jobs.x"}, 400, "output"),
    ({**GOOD, "output": "main.jobs.bad name"}, 400, "output"),
    ({**GOOD, "output": "system.access.audit"}, 400, "output"),
    ({**GOOD, "output": "main.weather.hourly"}, 400, "output"),
    ({**GOOD, "output": "nocatalog.jobs.x"}, 404, "output"),
    ({**GOOD, "colour": "red"}, 400, "colour"),
    ([GOOD], 400, "body"),
]


@pytest.mark.parametrize(("body", "status", "parameter"), BAD_BODIES)
def test_bad_submissions_are_problems_naming_the_parameter(
    admin: FlaskClient, body: object, status: int, parameter: str
) -> None:
    resp = admin.post("/api/v1/jobs", json=body)
    assert resp.status_code == status, resp.get_json()
    assert resp.mimetype == "application/problem+json"
    doc = resp.get_json()
    assert doc["parameter"] == parameter, doc


def test_more_bad_requests(admin: FlaskClient, lake: Stratus) -> None:
    not_json = admin.post("/api/v1/jobs", data="type=anomalies", content_type="text/plain")
    assert not_json.status_code == 400 and not_json.get_json()["parameter"] == "body"
    bad_key = submit(admin, GOOD, **{"Idempotency-Key": "has space"})
    assert bad_key.status_code == 400 and bad_key.get_json()["parameter"] == "Idempotency-Key"
    assert admin.get("/api/v1/jobs/no-such-job").status_code == 404
    # an existing output table of another shape
    run(admin, lake, {**GOOD, "type": "daily_summary", "output": f"main.jobs.shape_{TAG}"})
    clash = submit(admin, {**GOOD, "output": f"main.jobs.shape_{TAG}"})
    assert clash.status_code == 409 and clash.get_json()["parameter"] == "output"
    unauthenticated = client_for(admin.application, None).post("/api/v1/jobs", json=GOOD)
    assert unauthenticated.status_code == 401


def test_settings_name_the_variable() -> None:
    with pytest.raises(ConfigError, match="STRATUS_ENGINE"):
        Settings.from_env({"STRATUS_ENGINE": "hadoop"})
    with pytest.raises(ConfigError, match=r"STRATUS_SPARK_REMOTE.*required"):
        Settings.from_env({"STRATUS_ENGINE": "spark"})
    with pytest.raises(ConfigError, match="STRATUS_SPARK_REMOTE"):
        Settings.from_env({"STRATUS_SPARK_REMOTE": "http://spark:15002"})
    with pytest.raises(ConfigError, match="STRATUS_JOB_WORKERS"):
        Settings.from_env({"STRATUS_JOB_WORKERS": "-1"})
    s = Settings.from_env(
        {"STRATUS_ENGINE": "spark", "STRATUS_SPARK_REMOTE": "sc://h:443/;token=SECRET"}
    )
    assert s.engine == "spark" and "SECRET" not in repr(s)
    assert Settings.from_env({}).job_workers == 2 and Settings.from_env({}).engine == "local"


# ---- lineage and audit ------------------------------------------------------------------------
class Sink:
    def __init__(self) -> None:
        self.calls: list[tuple[str, LineageEvent, str | None]] = []

    def start(self, event: LineageEvent) -> None:
        self.calls.append(("start", event, None))

    def complete(self, event: LineageEvent) -> None:
        self.calls.append(("complete", event, None))

    def fail(self, event: LineageEvent, error: str) -> None:
        self.calls.append(("fail", event, error))


def test_each_run_reports_lineage_and_is_audited(
    admin: FlaskClient, lake: Stratus, monkeypatch: pytest.MonkeyPatch
) -> None:
    nobody = client_for(admin.application, user(lake, f"refused-{TAG}"))
    body = {
        "type": "daily_summary",
        "city_ids": ["miami"],
        "start": "1961-02-01",
        "end": "1961-02-02",
    }
    assert submit(nobody, {**body, "output": f"main.jobs.refused_{TAG}"}).status_code == 404
    sink = Sink()
    monkeypatch.setitem(lake.__dict__, "lineage", sink)
    out = f"main.jobs.lineage_{TAG}"
    doc = run(
        admin,
        lake,
        {
            "type": "climate_stats",
            "city_ids": ["miami"],
            "start": ALL_TIME[0],
            "end": ALL_TIME[1],
            "output": out,
        },
    )
    assert [c[0] for c in sink.calls] == ["start", "complete"]
    event = sink.calls[-1][1]
    assert (
        event.run_id == doc["id"]
        and event.entity_type == "JOB"
        and event.job_name == "job:climate_stats"
    )
    assert event.source_tables == ("main.weather.hourly",) and event.target_table == out
    edges = {(e.source_column, e.target_column) for e in event.column_edges}
    assert ("temp", "temp_p90") in edges and ("precipitation", "longest_dry_spell_hours") in edges
    assert all(e.source_table == "main.weather.hourly" for e in event.column_edges)
    assert dict(event.target_schema)["month"] == "date"
    failed = submit(
        admin,
        {
            "type": "climate_stats",
            "city_ids": ["miami"],
            "start": "1961-02-01",
            "end": "1961-02-02",
            "output": f"main.jobs.shape_{TAG}x",
        },
    )
    admin.delete(f"/api/v1/jobs/{failed.get_json()['id']}")
    lake.jobs.wait(failed.get_json()["id"], timeout=WAIT)

    lake.governance.audit.flush()
    audit = DeltaTable(lake.lakehouse.url(AUDIT)).to_pyarrow_table().to_pylist()
    mine = [r for r in audit if r["securable_full_name"] == out]
    actions = Counter((r["service_name"], r["action_name"], r["outcome"]) for r in mine)
    assert actions[("stratus", "submitJob", "allowed")] == 1
    assert actions[("jobs", "runJob", "allowed")] == 1
    run_rec = next(r for r in mine if r["action_name"] == "runJob")
    assert run_rec["user_identity"] == "admin" and doc["id"] in run_rec["request_params"]
    cancels = [
        r
        for r in audit
        if r["action_name"] == "cancelJob" and failed.get_json()["id"] in r["request_params"]
    ]
    assert len(cancels) == 1
    refused = [r for r in audit if r["securable_full_name"] == f"main.jobs.refused_{TAG}"]
    assert [(r["action_name"], r["outcome"], r["status_code"]) for r in refused] == [
        ("submitJob", "denied", 404)
    ]


# ---- restarts ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_home(tmp_path_factory: pytest.TempPathFactory, sample_csv: Path) -> Path:
    """A second home with two NYC stations' data, for restarts and the CLI."""
    tmp = tmp_path_factory.mktemp("jobs-small")
    weather, cities = tmp / "weather.csv", tmp / "weather.cities.csv"
    keep = {"new-york-jfk", "new-york-lga"}
    for src, dst in ((sample_csv, weather), (cities_path_for(sample_csv), cities)):
        with src.open() as fh, dst.open("w", newline="") as out:
            reader = csv.DictReader(fh)
            writer = csv.DictWriter(out, fieldnames=reader.fieldnames or [])
            writer.writeheader()
            writer.writerows(r for r in reader if r["city_id"] in keep)
    home = tmp / "home"
    load(Stratus.from_settings(Settings(home=home, job_workers=0)), weather, cities).close()
    return home


def queue_one(home: Path, **body: Any) -> str:
    stratus = Stratus.from_settings(Settings(home=home, job_workers=0))
    try:
        job, _ = stratus.jobs.submit(
            LOCAL_ADMIN,
            parse_submission(
                {
                    "type": "daily_summary",
                    "city_ids": ["new-york-jfk"],
                    "start": "2013-01-01",
                    "end": "2013-12-31",
                    **body,
                }
            ),
        )
        stratus.jobs.start()  # no workers: does nothing
        assert stratus.jobs.store.get(job.id).state == "queued"
        return job.id
    finally:
        stratus.close()


def test_a_restart_picks_up_queued_jobs(small_home: Path) -> None:
    job_id = queue_one(small_home, output=f"main.jobs.restart_q_{TAG}")
    stratus = Stratus.from_settings(Settings(home=small_home, job_workers=1))
    try:
        stratus.jobs.start()
        job = stratus.jobs.wait(job_id, timeout=WAIT)
        assert job.state == "succeeded" and job.rows_written == 364 and job.attempts == 1
    finally:
        stratus.close()


CRASHER = textwrap.dedent(
    """
    import sys, threading
    from pathlib import Path
    from stratus.config import Settings
    from stratus.context import Stratus

    stratus = Stratus.from_settings(Settings(home=Path(sys.argv[1]), job_workers=1))
    service = stratus.jobs

    def stuck(*args, **kwargs):
        print("RUNNING", flush=True)
        threading.Event().wait()

    service.engine.compute = stuck
    service.start()
    threading.Event().wait()
    """
)


def test_a_job_left_running_by_a_killed_process_is_requeued_and_finished(small_home: Path) -> None:
    job_id = queue_one(small_home, output=f"main.jobs.restart_r_{TAG}")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASHER, str(small_home)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "RUNNING"
        probe = Stratus.from_settings(Settings(home=small_home, job_workers=0))
        job = probe.jobs.store.get(job_id)
        probe.close()
        assert job.state == "running" and job.runner and f":{proc.pid}:" in job.runner
    finally:
        proc.send_signal(signal.SIGKILL)  # a crash: no clean shutdown, the job stays "running"
        proc.wait(30)
    stratus = Stratus.from_settings(Settings(home=small_home, job_workers=1))
    try:
        assert runner_is_dead(stratus.jobs.store.get(job_id))
        stratus.jobs.start()  # recovers: running -> queued, then runs it
        job = stratus.jobs.wait(job_id, timeout=WAIT)
        assert job.state == "succeeded" and job.attempts == 2 and job.rows_written == 364
    finally:
        stratus.close()


def test_a_job_interrupted_too_often_fails_as_interrupted(small_home: Path) -> None:
    job_id = queue_one(small_home, output=f"main.jobs.restart_f_{TAG}")
    dead = subprocess.Popen(["true"])
    dead.wait()
    stratus = Stratus.from_settings(Settings(home=small_home, job_workers=1))
    try:
        with stratus.governance.metastore.session() as s:
            s.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(
                    state="running", attempts=3, runner=f"{socket.gethostname()}:{dead.pid}:gone"
                )
            )
        stratus.jobs.start()
        job = stratus.jobs.wait(job_id, timeout=WAIT)
        assert job.state == "failed" and (job.error or "").startswith("interrupted")
    finally:
        stratus.close()


def test_a_clean_shutdown_requeues_the_running_job(small_home: Path) -> None:
    job_id = queue_one(small_home, output=f"main.jobs.restart_s_{TAG}")
    stratus = Stratus.from_settings(Settings(home=small_home, job_workers=1))
    entered, release = threading.Event(), threading.Event()
    real = stratus.jobs.engine.compute

    def slow(*args: Any, **kwargs: Any) -> pa.Table:
        entered.set()
        release.wait(WAIT)
        return real(*args, **kwargs)

    stratus.jobs.engine.compute = slow  # type: ignore[method-assign]
    stratus.jobs.start()
    assert entered.wait(WAIT)
    closer = threading.Thread(target=stratus.close)
    closer.start()
    time.sleep(0.3)
    release.set()
    closer.join(60)
    again = Stratus.from_settings(Settings(home=small_home, job_workers=0))
    try:
        job = again.jobs.store.get(job_id)
        assert job.state == "queued" and "shutting down" in (job.error or "")
    finally:
        again.close()
    last = Stratus.from_settings(Settings(home=small_home, job_workers=1))
    try:
        last.jobs.start()
        assert last.jobs.wait(job_id, timeout=WAIT).state == "succeeded"
    finally:
        last.close()


def test_cli_submits_waits_lists_and_shows(small_home: Path) -> None:
    from click.testing import CliRunner

    from stratus.cli import main

    env = {"STRATUS_HOME": str(small_home), "STRATUS_JOB_WORKERS": "1"}
    runner = CliRunner()
    out = f"main.jobs.cli_{TAG}"
    result = runner.invoke(
        main,
        [
            "jobs",
            "submit",
            "climate_stats",
            "--city",
            "new-york-lga",
            "--start",
            "2013-01-01",
            "--end",
            "2013-06-30",
            "--output",
            out,
            "--wait",
            "--json",
        ],
        env=env,
    )
    assert result.exit_code == 0, result.output
    doc = orjson.loads(result.stdout.strip().splitlines()[-1])
    assert doc["state"] == "succeeded" and doc["rows_written"] == 6
    listed = runner.invoke(main, ["jobs", "list"], env=env)
    assert listed.exit_code == 0 and doc["id"] in listed.output
    shown = runner.invoke(main, ["jobs", "show", doc["id"]], env=env)
    assert shown.exit_code == 0 and "succeeded" in shown.output
    bad = runner.invoke(
        main,
        [
            "jobs",
            "submit",
            "anomalies",
            "--city",
            "new-york-lga",
            "--start",
            "2013-01-01",
            "--end",
            "2013-01-02",
            "--option",
            "z=99",
        ],
        env=env,
    )
    assert bad.exit_code != 0 and "options.z" in bad.output
    finished = runner.invoke(main, ["jobs", "cancel", doc["id"]], env=env)
    assert finished.exit_code != 0 and "already succeeded" in finished.output


# ---- Azure ------------------------------------------------------------------------------------
@pytest.mark.azure
def test_daily_summary_job_on_azure_blob_storage(
    azurite: str, tmp_path: Path, sample_csv: Path
) -> None:
    weather = tmp_path / "w.csv"
    with sample_csv.open() as fh, weather.open("w", newline="") as out:
        reader = csv.DictReader(fh)
        writer = csv.DictWriter(out, fieldnames=reader.fieldnames or [])
        writer.writeheader()
        writer.writerows(
            r for r in reader if r["city_id"] == "new-york-jfk" and r["date"] < "2013-03-01"
        )
    stratus = load(
        Stratus.from_settings(azure_settings(azurite, tmp_path / "home")),
        weather,
        cities_path_for(sample_csv),
    )
    try:
        job, _ = stratus.jobs.submit(
            LOCAL_ADMIN,
            parse_submission(
                {
                    "type": "daily_summary",
                    "city_ids": ["new-york-jfk"],
                    "start": "2013-01-01",
                    "end": "2013-02-28",
                }
            ),
        )
        stratus.jobs.start()
        done = stratus.jobs.wait(job.id, timeout=WAIT)
        assert done.state == "succeeded", done.error
        spec = JOB_TYPES["daily_summary"].output_spec("main.jobs.daily_summary")
        table = DeltaTable(
            stratus.lakehouse.url(spec), storage_options=stratus.storage.options
        ).to_pyarrow_table()
        api = stratus.weather.summary(
            ["new-york-jfk"], dt.date(2013, 1, 1), dt.date(2013, 2, 28), "day"
        )
        assert table.num_rows == api.num_rows == 59
        want = {(r.pop("city_id"), r.pop("period")): r for r in api.to_pylist()}
        for row in table.to_pylist():
            same_summary(row, want[(row["city_id"], row["date"])])
    finally:
        stratus.close()
