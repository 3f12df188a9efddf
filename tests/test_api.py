"""The query API over the real sample data, on local disk and on Azurite."""

from __future__ import annotations

import csv
import datetime as dt
import io
import statistics
from collections import Counter
from pathlib import Path

import jsonschema
import pyarrow.parquet as pq
import pytest
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from stratus.api import create_app
from stratus.api.openapi import spec
from stratus.context import Stratus
from stratus.weather.schema import HOURLY_FIELDS
from tests.conftest import client_for, token_for

CITY = "greensboro"


@pytest.fixture(scope="module")
def client(loaded: Stratus) -> FlaskClient:
    return client_for(create_app(stratus=loaded), token_for(loaded))


@pytest.fixture(scope="module")
def source_rows(sample_csv: Path) -> list[dict[str, str]]:
    with sample_csv.open() as fh:
        return list(csv.DictReader(fh))


def conforms(payload: object, schema_name: str) -> None:
    """Validate a response body against the component schema of our own OpenAPI document."""
    doc = spec()
    schema = {**doc["components"]["schemas"][schema_name], "components": doc["components"]}
    jsonschema.validate(payload, schema, cls=jsonschema.Draft202012Validator)


def test_openapi_document_is_valid_and_served(client: FlaskClient) -> None:
    doc = client.get("/openapi.json").get_json()
    validate(doc)
    assert {"/api/v1/weather", "/api/v1/weather/summary", "/api/v1/cities"} <= set(doc["paths"])
    page = client.get("/docs")
    assert page.status_code == 200 and b"swagger-ui" in page.data
    js = client.get("/docs/static/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.data) > 100_000


def test_health_and_version(client: FlaskClient, loaded: Stratus) -> None:
    health = client.get("/health").get_json()
    assert health == {"status": "ok", "storage": loaded.storage.scheme}
    conforms(client.get("/version").get_json(), "Version")


def test_cities_have_counts_and_spans(client: FlaskClient, source_rows: list[dict]) -> None:
    body = client.get("/api/v1/cities").get_json()
    conforms(body, "CityList")
    by_id = {c["city_id"]: c for c in body["data"]}
    assert len(by_id) == 6
    gso = by_id[CITY]
    rows = [r for r in source_rows if r["city_id"] == CITY]
    assert gso["rows"] == len(rows)  # every Greensboro row is valid
    assert gso["first_date"] == min(r["date"] for r in rows)
    assert gso["last_date"] == max(r["date"] for r in rows)
    assert gso["timezone"] == "America/New_York" and gso["latitude"] == pytest.approx(36.1)
    # EWR has a quarantined row (the 1048 mph wind and a missing temperature)
    ewr_source = sum(1 for r in source_rows if r["city_id"] == "newark-ewr")
    assert 0 < by_id["newark-ewr"]["rows"] < ewr_source


def test_hourly_range_is_inclusive_sorted_and_exact(
    client: FlaskClient, source_rows: list[dict]
) -> None:
    first = min(r["date"] for r in source_rows if r["city_id"] == CITY)
    start = dt.date.fromisoformat(first) + dt.timedelta(days=10)
    end = start + dt.timedelta(days=6)
    resp = client.get(f"/api/v1/weather?city_id={CITY}&start={start}&end={end}")
    assert resp.status_code == 200
    body = resp.get_json()
    conforms(body, "WeatherPage")
    expected = [
        r for r in source_rows if r["city_id"] == CITY and str(start) <= r["date"] <= str(end)
    ]
    assert body["count"] == len(expected) == 7 * 24
    assert [r["ts"] for r in body["data"]] == sorted(r["ts"] for r in body["data"])
    assert {r["date"] for r in body["data"]} == {str(start + dt.timedelta(d)) for d in range(7)}
    got = {(r["date"], r["hour"]): r["temp"] for r in body["data"]}
    assert got == {(r["date"], r["hour"]): float(r["temp"]) for r in expected}
    assert body["next_cursor"] is None


def test_fields_and_multiple_cities(client: FlaskClient) -> None:
    resp = client.get(
        "/api/v1/weather?city_id=newark-ewr&city_id=new-york-jfk,new-york-lga"
        "&start=2013-07-01&end=2013-07-01&fields=temp,humidity"
    )
    body = resp.get_json()
    assert resp.status_code == 200, body
    assert set(body["data"][0]) == {"temp", "humidity"}
    assert body["city_ids"] == ["newark-ewr", "new-york-jfk", "new-york-lga"]
    assert 60 <= body["count"] <= 72


def test_cursor_paging_returns_every_row_once(client: FlaskClient) -> None:
    url = "/api/v1/weather?city_id=newark-ewr,new-york-jfk&start=2013-03-01&end=2013-03-03"
    whole = client.get(url).get_json()["data"]
    pages, cursor = [], None
    while True:
        page = client.get(url + "&limit=25" + (f"&cursor={cursor}" if cursor else "")).get_json()
        assert page["count"] <= 25
        pages += page["data"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert pages == whole and len(whole) > 100


def test_csv_and_parquet_formats(client: FlaskClient) -> None:
    base = f"/api/v1/weather?city_id={CITY}&start=1970-01-01&end=2030-12-31&limit=100"
    as_json = client.get(base).get_json()
    csv_resp = client.get(base + "&format=csv")
    assert csv_resp.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(csv_resp.data.decode())))
    assert len(rows) == 100 and rows[0]["city_id"] == CITY
    assert csv_resp.headers["X-Next-Cursor"] == as_json["next_cursor"]
    pq_resp = client.get(base + "&format=parquet")
    table = pq.read_table(io.BytesIO(pq_resp.data))
    assert table.num_rows == 100 and table.column_names == list(HOURLY_FIELDS)
    assert table.column("temp").to_pylist() == [r["temp"] for r in as_json["data"]]


