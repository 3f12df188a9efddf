"""SQL on the lakehouse: POST /api/v1/sql, `stratus sql` and the SqlService behind them.

Statement kinds, bound parameters, masks applied before filters, the grants matrix, errors,
limits, PII propagation by column lineage, the menu/dinner example and its lineage events.
Lineage events are captured by a recording sink put in place of ``stratus.lineage``.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from deltalake import DeltaTable
from flask.testing import FlaskClient

from stratus.api import create_app
from stratus.catalog.errors import InvalidArgument
from stratus.cli import main
from stratus.config import Settings
from stratus.context import Stratus
from stratus.lineage.model import LineageEvent
from stratus.security.audit import AUDIT
from stratus.security.governance import LOCAL_ADMIN
from stratus.sql.errors import SqlTimeout, UnsupportedStatement
from stratus.sql.parse import split_statements
from tests.conftest import client_for

# stratus.sql filters this DuckDB warning process-wide; pytest resets filters per test
pytestmark = pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result")
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "lineage_menu_dinner.sql"
EMPLOYEES = "main.hr.employees"
PEOPLE = [
    # employee_id, name, email, salary, department
    (1, "Jane Doe", "jane.doe@example.com", 54321.5, "sales"),
    (2, "John Roe", "john.roe@example.org", 78000.0, "it"),
    (3, "Ana Lima", "ana.lima@example.net", 61000.0, "it"),
]


class RecordingSink:
    """A LineageSink that keeps what it is told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, LineageEvent, str | None]] = []

    def start(self, event: LineageEvent) -> None:
        self.calls.append(("start", event, None))

    def complete(self, event: LineageEvent) -> None:
        self.calls.append(("complete", event, None))

    def fail(self, event: LineageEvent, error: str) -> None:
        self.calls.append(("fail", event, error))

    def for_target(self, table: str) -> list[tuple[str, LineageEvent, str | None]]:
        return [c for c in self.calls if c[1].target_table == table]


@dataclass
class Lake:
    stratus: Stratus
    sink: RecordingSink
    home: Path
    tokens: dict[str, str] = field(default_factory=dict)
    clients: dict[str, FlaskClient] = field(default_factory=dict)

    def client(self, who: str = "admin") -> FlaskClient:
        if who not in self.clients:
            if who not in self.tokens:
                self.tokens[who], _ = self.stratus.governance.metastore.create_token(who, days=1)
            app = create_app(stratus=self.stratus)
            self.clients[who] = client_for(app, self.tokens[who])
        return self.clients[who]

    def sql(
        self, text: str, who: str = "admin", parameters: Any = None, fmt: str | None = None
    ) -> Any:
        body: dict[str, Any] = {"statement": text}
        if parameters is not None:
            body["parameters"] = parameters
        url = "/api/v1/sql" + (f"?format={fmt}" if fmt else "")
        return self.client(who).post(url, json=body)

    def ok(self, text: str, who: str = "admin", parameters: Any = None) -> dict[str, Any]:
        resp = self.sql(text, who, parameters)
        assert resp.status_code == 200, (text, resp.get_json())
        return resp.get_json()  # type: ignore[no-any-return]

    def grant(self, kind: str, name: str, who: str, *privileges: str) -> None:
        ms = self.stratus.governance.metastore
        obj = ms.securable(kind, name)
        ms.update_grants(kind, obj.id, [{"principal": who, "add": list(privileges)}])


def _with_sink(stratus: Stratus) -> RecordingSink:
    sink = RecordingSink()
    stratus.__dict__["lineage"] = sink  # the cached_property's slot: the service is not built
    return sink


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lake]:
    """One lakehouse: main.hr.employees (email and salary PII), main.lab.notes, principals
    alice (nothing), bob (masked reader), uma (reader with UNMASK), carol (writes notes), dave
    (creates tables in main.lab, masked reader of employees)."""
    base = tmp_path_factory.mktemp("sql")
    stratus = Stratus.from_settings(Settings(home=base / "home"))
    stratus.bootstrap()
    sink = _with_sink(stratus)
    lk = Lake(stratus, sink, base / "home")
    csv = base / "employees.csv"
    csv.write_text(
        "employee_id,name,email,salary,department\n"
        + "".join(f"{i},{n},{e},{s},{d}\n" for i, n, e, s, d in PEOPLE)
    )
    stratus.tables.ingest(
        csv,
        EMPLOYEES,
        owner="admin",
        key=("employee_id",),
        pii={"email": "email", "salary": "salary", "name": None},
    )
    ms = stratus.governance.metastore
    for who in ("alice", "bob", "uma", "carol", "dave"):
        ms.create_principal(who)
    lk.ok("CREATE SCHEMA main.lab")
    lk.ok("CREATE TABLE main.lab.notes (id INT NOT NULL, note STRING)")
    lk.ok("INSERT INTO main.lab.notes VALUES (1, 'first'), (2, 'second')")
    for who in ("bob", "uma", "dave"):
        lk.grant("catalog", "main", who, "USE CATALOG")
        lk.grant("schema", "main.hr", who, "USE SCHEMA")
        lk.grant("table", EMPLOYEES, who, "SELECT")
    lk.grant("table", EMPLOYEES, "uma", "UNMASK")
    lk.grant("catalog", "main", "carol", "USE CATALOG")
    lk.grant("schema", "main.lab", "carol", "USE SCHEMA")
    lk.grant("table", "main.lab.notes", "carol", "SELECT", "MODIFY")
    lk.grant("schema", "main.lab", "dave", "USE SCHEMA", "CREATE TABLE")
    stratus.governance.authorizer.refresh()
    yield lk
    stratus.close()


