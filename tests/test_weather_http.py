"""What an HTTP data API's clients expect from /weather: compression, ETag/304, streamed large
pages, JSON encoded from columns exactly as orjson would, and every governance check on the hot
path (authentication, authorization, audit) before any of it."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import math
import zlib
from collections.abc import Iterator
from pathlib import Path

import orjson
import pyarrow as pa
import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import given, settings
from hypothesis import strategies as st

from stratus.api import create_app
from stratus.api.encoding import STREAM_ROWS, json_body, json_rows
from stratus.catalog import registry
from stratus.config import Settings
from stratus.context import Stratus
from tests.conftest import _load, client_for, token_for
from tests.test_auth import audit_row, grant

CITY = "new-york-jfk"
WEEK = f"/api/v1/weather?city_id={CITY}&start=2013-06-01&end=2013-06-07"
YEAR_3 = (
    "/api/v1/weather?city_id=new-york-jfk,newark-ewr,greensboro"
    "&start=2013-01-01&end=2013-12-31&limit=15000"
)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory, sample_csv: Path) -> Iterator[Stratus]:
    home = tmp_path_factory.mktemp("weather-http") / "home"
    stratus = _load(Stratus.from_settings(Settings(home=home)), sample_csv)
    yield stratus
    stratus.close()


@pytest.fixture(scope="module")
def app(lake: Stratus) -> Flask:
    return create_app(stratus=lake)


@pytest.fixture(scope="module")
def client(app: Flask, lake: Stratus) -> FlaskClient:
    return client_for(app, token_for(lake))


# ---- compression ----------------------------------------------------------------------------
def test_gzip_when_asked(client: FlaskClient) -> None:
    plain = client.get(WEEK)
    zipped = client.get(WEEK, headers={"Accept-Encoding": "gzip, deflate, br"})
    assert "Content-Encoding" not in plain.headers
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert (
        "Accept-Encoding" in zipped.headers["Vary"] and "Accept-Encoding" in plain.headers["Vary"]
    )
    body = gzip.decompress(zipped.get_data())
    assert body == plain.get_data()
    assert len(zipped.get_data()) < len(body) / 3


def test_deflate_and_q_values(client: FlaskClient) -> None:
    resp = client.get(WEEK, headers={"Accept-Encoding": "gzip;q=0, deflate"})
    assert resp.headers["Content-Encoding"] == "deflate"
    assert orjson.loads(zlib.decompress(resp.get_data()))["count"] == 7 * 24
    resp = client.get(WEEK, headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in resp.headers


def test_small_answers_and_parquet_are_not_compressed(client: FlaskClient) -> None:
    small = client.get(WEEK + "&limit=1&fields=temp", headers={"Accept-Encoding": "gzip"})
    assert small.status_code == 200 and "Content-Encoding" not in small.headers
    parquet = client.get(WEEK + "&format=parquet", headers={"Accept-Encoding": "gzip"})
    assert parquet.status_code == 200 and "Content-Encoding" not in parquet.headers
    csv_ = client.get(WEEK + "&format=csv", headers={"Accept-Encoding": "gzip"})
    assert csv_.headers["Content-Encoding"] == "gzip"
    rows = list(csv.DictReader(io.StringIO(gzip.decompress(csv_.get_data()).decode())))
    assert len(rows) == 7 * 24


# ---- ETag / 304 -----------------------------------------------------------------------------
def test_etag_and_304(client: FlaskClient, lake: Stratus) -> None:
    first = client.get(WEEK)
    etag = first.headers["ETag"]
    assert etag.startswith('W/"')
    again = client.get(WEEK, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.get_data() == b"" and again.headers["ETag"] == etag
    audited = audit_row(lake, again.headers["X-Request-Id"])
    assert audited["status_code"] == 304 and audited["action_name"] == "queryWeather"
    assert client.get(WEEK, headers={"If-None-Match": '"other", ' + etag}).status_code == 304
    # another query, format or summary: another tag
    assert client.get(WEEK + "&format=csv").headers["ETag"] != etag
    assert client.get(WEEK + "&fields=temp", headers={"If-None-Match": etag}).status_code == 200
    summary = client.get(WEEK.replace("/weather?", "/weather/summary?"))
    assert summary.headers["ETag"] not in (etag, None)
    assert (
        client.get(
            WEEK.replace("/weather?", "/weather/summary?"),
            headers={"If-None-Match": summary.headers["ETag"]},
        ).status_code
        == 304
    )


def test_openapi_documents_etag_and_304(client: FlaskClient) -> None:
    doc = client.get("/openapi.json").get_json()
    for path in ("/api/v1/weather", "/api/v1/weather/summary"):
        op = doc["paths"][path]["get"]
        assert "ETag" in op["responses"]["200"]["headers"], path
        assert "ETag" in op["responses"]["304"]["headers"], path
        assert "content" not in op["responses"]["304"], path
        header = [q for q in op["parameters"] if q["in"] == "header"]
        assert [q["name"] for q in header] == ["If-None-Match"], path


def test_etag_changes_with_a_new_table_version(tmp_path: Path, sample_csv: Path) -> None:
    stratus = _load(Stratus.from_settings(Settings(home=tmp_path / "home")), sample_csv)
    try:
        client = client_for(create_app(stratus=stratus), token_for(stratus))
        etag = client.get(WEEK).headers["ETag"]
        row = stratus.lakehouse.table(registry.HOURLY).to_pyarrow_table().slice(0, 1)
        stratus.lakehouse.append(registry.HOURLY, row.set_column(0, "city_id", pa.array(["x-new"])))
        resp = client.get(WEEK, headers={"If-None-Match": etag})
        assert resp.status_code == 200 and resp.headers["ETag"] != etag
    finally:
        stratus.close()


def test_304_only_after_authentication_and_authorization(app: Flask, lake: Stratus) -> None:
    admin = client_for(app, token_for(lake))
    etag = admin.get(WEEK).headers["ETag"]
    assert app.test_client().get(WEEK, headers={"If-None-Match": "*"}).status_code == 401
    ms = lake.governance.metastore
    ms.create_principal("no-select@example.com")
    nobody = client_for(app, token_for(lake, "no-select@example.com"))
    resp = nobody.get(WEEK, headers={"If-None-Match": etag})
    assert resp.status_code == 404  # the table is invisible to them: no 304, no data
    # the tag is per caller: a reader's tag differs from the admin's
    ms.create_principal("reader@example.com")
    grant(lake, "catalog", "main", "reader@example.com", "USE CATALOG")
    grant(lake, "schema", "main.weather", "reader@example.com", "USE SCHEMA")
    grant(lake, "table", "main.weather.hourly", "reader@example.com", "SELECT")
    grant(lake, "table", "main.weather.cities", "reader@example.com", "SELECT")
    reader = client_for(app, token_for(lake, "reader@example.com"))
    assert reader.get(WEEK, headers={"If-None-Match": etag}).status_code == 200


# ---- governance on the hot path --------------------------------------------------------------
def test_hot_path_serves_only_after_authorization(app: Flask, lake: Stratus) -> None:
    fast = lake.weather.fast
    ms = lake.governance.metastore
    ms.create_principal("outsider@example.com")
    ms.create_principal("schema-only@example.com")
    grant(lake, "catalog", "main", "schema-only@example.com", "USE CATALOG")
    grant(lake, "schema", "main.weather", "schema-only@example.com", "USE SCHEMA")
    before = fast.answered
    for who, status in (("outsider@example.com", 404), ("schema-only@example.com", 403)):
        resp = client_for(app, token_for(lake, who)).get(WEEK)
        assert resp.status_code == status
        assert audit_row(lake, resp.headers["X-Request-Id"])["outcome"] == "denied"
    assert fast.answered == before  # nothing was read for them
    grant(lake, "table", "main.weather.hourly", "schema-only@example.com", "SELECT")
    resp = client_for(app, token_for(lake, "schema-only@example.com")).get(WEEK)
    assert resp.status_code == 200 and resp.get_json()["count"] == 7 * 24
    assert fast.answered == before + 1
    assert audit_row(lake, resp.headers["X-Request-Id"])["outcome"] == "allowed"


# ---- streamed large pages -------------------------------------------------------------------
def test_large_pages_are_streamed_and_equal_to_small_pages(client: FlaskClient) -> None:
    resp = client.get(YEAR_3)
    assert resp.status_code == 200 and resp.is_streamed
    body = resp.get_json()
    assert body["count"] == len(body["data"]) == 15000 > STREAM_ROWS
    # the same rows as pages small enough to be built whole
    rows, cursor = [], None
    url = YEAR_3.replace("limit=15000", "limit=5000")
    while len(rows) < 15000:
        page = client.get(url + (f"&cursor={cursor}" if cursor else "")).get_json()
        rows += page["data"]
        cursor = page["next_cursor"]
    assert body["data"] == rows
    assert body["next_cursor"] == cursor
    zipped = client.get(YEAR_3, headers={"Accept-Encoding": "gzip"})
    assert zipped.is_streamed and zipped.headers["Content-Encoding"] == "gzip"
    assert orjson.loads(gzip.decompress(zipped.get_data())) == body
    streamed_csv = client.get(YEAR_3 + "&format=csv")
    assert streamed_csv.is_streamed
    lines = streamed_csv.get_data(as_text=True).splitlines()
    assert len(lines) == 15001 and lines[0].startswith('"city_id","date"')
    assert sum(line.startswith('"city_id"') for line in lines) == 1  # one header
    key = ("city_id", "date", "hour")
    assert [tuple(r[k] for k in key) for r in csv.DictReader(lines)] == [
        tuple(r[k] for k in key) for r in rows
    ]


# ---- JSON from columns ----------------------------------------------------------------------
def _old(table: pa.Table, envelope: dict) -> bytes:
    return orjson.dumps({**envelope, "count": table.num_rows, "data": json_rows(table)})


def test_columnar_json_is_orjsons_text_for_every_type() -> None:
    import decimal

    t = pa.table(
        {
            "i": [1, None, -3],
            "f": [1.0, None, float("nan")],
            "s": ["x", 'q"\n\\', None],
            "d": [dt.date(2024, 1, 1), None, dt.date(1, 1, 1)],
            "ts": pa.array(
                [dt.datetime(2024, 1, 1, 1), dt.datetime(2024, 1, 1, 1, 0, 0, 5), None],
                pa.timestamp("us"),
            ),
            "b": [True, False, None],
            "dec": pa.array([decimal.Decimal("1.10"), None, decimal.Decimal("2")]),
            "bin": [b"x", None, b"\x00"],
            "tz": pa.array([dt.datetime(2024, 1, 1, tzinfo=dt.UTC)] * 3, pa.timestamp("us", "UTC")),
            "list": pa.array([[1], [2, 3], None]),
            "f32": pa.array([1.1, None, 3.5], pa.float32()),
            "u8": pa.array([1, 2, 255], pa.uint8()),
        }
    )
    assert json_body(t, {"k": 1}) == _old(t, {"k": 1})
    empty = t.slice(0, 0)
    assert json_body(empty, {}) == _old(empty, {})


def test_nanosecond_timestamps_are_json_with_all_their_digits() -> None:
    stamps = [1_000_000_000_123_456_789, None, 1_000_000_000_000_000_000]
    t = pa.table(
        {
            "ts": pa.array(stamps, pa.timestamp("ns")),
            "utc": pa.array(stamps, pa.timestamp("ns", "UTC")),
            "ny": pa.array(stamps, pa.timestamp("ns", "America/New_York")),
        }
    )
    rows = json_rows(t)  # crashed on pandas Timestamp values before
    assert rows[0] == {
        "ts": "2001-09-09T01:46:40.123456789",
        "utc": "2001-09-09T01:46:40.123456789+00:00",
        "ny": "2001-09-08T21:46:40.123456789-04:00",
    }
    assert rows[1] == {"ts": None, "utc": None, "ny": None}
    # a whole second: shaped like a microsecond timestamp's JSON (orjson's datetime text)
    whole = dt.datetime(2001, 9, 9, 1, 46, 40, tzinfo=dt.UTC)
    micro = pa.table({"utc": pa.array([whole], pa.timestamp("us", "UTC"))})
    assert rows[2]["utc"] == orjson.loads(orjson.dumps(json_rows(micro)))[0]["utc"]
    assert rows[2]["ts"] == "2001-09-09T01:46:40"
    assert orjson.loads(json_body(t, {}))["data"] == rows


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.floats()),
            st.one_of(st.none(), st.text()),
            st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
            st.one_of(st.none(), st.datetimes(min_value=dt.datetime(1000, 1, 1))),
            st.one_of(st.none(), st.dates(min_value=dt.date(1000, 1, 1))),
        ),
        max_size=30,
    )
)
def test_columnar_json_matches_orjson_on_random_values(values: list[tuple]) -> None:
    cols = list(zip(*values, strict=True)) if values else [[]] * 5
    t = pa.table(
        {
            "f": pa.array(cols[0], pa.float64()),
            "s": pa.array(cols[1], pa.string()),
            "i": pa.array(cols[2], pa.int64()),
            "ts": pa.array(cols[3], pa.timestamp("us")),
            "d": pa.array(cols[4], pa.date32()),
        }
    )
    new = json_body(t, {})
    assert new == _old(t, {})
    parsed = orjson.loads(new)["data"]
    for row, f in zip(parsed, cols[0], strict=True):
        assert row["f"] == (None if f is None or not math.isfinite(f) else f)


def test_default_rate_limit_counters_are_the_quiet_memory_storage(app: Flask) -> None:
    from stratus.api.security import EXTENSION, FAST_EXTENSION, QuietMemoryStorage

    assert isinstance(app.extensions[EXTENSION].limiter.storage, QuietMemoryStorage)
    assert app.extensions[FAST_EXTENSION].strategy is app.extensions[EXTENSION].limiter


def test_rate_limit_storage_down_lets_requests_through(
    tmp_path: Path, sample_csv: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.conftest import free_port

    settings = Settings(
        home=tmp_path / "home", rate_limit_storage=f"redis://127.0.0.1:{free_port()}"
    )
    stratus = _load(Stratus.from_settings(settings), sample_csv)
    try:
        client = client_for(create_app(stratus=stratus), token_for(stratus))
        resp = client.get(WEEK)  # nothing listens there: logged, and the request is served
        assert resp.status_code == 200 and resp.get_json()["count"] == 7 * 24
        assert "rate limit check failed" in caplog.text
    finally:
        stratus.close()