def test_monthly_summary_matches_source(client: FlaskClient, source_rows: list[dict]) -> None:
    month = sorted({r["date"][:7] for r in source_rows if r["city_id"] == CITY})[5]
    rows = [r for r in source_rows if r["city_id"] == CITY and r["date"].startswith(month)]
    start, end = f"{month}-01", max(r["date"] for r in rows)
    resp = client.get(
        f"/api/v1/weather/summary?city_id={CITY}&start={start}&end={end}&granularity=month"
    )
    body = resp.get_json()
    assert resp.status_code == 200, body
    conforms(body, "SummaryPage")
    (got,) = body["data"]
    temps = [float(r["temp"]) for r in rows]
    assert got["period"] == start
    assert got["hours_observed"] == len(rows)
    assert (got["temp_min"], got["temp_max"]) == (min(temps), max(temps))
    assert got["temp_mean"] == pytest.approx(statistics.fmean(temps), abs=0.01)
    precip = [float(r["precipitation"]) for r in rows if r["precipitation"]]
    assert got["precipitation_total"] == pytest.approx(sum(precip), abs=0.01)
    counts = Counter(r["description"] for r in rows if r["description"])
    top = max(counts.values())
    assert got["description_most_frequent"] == min(d for d, n in counts.items() if n == top)
    assert got["wind_speed_max"] == max(float(r["wind_speed"]) for r in rows)


def test_daily_summary_has_null_precipitation_where_source_has_none(
    client: FlaskClient,
) -> None:
    miami = client.get("/api/v1/cities").get_json()["data"]
    first = next(c for c in miami if c["city_id"] == "miami")["first_date"]
    body = client.get(
        f"/api/v1/weather/summary?city_id=miami&start={first}&end={first}&granularity=day"
    ).get_json()
    (day,) = body["data"]
    assert day["precipitation_total"] is None and day["hours_observed"] == 24


BAD_REQUESTS = [
    ("city_id=nowhere&start=2013-01-01&end=2013-01-02", 404, "city_id"),
    ("city_id=greensboro&start=2013-01-05&end=2013-01-02", 400, "end"),
    ("city_id=greensboro&start=2013-1-5&end=2013-01-06", 400, "start"),
    ("city_id=greensboro&start=2013-02-30&end=2013-03-01", 400, "start"),
    ("city_id=greensboro&start=2013-01-01", 400, "end"),
    ("start=2013-01-01&end=2013-01-02", 400, "city_id"),
    ("city_id=bad%20id!&start=2013-01-01&end=2013-01-02", 400, "city_id"),
    ("city_id=greensboro&start=2013-01-01&end=2013-01-02&fields=temp,pressure", 400, "fields"),
    ("city_id=greensboro&start=2013-01-01&end=2013-01-02&limit=0", 400, "limit"),
    ("city_id=greensboro&start=2013-01-01&end=2013-01-02&limit=999999999", 400, "limit"),
    ("city_id=greensboro&start=2013-01-01&end=2013-01-02&limit=ten", 400, "limit"),
    ("city_id=greensboro&start=2013-01-01&end=2013-01-02&format=xml", 400, "format"),
    ("city_id=greensboro&start=2013-01-01&end=2013-01-02&cursor=garbage", 400, "cursor"),
    ("city_id=greensboro&start=2013-01-01&end=2013-01-02&colour=red", 400, "colour"),
]


@pytest.mark.parametrize(("query", "status", "parameter"), BAD_REQUESTS)
def test_bad_input_is_a_problem_document_naming_the_parameter(
    client: FlaskClient, query: str, status: int, parameter: str
) -> None:
    resp = client.get(f"/api/v1/weather?{query}")
    assert resp.status_code == status
    assert resp.mimetype == "application/problem+json"
    body = resp.get_json()
    conforms(body, "Problem")
    assert body["status"] == status and body["parameter"] == parameter
    assert parameter in body["detail"]


def test_summary_rejects_unknown_granularity(client: FlaskClient) -> None:
    resp = client.get(
        "/api/v1/weather/summary?city_id=greensboro&start=2013-01-01&end=2013-01-02"
        "&granularity=week"
    )
    assert resp.status_code == 400 and resp.get_json()["parameter"] == "granularity"


def test_unknown_route_and_method_are_problems(client: FlaskClient) -> None:
    for resp, status in (
        (client.get("/api/v1/nothing"), 404),
        (client.post("/api/v1/weather"), 405),
    ):
        assert resp.status_code == status
        assert resp.mimetype == "application/problem+json"
        conforms(resp.get_json(), "Problem")