def files_contain(stratus: Stratus, table: str, needles: list[str]) -> list[str]:
    """Needles found in any file of the table (bytes, and Parquet values and statistics)."""
    root = Path(stratus.lakehouse.storage.table_url(table.replace(".", "/")))
    found = []
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        blobs = [path.read_bytes()]
        if path.suffix == ".parquet":
            pf = pq.ParquetFile(path)
            blobs.append(repr(pf.read().to_pylist()).encode())
            meta = pf.metadata
            for rg in range(meta.num_row_groups):
                for c in range(meta.num_columns):
                    st = meta.row_group(rg).column(c).statistics
                    if st is not None and st.has_min_max:
                        blobs.append(f"{st.min!r} {st.max!r}".encode())
        found += [f"{n} in {path.name}" for n in needles for b in blobs if n.encode() in b]
    return found


def pii_tags(stratus: Stratus, table: str) -> dict[str, str]:
    return stratus.tables.protector.pii_columns(table)


# ---- statement kinds ---------------------------------------------------------------------------
def test_every_statement_kind_as_admin(lake: Lake) -> None:
    ok = lake.ok
    ok("CREATE SCHEMA IF NOT EXISTS kinds COMMENT 'statement kinds'")
    assert lake.stratus.governance.metastore.get_schema("main.kinds").comment == "statement kinds"
    ok("CREATE SCHEMA IF NOT EXISTS main.kinds")  # no error the second time
    created = ok(
        "CREATE TABLE main.kinds.obs (id BIGINT NOT NULL COMMENT 'row id', city STRING, "
        "temp DOUBLE, price DECIMAL(8,2), day DATE, at TIMESTAMP, ok BOOLEAN) USING DELTA "
        "PARTITIONED BY (city) COMMENT 'observations' TBLPROPERTIES ('stratus.key' = 'id')"
    )
    assert created["statement_type"] == "CREATE_TABLE" and created["table"] == "main.kinds.obs"
    spec = lake.stratus.tables.spec("main.kinds.obs")
    assert spec.partition_by == ["city"] and spec.key == ("id",)
    assert str(spec.schema.field("price").type) == "decimal128(8, 2)"
    assert DeltaTable(lake.stratus.lakehouse.url(spec)).version() == 0
    inserted = ok(
        "INSERT INTO kinds.obs VALUES (1, 'lima', 21.5, 3.10, DATE'2024-01-01', "
        "TIMESTAMP'2024-01-01 10:00:00', true), (2, 'oslo', -3.0, 4.5, '2024-01-02', "
        "'2024-01-02 11:00:00', false), (3, 'lima', 22.0, NULL, '2024-01-03', NULL, NULL)"
    )
    assert inserted["affected_rows"] == 3
    assert DeltaTable(lake.stratus.lakehouse.url(spec)).version() == 1  # one commit
    ok("INSERT INTO main.kinds.obs (city, id) SELECT city, id + 10 FROM main.kinds.obs")
    rows = ok("SELECT id, city, temp, price FROM main.kinds.obs ORDER BY id")
    assert [r["id"] for r in rows["data"]] == [1, 2, 3, 11, 12, 13]
    assert rows["data"][0]["price"] == "3.10"  # decimals travel as exact strings
    assert rows["columns"][3] == {"name": "price", "type": "decimal(8,2)"}
    # joins, aggregates and CTEs
    agg = ok(
        "WITH warm AS (SELECT * FROM main.kinds.obs WHERE temp > 0) "
        "SELECT o.city, count(*) AS n, round(avg(w.temp), 2) AS mean "
        "FROM main.kinds.obs o LEFT JOIN warm w ON w.id = o.id GROUP BY o.city ORDER BY o.city"
    )
    assert agg["data"] == [
        {"city": "lima", "n": 4, "mean": 21.75},
        {"city": "oslo", "n": 2, "mean": None},
    ]
    # one-part names live in main.default, created on first use
    ok("CREATE TABLE scratch (x INT)")
    assert lake.stratus.governance.metastore.get_table("main.default.scratch")
    ok("INSERT INTO scratch VALUES (7)")
    assert ok("SELECT x FROM main.default.scratch")["data"] == [{"x": 7}]
    described = ok("DESCRIBE TABLE main.kinds.obs")
    assert described["data"][0] == {"col_name": "id", "data_type": "bigint", "comment": "row id"}
    assert [c["name"] for c in described["columns"]] == ["col_name", "data_type", "comment"]
    tables = ok("SHOW TABLES IN main.kinds")
    assert [r["tableName"] for r in tables["data"]] == ["obs"]
    assert [r["tableName"] for r in ok("SHOW TABLES")["data"]] == ["scratch"]
    assert "kinds" in {r["databaseName"] for r in ok("SHOW SCHEMAS IN main LIKE 'k*'")["data"]}
    # tags on the table and on a column
    ok("ALTER TABLE main.kinds.obs SET TAGS ('owner_team' = 'weather', 'tier' = 'gold')")
    ok("ALTER TABLE main.kinds.obs ALTER COLUMN city SET TAGS ('domain' = 'geo')")
    ms = lake.stratus.governance.metastore
    tags = {
        (t.column_name, t.key): t.value for t in ms.tags("table", ms.get_table("main.kinds.obs").id)
    }
    assert tags == {("", "owner_team"): "weather", ("", "tier"): "gold", ("city", "domain"): "geo"}
    ok("ALTER TABLE main.kinds.obs UNSET TAGS ('tier')")
    assert len(ms.tags("table", ms.get_table("main.kinds.obs").id)) == 2
    # grants
    ok("GRANT SELECT, MODIFY ON TABLE main.kinds.obs TO `alice`")
    ok("GRANT USE SCHEMA ON SCHEMA main.kinds TO alice")
    ok("GRANT USE CATALOG ON CATALOG main TO alice")
    obs_id = ms.get_table("main.kinds.obs").id
    assert ms.grants("table", obs_id)["alice"] == {"SELECT", "MODIFY"}
    assert lake.sql("SELECT count(*) AS n FROM main.kinds.obs", "alice").get_json()["data"] == [
        {"n": 6}
    ]
    ok("REVOKE MODIFY ON TABLE main.kinds.obs FROM alice")
    assert ms.grants("table", obs_id)["alice"] == {"SELECT"}
    ok("REVOKE ALL PRIVILEGES ON SCHEMA main.kinds FROM alice")
    ok("REVOKE SELECT ON main.kinds.obs FROM alice")
    ok("REVOKE USE CATALOG ON CATALOG main FROM alice")
    # drop: gone from the catalog, and a table created again under the name starts empty
    dropped = ok("DROP TABLE main.kinds.obs")
    assert dropped["statement_type"] == "DROP_TABLE"
    assert lake.sql("SELECT * FROM main.kinds.obs").status_code == 404
    ok("DROP TABLE IF EXISTS main.kinds.obs")
    ok("CREATE TABLE main.kinds.obs (id BIGINT, note STRING)")
    assert ok("SELECT * FROM main.kinds.obs")["data"] == []
    assert lake.sql("DROP TABLE main.kinds.nothing").status_code == 404
    again = lake.sql("CREATE TABLE main.kinds.obs (id INT)")
    assert again.status_code == 409


