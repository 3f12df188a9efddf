"""The audit log: a record per request, scrubbed, durable on clean shutdown, readable by admins."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from flask import Flask
from flask.testing import FlaskClient

from stratus.api import create_app
from stratus.api.openapi import spec
from stratus.config import Settings
from stratus.context import Stratus
from stratus.security.audit import AUDIT, AuditRecord
from tests.conftest import client_for, token_for

CITY = "new-york-jfk"
WEEK = f"city_id={CITY}&start=2013-06-01&end=2013-06-07"
HOURLY, CITIES = "main.weather.hourly", "main.weather.cities"
TAG = uuid.uuid4().hex[:6]
READER, NO_SELECT, NOBODY = f"audit-reader-{TAG}", f"audit-noselect-{TAG}", f"audit-nobody-{TAG}"


def grant(stratus: Stratus, kind: str, full_name: str, principal: str, *privs: str) -> None:
    ms = stratus.governance.metastore
    ms.update_grants(
        kind, ms.securable(kind, full_name).id, [{"principal": principal, "add": list(privs)}]
    )


def table_rows(stratus: Stratus) -> list[dict[str, Any]]:
    stratus.governance.audit.flush()
    return DeltaTable(stratus.lakehouse.url(AUDIT)).to_pyarrow_table().to_pylist()


def rows_for(stratus: Stratus, request_id: str) -> list[dict[str, Any]]:
    return [r for r in table_rows(stratus) if r["request_id"] == request_id]


def record(request_id: str, when: dt.datetime, **fields: Any) -> AuditRecord:
    base: dict[str, Any] = {
        "event_time": when,
        "request_id": request_id,
        "service_name": "stratus",
        "action_name": "queryWeather",
        "user_identity": "someone",
        "securable_type": "table",
        "securable_full_name": HOURLY,
        "request_params": {"city_id": [CITY]},
        "outcome": "allowed",
        "status_code": 200,
        "error_message": None,
        "source_ip_address": "192.0.2.1",
        "user_agent": "pytest",
    }
    base.update(fields)
    return AuditRecord(**base)


@pytest.fixture(scope="module")
def app(loaded_local: Stratus) -> Flask:
    app = create_app(stratus=loaded_local)  # registers the built-in securables
    ms = loaded_local.governance.metastore
    for name in (READER, NO_SELECT, NOBODY):
        ms.create_principal(name)
    for name in (READER, NO_SELECT):
        grant(loaded_local, "catalog", "main", name, "USE CATALOG")
        grant(loaded_local, "schema", "main.weather", name, "USE SCHEMA")
    grant(loaded_local, "table", HOURLY, READER, "SELECT")
    grant(loaded_local, "table", CITIES, READER, "SELECT")
    return app


@pytest.fixture(scope="module")
def tokens(app: Flask, loaded_local: Stratus) -> dict[str, str]:
    return {who: token_for(loaded_local, who) for who in ("admin", READER, NO_SELECT, NOBODY)}


@pytest.fixture(scope="module")
def admin(app: Flask, tokens: dict[str, str]) -> FlaskClient:
    return client_for(app, tokens["admin"])


# ---- a record per request ------------------------------------------------------------------
# (principal, path, status, outcome, action, securable, error fragment)
CASES = [
    (READER, f"/api/v1/weather?{WEEK}", 200, "allowed", "queryWeather", HOURLY, None),
    (READER, f"/api/v1/weather/summary?{WEEK}", 200, "allowed", "summarizeWeather", HOURLY, None),
    (READER, "/api/v1/cities", 200, "allowed", "listCities", CITIES, None),
    (NO_SELECT, f"/api/v1/weather?{WEEK}", 403, "denied", "queryWeather", HOURLY, "lacks SELECT"),
    (NOBODY, f"/api/v1/weather?{WEEK}", 404, "denied", "queryWeather", HOURLY, "does not exist"),
    (NOBODY, "/api/v1/cities", 404, "denied", "listCities", CITIES, "does not exist"),
    (READER, "/api/v1/weather?city_id=x", 400, "error", "queryWeather", HOURLY, None),
    ("admin", f"/api/v1/weather?{WEEK}", 200, "allowed", "queryWeather", HOURLY, None),
]


@pytest.mark.parametrize(
    ("who", "path", "status", "outcome", "action", "securable", "error"),
    CASES,
    ids=[f"{c[0].split('-')[1] if '-' in c[0] else c[0]}-{c[4]}-{c[2]}" for c in CASES],
)
def test_every_weather_request_writes_a_record(
    app: Flask,
    loaded_local: Stratus,
    tokens: dict[str, str],
    who: str,
    path: str,
    status: int,
    outcome: str,
    action: str,
    securable: str,
    error: str | None,
) -> None:
    client = app.test_client()
    agent = f"audit-test/1.0 ({uuid.uuid4().hex[:8]})"
    before = dt.datetime.now(dt.UTC)
    resp = client.get(
        path,
        headers={"Authorization": f"Bearer {tokens[who]}", "User-Agent": agent},
        environ_base={"REMOTE_ADDR": "203.0.113.7"},
    )
    after = dt.datetime.now(dt.UTC)
    assert resp.status_code == status
    request_id = resp.headers["X-Request-Id"]
    assert len(request_id) >= 16
    found = rows_for(loaded_local, request_id)
    assert len(found) == 1
    row = found[0]
    assert row["user_identity"] == who
    assert row["action_name"] == action
    assert row["securable_type"] == "table" and row["securable_full_name"] == securable
    assert row["status_code"] == status and row["outcome"] == outcome
    assert row["source_ip_address"] == "203.0.113.7"
    assert row["user_agent"] == agent
    assert row["service_name"] == "stratus"
    assert before <= row["event_time"] <= after
    assert row["event_date"] == row["event_time"].date()
    params = orjson.loads(row["request_params"])
    if "city_id" in path:
        assert params["city_id"] in ([CITY], ["x"])
    if error:
        assert error in row["error_message"]
    elif status == 200:
        assert row["error_message"] is None


def test_a_callers_request_id_is_kept(
    app: Flask, loaded_local: Stratus, admin: FlaskClient
) -> None:
    request_id = f"caller-{uuid.uuid4().hex}"
    resp = admin.get(f"/api/v1/weather?{WEEK}", headers={"X-Request-Id": request_id})
    assert resp.status_code == 200 and resp.headers["X-Request-Id"] == request_id
    assert len(rows_for(loaded_local, request_id)) == 1


def test_request_ids_are_unique_per_request(admin: FlaskClient, loaded_local: Stratus) -> None:
    ids = {admin.get(f"/api/v1/weather?{WEEK}").headers["X-Request-Id"] for _ in range(5)}
    assert len(ids) == 5
    recorded = {r["request_id"] for r in table_rows(loaded_local)}
    assert ids <= recorded


def test_open_paths_are_not_audited(app: Flask, loaded_local: Stratus) -> None:
    resp = app.test_client().get("/health")
    assert resp.status_code == 200
    assert rows_for(loaded_local, resp.headers["X-Request-Id"]) == []


# ---- secrets -------------------------------------------------------------------------------
def _audit_files(stratus: Stratus) -> list[Path]:
    root = Path(stratus.lakehouse.url(AUDIT))
    return [p for p in root.rglob("*") if p.is_file()]


def test_secrets_never_reach_the_table(
    app: Flask, loaded_local: Stratus, tokens: dict[str, str]
) -> None:
    secrets = {
        "token": f"tok-{uuid.uuid4().hex}",
        "api_key": f"key-{uuid.uuid4().hex}",
        "password": f"pw-{uuid.uuid4().hex}",
        "client_secret": f"cs-{uuid.uuid4().hex}",
    }
    marker = f"scrub{uuid.uuid4().hex[:10]}"  # a non-secret value of the same requests
    query = "&".join(f"{k}={v}" for k, v in secrets.items())
    client = client_for(app, tokens[READER])
    ids = []
    for path in (
        f"/api/v1/weather?city_id={marker}&start=2013-06-01&end=2013-06-02&{query}",
        f"/api/v1/weather/summary?city_id={marker}&start=2013-06-01&end=2013-06-02&{query}",
    ):
        resp = client.get(path)
        assert resp.status_code == 400  # the secret parameters are unknown ones
        ids.append(resp.headers["X-Request-Id"])
    admin = client_for(app, tokens["admin"])
    resp = admin.get(f"/api/v1/audit?principal={marker}&{query}")
    assert resp.status_code == 400
    ids.append(resp.headers["X-Request-Id"])

    for request_id in ids:
        (row,) = rows_for(loaded_local, request_id)
        params = orjson.loads(row["request_params"])
        for key in secrets:
            assert params[key] in ("[REDACTED]", ["[REDACTED]"])
    # every byte of the table: Parquet files, the Delta log (with its min/max statistics), and
    # the decoded Parquet contents (the files are compressed, so raw bytes alone prove little)
    raw = b"".join(p.read_bytes() for p in _audit_files(loaded_local))
    decoded = "".join(
        str(pq.read_table(p).to_pylist())
        for p in _audit_files(loaded_local)
        if p.suffix == ".parquet"
    )
    assert marker in decoded  # the scan does see these requests
    for value in [*secrets.values(), tokens[READER], tokens["admin"]]:
        assert value.encode() not in raw
        assert value not in decoded


# ---- durability ----------------------------------------------------------------------------
def test_close_drains_the_queue(tmp_path: Path) -> None:
    home = tmp_path / "home"
    stratus = Stratus.from_settings(Settings(home=home, audit_flush_seconds=60))
    stratus.bootstrap()
    log = stratus.governance.audit
    now = dt.datetime.now(dt.UTC)
    ids = [f"drain-{i:04d}" for i in range(300)]
    for i, request_id in enumerate(ids):
        log.record(record(request_id, now + dt.timedelta(microseconds=i)))
    stratus.close()
    assert log.written == len(ids) and log.failures == 0
    fresh = Stratus.from_settings(Settings(home=home))  # another process's view
    table = DeltaTable(fresh.lakehouse.url(AUDIT)).to_pyarrow_table()
    assert sorted(table["request_id"].to_pylist()) == ids
    fresh.close()


def test_records_survive_a_clean_process_exit(tmp_path: Path) -> None:
    home = tmp_path / "home"
    script = textwrap.dedent(
        f"""
        import datetime as dt
        from stratus.config import Settings
        from stratus.context import Stratus
        from stratus.security.audit import AuditRecord

        stratus = Stratus.from_settings(Settings(home={str(home)!r}, audit_flush_seconds=60))
        stratus.bootstrap()
        now = dt.datetime.now(dt.UTC)
        for i in range(120):
            stratus.governance.audit.record(AuditRecord(
                event_time=now, request_id=f"exit-{{i:04d}}", service_name="stratus",
                action_name="queryWeather", user_identity="someone", securable_type="table",
                securable_full_name="main.weather.hourly", request_params={{}},
                outcome="allowed", status_code=200, error_message=None,
                source_ip_address=None, user_agent=None))
        # no close(): the interpreter's clean exit must drain the queue (atexit)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    fresh = Stratus.from_settings(Settings(home=home))
    table = DeltaTable(fresh.lakehouse.url(AUDIT)).to_pyarrow_table()
    assert sorted(table["request_id"].to_pylist()) == [f"exit-{i:04d}" for i in range(120)]
    fresh.close()


