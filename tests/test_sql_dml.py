"""MERGE / UPDATE / DELETE, views, time travel and OPTIMIZE / VACUUM through POST /api/v1/sql.

The Databricks-style script ``examples/weather_corrections.sql`` runs statement by statement
over the sample weather data; after each step the test checks the rows, the lineage events,
the grants and the PII masks. Other tests cover PII columns under DML (encrypted writes, WHERE
through equality tokens), refusals (400 naming the construct), a failure injected while
delta-rs writes a MERGE (nothing changes), VACUUM's 7-day check and CREATE OR REPLACE.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from stratus.config import Settings
from stratus.context import Stratus
from stratus.lakehouse import operations as ops
from stratus.sql.parse import split_statements
from tests.conftest import _load
from tests.test_sql import Lake, _with_sink, files_contain

pytestmark = pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result")
ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "weather_corrections.sql"
HOURLY = "main.weather.hourly"
PEOPLE = "main.hr.people"


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory, sample_csv: Path) -> Iterator[Lake]:
    """The sample weather data, main.hr.people (email PII), and principals: rita (SELECT on the
    reviewers' view only), wes (SELECT on the weather table, no MODIFY), mia (MODIFY and SELECT
    on people, sees email masked), uma (UNMASK on people)."""
    base = tmp_path_factory.mktemp("dml")
    stratus = Stratus.from_settings(Settings(home=base / "home", vacuum_retention_check=False))
    stratus.bootstrap()
    _load(stratus, sample_csv)
    sink = _with_sink(stratus)
    lk = Lake(stratus, sink, base / "home")
    csv = base / "people.csv"
    csv.write_text(
        "person_id,name,email,team\n1,Jane,jane@example.com,a\n2,John,john@example.org,b\n"
        "3,Ana,ana@example.net,b\n"
    )
    stratus.tables.ingest(
        csv, PEOPLE, owner="admin", key=("person_id",), pii={"email": "email", "name": None}
    )
    ms = stratus.governance.metastore
    for who in ("rita", "wes", "mia", "uma"):
        ms.create_principal(who)
        lk.grant("catalog", "main", who, "USE CATALOG")
    lk.grant("schema", "main.weather", "wes", "USE SCHEMA")
    lk.grant("table", HOURLY, "wes", "SELECT")
    for who in ("mia", "uma"):
        lk.grant("schema", "main.hr", who, "USE SCHEMA")
        lk.grant("table", PEOPLE, who, "SELECT", "MODIFY")
    lk.grant("table", PEOPLE, "uma", "UNMASK")
    stratus.governance.authorizer.refresh()
    yield lk
    stratus.close()


def hourly_rows(lk: Lake, where: str, version: int | None = None) -> list[dict[str, Any]]:
    at = f" VERSION AS OF {version}" if version is not None else ""
    return lk.ok(  # type: ignore[no-any-return]
        f"SELECT city_id, CAST(ts AS STRING) AS ts, temp, humidity, description "
        f"FROM {HOURLY}{at} WHERE {where} ORDER BY city_id, ts"
    )["data"]


def version_of(lk: Lake, table: str) -> int:
    spec = lk.stratus.tables.spec(table)
    pii = lk.stratus.tables.protector.pii_columns(table)
    physical = lk.stratus.tables.protector.physical_spec(spec, pii)
    return DeltaTable(lk.stratus.lakehouse.url(physical)).version()


def edges(event: Any) -> set[tuple[str, str, str, str]]:
    return {
        (e.source_table, e.source_column, e.target_column, e.transformation)
        for e in event.column_edges
    }


def last_event(lk: Lake, target: str) -> Any:
    calls = lk.sink.for_target(target)
    assert calls and calls[-1][0] == "complete", calls
    return calls[-1][1]


def test_weather_corrections_script(lake: Lake) -> None:
    lk, ms = lake, lake.stratus.governance.metastore
    statements = split_statements(SCRIPT.read_text())
    by_start = {s.split()[0].upper() + " " + s.split()[1].upper(): s for s in statements}
    day = "city_id = 'greensboro' AND date BETWEEN DATE'1980-03-31' AND DATE'1980-04-01'"
    before_rows = hourly_rows(lk, day + " AND hour IN ('0100', '0200')")
    assert [r["ts"] for r in before_rows] == ["1980-04-01 01:00:00", "1980-04-01 02:00:00"]
    miami = "city_id = 'miami' AND date = DATE'1961-02-02'"
    miami_before = lk.ok(f"SELECT ts, temp FROM {HOURLY} WHERE {miami} ORDER BY ts")["data"]
    total = lk.ok(f"SELECT count(*) AS n FROM {HOURLY}")["data"][0]["n"]
    v0 = version_of(lk, HOURLY)
    hourly_grants = ms.grants("table", ms.get_table(HOURLY).id)

    for text in statements[: statements.index(by_start["MERGE INTO"])]:
        lk.ok(text)
    assert lk.stratus.tables.protector.pii_columns("main.demo.corrections") == {
        "reported_by": "email"
    }
    assert files_contain(lk.stratus, "main.demo.corrections", ["ana.lima@example.net"]) == []

    # MERGE: one commit; one hour updated, one deleted, one inserted
    merged = lk.ok(by_start["MERGE INTO"])
    assert merged["statement_type"] == "MERGE" and merged["affected_rows"] == 3
    assert merged["data"] == [
        {
            "num_affected_rows": 3,
            "num_updated_rows": 1,
            "num_deleted_rows": 1,
            "num_inserted_rows": 1,
        }
    ]
    assert version_of(lk, HOURLY) == v0 + 1
    window = (
        "city_id = 'greensboro' AND "
        "ts BETWEEN TIMESTAMP_NTZ'1980-03-31 23:00:00' AND TIMESTAMP_NTZ'1980-04-01 03:00:00'"
    )
    after = hourly_rows(lk, window)
    assert [(r["ts"], r["temp"], r["description"]) for r in after] == [
        ("1980-03-31 23:30:00", 8.1, "clear sky"),  # inserted
        ("1980-04-01 01:00:00", 8.4, "few clouds"),  # updated (02:00 deleted)
        ("1980-04-01 03:00:00", 6.0, "few clouds"),  # untouched
    ]
    inserted = lk.ok(
        f"SELECT date, hour FROM {HOURLY} WHERE city_id = 'greensboro' "
        "AND ts = TIMESTAMP_NTZ'1980-03-31 23:30:00'"
    )["data"]
    assert inserted == [{"date": "1980-03-31", "hour": "2330"}]
    assert lk.ok(f"SELECT count(*) AS n FROM {HOURLY}")["data"][0]["n"] == total
    event = last_event(lk, HOURLY)
    assert set(event.source_tables) == {"main.demo.corrections", HOURLY}
    assert {
        ("main.demo.corrections", "temp", "temp", "IDENTITY"),
        ("main.demo.corrections", "description", "description", "IDENTITY"),
        ("main.demo.corrections", "ts", "hour", "TRANSFORMATION"),
        ("main.demo.corrections", "city_id", "temp", "JOIN"),
    } <= edges(event)
    history = lk.ok(f"DESCRIBE HISTORY {HOURLY} LIMIT 1")["data"][0]
    assert history["version"] == v0 + 1 and history["operation"] == "MERGE"
    assert json.loads(history["operationMetrics"])["num_target_rows_inserted"] == 1
    # time travel: the table as it was before the MERGE
    assert hourly_rows(lk, day + " AND hour IN ('0100', '0200')", v0) == before_rows
    # the weather API answers as the table was (as_of_version, as_of), or as it is now
    weather = "/api/v1/weather?city_id=greensboro&start=1980-04-01&end=1980-04-01&fields=ts,temp"
    now = lk.client().get(weather).get_json()["data"]
    then = lk.client().get(f"{weather}&as_of_version={v0}").get_json()["data"]
    assert (then[0]["temp"], now[0]["temp"]) == (before_rows[0]["temp"], 8.4)
    assert len(then) == len(now) + 1  # 02:00 was deleted since
    moment = lk.ok(f"DESCRIBE HISTORY {HOURLY} LIMIT 2")["data"][1]["timestamp"]
    at = lk.client().get(f"{weather}&as_of={moment.replace('+00:00', 'Z')}")
    assert at.status_code == 200 and at.get_json()["data"] == then, at.get_json()
    summary = "/api/v1/weather/summary?city_id=greensboro&start=1980-04-01&end=1980-04-01"
    assert lk.client().get(f"{summary}&as_of_version={v0}").get_json()["data"][0][
        "hours_observed"
    ] == len(then)
    both = lk.client().get(f"{weather}&as_of_version=1&as_of=2020-01-01")
    assert both.status_code == 400
    # wes may read the weather table, not change it
    denied = lk.sql(by_start["MERGE INTO"], "wes")
    assert denied.status_code == 403 and "MODIFY" in denied.get_json()["detail"]

    # UPDATE: 24 hours of one day, column lineage temp -> temp
    updated = lk.ok(by_start["UPDATE MAIN.WEATHER.HOURLY"])
    assert updated["affected_rows"] == len(miami_before) == 24
    miami_after = lk.ok(f"SELECT ts, temp FROM {HOURLY} WHERE {miami} ORDER BY ts")["data"]
    assert [
        round(r["temp"] - b["temp"], 6) for r, b in zip(miami_after, miami_before, strict=True)
    ] == [0.5] * 24
    assert edges(last_event(lk, HOURLY)) >= {(HOURLY, "temp", "temp", "TRANSFORMATION")}
    assert lk.ok(f"SELECT count(*) AS n FROM {HOURLY} WHERE city_id = 'miami' AND temp IS NULL")

    # DELETE: one day of one station
    sand = "city_id = 'sand-point' AND date = DATE'1991-07-02'"
    gone = lk.ok(f"SELECT count(*) AS n FROM {HOURLY} WHERE {sand}")["data"][0]["n"]
    deleted = lk.ok(by_start["DELETE FROM"])
    assert deleted["affected_rows"] == gone > 0
    assert lk.ok(f"SELECT count(*) AS n FROM {HOURLY} WHERE {sand}")["data"] == [{"n": 0}]
    assert lk.ok(f"SELECT count(*) AS n FROM {HOURLY}")["data"][0]["n"] == total - gone
    assert last_event(lk, HOURLY).source_tables == (HOURLY,)
    assert version_of(lk, HOURLY) == v0 + 3

    # the view: listed as a VIEW by the Unity Catalog API, read by rita with SELECT on it only
    lk.ok(by_start["CREATE OR"])
    view = "main.demo.station_corrections"
    listed = lk.client().get("/api/2.1/unity-catalog/tables?catalog_name=main&schema_name=demo")
    info = {t["name"]: t for t in listed.get_json()["tables"]}["station_corrections"]
    assert info["table_type"] == "VIEW"
    assert "FROM main.demo.corrections" in info["view_definition"]
    assert [c["name"] for c in info["columns"]] == [
        "city_id",
        "ts",
        "corrected_temp",
        "current_temp",
        "reported_by",
    ]
    view_event = last_event(lk, view)
    assert ("main.demo.corrections", "temp", "corrected_temp", "IDENTITY") in edges(view_event)
    assert (HOURLY, "temp", "current_temp", "IDENTITY") in edges(view_event)
    lk.grant("schema", "main.demo", "rita", "USE SCHEMA")
    lk.grant("table", view, "rita", "SELECT")
    lk.stratus.governance.authorizer.refresh()
    seen = lk.sql(f"SELECT * FROM {view} ORDER BY ts", "rita")
    assert seen.status_code == 200, seen.get_json()
    rows = seen.get_json()["data"]
    assert [(r["corrected_temp"], r["current_temp"]) for r in rows] == [
        (8.1, 8.1),
        (8.4, 8.4),
        (None, None),
    ]
    assert {r["reported_by"] for r in rows} == {"a***@example.net", "j***@example.org"}  # masked
    assert lk.ok(f"SELECT reported_by FROM {view} ORDER BY ts")["data"][0] == {
        "reported_by": "john.roe@example.org"  # the admin holds UNMASK
    }
    as_rows = lk.client().get(f"/api/v1/tables/{view}/rows")
    assert as_rows.status_code == 400 and "is a view" in as_rows.get_json()["detail"]
    for table in ("main.demo.corrections", HOURLY):
        refused = lk.sql(f"SELECT * FROM {table} LIMIT 1", "rita")
        assert refused.status_code in (403, 404), table
    # reading the view into a table: lineage from the view's sources, PII kept encrypted
    lk.grant("schema", "main.demo", "uma", "USE SCHEMA", "CREATE TABLE")
    lk.grant("table", view, "uma", "SELECT")
    lk.grant("table", "main.demo.corrections", "uma", "UNMASK")
    lk.stratus.governance.authorizer.refresh()
    copied = lk.sql(f"CREATE TABLE main.demo.review AS SELECT ts, reported_by FROM {view}", "uma")
    assert copied.status_code == 200, copied.get_json()
    review = last_event(lk, "main.demo.review")
    assert set(review.source_tables) == {view, "main.demo.corrections", HOURLY}  # view -> reader
    assert ("main.demo.corrections", "reported_by", "reported_by", "IDENTITY") in edges(review)
    assert lk.stratus.tables.protector.pii_columns("main.demo.review") == {"reported_by": "email"}
    assert files_contain(lk.stratus, "main.demo.review", ["john.roe@example.org"]) == []

    for statement in (
        f"DESCRIBE HISTORY {view}",
        f"OPTIMIZE {view}",
        f"UPDATE {view} SET ts = NULL",
        f"INSERT INTO {view} (city_id) VALUES ('x')",
        f"DROP TABLE {view}",
    ):
        refused = lk.sql(statement)
        assert refused.status_code == 400 and "view" in refused.get_json()["detail"], statement

    # OPTIMIZE: fewer files, the same rows
    files_before = len(
        DeltaTable(lk.stratus.lakehouse.url(lk.stratus.tables.spec(HOURLY))).file_uris()
    )
    optimized = lk.ok(by_start["OPTIMIZE MAIN.WEATHER.HOURLY"])
    assert optimized["data"][0]["num_files_removed"] >= 1
    assert lk.ok(f"SELECT count(*) AS n FROM {HOURLY}")["data"][0]["n"] == total - gone
    assert hourly_rows(lk, window) == after
    files_after = len(
        DeltaTable(lk.stratus.lakehouse.url(lk.stratus.tables.spec(HOURLY))).file_uris()
    )
    assert files_after <= files_before

    # VACUUM (7 days): nothing is old enough; VERSION AS OF still works
    assert lk.ok(by_start["VACUUM MAIN.WEATHER.HOURLY"])["data"] == []
    assert hourly_rows(lk, day + " AND hour IN ('0100', '0200')", v0) == before_rows
    # VACUUM RETAIN 0 HOURS (the retention check is off here): old versions lose their files
    assert lk.ok(f"VACUUM {HOURLY} RETAIN 0 HOURS")["affected_rows"] > 0
    travelled = lk.sql(f"SELECT count(*) FROM {HOURLY} VERSION AS OF {v0}")
    assert travelled.status_code == 400 and "VACUUM" in travelled.get_json()["detail"]
    weather = "/api/v1/weather?city_id=greensboro&start=1980-04-01&end=1980-04-01"
    api = lk.client().get(f"{weather}&as_of_version={v0}")
    assert api.status_code == 400 and "VACUUM" in api.get_json()["detail"]
    assert lk.client().get(f"{weather}&as_of_version=9999").status_code == 400

    # grants and masks are where they were
    assert ms.grants("table", ms.get_table(HOURLY).id) == hourly_grants
    again = lk.sql(f"SELECT reported_by FROM {view} ORDER BY ts LIMIT 1", "rita").get_json()
    assert again["data"] == [{"reported_by": "j***@example.org"}]
    # RESTORE brings back a version whose files are still there
    latest = version_of(lk, HOURLY)
    restored = lk.ok(f"RESTORE TABLE {HOURLY} TO VERSION AS OF {latest - 1}")
    assert restored["data"][0]["restored_version"] == latest - 1
    assert lk.ok(f"DESCRIBE HISTORY {HOURLY} LIMIT 1")["data"][0]["operation"] == "RESTORE"


def test_pii_columns_under_update_merge_and_delete(lake: Lake) -> None:
    lk = lake
    # mia sees email masked: WHERE email = '...' finds the row through equality tokens, the
    # new value is written encrypted
    changed = lk.sql(
        f"UPDATE {PEOPLE} SET email = 'john.new@example.org', team = 'c' "
        "WHERE email = 'john@example.org'",
        "mia",
    )
    assert changed.status_code == 200, changed.get_json()
    assert changed.get_json()["affected_rows"] == 1
    rows = lk.ok(f"SELECT person_id, email, team FROM {PEOPLE} ORDER BY person_id")["data"]
    assert rows[1] == {"person_id": 2, "email": "john.new@example.org", "team": "c"}
    assert files_contain(lk.stratus, PEOPLE, ["john.new@example.org"]) == []
    # a masked reader cannot write what it sees masked
    copying = lk.sql(f"UPDATE {PEOPLE} SET name = email WHERE person_id = 1", "mia")
    assert copying.status_code == 403 and "masked" in copying.get_json()["detail"]
    # uma (UNMASK) may compute from plaintext, but not copy PII into a plaintext column
    lowered = lk.sql(f"UPDATE {PEOPLE} SET email = upper(email) WHERE person_id = 3", "uma")
    assert lowered.status_code == 200, lowered.get_json()
    assert lk.ok(f"SELECT email FROM {PEOPLE} WHERE person_id = 3")["data"] == [
        {"email": "ANA@EXAMPLE.NET"}
    ]
    leak = lk.sql(f"UPDATE {PEOPLE} SET team = email WHERE person_id = 3", "uma")
    assert leak.status_code == 400 and "SET TAGS" in leak.get_json()["detail"]
    # MERGE with encrypted inserts and a WHERE on the tokens
    merged = lk.sql(
        f"MERGE INTO {PEOPLE} p USING (SELECT 4 AS person_id, 'Zoe' AS name, "
        "'zoe@example.com' AS email, 'a' AS team UNION ALL SELECT 1, 'Jane', "
        "'jane@example.com', 'z') s ON p.person_id = s.person_id "
        "WHEN MATCHED AND p.email = 'jane@example.com' THEN UPDATE SET team = s.team "
        "WHEN NOT MATCHED THEN INSERT *",
        "uma",
    )
    assert merged.status_code == 200, merged.get_json()
    assert merged.get_json()["data"][0]["num_inserted_rows"] == 1
    rows = lk.ok(f"SELECT person_id, email, team FROM {PEOPLE} ORDER BY person_id")["data"]
    assert rows[0]["team"] == "z" and rows[3] == {
        "person_id": 4,
        "email": "zoe@example.com",
        "team": "a",
    }
    assert files_contain(lk.stratus, PEOPLE, ["zoe@example.com"]) == []
    removed = lk.sql(f"DELETE FROM {PEOPLE} WHERE email IN ('zoe@example.com')", "mia")
    assert removed.get_json()["affected_rows"] == 1
    assert lk.ok(f"SELECT count(*) AS n FROM {PEOPLE}")["data"] == [{"n": 3}]


def test_a_failure_while_the_merge_writes_changes_nothing(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    lk = lake
    lk.ok("CREATE TABLE main.default.stock (sku INT NOT NULL, qty INT)")
    lk.ok("INSERT INTO main.default.stock VALUES " + ", ".join(f"({i}, {i})" for i in range(200)))
    version = version_of(lk, "main.default.stock")
    before = lk.ok("SELECT sku, qty FROM main.default.stock ORDER BY sku")["data"]

    def failing(table: pa.Table) -> Iterator[pa.RecordBatch]:
        batches = table.to_batches(max_chunksize=10)
        yield batches[0]
        raise OSError("injected: the disk went away mid-MERGE")

    monkeypatch.setattr(ops, "source_batches", failing)
    lk.ok("CREATE TABLE main.default.incoming (sku INT NOT NULL, qty INT)")
    lk.ok(
        "INSERT INTO main.default.incoming VALUES "
        + ", ".join(f"({i}, 0)" for i in range(150, 260))
    )
    merge = (
        "MERGE INTO main.default.stock t USING main.default.incoming s ON t.sku = s.sku "
        "WHEN MATCHED THEN UPDATE SET qty = s.qty WHEN NOT MATCHED THEN INSERT *"
    )
    failed = lk.sql(merge)
    assert failed.status_code >= 500, failed.get_json()
    assert version_of(lk, "main.default.stock") == version
    assert lk.ok("SELECT sku, qty FROM main.default.stock ORDER BY sku")["data"] == before
    assert lk.sink.for_target("main.default.stock")[-1][0] == "fail"
    monkeypatch.undo()
    done = lk.ok(merge)
    assert done["data"][0] == {
        "num_affected_rows": 110,
        "num_updated_rows": 50,
        "num_deleted_rows": 0,
        "num_inserted_rows": 60,
    }
    assert version_of(lk, "main.default.stock") == version + 1


@pytest.mark.parametrize(
    ("statement", "status", "says"),
    [
        (
            "MERGE INTO main.default.stock t USING (SELECT 1 AS sku UNION ALL SELECT 1) s "
            "ON t.sku = s.sku WHEN MATCHED THEN DELETE",
            400,
            "more than one source row",
        ),
        ("UPDATE main.default.stock SET nope = 1", 400, "no column 'nope'"),
        ("UPDATE main.default.stock SET qty = NULL, sku = NULL WHERE sku = 1", 400, "NOT NULL"),
        ("DELETE FROM system.access.audit WHERE true", 403, "system table"),
        ("UPDATE main.default.stock VERSION AS OF 0 SET qty = 1", 400, "VERSION AS OF"),
        ("SELECT * FROM main.default.stock VERSION AS OF 999", 400, "no version 999"),
        ("SELECT * FROM main.default.stock TIMESTAMP AS OF '1999-01-01'", 400, "no version at"),
        ("SELECT * FROM main.default.stock TIMESTAMP AS OF 'soon'", 400, "not a timestamp"),
        ("RESTORE TABLE main.default.stock TO VERSION AS OF 999", 400, "no version 999"),
        ("OPTIMIZE main.default.stock ZORDER BY (nope)", 400, "not a column"),
        ("CREATE TEMPORARY VIEW tv AS SELECT 1", 400, "TEMPORARY VIEW"),
        ("DROP VIEW main.default.stock", 400, "not a view"),
    ],
)
def test_refusals_name_the_construct(lake: Lake, statement: str, status: int, says: str) -> None:
    lake.ok("CREATE TABLE IF NOT EXISTS main.default.stock (sku INT NOT NULL, qty INT)")
    lake.ok("INSERT INTO main.default.stock VALUES (1, 1)")
    version = version_of(lake, "main.default.stock")
    resp = lake.sql(statement)
    body = resp.get_json()
    assert resp.status_code == status, body
    assert says in body["detail"], body
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    assert version_of(lake, "main.default.stock") == version  # nothing half-applied


def test_vacuum_keeps_seven_days_by_default(tmp_path: Path) -> None:
    stratus = Stratus.from_settings(Settings(home=tmp_path / "home"))
    try:
        stratus.bootstrap()
        sql = stratus.sql
        sql.execute("CREATE TABLE main.default.t (a INT)")
        sql.execute("INSERT INTO main.default.t VALUES (1)")
        sql.execute("INSERT INTO main.default.t VALUES (2)")
        with pytest.raises(Exception, match="168-hour safety minimum"):
            sql.execute("VACUUM main.default.t RETAIN 1 HOURS")
        assert sql.execute("OPTIMIZE main.default.t").data.to_pylist()[0]["num_files_removed"] == 2
        dry = sql.execute("VACUUM main.default.t RETAIN 168 HOURS DRY RUN")
        assert dry.data.num_rows == 0  # the compacted files were removed just now
        assert sql.execute("SELECT count(*) AS n FROM main.default.t").data.to_pylist() == [
            {"n": 2}
        ]
    finally:
        stratus.close()


def test_create_or_replace_keeps_grants_and_history(lake: Lake) -> None:
    lk = lake
    lk.ok("CREATE TABLE main.default.board (id INT, label STRING)")
    lk.ok("INSERT INTO main.default.board VALUES (1, 'a'), (2, 'b')")
    lk.grant("schema", "main.default", "wes", "USE SCHEMA")
    lk.grant("table", "main.default.board", "wes", "SELECT")
    lk.stratus.governance.authorizer.refresh()
    v = version_of(lk, "main.default.board")
    replaced = lk.ok(
        "CREATE OR REPLACE TABLE main.default.board AS SELECT id, label, id * 10 AS score "
        "FROM main.default.board WHERE id = 2"
    )
    assert replaced["affected_rows"] == 1
    assert version_of(lk, "main.default.board") == v + 1  # one commit on the same table
    seen = lk.sql("SELECT * FROM main.default.board", "wes").get_json()
    assert seen["data"] == [{"id": 2, "label": "b", "score": 20}]
    described = lk.ok("DESCRIBE TABLE main.default.board")["data"]
    assert [r["col_name"] for r in described] == ["id", "label", "score"]
    old = lk.sql(f"SELECT * FROM main.default.board VERSION AS OF {v}")
    assert old.status_code == 400 and "columns were different" in old.get_json()["detail"]
    lk.ok("CREATE OR REPLACE TABLE main.default.board (id INT, label STRING)")
    assert lk.ok("SELECT count(*) AS n FROM main.default.board")["data"] == [{"n": 0}]
    assert lk.ok(f"SELECT count(*) AS n FROM main.default.board VERSION AS OF {v}")["data"] == [
        {"n": 2}
    ]
    fresh = lk.ok("CREATE OR REPLACE TABLE main.default.board_new (x INT)")
    assert fresh["table"] == "main.default.board_new"
    builtin = lk.sql(f"CREATE OR REPLACE TABLE {HOURLY} (x INT)")
    assert builtin.status_code == 403


def test_the_script_can_run_again(lake: Lake) -> None:
    statements = split_statements(SCRIPT.read_text())
    results = [lake.ok(text) for text in statements]  # after the first run (or on its own)
    merged = next(r for r in results if r["statement_type"] == "MERGE")
    assert merged["data"][0]["num_inserted_rows"] <= 1  # 1 on a first run, 0 after
    again = lake.ok(next(s for s in statements if s.upper().startswith("MERGE")))
    assert again["data"][0]["num_inserted_rows"] == 0
    assert again["data"][0]["num_deleted_rows"] == 0  # the bad reading is gone for good


def test_dml_time_travel_and_maintenance_on_each_backend(backend: Stratus) -> None:
    """The same statements on local disk and on Azure Blob Storage (Azurite)."""
    backend.bootstrap()
    sql = backend.sql

    def rows(text: str) -> list[dict[str, Any]]:
        return sql.execute(text).data.to_pylist()  # type: ignore[no-any-return]

    sql.execute("CREATE TABLE main.default.kv (k INT NOT NULL, v STRING) PARTITIONED BY (v)")
    sql.execute("INSERT INTO main.default.kv VALUES (1, 'a'), (2, 'b'), (3, 'a')")
    assert sql.execute("UPDATE main.default.kv SET k = k * 10 WHERE v = 'a'").affected_rows == 2
    merged = sql.execute(
        "MERGE INTO main.default.kv t USING (SELECT 2 AS k, 'b' AS v UNION ALL SELECT 4, 'c') s "
        "ON t.k = s.k WHEN MATCHED THEN DELETE WHEN NOT MATCHED THEN INSERT *"
    )
    assert merged.data.to_pylist()[0] == {
        "num_affected_rows": 2,
        "num_updated_rows": 0,
        "num_deleted_rows": 1,
        "num_inserted_rows": 1,
    }
    assert sql.execute("DELETE FROM main.default.kv WHERE k = 10").affected_rows == 1
    assert rows("SELECT k, v FROM main.default.kv ORDER BY k") == [
        {"k": 4, "v": "c"},
        {"k": 30, "v": "a"},
    ]
    assert rows("SELECT k FROM main.default.kv VERSION AS OF 1 ORDER BY k") == [
        {"k": 1},
        {"k": 2},
        {"k": 3},
    ]
    ops_seen = [r["operation"] for r in rows("DESCRIBE HISTORY main.default.kv")]
    assert ops_seen[:4] == ["DELETE", "MERGE", "UPDATE", "WRITE"]
    sql.execute("INSERT INTO main.default.kv VALUES (5, 'c')")
    sql.execute("INSERT INTO main.default.kv VALUES (6, 'c')")  # partition c: three files
    assert rows("OPTIMIZE main.default.kv")[0]["num_files_removed"] == 3
    assert rows("SELECT count(*) AS n FROM main.default.kv WHERE v = 'c'") == [{"n": 3}]
    assert rows("VACUUM main.default.kv") == []
    sql.execute("RESTORE TABLE main.default.kv TO VERSION AS OF 1")
    assert rows("SELECT count(*) AS n FROM main.default.kv") == [{"n": 3}]
    spec = backend.tables.spec("main.default.kv")
    assert ops.vacuum(backend.lakehouse, spec, retain_hours=0)  # what SQL refuses here
    with pytest.raises(ops.VersionUnavailable, match="removed by VACUUM"):
        sql.execute("SELECT * FROM main.default.kv VERSION AS OF 4")
    assert rows("SELECT count(*) AS n FROM main.default.kv") == [{"n": 3}]


def test_merge_and_update_read_only_the_partitions_they_can_change(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stratus.sql.dml import Dml

    lk = lake
    lk.ok("CREATE TABLE main.default.parts (p STRING, k INT, v INT) PARTITIONED BY (p)")
    lk.ok("INSERT INTO main.default.parts VALUES ('a', 1, 0), ('b', 1, 0), ('c', 1, 0)")
    read: list[list[str]] = []
    original = Dml._target_files

    def spy(self: Dml, *args: Any) -> list[str]:
        files = original(self, *args)
        read.append(files)
        return files

    monkeypatch.setattr(Dml, "_target_files", spy)
    merged = lk.ok(
        "MERGE INTO main.default.parts t USING (SELECT 'b' AS p, 1 AS k, 5 AS v UNION ALL "
        "SELECT 'b', 2, 6) s ON t.p = s.p AND t.k = s.k "
        "WHEN MATCHED THEN UPDATE SET v = s.v WHEN NOT MATCHED THEN INSERT *"
    )
    assert merged["data"][0]["num_updated_rows"] == 1
    assert merged["data"][0]["num_inserted_rows"] == 1
    assert len(read[-1]) == 1 and "p=b" in read[-1][0]
    lk.ok("UPDATE main.default.parts SET v = 9 WHERE p = 'c'")
    assert len(read[-1]) == 1 and "p=c" in read[-1][0]
    assert lk.ok("SELECT p, k, v FROM main.default.parts ORDER BY p, k")["data"] == [
        {"p": "a", "k": 1, "v": 0},
        {"p": "b", "k": 1, "v": 5},
        {"p": "b", "k": 2, "v": 6},
        {"p": "c", "k": 1, "v": 9},
    ]


def test_history_names_who_made_each_commit(lake: Lake) -> None:
    """Every commit is tagged with its statement and principal (stratus.lakehouse.origin):
    DESCRIBE HISTORY shows them as userName; the audit writer's own commits carry no user."""
    lk = lake
    table = "main.history_demo.kv"
    lk.ok("CREATE SCHEMA main.history_demo")
    lk.ok(f"CREATE TABLE {table} (k INT, v STRING)")
    inserted = lk.ok(f"INSERT INTO {table} VALUES (1, 'a'), (2, 'b')")
    lk.grant("schema", "main.history_demo", "mia", "USE SCHEMA")
    lk.grant("table", table, "mia", "SELECT", "MODIFY")
    lk.stratus.governance.authorizer.refresh()
    updated = lk.ok(f"UPDATE {table} SET v = 'c' WHERE k = 2", "mia")
    history = lk.ok(f"DESCRIBE HISTORY {table}")["data"]
    assert [(h["operation"], h["userName"], h["statement_id"]) for h in history[:2]] == [
        ("UPDATE", "mia", updated["statement_id"]),
        ("WRITE", "admin", inserted["statement_id"]),
    ]
    lk.stratus.governance.audit.flush()
    audit = lk.ok("DESCRIBE HISTORY system.access.audit LIMIT 1")["data"][0]
    assert audit["userName"] is None