def test_pruned_reads_return_exactly_the_matching_rows(lake: Lake) -> None:
    """Partition and statistics pruning from WHERE (ints, dates, strings, IN, BETWEEN,
    parameters) never drops a matching row."""
    lake.ok(
        "CREATE TABLE main.lab.pruned (k INT, day DATE, city STRING, v DOUBLE) PARTITIONED BY (k)"
    )
    for k in range(4):  # one commit (so one file per partition) per k
        lake.ok(
            "INSERT INTO main.lab.pruned VALUES (?, DATE'2024-01-01' + ?, ?, ?), "
            "(?, DATE'2024-02-01' + ?, 'oslo', 1.5)",
            parameters=[k, k, f"c{k}", float(k), k, k],
        )
    q = "SELECT count(*) AS n FROM main.lab.pruned"
    cases = {
        "WHERE k = 2": 2,
        "WHERE k IN (1, 3)": 4,
        "WHERE k = :k": 2,
        "WHERE day = DATE'2024-01-03'": 1,
        "WHERE day BETWEEN '2024-01-02' AND '2024-01-03'": 2,
        "WHERE day >= DATE'2024-02-02' AND day <= DATE'2024-02-03' AND k > 0": 2,
        "WHERE city = 'oslo' AND k = 0": 1,
        "AS p JOIN main.lab.pruned q ON p.k = q.k WHERE p.k = 1": 4,
        "WHERE v > 1 AND v < 3": 5,
    }
    for where, expected in cases.items():
        params = {"k": 2} if ":k" in where else None
        got = lake.ok(f"{q} {where}", parameters=params)["data"]
        assert got == [{"n": expected}], where


def test_create_table_as_select_registers_the_result_schema(lake: Lake) -> None:
    result = lake.ok(
        "CREATE TABLE main.lab.by_dept PARTITIONED BY (department) COMMENT 'per department' AS "
        "SELECT department, count(*) AS people, max(employee_id) AS last_id "
        "FROM main.hr.employees GROUP BY department"
    )
    assert result["statement_type"] == "CREATE_TABLE_AS_SELECT"
    assert result["affected_rows"] == 2
    table = lake.stratus.governance.metastore.get_table("main.lab.by_dept")
    assert table.owner == "admin" and table.comment == "per department"
    assert [(c["name"], c["type_text"]) for c in table.columns] == [
        ("department", "string"),
        ("people", "bigint"),
        ("last_id", "bigint"),
    ]
    assert lake.stratus.tables.spec("main.lab.by_dept").partition_by == ["department"]
    rows = lake.ok("SELECT * FROM main.lab.by_dept ORDER BY department")["data"]
    assert rows == [
        {"department": "it", "people": 2, "last_id": 3},
        {"department": "sales", "people": 1, "last_id": 1},
    ]
    unnamed = lake.sql("CREATE TABLE main.lab.bad AS SELECT count(*) FROM main.lab.notes")
    assert unnamed.status_code == 400 and "alias" in unnamed.get_json()["detail"]
    with pytest.raises(Exception, match="does not exist"):
        lake.stratus.governance.metastore.get_table("main.lab.bad")


def test_parameters_are_bound_never_spliced(lake: Lake) -> None:
    evil = "first' OR '1'='1"
    named = lake.ok("SELECT id FROM main.lab.notes WHERE note = :note", parameters={"note": evil})
    assert named["data"] == []
    hit = lake.ok("SELECT id FROM main.lab.notes WHERE note = :note", parameters={"note": "first"})
    assert hit["data"] == [{"id": 1}]
    positional = lake.ok(
        "WITH c AS (SELECT ? AS a) SELECT a, ? AS b, ? AS c FROM c", parameters=[1, evil, None]
    )
    assert positional["data"] == [{"a": 1, "b": evil, "c": None}]
    typed = lake.ok(
        "SELECT :d + INTERVAL 1 DAY AS next_day, :n * 2 AS twice",
        parameters=[
            {"name": "d", "value": "2024-02-28", "type": "DATE"},
            {"name": "n", "value": "21", "type": "INT"},
        ],
    )
    assert typed["data"][0]["twice"] == 42
    assert str(typed["data"][0]["next_day"]).startswith("2024-02-29")
    # a value lands in the table as data, and the table survives
    lake.ok("CREATE TABLE main.lab.params (id INT, txt STRING)")
    drop = "x'); DROP TABLE main.lab.notes; --"
    lake.ok("INSERT INTO main.lab.params VALUES (:id, :txt)", parameters={"id": 5, "txt": drop})
    assert lake.ok("SELECT txt FROM main.lab.params")["data"] == [{"txt": drop}]
    assert lake.ok("SELECT count(*) AS n FROM main.lab.notes")["data"] == [{"n": 2}]
    missing = lake.sql("SELECT :nope AS x", parameters={})
    assert missing.status_code == 400 and ":nope" in missing.get_json()["detail"]
    wrong = lake.sql("SELECT ? AS x", parameters=[1, 2])
    assert wrong.status_code == 400 and "placeholder" in wrong.get_json()["detail"]
    nested = lake.sql("SELECT :x AS x", parameters={"x": [1]})
    assert nested.status_code == 400


