"""Ingest on local disk and on Azurite: validation, quarantine, upsert, idempotence, atomicity."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from stratus.catalog import registry
from stratus.context import Stratus
from stratus.engine import TableScan
from stratus.ingest.readers import IngestInputError
from stratus.lakehouse.storage import StorageError

HEADER = "city_id,date,hour,temp,wind_speed,description,precipitation,humidity\n"
GOOD = [
    "oslo,2024-01-01,0100,-3.5,4.2,light snow,0.3,85",
    "oslo,2024-01-01,0200,-3.9,4.0,overcast clouds,,86",
    "oslo,2024-01-01,2400,-5.0,3.1,clear sky,0,80",
    "bergen,2024-01-01,0100,2.0,9.5,rain,2.1,95",
]
BAD = [
    "oslo,2024-01-01,2500,1,1,x,0,50",  # hour out of range
    "oslo,2024-02-30,0100,1,1,x,0,50",  # not a calendar date
    "oslo,2024-01-02,0100,warm,1,x,0,50",  # temp not a number
    "oslo,2024-01-02,0200,1,468.5,x,0,50",  # wind beyond any record
    ",2024-01-02,0300,1,1,x,0,50",  # missing city
    "oslo,2024-01-02,0400,1,1,x,0,170",  # humidity > 100
]


def write_csv(path: Path, lines: list[str]) -> Path:
    path.write_text(HEADER + "\n".join(lines) + "\n")
    return path


def all_rows(stratus: Stratus, spec: registry.TableSpec = registry.HOURLY) -> list[dict]:
    scan = TableScan(spec, stratus.lakehouse.prune(spec))
    table = stratus.engine.query("SELECT * FROM {t}", {"t": scan})
    key = [k for k in spec.key if k in table.column_names]
    return sorted(table.to_pylist(), key=lambda r: tuple(str(r[k]) for k in key))


def test_ingest_validates_quarantines_and_counts(backend: Stratus, tmp_path: Path) -> None:
    src = write_csv(tmp_path / "obs.csv", GOOD + BAD + [GOOD[0]])  # GOOD[0] twice
    report = backend.ingest.ingest(src)
    assert report.read == len(GOOD) + len(BAD) + 1
    assert report.quarantined == len(BAD)
    assert report.duplicates == 1
    assert report.inserted == len(GOOD) and report.written == len(GOOD)
    assert report.new_cities == ["bergen", "oslo"]

    rows = all_rows(backend)
    assert len(rows) == len(GOOD)
    midnight = next(r for r in rows if r["hour"] == "2400")
    assert midnight["date"] == dt.date(2024, 1, 1)
    assert midnight["ts"] == dt.datetime(2024, 1, 2, 0, 0)
    assert next(r for r in rows if r["hour"] == "0200")["precipitation"] is None

    quarantine = all_rows(backend, registry.QUARANTINE)
    reasons = {q["record"]: q["reason"] for q in quarantine}
    assert len(quarantine) == len(BAD)
    assert reasons[5].startswith("hour: 2500")
    assert reasons[6].startswith("date: 2024-02-30")
    assert reasons[7] == "temp: warm is not a number"
    assert "wind_speed: 468.5 is outside" in reasons[8]
    assert reasons[9] == "city_id: missing"
    assert reasons[10].startswith("humidity: 170")
    raw = json.loads(quarantine[0]["raw"])
    assert set(raw) == set(HEADER.strip().split(","))


def test_reingest_changes_nothing_and_updates_changed_rows(
    backend: Stratus, tmp_path: Path
) -> None:
    src = write_csv(tmp_path / "obs.csv", GOOD + BAD)
    first = backend.ingest.ingest(src)
    hourly_v = backend.lakehouse.version(registry.HOURLY)
    quarantine_v = backend.lakehouse.version(registry.QUARANTINE)

    again = backend.ingest.ingest(src)
    assert again.written == 0 and again.unchanged == first.written
    assert again.version is None
    assert backend.lakehouse.version(registry.HOURLY) == hourly_v
    assert backend.lakehouse.version(registry.QUARANTINE) == quarantine_v
    assert len(all_rows(backend, registry.QUARANTINE)) == len(BAD)

    changed = write_csv(tmp_path / "fix.csv", [GOOD[0].replace("-3.5", "-3.6"), GOOD[3]])
    fix = backend.ingest.ingest(changed)
    assert (fix.inserted, fix.updated, fix.unchanged) == (0, 1, 1)
    rows = all_rows(backend)
    assert len(rows) == len(GOOD)
    assert [r["temp"] for r in rows if r["city_id"] == "oslo" and r["hour"] == "0100"] == [-3.6]


def test_parquet_jsonl_and_open_meteo(backend: Stratus, tmp_path: Path) -> None:
    pq.write_table(
        pa.table(
            {
                "city_id": ["rome", "rome"],
                "date": [dt.date(2023, 7, 1), dt.date(2023, 7, 1)],
                "hour": [100, 200],  # integers are accepted and zero-padded
                "temp": [24.5, 23.9],
                "wind_speed": [1.0, None],
                "description": ["clear sky", "clear sky"],
                "precipitation": [0.0, 0.0],
                "humidity": [60, 62],
            }
        ),
        tmp_path / "rome.parquet",
    )
    report = backend.ingest.ingest(tmp_path / "rome.parquet")
    assert (report.format, report.inserted, report.quarantined) == ("parquet", 2, 0)

    lines = [
        {"city_id": "rome", "date": "2023-07-01", "hour": "0300", "temp": 23.1},
        "not json",
        {"city_id": "rome", "date": "2023-07-01", "hour": "0400", "temp": None},
    ]
    (tmp_path / "rome.jsonl").write_text(
        "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n"
    )
    report = backend.ingest.ingest(tmp_path / "rome.jsonl")
    assert (report.format, report.inserted, report.quarantined) == ("jsonl", 1, 2)
    reasons = sorted(q["reason"] for q in all_rows(backend, registry.QUARANTINE))
    assert reasons == ["record: not a JSON object", "temp: missing"]

    meteo = {
        "latitude": 59.9,
        "longitude": 10.75,
        "utc_offset_seconds": 3600,
        "timezone": "Europe/Oslo",
        "hourly_units": {"temperature_2m": "°C", "wind_speed_10m": "km/h", "precipitation": "mm"},
        "hourly": {
            "time": ["2023-01-01T00:00", "2023-01-01T01:00"],
            "temperature_2m": [-1.0, -1.5],
            "relative_humidity_2m": [90, 91],
            "precipitation": [0.0, 1.2],
            "wind_speed_10m": [36.0, 18.0],
            "weather_code": [3, 71],
        },
    }
    (tmp_path / "oslo.json").write_text(json.dumps(meteo))
    with pytest.raises(IngestInputError, match="--city-id"):
        backend.ingest.ingest(tmp_path / "oslo.json")
    report = backend.ingest.ingest(tmp_path / "oslo.json", city_id="oslo-om")
    assert (report.format, report.inserted) == ("open-meteo", 2)
    rows = [r for r in all_rows(backend) if r["city_id"] == "oslo-om"]
    assert [r["wind_speed"] for r in rows] == [10.0, 5.0]  # km/h -> m/s
    assert [r["hour"] for r in rows] == ["0000", "0100"]
    assert rows[0]["description"] == "overcast"
    city = next(c for c in all_rows(backend, registry.CITIES) if c["city_id"] == "oslo-om")
    assert (city["latitude"], city["timezone"]) == (59.9, "Europe/Oslo")


def test_bad_files_are_rejected_whole(local: Stratus, tmp_path: Path) -> None:
    (tmp_path / "short.csv").write_text("city_id,date,temp\nx,2024-01-01,1\n")
    with pytest.raises(IngestInputError, match="missing column"):
        local.ingest.ingest(tmp_path / "short.csv")
    (tmp_path / "data.xlsx").write_bytes(b"PK")
    with pytest.raises(IngestInputError, match="format"):
        local.ingest.ingest(tmp_path / "data.xlsx")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(IngestInputError, match="Parquet"):
        local.ingest.ingest(tmp_path / "broken.parquet")
    with pytest.raises(IngestInputError, match="no such file"):
        local.ingest.ingest(tmp_path / "missing.csv")
    assert local.lakehouse.version(registry.HOURLY) is None


def test_failed_commit_leaves_table_as_it_was(
    backend: Stratus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend.ingest.ingest(write_csv(tmp_path / "a.csv", GOOD))
    before_version = backend.lakehouse.version(registry.HOURLY)
    before_rows = all_rows(backend)

    # A storage fault in the middle of the MERGE (cannot be caused on demand otherwise).
    real_merge = DeltaTable.merge

    def failing_merge(self: DeltaTable, *args: object, **kwargs: object) -> object:
        merger = real_merge(self, *args, **kwargs)

        class Exploding:
            def __getattr__(self, name: str) -> object:
                attr = getattr(merger, name)
                if name == "execute":

                    def boom() -> None:
                        raise OSError("disk went away mid-commit")

                    return boom
                if callable(attr):
                    return lambda *a, **k: (attr(*a, **k), self)[1]
                return attr

        return Exploding()

    monkeypatch.setattr(DeltaTable, "merge", failing_merge)
    changed = [line.replace(",4.2,", ",7.7,") for line in GOOD] + ["oslo,2024-03-01,0100,1,1,x,0,5"]
    with pytest.raises(StorageError, match="mid-commit"):  # an I/O failure: 503 in the API
        backend.ingest.ingest(write_csv(tmp_path / "b.csv", changed))
    monkeypatch.undo()
    backend.lakehouse.invalidate(registry.HOURLY)
    assert backend.lakehouse.version(registry.HOURLY) == before_version
    assert all_rows(backend) == before_rows


def test_progress_reports_every_byte(local: Stratus, tmp_path: Path) -> None:
    src = write_csv(tmp_path / "p.csv", GOOD)
    seen: list[int] = []
    local.ingest.ingest(src, on_progress=seen.append)
    assert sum(seen) == src.stat().st_size


def test_cities_ingest_validates_timezones(local: Stratus, tmp_path: Path) -> None:
    (tmp_path / "c.csv").write_text(
        "city_id,name,latitude,longitude,timezone,source\n"
        "oslo,Oslo,59.91,10.75,Europe/Oslo,test\n"
        "mars,Mars,95,10,Mars/Olympus,test\n"
    )
    report = local.ingest.ingest(tmp_path / "c.csv", "cities")
    assert (report.inserted, report.quarantined) == (1, 1)
    reason = all_rows(local, registry.QUARANTINE)[0]["reason"]
    assert "latitude: 95" in reason and "timezone: Mars/Olympus" in reason