# ---- GET /api/v1/audit ---------------------------------------------------------------------
WHO = f"audit-filter-{TAG}"
T = dt.datetime(2021, 3, 1, 10, 0, tzinfo=dt.UTC)
SEEDED = [  # request id, event time, action, outcome
    ("seed-1", T, "queryWeather", "allowed"),
    ("seed-2", dt.datetime(2021, 3, 1, 23, 59, 59, tzinfo=dt.UTC), "listCities", "allowed"),
    ("seed-3", dt.datetime(2021, 3, 2, 0, 0, 0, tzinfo=dt.UTC), "queryWeather", "denied"),
    ("seed-4", dt.datetime(2021, 3, 5, 12, 0, tzinfo=dt.UTC), "queryWeather", "allowed"),
    ("seed-5", dt.datetime(2021, 4, 1, 0, 0, tzinfo=dt.UTC), "summarizeWeather", "error"),
]


@pytest.fixture(scope="module")
def seeded(loaded_local: Stratus) -> None:
    log = loaded_local.governance.audit
    for request_id, when, action, outcome in SEEDED:
        log.record(
            record(
                f"{request_id}-{TAG}",
                when,
                user_identity=WHO,
                action_name=action,
                outcome=outcome,
                status_code={"allowed": 200, "denied": 403, "error": 400}[outcome],
            )
        )
    log.record(record(f"other-{TAG}", T, user_identity=f"{WHO}-not"))
    # no flush here: the endpoint itself must flush before it reads


