"""The cases where the REST API, SQL and the CLI used to decide differently: one rule each now
(``stratus.catalog.commands``), and every path gives the same answer.

| case | rule |
| ---- | ---- |
| dropping a table | MANAGED: its data is deleted; EXTERNAL: its data stays |
| PII tag on a partition column | refused (400) everywhere, like a key column |
| column names in tags | matched case-insensitively, stored in the table's spelling |
| REVOKE ALL PRIVILEGES | removes every privilege everywhere |
| table in a missing schema | REST/SQL: the schema is not found; CLI ingest and jobs create it, |
|                           | which needs USE CATALOG + CREATE SCHEMA on the catalog |
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from click.testing import CliRunner, Result
from deltalake import DeltaTable, write_deltalake
from flask.testing import FlaskClient

from stratus.api import create_app
from stratus.cli import main
from stratus.config import Settings
from stratus.context import Stratus
from tests.conftest import client_for

UC = "/api/2.1/unity-catalog"
PATHS = ("rest", "sql", "cli")


@dataclass
class Env:
    stratus: Stratus
    home: Path
    tokens: dict[str, str]
    clients: dict[str, FlaskClient]

    def client(self, who: str = "admin") -> FlaskClient:
        if who not in self.clients:
            self.clients[who] = client_for(create_app(stratus=self.stratus), self.token(who))
        return self.clients[who]

    def token(self, who: str) -> str:
        if who not in self.tokens:
            self.tokens[who], _ = self.stratus.governance.metastore.create_token(who, days=1)
        return self.tokens[who]

    def sql(self, text: str, who: str = "admin") -> Any:
        return self.client(who).post("/api/v1/sql", json={"statement": text})

    def cli(self, *args: str, who: str | None = None) -> Result:
        env = {"STRATUS_HOME": str(self.home), "STRATUS_LOG_LEVEL": "WARNING"}
        if who is not None:
            env["STRATUS_TOKEN"] = self.token(who)
        result = CliRunner().invoke(main, list(args), env=env)
        self.stratus.governance.authorizer.refresh()  # another process changed the metastore
        return result

    def grant(self, kind: str, name: str, who: str, *privileges: str) -> None:
        self.stratus.catalog.update_permissions(
            admin(), kind, name, [{"principal": who, "add": list(privileges)}]
        )

    def ok(self, text: str, who: str = "admin") -> None:
        resp = self.sql(text, who)
        assert resp.status_code == 200, (text, resp.get_json())


def admin() -> Any:
    from stratus.security.governance import LOCAL_ADMIN

    return LOCAL_ADMIN


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    home = tmp_path_factory.mktemp("divergences") / "home"
    stratus = Stratus.from_settings(Settings(home=home))
    stratus.bootstrap()
    for who in ("alice", "bob"):
        stratus.governance.metastore.create_principal(who)
    e = Env(stratus, home, {}, {})
    e.ok("CREATE SCHEMA main.d")
    yield e
    stratus.close()


def _location(env: Env, full_name: str) -> str:
    return str(env.stratus.governance.metastore.get_table(full_name).storage_location)


def _has_delta(url: str) -> bool:
    try:
        DeltaTable(url)
    except Exception:
        return False
    return True


def _drop(env: Env, path: str, full_name: str) -> None:
    if path == "rest":
        resp = env.client().delete(f"{UC}/tables/{full_name}")
        assert resp.status_code == 200, resp.get_json()
    elif path == "sql":
        env.ok(f"DROP TABLE {full_name}")
    else:
        result = env.cli("sql", f"DROP TABLE {full_name}")
        assert result.exit_code == 0, result.output


# ---- 1. dropping a table: MANAGED data goes, EXTERNAL data stays ---------------------------------
@pytest.mark.parametrize("path", PATHS)
def test_drop_removes_managed_data_and_keeps_external_data(
    env: Env, path: str, tmp_path: Path
) -> None:
    managed = f"main.d.managed_{path}"
    env.ok(f"CREATE TABLE {managed} (id INT)")
    env.ok(f"INSERT INTO {managed} VALUES (1), (2)")
    managed_at = _location(env, managed)
    assert _has_delta(managed_at)

    external_at = (tmp_path / "ext").as_uri()
    write_deltalake(external_at, pa.table({"id": pa.array([7], pa.int32())}))
    body = {
        "name": f"external_{path}",
        "catalog_name": "main",
        "schema_name": "d",
        "table_type": "EXTERNAL",
        "data_source_format": "DELTA",
        "columns": [{"name": "id", "type_name": "INT", "position": 0}],
        "storage_location": external_at,
    }
    created = env.client().post(f"{UC}/tables", json=body)
    assert created.status_code == 200, created.get_json()

    _drop(env, path, managed)
    _drop(env, path, f"main.d.external_{path}")

    assert not _has_delta(managed_at)  # the managed table's log and files are gone
    assert DeltaTable(external_at).to_pyarrow_table().column("id").to_pylist() == [7]
    # a new table of the same name starts empty: nothing of the old one reappears
    env.ok(f"CREATE TABLE {managed} (id INT)")
    rows = env.sql(f"SELECT count(*) AS n FROM {managed}").get_json()
    assert rows["data"] == [{"n": 0}] or rows["data"] == [[0]], rows


def test_dropping_a_schema_by_force_removes_its_managed_tables_data(env: Env) -> None:
    env.ok("CREATE SCHEMA main.gone")
    env.ok("CREATE TABLE main.gone.t (id INT)")
    env.ok("INSERT INTO main.gone.t VALUES (1)")
    at = _location(env, "main.gone.t")
    assert _has_delta(at)
    resp = env.client().delete(f"{UC}/schemas/main.gone", query_string={"force": "true"})
    assert resp.status_code == 200, resp.get_json()
    assert not _has_delta(at)


# ---- 2. a PII tag on a partition column is refused everywhere ------------------------------------
def test_pii_on_a_partition_column_is_refused_by_rest_sql_and_cli(env: Env) -> None:
    table = "main.d.parted"
    env.ok(f"CREATE TABLE {table} (id INT, region STRING, v DOUBLE) PARTITIONED BY (region)")
    env.ok(f"INSERT INTO {table} VALUES (1, 'north', 1.5)")
    version = DeltaTable(_location(env, table)).version()

    rest = env.client().put(
        f"{UC}/tags/table/{table}", json={"tags": {"pii": "name"}, "column": "region"}
    )
    assert rest.status_code == 400 and "partition column" in rest.get_json()["detail"]
    stmt = f"ALTER TABLE {table} ALTER COLUMN region SET TAGS ('pii' = 'name')"
    sql = env.sql(stmt)
    assert sql.status_code == 400 and "partition column" in sql.get_json()["detail"]
    cli = env.cli("sql", stmt)
    assert cli.exit_code == 1 and "partition column" in " ".join(cli.output.split())

    assert env.stratus.tables.protector.pii_columns(table) == {}
    assert DeltaTable(_location(env, table)).version() == version  # nothing rewritten


# ---- 3. column names in tags: case-insensitive, stored as the table spells them ------------------
def test_column_names_in_tags_match_case_insensitively_everywhere(env: Env) -> None:
    table = "main.d.cased"
    env.ok(f"CREATE TABLE {table} (id INT, Email STRING)")
    rest = env.client().put(
        f"{UC}/tags/table/{table}", json={"tags": {"via_rest": "1"}, "column": "EMAIL"}
    )
    assert rest.status_code == 200, rest.get_json()
    env.ok(f"ALTER TABLE {table} ALTER COLUMN email SET TAGS ('via_sql' = '1')")
    cli = env.cli("sql", f"ALTER TABLE {table} ALTER COLUMN eMaIl SET TAGS ('via_cli' = '1')")
    assert cli.exit_code == 0, cli.output

    tags = env.client().get(f"{UC}/tags/table/{table}").get_json()["tags"]
    assert sorted((t["column_name"], t["key"]) for t in tags) == [
        ("Email", "via_cli"),
        ("Email", "via_rest"),
        ("Email", "via_sql"),
    ]
    missing = env.client().put(
        f"{UC}/tags/table/{table}", json={"tags": {"k": "v"}, "column": "mail"}
    )
    assert missing.status_code == 400 and missing.get_json()["parameter"] == "column"


# ---- 4. REVOKE ALL PRIVILEGES removes every privilege everywhere ---------------------------------
def _grants_of(env: Env, table: str, who: str) -> set[str]:
    _, grants = env.stratus.catalog.permissions(admin(), "table", table)
    return grants.get(who, set())


@pytest.mark.parametrize("path", PATHS)
def test_revoke_all_privileges_removes_every_privilege(env: Env, path: str) -> None:
    table = f"main.d.revoked_{path}"
    env.ok(f"CREATE TABLE {table} (id INT)")
    env.grant("table", table, "bob", "SELECT", "MODIFY", "APPLY TAG")
    assert _grants_of(env, table, "bob") == {"SELECT", "MODIFY", "APPLY TAG"}
    if path == "rest":
        body = {"changes": [{"principal": "bob", "remove": ["ALL PRIVILEGES"]}]}
        resp = env.client().patch(f"{UC}/permissions/table/{table}", json=body)
        assert resp.status_code == 200, resp.get_json()
    elif path == "sql":
        env.ok(f"REVOKE ALL PRIVILEGES ON TABLE {table} FROM bob")
    else:
        result = env.cli("admin", "grant", "table", table, "bob", "ALL PRIVILEGES", "--revoke")
        assert result.exit_code == 0, result.output
    assert _grants_of(env, table, "bob") == set()


# ---- 5. a table in a missing schema: one rule ----------------------------------------------------
def test_a_table_in_a_missing_schema_needs_create_schema_where_the_schema_is_created(
    env: Env, tmp_path: Path
) -> None:
    # alice may create tables anywhere in main (CREATE TABLE inherited from the catalog) but
    # not schemas; SELECT on the hourly table lets her submit jobs
    env.grant("catalog", "main", "alice", "USE CATALOG", "USE SCHEMA", "CREATE TABLE")
    env.grant("table", "main.weather.hourly", "alice", "SELECT")
    src = tmp_path / "people.csv"
    src.write_text("id,score\n1,5\n2,7\n")

    # REST and SQL never create a schema implicitly: it is not found (as in Unity Catalog)
    body = {
        "name": "t",
        "catalog_name": "main",
        "schema_name": "nope",
        "table_type": "MANAGED",
        "columns": [{"name": "id", "type_name": "INT", "position": 0}],
    }
    rest = env.client("alice").post(f"{UC}/tables", json=body)
    assert rest.status_code == 404 and "schema main.nope" in rest.get_json()["detail"]
    sql = env.sql("CREATE TABLE main.nope.t (id INT)", "alice")
    assert sql.status_code == 404 and "schema main.nope" in sql.get_json()["detail"]

    # the CLI (ingest) and jobs create it: both need CREATE SCHEMA (the CLI used not to)
    cli = env.cli("ingest", str(src), "--table", "main.fresh.people", "--key", "id", who="alice")
    assert cli.exit_code != 0
    assert "lacks CREATE SCHEMA on catalog main" in " ".join(cli.output.split())
    job = {"type": "anomalies", "city_ids": ["lima"], "start": "2024-01-01", "end": "2024-01-02"}
    jobs = env.client("alice").post("/api/v1/jobs", json={**job, "output": "main.fresh2.out"})
    assert jobs.status_code == 403, jobs.get_json()
    assert "lacks CREATE SCHEMA on catalog main" in jobs.get_json()["detail"]
    ms = env.stratus.governance.metastore
    assert [s.name for s in ms.list_schemas("main").items if s.name.startswith("fresh")] == []

    env.grant("catalog", "main", "alice", "CREATE SCHEMA")
    cli = env.cli("ingest", str(src), "--table", "main.fresh.people", "--key", "id", who="alice")
    assert cli.exit_code == 0, cli.output
    assert ms.get_schema("main.fresh").owner == "alice"
    assert ms.get_table("main.fresh.people").owner == "alice"
    jobs = env.client("alice").post("/api/v1/jobs", json={**job, "output": "main.fresh2.out"})
    # authorized now: the next check is the city (no weather is loaded here)
    assert jobs.status_code == 404 and jobs.get_json()["type"] == "/problems/unknown-city"
    # REST and SQL still need the schema to exist
    assert env.client("alice").post(f"{UC}/tables", json=body).status_code == 404