# ---- masks before filters ----------------------------------------------------------------------
def test_masked_readers_filter_and_aggregate_masked_values(lake: Lake) -> None:
    real = "jane.doe@example.com"
    sql = "SELECT employee_id, email, salary FROM main.hr.employees WHERE email = :e"
    assert lake.sql(sql, "bob", {"e": real}).get_json()["data"] == []
    seen = lake.sql(sql, "bob", {"e": "j***@example.com"}).get_json()
    assert seen["data"] == [
        {"employee_id": 1, "email": "j***@example.com", "salary": "50,000-59,999"}
    ]
    assert lake.sql(sql, "uma", {"e": real}).get_json()["data"] == [
        {"employee_id": 1, "email": real, "salary": 54321.5}
    ]
    # salary is a masked string for bob: no numeric comparison can recover it
    numeric = lake.sql("SELECT employee_id FROM main.hr.employees WHERE salary > 60000", "bob")
    assert numeric.status_code == 400 and "VARCHAR" in numeric.get_json()["detail"]
    cast = lake.sql(
        "SELECT count(*) AS n FROM main.hr.employees WHERE try_cast(salary AS DOUBLE) > 0", "bob"
    )
    assert cast.get_json()["data"] == [{"n": 0}]
    by_range = lake.sql(
        "SELECT count(*) AS n FROM main.hr.employees WHERE salary LIKE '5%'", "bob"
    ).get_json()
    assert by_range["data"] == [{"n": 1}]
    assert lake.sql(
        "SELECT employee_id FROM main.hr.employees WHERE salary > 60000 ORDER BY 1", "uma"
    ).get_json()["data"] == [{"employee_id": 2}, {"employee_id": 3}]
    # joins and aggregates see masks too
    joined = lake.sql(
        "SELECT max(e.email) AS m, count(DISTINCT o.email) AS n FROM main.hr.employees e "
        "JOIN main.hr.employees o ON o.email = e.email WHERE e.email LIKE '%example.com'",
        "bob",
    ).get_json()
    assert joined["data"] == [{"m": "j***@example.com", "n": 1}]
    everything = json.dumps(lake.sql("SELECT * FROM main.hr.employees", "bob").get_json())
    assert not any(p[2] in everything for p in PEOPLE)
    assert "54321" not in everything and "Jane Doe" in everything  # name is not PII here


# ---- grants ------------------------------------------------------------------------------------
GRANTS = [
    # statement, {principal: expected status}. USE CATALOG on main (bob, carol, dave) makes
    # everything in main visible, so they get 403 naming what they lack; alice sees nothing.
    (
        "SELECT * FROM main.lab.notes",
        {"alice": 404, "bob": 403, "carol": 200, "dave": 403, "admin": 200},
    ),
    (
        "INSERT INTO main.lab.notes VALUES (9, 'x')",
        {"alice": 404, "bob": 403, "carol": 200, "dave": 403},
    ),
    (
        "CREATE TABLE main.lab.made_by_{who} (a INT)",
        {"alice": 404, "bob": 403, "carol": 403, "dave": 200},
    ),
    ("DROP TABLE main.lab.notes", {"alice": 404, "carol": 403, "dave": 403}),
    ("GRANT SELECT ON TABLE main.lab.notes TO bob", {"alice": 404, "carol": 403, "dave": 403}),
    ("ALTER TABLE main.lab.notes SET TAGS ('k' = 'v')", {"alice": 404, "carol": 403}),
    ("DESCRIBE main.lab.notes", {"alice": 404, "bob": 403, "carol": 200}),
    ("SELECT email FROM main.hr.employees", {"alice": 404, "bob": 200, "carol": 403}),
    ("CREATE SCHEMA main.made_by_{who}", {"carol": 403, "alice": 404}),
]


@pytest.mark.parametrize(("statement", "expected"), GRANTS, ids=lambda v: str(v)[:30])
def test_grants_apply_as_in_the_rest_api(
    lake: Lake, statement: str, expected: dict[str, int]
) -> None:
    for who, status in expected.items():
        resp = lake.sql(statement.format(who=who), who)
        body = resp.get_json()
        assert resp.status_code == status, (who, statement, body)
        if status == 403:
            assert "lacks" in body["detail"] and who in body["detail"]
        if status == 404:
            assert "does not exist" in body["detail"]