def ids_of(body: dict[str, Any]) -> list[str]:
    return [r["request_id"].removesuffix(f"-{TAG}") for r in body["data"]]


FILTERS = {
    "principal": ("", ["seed-5", "seed-4", "seed-3", "seed-2", "seed-1"]),
    "action": ("&action=queryWeather", ["seed-4", "seed-3", "seed-1"]),
    "outcome": ("&outcome=denied", ["seed-3"]),
    "since date": ("&since=2021-03-02", ["seed-5", "seed-4", "seed-3"]),
    "until date is the whole day": ("&until=2021-03-01", ["seed-2", "seed-1"]),
    "since and until inclusive": (
        "&since=2021-03-01T23:59:59Z&until=2021-03-02T00:00:00Z",
        ["seed-3", "seed-2"],
    ),
    "offset": ("&since=2021-03-02T01:00:00%2B01:00&until=2021-03-05", ["seed-4", "seed-3"]),
    "naive is utc": ("&since=2021-03-01T10:00&until=2021-03-01T10:00:00.000000", ["seed-1"]),
    "fractional": ("&since=2021-03-01T23:59:58.5Z&until=2021-03-01T23:59:59.999Z", ["seed-2"]),
    "limit": ("&limit=2", ["seed-5", "seed-4"]),
    "everything": ("&action=queryWeather&outcome=allowed&since=2021-03-05&limit=5", ["seed-4"]),
    "nothing in range": ("&since=2022-01-01", []),
    "empty window": ("&since=2021-03-03&until=2021-03-04", []),
}