def test_owners_drop_and_tag_their_tables_and_denials_name_the_privilege(lake: Lake) -> None:
    lake.sql("CREATE TABLE main.lab.daves (a INT)", "dave")
    assert lake.stratus.governance.metastore.get_table("main.lab.daves").owner == "dave"
    assert lake.sql("INSERT INTO main.lab.daves VALUES (1)", "dave").status_code == 200
    assert lake.sql("ALTER TABLE main.lab.daves SET TAGS ('t' = '1')", "dave").status_code == 200
    assert lake.sql("GRANT SELECT ON main.lab.daves TO carol", "dave").status_code == 200
    assert lake.sql("SELECT a FROM main.lab.daves", "carol").get_json()["data"] == [{"a": 1}]
    denied = lake.sql("INSERT INTO main.lab.daves VALUES (2)", "carol").get_json()
    assert denied["status"] == 403 and "lacks MODIFY" in denied["detail"]
    assert lake.sql("DROP TABLE main.lab.daves", "dave").status_code == 200
    write_builtin = lake.sql("INSERT INTO main.weather.cities (city_id) VALUES ('x')")
    assert write_builtin.status_code == 403 and "built in" in write_builtin.get_json()["detail"]
    assert "MERGE adds or changes its rows" in write_builtin.get_json()["detail"]
    system = lake.sql("INSERT INTO system.access.audit (action_name) VALUES ('x')").get_json()
    assert system["status"] == 403 and "Stratus itself writes" in system["detail"]
    unpii = lake.sql("ALTER TABLE main.hr.employees ALTER COLUMN email UNSET TAGS ('pii')", "bob")
    assert unpii.status_code == 403


# ---- errors and limits -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("statement", "construct"),
    [
        (
            "MERGE INTO main.lab.notes t USING main.lab.notes s ON t.id = s.id "
            "WHEN NOT MATCHED BY SOURCE THEN UPDATE SET *",
            "WHEN NOT MATCHED BY SOURCE THEN UPDATE SET *",
        ),
        ("UPDATE main.lab.notes VERSION AS OF 0 SET note = 'x'", "UPDATE of a table VERSION"),
        ("DELETE FROM main.lab.notes WHERE id = 1 RETURNING id", "DELETE ... RETURNING"),
        ("CREATE FUNCTION f(x INT) RETURNS INT RETURN x + 1", "CREATE FUNCTION"),
        ("CREATE TEMPORARY VIEW v AS SELECT 1", "CREATE TEMPORARY VIEW"),
        ("SELECT 1; SELECT 2", "multiple statements"),
        ("SELECT * FROM read_csv('/etc/passwd')", "table function"),
        ("SELECT current_setting('TimeZone') AS tz", "function current_setting"),
        ("SELECT * FROM main.lab.notes VERSION AS OF 1 + 1", "VERSION AS OF something"),
        ("OPTIMIZE main.lab.notes WHERE id = 1", "OPTIMIZE ... WHERE"),
        ("VACUUM main.lab.notes LITE", "VACUUM ... LITE"),
        ("INSERT OVERWRITE main.lab.notes SELECT * FROM main.lab.notes", "INSERT OVERWRITE"),
        ("CREATE TABLE main.lab.arr (a ARRAY<INT>)", "type ARRAY<INT>"),
        ("SHOW FUNCTIONS", "SHOW FUNCTIONS"),
        ("ALTER TABLE main.lab.notes ADD COLUMNS (x INT)", "ALTER TABLE"),
        ("USE main", "USE"),
    ],
)
def test_unsupported_statements_are_400_naming_the_construct(
    lake: Lake, statement: str, construct: str
) -> None:
    resp = lake.sql(statement)
    body = resp.get_json()
    assert resp.status_code == 400, body
    assert body["error_code"] == "UNSUPPORTED_STATEMENT"
    assert construct in body["detail"]


def test_syntax_errors_are_400_with_the_position(lake: Lake) -> None:
    resp = lake.sql("SELECT id\nFROM main.lab.notes\nWHERE")
    body = resp.get_json()
    assert resp.status_code == 400 and body["type"] == "/problems/parse-syntax-error"
    assert body["errors"][0]["line"] == 3 and body["errors"][0]["column"] >= 1
    assert "line 3" in body["detail"]
    grant = lake.sql("GRANT SELECT ON TABLE main.lab.notes bob").get_json()
    assert grant["status"] == 400 and "expected TO" in grant["detail"]
    assert lake.sql("SELECT 'unterminated").status_code == 400
    assert lake.sql("   ").status_code == 400
    assert (
        lake.sql("SELECT no_such_column FROM main.lab.notes")
        .get_json()["detail"]
        .startswith("Binder Error")
    )
    path = lake.sql("SELECT * FROM `/etc/passwd`").get_json()  # a name, never a file
    assert path["status"] == 400 and "is invalid" in path["detail"]
    assert lake.sql("SELECT * FROM csv.`/etc/passwd`").get_json()["status"] == 400
    bad_body = lake.client().post("/api/v1/sql", json={"statement": "SELECT 1", "x": 1})
    assert bad_body.status_code == 400 and bad_body.get_json()["parameter"] == "x"


def test_rows_are_truncated_and_slow_statements_time_out(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", sql_max_rows=5, sql_timeout_seconds=0.5)
    stratus = Stratus.from_settings(settings)
    try:
        client = client_for(create_app(stratus=stratus), None)
        client.environ_base["HTTP_AUTHORIZATION"] = (
            "Bearer " + (stratus.governance.metastore.create_token("admin", days=1)[0])
        )
        many = client.post(
            "/api/v1/sql", json={"statement": "SELECT explode(sequence(1, 20)) AS n"}
        ).get_json()
        assert many["row_count"] == 5 and many["truncated"] is True
        assert [r["n"] for r in many["data"]] == [1, 2, 3, 4, 5]
        few = client.post("/api/v1/sql", json={"statement": "SELECT 1 AS n"}).get_json()
        assert few["truncated"] is False
        slow = (
            "SELECT sum(a.id * b.id) AS s FROM (SELECT explode(sequence(1, 400000)) AS id) a "
            "CROSS JOIN (SELECT explode(sequence(1, 400000)) AS id) b"
        )
        started = time.monotonic()
        resp = client.post("/api/v1/sql", json={"statement": slow})
        elapsed = time.monotonic() - started
        assert resp.status_code == 504, resp.get_json()
        assert "0.5 s" in resp.get_json()["detail"] and elapsed < 5
        with pytest.raises(SqlTimeout):
            stratus.sql.execute(slow)
        # the service is usable afterwards
        assert stratus.sql.execute("SELECT 2 AS n").data.to_pylist() == [{"n": 2}]
    finally:
        stratus.close()


def test_csv_and_parquet_results(lake: Lake) -> None:
    csv = lake.sql("SELECT id, note FROM main.lab.notes WHERE id < 3 ORDER BY id", fmt="csv")
    assert csv.status_code == 200 and csv.mimetype == "text/csv"
    assert csv.data.decode().splitlines() == ['"id","note"', '1,"first"', '2,"second"']
    assert csv.headers["X-Statement-Type"] == "SELECT"
    parquet = lake.sql("SELECT id FROM main.lab.notes WHERE id < 3 ORDER BY id", fmt="parquet")
    assert pq.read_table(io.BytesIO(parquet.data)).column("id").to_pylist() == [1, 2]
    assert lake.sql("SELECT 1", fmt="xml").status_code == 400


def test_every_statement_is_audited(lake: Lake) -> None:
    text = "SELECT note FROM main.lab.notes WHERE id = :id"
    lake.sql(text, "carol", {"id": 1})
    lake.sql("DROP TABLE main.lab.notes", "carol")
    lake.stratus.governance.audit.flush()
    rows = DeltaTable(lake.stratus.lakehouse.url(AUDIT)).to_pyarrow_table().to_pylist()
    mine = [r for r in rows if r["action_name"] == "executeSql" and r["user_identity"] == "carol"]
    by_text = {json.loads(r["request_params"])["statement"]: r for r in mine}
    assert by_text[text]["outcome"] == "allowed"
    assert by_text[text]["securable_full_name"] == "main.lab.notes"
    assert json.loads(by_text[text]["request_params"])["parameters"] == ["id"]
    assert by_text["DROP TABLE main.lab.notes"]["outcome"] == "denied"


# ---- PII propagation ---------------------------------------------------------------------------
def test_ctas_from_pii_columns_tags_and_encrypts_the_target(lake: Lake) -> None:
    lake.ok(
        "CREATE TABLE main.lab.contacts AS SELECT employee_id, name, lower(email) AS mail, "
        "salary * 1.1 AS raised, department FROM main.hr.employees"
    )
    assert pii_tags(lake.stratus, "main.lab.contacts") == {"mail": "email", "raised": "salary"}
    emails = [p[2] for p in PEOPLE]
    assert files_contain(lake.stratus, "main.lab.contacts", emails) == []
    assert files_contain(lake.stratus, "main.lab.contacts", ["Jane Doe"])  # plaintext stays
    owner = lake.ok("SELECT mail FROM main.lab.contacts ORDER BY employee_id")
    assert [r["mail"] for r in owner["data"]] == emails
    lake.grant("schema", "main.lab", "bob", "USE SCHEMA")
    lake.grant("table", "main.lab.contacts", "bob", "SELECT")
    masked = lake.sql("SELECT mail, raised FROM main.lab.contacts ORDER BY employee_id", "bob")
    assert masked.get_json()["data"][0] == {"mail": "j***@example.com", "raised": "50,000-59,999"}
    # a masked reader copying PII copies masks, still tagged (and owns the result)
    lake.sql("CREATE TABLE main.lab.daves_copy AS SELECT email FROM main.hr.employees", "dave")
    assert pii_tags(lake.stratus, "main.lab.daves_copy") == {"email": "email"}
    copy = lake.sql("SELECT email FROM main.lab.daves_copy ORDER BY email", "dave").get_json()
    assert all("***" in r["email"] for r in copy["data"])


def test_pii_cannot_become_a_partition_or_key_column(lake: Lake) -> None:
    bad = lake.sql(
        "CREATE TABLE main.lab.by_mail PARTITIONED BY (email) AS "
        "SELECT email, department FROM main.hr.employees"
    )
    assert bad.status_code == 400 and "partition column" in bad.get_json()["detail"]
    assert lake.sql("SELECT * FROM main.lab.by_mail").status_code == 404
    keyed = lake.sql(
        "CREATE TABLE main.lab.keyed TBLPROPERTIES ('stratus.key' = 'email') AS "
        "SELECT email FROM main.hr.employees"
    )
    assert keyed.status_code == 400 and "key column" in keyed.get_json()["detail"]
    lake.ok("CREATE TABLE main.lab.parts (id INT, city STRING) PARTITIONED BY (city)")
    tag = lake.sql("ALTER TABLE main.lab.parts ALTER COLUMN city SET TAGS ('pii' = 'name')")
    assert tag.status_code == 400 and "partition column" in tag.get_json()["detail"]


def test_insert_checks_columns_nulls_and_keys(lake: Lake) -> None:
    lake.ok(
        "CREATE TABLE main.lab.checked (id INT NOT NULL, v STRING) "
        "TBLPROPERTIES ('stratus.key' = 'id')"
    )
    few = lake.sql("INSERT INTO main.lab.checked VALUES (1)").get_json()
    assert few["status"] == 400 and "1 value(s) per row for 2 column(s)" in few["detail"]
    null = lake.sql("INSERT INTO main.lab.checked (v) VALUES ('x')").get_json()
    assert null["status"] == 400 and "NOT NULL" in null["detail"]
    twice = lake.sql("INSERT INTO main.lab.checked VALUES (1, 'a'), (1, 'b')").get_json()
    assert twice["status"] == 400 and "same key" in twice["detail"]
    bad_cast = lake.sql("INSERT INTO main.lab.checked VALUES ('one', 'a')").get_json()
    assert bad_cast["status"] == 400 and "Conversion Error" in bad_cast["detail"]
    unknown = lake.sql("INSERT INTO main.lab.checked (id, nope) VALUES (1, 'a')").get_json()
    assert unknown["status"] == 400 and "no column 'nope'" in unknown["detail"]
    # a table with a key is upserted on it (as ingest does)
    assert lake.ok("INSERT INTO main.lab.checked VALUES (1, 'a'), (2, 'b')")["affected_rows"] == 2
    assert lake.ok("INSERT INTO main.lab.checked VALUES (2, 'B')")["affected_rows"] == 1
    rows = lake.ok("SELECT * FROM main.lab.checked ORDER BY id")["data"]
    assert rows == [{"id": 1, "v": "a"}, {"id": 2, "v": "B"}]


def test_insert_select_of_pii_protects_the_target_column(lake: Lake) -> None:
    lake.ok("CREATE TABLE main.lab.plain (id BIGINT, contact STRING, dept STRING)")
    lake.ok("INSERT INTO main.lab.plain VALUES (0, 'nobody', 'none')")
    lake.ok(
        "INSERT INTO main.lab.plain SELECT employee_id, email, department FROM main.hr.employees"
    )
    assert pii_tags(lake.stratus, "main.lab.plain") == {"contact": "email"}
    assert files_contain(lake.stratus, "main.lab.plain", [p[2] for p in PEOPLE]) == []
    got = lake.ok("SELECT contact FROM main.lab.plain ORDER BY id")["data"]
    assert [r["contact"] for r in got] == ["nobody", *[p[2] for p in PEOPLE]]
    # INSERT VALUES into a PII column encrypts it too
    lake.ok(
        "INSERT INTO main.hr.employees VALUES (4, 'Tom Poe', 'tom.poe@example.com', 50000, 'it')"
    )
    assert files_contain(lake.stratus, EMPLOYEES, ["tom.poe@example.com"]) == []
    assert lake.sql("SELECT email FROM main.hr.employees WHERE employee_id = 4", "uma").get_json()[
        "data"
    ] == [{"email": "tom.poe@example.com"}]


# ---- the example and its lineage ---------------------------------------------------------------
def test_menu_dinner_example_builds_the_tables_and_reports_lineage(lake: Lake) -> None:
    statements = split_statements(EXAMPLE.read_text())
    assert any("'Burrata; with peaches'" in s for s in statements)  # ; inside a string is safe
    ids = {}
    for text in statements:
        body = lake.ok(text)
        ids[text] = body["statement_id"]
    menu = lake.ok("SELECT count(*) AS n, sum(calories) AS kcal FROM main.demo.menu")["data"]
    assert menu == [{"n": 8, "kcal": 4190}]
    dinner = lake.ok("SELECT * FROM main.demo.dinner ORDER BY category")
    assert [c["name"] for c in dinner["columns"]] == [
        "category",
        "dishes",
        "avg_price",
        "max_calories",
    ]
    assert dinner["data"] == [
        {"category": "dessert", "dishes": 1, "avg_price": 7.0, "max_calories": 450},
        {"category": "main", "dishes": 3, "avg_price": 21.166666666666668, "max_calories": 980},
        {"category": "starter", "dishes": 2, "avg_price": 7.75, "max_calories": 320},
    ]
    calls = lake.sink.for_target("main.demo.dinner")
    assert [c[0] for c in calls] == ["start", "complete"]
    ctas = next(s for s in statements if "CREATE TABLE main.demo.dinner" in s)
    done = calls[1][1]
    assert calls[0][1].run_id == done.run_id == ids[ctas]
    assert done.sql == ctas and done.principal == "admin" and done.entity_type == "SQL"
    assert set(done.source_tables) == {"main.demo.menu", "main.demo.menu_tags"}
    assert done.target_schema == (
        ("category", "string"),
        ("dishes", "bigint"),
        ("avg_price", "double"),
        ("max_calories", "int"),
    )
    edges = {
        (e.source_table, e.source_column, e.target_column): e.transformation
        for e in done.column_edges
    }
    assert edges[("main.demo.menu", "category", "category")] == "IDENTITY"
    assert edges[("main.demo.menu", "price", "avg_price")] == "AGGREGATION"
    assert edges[("main.demo.menu", "calories", "max_calories")] == "AGGREGATION"
    assert edges[("main.demo.menu_tags", "tag", "dishes")] == "FILTER"
    assert edges[("main.demo.menu_tags", "dish_id", "avg_price")] == "JOIN"
    assert edges[("main.demo.menu", "category", "dishes")] == "GROUP_BY"
    direct = {k for k, v in edges.items() if v in ("IDENTITY", "TRANSFORMATION", "AGGREGATION")}
    assert direct == {
        ("main.demo.menu", "category", "category"),
        ("main.demo.menu", "price", "avg_price"),
        ("main.demo.menu", "calories", "max_calories"),
    }
    # INSERT ... VALUES reads no table: no lineage event for menu
    assert lake.sink.for_target("main.demo.menu") == []
    # running the file again works (it drops what it created)
    for text in statements:
        lake.ok(text)


def test_insert_select_and_failures_report_lineage(lake: Lake) -> None:
    lake.ok("CREATE TABLE main.lab.note_copy (id INT, note STRING)")
    body = lake.ok("INSERT INTO main.lab.note_copy SELECT id, upper(note) FROM main.lab.notes")
    calls = lake.sink.for_target("main.lab.note_copy")
    assert [c[0] for c in calls] == ["start", "complete"]
    event = calls[1][1]
    assert event.run_id == body["statement_id"]
    assert {(e.source_column, e.target_column, e.transformation) for e in event.column_edges} == {
        ("id", "id", "IDENTITY"),
        ("note", "note", "TRANSFORMATION"),
    }
    failing = lake.sql(
        "CREATE TABLE main.lab.broken AS SELECT CAST(note AS INT) AS n FROM main.lab.notes"
    )
    assert failing.status_code == 400
    calls = lake.sink.for_target("main.lab.broken")
    assert [c[0] for c in calls] == ["start", "fail"] and "Conversion" in str(calls[1][2])
    assert lake.sql("SELECT * FROM main.lab.broken").status_code == 404


# ---- service and CLI ---------------------------------------------------------------------------
def test_service_defaults_to_the_local_admin_and_rejects_file_reads(lake: Lake) -> None:
    result = lake.stratus.sql.execute("SELECT count(*) AS n FROM main.hr.employees")
    assert result.data.to_pylist() == [{"n": len(PEOPLE) + 1}]
    with pytest.raises(UnsupportedStatement):
        lake.stratus.sql.execute("SELECT * FROM read_parquet('/etc/hosts')")
    with pytest.raises(UnsupportedStatement):
        lake.stratus.sql.execute("SELECT * FROM query_table('main.hr.employees')")
    with pytest.raises(InvalidArgument):  # sqlglot does not even parse this glob()
        lake.stratus.sql.execute("SELECT * FROM glob('/etc/*')")
    assert LOCAL_ADMIN.is_admin


def test_cli_runs_statements_and_files(tmp_path: Path) -> None:
    env = {"STRATUS_HOME": str(tmp_path / "home"), "STRATUS_LOG_LEVEL": "WARNING"}
    runner = CliRunner()
    setup = runner.invoke(main, ["sql", "--file", str(EXAMPLE)], env=env)
    assert setup.exit_code == 0, setup.output
    assert "starter" in setup.output and "create table as select main.demo.dinner" in setup.output
    out = runner.invoke(
        main,
        [
            "sql",
            "SELECT category, dishes FROM main.demo.dinner WHERE category = :c",
            "--json",
            "-p",
            "c=main",
        ],
        env=env,
    )
    assert out.exit_code == 0, out.output
    payload = json.loads(out.stdout.strip().splitlines()[-1])
    assert payload["data"] == [{"category": "main", "dishes": 3}]
    assert payload["statement_type"] == "SELECT"
    bad = runner.invoke(main, ["sql", "INSERT OVERWRITE main.demo.menu VALUES (1)"], env=env)
    assert bad.exit_code == 1 and "not supported: INSERT OVERWRITE" in bad.output
    stratus = Stratus.from_settings(Settings(home=tmp_path / "home"))
    stratus.bootstrap()
    stratus.governance.metastore.create_principal("eve")
    token, _ = stratus.governance.metastore.create_token("eve", days=1)
    stratus.close()
    denied = runner.invoke(
        main, ["sql", "SELECT * FROM main.demo.menu"], env={**env, "STRATUS_TOKEN": token}
    )
    assert denied.exit_code == 1 and "does not exist" in denied.output
    usage = runner.invoke(main, ["sql"], env=env)
    assert usage.exit_code != 0


def test_the_same_sql_on_azure_blob_storage(tmp_path: Path, azurite: str) -> None:
    from tests.conftest import azure_settings

    stratus = Stratus.from_settings(azure_settings(azurite, tmp_path / "home"))
    try:
        stratus.bootstrap()
        sink = _with_sink(stratus)
        run = stratus.sql.execute
        for text in split_statements(EXAMPLE.read_text())[:-1]:
            run(text)
        rows = run("SELECT category, dishes FROM main.demo.dinner ORDER BY category")
        assert rows.data.to_pylist()[1] == {"category": "main", "dishes": 3}
        assert [c[0] for c in sink.for_target("main.demo.dinner")] == ["start", "complete"]
        run("CREATE TABLE main.demo.people (id INT, email STRING) PARTITIONED BY (id)")
        run("ALTER TABLE main.demo.people ALTER COLUMN email SET TAGS ('pii' = 'email')")
        run("INSERT INTO main.demo.people VALUES (1, 'zed.zulu@example.com')")
        stratus.governance.metastore.create_principal("reader")
        ms = stratus.governance.metastore
        for kind, name, priv in (
            ("catalog", "main", "USE CATALOG"),
            ("schema", "main.demo", "USE SCHEMA"),
            ("table", "main.demo.people", "SELECT"),
        ):
            ms.update_grants(
                kind, ms.securable(kind, name).id, [{"principal": "reader", "add": [priv]}]
            )
        stratus.governance.authorizer.refresh()
        reader = stratus.governance.authorizer.identity(ms.get_principal("reader"))
        shown = stratus.sql.execute(
            "SELECT email FROM main.demo.people WHERE id = 1", who=reader
        ).data.to_pylist()
        assert shown == [{"email": "z***@example.com"}]
        assert run("SELECT email FROM main.demo.people").data.to_pylist() == [
            {"email": "zed.zulu@example.com"}
        ]
    finally:
        stratus.close()


def test_the_engine_names_each_arrow_type_exactly_in_duckdb() -> None:
    """One mapping for SQL casts, generic-table casts and partition constants: a decimal stays a
    decimal of its precision, a 32-bit integer an INTEGER, binary a BLOB."""
    import duckdb
    import pyarrow as pa

    from stratus.engine.local import duck_type

    cases = {
        pa.int8(): "TINYINT",
        pa.int32(): "INTEGER",
        pa.int64(): "BIGINT",
        pa.float32(): "FLOAT",
        pa.float64(): "DOUBLE",
        pa.decimal128(6, 2): "DECIMAL(6,2)",
        pa.bool_(): "BOOLEAN",
        pa.date32(): "DATE",
        pa.timestamp("us"): "TIMESTAMP",
        pa.timestamp("us", tz="UTC"): "TIMESTAMPTZ",
        pa.binary(): "BLOB",
        pa.string(): "VARCHAR",
    }
    assert {t: duck_type(t) for t in cases} == cases
    con = duckdb.connect()
    for name in cases.values():  # each is a type DuckDB accepts in a cast
        con.execute(f"SELECT CAST(NULL AS {name})").fetchall()