@pytest.mark.parametrize(("query", "expected"), FILTERS.values(), ids=FILTERS.keys())
def test_audit_api_filters(
    admin: FlaskClient, seeded: None, query: str, expected: list[str]
) -> None:
    resp = admin.get(f"/api/v1/audit?principal={WHO}{query}")
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert ids_of(body) == expected
    assert body["count"] == len(expected)
    doc = spec()
    schema = {**doc["components"]["schemas"]["AuditPage"], "components": doc["components"]}
    jsonschema.validate(body, schema, cls=jsonschema.Draft202012Validator)
    for row in body["data"]:
        assert row["user_identity"] == WHO
        assert row["request_params"] == {"city_id": [CITY]}
        assert dt.datetime.fromisoformat(row["event_time"]).tzinfo is not None


def test_audit_api_shows_the_callers_own_earlier_requests(
    admin: FlaskClient, loaded_local: Stratus
) -> None:
    loaded_local.governance.audit.flush()
    request_id = f"mine-{uuid.uuid4().hex}"
    resp = admin.get("/api/v1/cities?x=1", headers={"X-Request-Id": request_id})
    assert resp.status_code == 200
    resp = admin.get("/api/v1/audit?principal=admin&action=listCities&limit=3")
    assert resp.status_code == 200
    newest = resp.get_json()["data"][0]
    assert newest["request_id"] == request_id
    assert newest["request_params"] == {"x": ["1"]}
    # and the audit query itself is audited
    again = admin.get("/api/v1/audit?action=queryAuditLog&principal=admin&limit=1")
    latest = again.get_json()["data"][0]
    assert latest["request_id"] == resp.headers["X-Request-Id"]
    assert latest["securable_full_name"] == "system.access.audit"


def test_audit_api_newest_first_across_days(admin: FlaskClient, seeded: None) -> None:
    body = admin.get(f"/api/v1/audit?principal={WHO}&limit=10000").get_json()
    times = [r["event_time"] for r in body["data"]]
    assert times == sorted(times, reverse=True) and len(times) == 5


@pytest.mark.parametrize(
    "query",
    [
        "",
        f"?principal={WHO}",
        "?limit=0",  # bad parameters too: a non-admin learns nothing about them
        "?nonsense=1",
    ],
)
@pytest.mark.parametrize("who", [READER, NO_SELECT, NOBODY])
def test_audit_api_is_for_admins_only(
    app: Flask, loaded_local: Stratus, tokens: dict[str, str], seeded: None, who: str, query: str
) -> None:
    resp = client_for(app, tokens[who]).get(f"/api/v1/audit{query}")
    assert resp.status_code == 403
    body = resp.get_json()
    assert "metastore admin" in body["detail"] and body["error_code"] == "PERMISSION_DENIED"
    assert "data" not in body and "parameter" not in body
    assert WHO not in resp.get_data(as_text=True)
    (row,) = rows_for(loaded_local, resp.headers["X-Request-Id"])
    assert row["action_name"] == "queryAuditLog" and row["outcome"] == "denied"
    assert row["user_identity"] == who and row["status_code"] == 403


BAD = [
    ("limit=0", "limit"),
    ("limit=10001", "limit"),
    ("limit=ten", "limit"),
    ("since=yesterday", "since"),
    ("since=2021-02-30", "since"),
    ("since=2021-3-1", "since"),
    ("since=2021-03-01T25:00", "since"),
    ("since=2021-03-01 10:00", "since"),
    ("until=2021-03-01T10:00:00+01:00", "until"),  # unencoded '+' arrives as a space
    ("since=1614592800", "since"),
    ("since=2021-03-02&until=2021-03-01", "until"),
    ("since=2021-03-01T10:00Z&until=2021-03-01T09:59:59Z", "until"),
    ("outcome=maybe", "outcome"),
    ("principal=", "principal"),
    ("action=%20", "action"),
    ("principal=" + "p" * 256, "principal"),
    ("nonsense=1", "nonsense"),
    ("user=admin", "user"),
]


@pytest.mark.parametrize(("query", "parameter"), BAD, ids=[b[0][:40] for b in BAD])
def test_audit_api_bad_parameters_are_400(admin: FlaskClient, query: str, parameter: str) -> None:
    resp = admin.get(f"/api/v1/audit?{query}")
    assert resp.status_code == 400
    body = resp.get_json()
    assert resp.headers["Content-Type"] == "application/problem+json"
    assert body["parameter"] == parameter
    assert parameter in body["detail"]


def test_audit_api_on_an_empty_lakehouse(local: Stratus) -> None:
    client = client_for(create_app(stratus=local), token_for(local))
    resp = client.get("/api/v1/audit")
    assert resp.status_code == 200 and resp.get_json() == {"count": 0, "data": []}
    assert client.get("/api/v1/audit?since=2021-03-01&until=2021-03-02").get_json()["count"] == 0
