"""PII protection end to end: ingest with detection and encryption, no plaintext on disk or in
logs, masked and unmasked reads through the rows API, tag-driven re-encryption, key rotation,
lost keys and the environment key provider.

The employee data is fake (Faker, reserved e-mail domains and 555-01xx phone numbers).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import shutil
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result
from deltalake import DeltaTable
from flask import Flask
from flask.testing import FlaskClient

from stratus.api import create_app
from stratus.catalog import registry
from stratus.cli import main
from stratus.config import Settings
from stratus.context import Stratus
from stratus.datasets.employees import generate_employees, write_employees_csv
from stratus.pii import KeyMissingError, PiiError, generate_master_key, mask
from stratus.security.audit import AUDIT
from stratus.tables.service import TableIngestReport
from tests.conftest import client_for, token_for

TABLE = "main.hr.employees"
ROWS = f"/api/v1/tables/{TABLE}/rows"
TAGS = "/api/2.1/unity-catalog/tags/table"
N = 300
PII_KINDS = {"email": "email", "phone": "phone", "salary": "salary", "name": "name"}
READER, UNMASKER, ALLPRIV, NOSELECT, NOBODY = (
    "pii-reader",
    "pii-unmasker",
    "pii-allprivileges",
    "pii-noselect",
    "pii-nobody",
)
# rows the quarantine must take: a bad key and a bad salary, both with PII in the other columns
BAD_ROWS = [
    ["x12", "Quentin Quarantine", "quentin.q@example.com", "+1-212-555-0177", "2020-02-02", "1.5"],
    ["9001", "Rita Reject", "rita.reject@example.net", "+1-646-555-0166", "2021-03-03", "lots"],
]
BAD_PII = [cell.encode() for row in BAD_ROWS for cell in row[1:4]]


# ---- helpers ---------------------------------------------------------------------------------
def people(n: int = N, seed: int = 0) -> list[dict[str, Any]]:
    return generate_employees(n, seed).to_pylist()  # type: ignore[no-any-return]


def needles(rows: list[dict[str, Any]], columns: tuple[str, ...] = tuple(PII_KINDS)) -> dict:
    """Byte strings that must never be found: each PII value as text, salaries also as their
    repr and as the 8 bytes of a Parquet PLAIN double."""
    out: dict[bytes, str] = {}
    for p in rows:
        who = f"employee {p['employee_id']}"
        for col in columns:
            value = p[col]
            if value is None:
                continue
            if isinstance(value, float):
                out[repr(value).encode()] = f"salary {value!r} of {who}"
                out[struct.pack("<d", value)] = f"salary {value!r} (binary) of {who}"
            else:
                out[str(value).encode()] = f"{col} {value!r} of {who}"
    return out


def _decoded_parquet(path: Path) -> bytes:
    """Every value of a Parquet file (data or checkpoint) and its statistics, as text: a byte
    scan alone cannot see through compressed pages."""
    pf = pq.ParquetFile(path)
    parts = [repr(pf.read().to_pylist())]
    meta = pf.metadata
    for rg in range(meta.num_row_groups):
        for c in range(meta.num_columns):
            stats = meta.row_group(rg).column(c).statistics
            if stats is not None and stats.has_min_max:
                parts.append(f"{stats.min!r} {stats.max!r}")
    return "\n".join(parts).encode()


def leaks(
    roots: list[Path], found: Mapping[bytes, str], extra: Mapping[str, bytes] | None = None
) -> list[str]:
    """Where any needle occurs: every byte of every file under ``roots`` (Parquet also decoded),
    plus ``extra`` texts (log files, captured output)."""
    blobs: dict[str, bytes] = dict(extra or {})
    for root in roots:
        for path in sorted(root.rglob("*")):
            if not path.is_file():
                continue
            blobs[str(path)] = path.read_bytes()
            if path.suffix == ".parquet":
                blobs[f"{path} (decoded)"] = _decoded_parquet(path)
    assert blobs, f"nothing to scan under {roots}"
    return [
        f"{what} in {where}"
        for where, data in blobs.items()
        for n, what in found.items()
        if n in data
    ]


def files_of(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def grant(stratus: Stratus, kind: str, full_name: str, principal: str, *privs: str) -> None:
    ms = stratus.governance.metastore
    ms.update_grants(
        kind, ms.securable(kind, full_name).id, [{"principal": principal, "add": list(privs)}]
    )


def add_reader(stratus: Stratus, who: str, table: str, *privs: str) -> None:
    ms = stratus.governance.metastore
    ms.create_principal(who)
    catalog, schema, _ = table.split(".")
    grant(stratus, "catalog", catalog, who, "USE CATALOG")
    grant(stratus, "schema", f"{catalog}.{schema}", who, "USE SCHEMA")
    if privs:
        grant(stratus, "table", table, who, *privs)


def cli(home: Path, *args: str, env: Mapping[str, str] | None = None) -> Result:
    full_env = {"STRATUS_HOME": str(home), "STRATUS_LOG_LEVEL": "DEBUG", **(env or {})}
    return CliRunner().invoke(main, list(args), env=full_env)


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def csv_rows(rows: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [p["employee_id"], p["name"], p["email"], p["phone"], p["hire_date"], f"{p['salary']:.2f}"]
        for p in rows
    ]


def delta_url(stratus: Stratus, table: str = TABLE) -> str:
    spec, _ = stratus.tables.physical(stratus.tables.spec(table))
    return stratus.lakehouse.url(spec)


def delta_version(stratus: Stratus, table: str = TABLE) -> int:
    return DeltaTable(delta_url(stratus, table)).version()


def all_rows(stratus: Stratus, table: str = TABLE, *, unmask: bool = True) -> list[dict]:
    page = stratus.tables.rows(table, unmask=unmask, limit=100_000)
    assert page.next_cursor is None
    return page.table.to_pylist()  # type: ignore[no-any-return]


def audit_rows(stratus: Stratus) -> list[dict[str, Any]]:
    stratus.governance.audit.flush()
    return DeltaTable(stratus.lakehouse.url(AUDIT)).to_pyarrow_table().to_pylist()  # type: ignore[no-any-return]


def masked(kind: str, value: object) -> str:
    return mask(kind, pa.array([value])).to_pylist()[0]  # type: ignore[no-any-return]


@pytest.fixture
def debug_log(tmp_path: Path) -> Iterator[Path]:
    """Everything logged at DEBUG or above goes to a file for the duration of the test."""
    path = tmp_path / "debug.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()


# ---- the shared employee table -----------------------------------------------------------------
@dataclass
class Hr:
    base: Path
    home: Path
    log: Path
    stratus: Stratus
    people: list[dict[str, Any]]
    created: dict[str, Any]  # the CLI's JSON report of the first ingest
    created_text: str  # the CLI's table output of the same ingest (a second home)
    bad: dict[str, Any]
    again: dict[str, Any]
    changed: TableIngestReport
    changed_id: int
    old_salary: float
    versions: dict[str, int | None]
    outputs: list[str] = field(default_factory=list)
    app: Flask | None = None
    tokens: dict[str, str] = field(default_factory=dict)

    def client(self, who: str = "admin") -> FlaskClient:
        assert self.app is not None
        return client_for(self.app, self.tokens[who])


@pytest.fixture(scope="module")
def hr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hr]:
    base = tmp_path_factory.mktemp("pii")
    home = base / "home"
    log_path = base / "debug.log"
    handler = logging.FileHandler(log_path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    stratus: Stratus | None = None
    try:
        src = write_employees_csv(base / "employees.csv", N)
        staff = people()
        outputs: list[str] = []

        def run(*args: str) -> Result:
            result = cli(home, *args)
            outputs.append(result.output)
            assert result.exit_code == 0, result.output
            return result

        created = run(
            "ingest", str(src), "--table", "hr.employees", "--key", "employee_id", "--json"
        )
        # the human-readable report, from a second home (the first has the table already)
        text = cli(
            base / "home2", "ingest", str(src), "--table", "hr.employees", "--key", "employee_id"
        )
        outputs.append(text.output)
        assert text.exit_code == 0, text.output
        shutil.rmtree(base / "home2")

        stratus = Stratus.from_settings(Settings(home=home))
        stratus.bootstrap()
        v_created = delta_version(stratus)

        header = list(staff[0])
        bad_src = write_csv(base / "bad.csv", header, BAD_ROWS)
        bad = run("ingest", str(bad_src), "--table", "hr.employees", "--json")
        v_bad = delta_version(stratus)

        again = run("ingest", str(src), "--table", "hr.employees", "--json")
        v_again = delta_version(stratus)

        changed_id, new_salary = 7, 123456.78
        old_salary = staff[changed_id - 1]["salary"]
        edited = [dict(p) for p in staff]
        edited[changed_id - 1]["salary"] = new_salary
        changed_src = write_csv(base / "changed.csv", header, csv_rows(edited))
        changed = stratus.tables.ingest(changed_src, TABLE, owner="admin")
        v_changed = delta_version(stratus)

        hr = Hr(
            base=base,
            home=home,
            log=log_path,
            stratus=stratus,
            people=edited,
            created=json.loads(created.stdout.strip().splitlines()[-1]),
            created_text=text.output,
            bad=json.loads(bad.stdout.strip().splitlines()[-1]),
            again=json.loads(again.stdout.strip().splitlines()[-1]),
            changed=changed,
            changed_id=changed_id,
            old_salary=old_salary,
            versions={"created": v_created, "bad": v_bad, "again": v_again, "changed": v_changed},
            outputs=outputs,
        )
        hr.app = create_app(stratus=stratus)
        add_reader(stratus, READER, TABLE, "SELECT")
        add_reader(stratus, UNMASKER, TABLE, "SELECT", "UNMASK")
        add_reader(stratus, ALLPRIV, TABLE, "ALL PRIVILEGES")
        add_reader(stratus, NOSELECT, TABLE)
        stratus.governance.metastore.create_principal(NOBODY)
        for who in ("admin", READER, UNMASKER, ALLPRIV, NOSELECT, NOBODY):
            hr.tokens[who] = token_for(stratus, who)
        yield hr
    finally:
        if stratus is not None:
            stratus.close()
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()


def person(hr: Hr, employee_id: int) -> dict[str, Any]:
    return hr.people[employee_id - 1]


# ---- ingest: detection, tags, quarantine, idempotence -------------------------------------------
def test_ingest_detects_tags_and_explains_pii(hr: Hr) -> None:
    report = hr.created
    assert report["created"] is True
    assert (report["read"], report["written"], report["inserted"]) == (N, N, N)
    assert set(report["pii_tagged"]) == set(PII_KINDS)
    for column, kind in PII_KINDS.items():
        why = report["pii_tagged"][column]
        assert why.startswith(f"{kind}: ") and len(why) > len(kind) + 5, why
    assert "employee_id" not in report["pii_tagged"] and "hire_date" not in report["pii_tagged"]
    for column in PII_KINDS:
        assert f"PII: {column} tagged pii=" in hr.created_text
    tags = [
        (r["column_name"], r["tag_value"])
        for r in hr.stratus.governance.metastore.column_tags()
        if r["schema_name"] == "hr" and r["table_name"] == "employees" and r["tag_name"] == "pii"
    ]
    assert sorted(tags) == sorted(PII_KINDS.items())
    # the same through the information_schema endpoint
    body = hr.client().get("/api/2.1/unity-catalog/information_schema/column_tags").get_json()
    assert {(r["column_name"], r["tag_value"]) for r in body["column_tags"]} == set(
        PII_KINDS.items()
    )
    # the physical layout: ciphertext + token per PII column, the logical schema unchanged
    physical = DeltaTable(delta_url(hr.stratus)).schema().to_arrow()
    names = [f.name for f in physical]
    for column in PII_KINDS:
        assert f"{column}__token" in names
    table = hr.stratus.governance.metastore.get_table(TABLE)
    assert [c["name"] for c in table.columns] == list(generate_employees(1).column_names)


def test_bad_rows_are_quarantined_without_their_pii(hr: Hr) -> None:
    assert (hr.bad["read"], hr.bad["quarantined"], hr.bad["written"]) == (2, 2, 0)
    assert hr.versions["bad"] == hr.versions["created"]
    quarantine = DeltaTable(hr.stratus.lakehouse.url(registry.QUARANTINE)).to_pyarrow_table()
    mine = [r for r in quarantine.to_pylist() if r["target_table"] == TABLE]
    assert len(mine) == 2
    reasons = " | ".join(r["reason"] for r in mine)
    assert "employee_id: x12 is not BIGINT" in reasons
    assert "salary: a value is not DOUBLE" in reasons  # the value itself is PII: not echoed
    for row in mine:
        raw = orjson.loads(row["raw"])
        assert set(raw) == {"employee_id", "hire_date"}, raw
        text = repr(row).encode()
        assert not [n for n in BAD_PII if n in text]


def test_reingest_writes_nothing_and_a_change_updates_one_row(hr: Hr) -> None:
    again = hr.again
    assert (again["written"], again["inserted"], again["updated"]) == (0, 0, 0)
    assert again["unchanged"] == N and again["version"] is None
    assert hr.versions["again"] == hr.versions["bad"]
    changed = hr.changed
    assert (changed.written, changed.updated, changed.inserted, changed.unchanged) == (
        1,
        1,
        0,
        N - 1,
    )
    assert changed.version == hr.versions["changed"] == hr.versions["again"] + 1
    row = hr.stratus.tables.rows(TABLE, unmask=True, filters={"employee_id": "7"}).table
    assert row.column("salary").to_pylist() == [123456.78]


def test_service_reads_back_every_value(hr: Hr) -> None:
    shown = all_rows(hr.stratus)
    assert shown == hr.people


# ---- the rows API ------------------------------------------------------------------------------
def test_admin_and_unmask_holders_see_plaintext(hr: Hr) -> None:
    for who in ("admin", UNMASKER):
        body = hr.client(who).get(f"{ROWS}?limit=5").get_json()
        assert body["masked"] == []
        assert [r["employee_id"] for r in body["data"]] == [1, 2, 3, 4, 5]
        for row in body["data"]:
            expected = {**person(hr, row["employee_id"])}
            expected["hire_date"] = expected["hire_date"].isoformat()
            assert row == expected


@pytest.mark.parametrize("who", [READER, ALLPRIV])
def test_readers_without_unmask_see_masks(hr: Hr, who: str) -> None:
    body = hr.client(who).get(f"{ROWS}?limit={N}").get_json()
    assert body["masked"] == ["name", "email", "phone", "salary"]
    assert len(body["data"]) == N
    for row in body["data"]:
        p = person(hr, row["employee_id"])
        assert row["email"] == p["email"][0] + "***@" + p["email"].split("@")[1]
        assert row["phone"] == "***-***-" + p["phone"][-4:]
        low = int(p["salary"] // 10_000 * 10_000)
        assert row["salary"] == f"{low:,}-{low + 9_999:,}"
        assert row["name"] == " ".join(w[0] + "." for w in p["name"].split())
        assert row["hire_date"] == p["hire_date"].isoformat()
    text = orjson.dumps(body)
    assert not leaks([], needles(hr.people), {"response": text})


def test_equality_filters_use_tokens_for_unmask_holders(hr: Hr) -> None:
    p = person(hr, 42)
    for who in ("admin", UNMASKER):
        client = hr.client(who)
        for column in ("email", "phone", "name", "salary"):
            resp = client.get(ROWS, query_string={column: str(p[column])})
            assert resp.status_code == 200, resp.get_json()
            ids = [r["employee_id"] for r in resp.get_json()["data"]]
            assert 42 in ids and all(person(hr, i)[column] == p[column] for i in ids), column
        both = client.get(ROWS, query_string={"email": p["email"], "phone": "+1-000-555-0000"})
        assert both.get_json()["data"] == []
    # the changed salary is found under its new value only
    admin = hr.client()
    assert [
        r["employee_id"]
        for r in admin.get(ROWS, query_string={"salary": "123456.78"}).get_json()["data"]
    ] == [hr.changed_id]
    stale = admin.get(ROWS, query_string={"salary": repr(hr.old_salary)}).get_json()["data"]
    assert hr.changed_id not in [r["employee_id"] for r in stale]


@pytest.mark.parametrize("who", [READER, ALLPRIV])
def test_masks_apply_before_filters(hr: Hr, who: str) -> None:
    client = hr.client(who)
    p = person(hr, 42)
    for column in ("email", "phone", "name", "salary"):
        for value in (p[column], repr(p[column]), str(p[column]).lower()):
            got = client.get(ROWS, query_string={column: str(value)})
            assert got.status_code == 200
            assert got.get_json()["data"] == [], (column, value)
    # filtering by the masked text works, and returns exactly the rows with that mask
    for column, kind in PII_KINDS.items():
        text = masked(kind, p[column])
        rows = client.get(ROWS, query_string={column: text, "limit": N}).get_json()["data"]
        expected = sorted(q["employee_id"] for q in hr.people if masked(kind, q[column]) == text)
        assert 42 in expected
        assert [r["employee_id"] for r in rows] == expected, column
    # a non-PII filter combined with a plaintext PII value still finds nothing
    combo = {"employee_id": "42", "email": p["email"]}
    assert client.get(ROWS, query_string=combo).get_json()["data"] == []


def test_paging_covers_every_row_once(hr: Hr) -> None:
    for who in (READER, "admin"):
        client = hr.client(who)
        seen: list[int] = []
        cursor = None
        pages = 0
        while True:
            query: dict[str, Any] = {"limit": 70, "fields": "employee_id,email"}
            if cursor:
                query["cursor"] = cursor
            body = client.get(ROWS, query_string=query).get_json()
            assert body["fields"] == ["employee_id", "email"]
            seen += [r["employee_id"] for r in body["data"]]
            pages += 1
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert pages == 5 and seen == list(range(1, N + 1))


def test_paging_through_a_masked_filter(hr: Hr) -> None:
    client = hr.client(READER)
    target = masked("salary", person(hr, 1)["salary"])
    expected = [p["employee_id"] for p in hr.people if masked("salary", p["salary"]) == target]
    assert len(expected) > 6
    seen: list[int] = []
    cursor = None
    while True:
        query = {"salary": target, "limit": 4, **({"cursor": cursor} if cursor else {})}
        body = client.get(ROWS, query_string=query).get_json()
        assert len(body["data"]) <= 4
        seen += [r["employee_id"] for r in body["data"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == expected


def test_csv_and_parquet_formats(hr: Hr) -> None:
    resp = hr.client(READER).get(ROWS, query_string={"format": "csv", "limit": 10})
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    assert resp.headers["X-Row-Count"] == "10" and resp.headers["X-Next-Cursor"]
    rows = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))
    assert [int(r["employee_id"]) for r in rows] == list(range(1, 11))
    assert rows[0]["email"] == masked("email", person(hr, 1)["email"])
    assert not leaks([], needles(hr.people), {"csv": resp.get_data()})

    resp = hr.client(UNMASKER).get(ROWS, query_string={"format": "parquet", "limit": N})
    assert resp.status_code == 200 and resp.mimetype == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(resp.get_data()))
    assert table.schema.field("salary").type == pa.float64()
    assert table.to_pylist() == hr.people


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("nope=1", "nope"),
        ("limit=0", "limit"),
        ("limit=ten", "limit"),
        ("cursor=not-a-cursor", "cursor"),
        ("format=xml", "format"),
        ("fields=employee_id,nope", "fields"),
        ("salary=lots", "salary"),
        ("hire_date=yesterday", "hire_date"),
        ("employee_id=x", "employee_id"),
    ],
)
def test_bad_parameters_are_400_naming_them(hr: Hr, query: str, parameter: str) -> None:
    resp = hr.client().get(f"{ROWS}?{query}")
    assert resp.status_code == 400, resp.get_json()
    assert resp.mimetype == "application/problem+json"
    assert resp.get_json()["parameter"] == parameter


def test_unknown_tables_are_404_and_missing_select_is_denied(hr: Hr) -> None:
    assert hr.client().get("/api/v1/tables/main.hr.nobody/rows").status_code == 404
    assert hr.client().get("/api/v1/tables/nonsense/rows").status_code == 400
    assert hr.client(NOBODY).get(ROWS).status_code == 404  # not even visible
    # visible through USE CATALOG / USE SCHEMA, but no SELECT: denied, as for the weather tables
    denied = hr.client(NOSELECT).get(ROWS)
    assert denied.status_code == 403 and "SELECT" in denied.get_json()["detail"]
    assert hr.client(NOSELECT).get(f"{ROWS}?email={person(hr, 1)['email']}").status_code == 403


def test_audit_records_never_hold_filter_values(hr: Hr) -> None:
    p = person(hr, 99)
    for who in ("admin", READER, NOSELECT):
        hr.client(who).get(ROWS, query_string={"email": p["email"], "phone": p["phone"]})
    hr.client().get(ROWS, query_string={"salary": f"{p['salary']}x"})  # a 400
    records = [r for r in audit_rows(hr.stratus) if r["action_name"] == "readTableRows"]
    assert {r["status_code"] for r in records} >= {200, 400, 403}
    secrets = [p["email"], p["phone"], repr(p["salary"])]
    for record in records:
        text = repr(record)
        assert not [s for s in secrets if s in text], record
    params = [orjson.loads(r["request_params"] or "{}") for r in records]
    with_filter = [p for p in params if "email" in p]
    assert with_filter and all(p["email"] in ("[PII]", ["[PII]"]) for p in with_filter)


# ---- nothing on disk ---------------------------------------------------------------------------
def test_the_scanner_finds_plaintext_when_it_is_there(tmp_path: Path) -> None:
    """The scan below proves something only if it would see plaintext: an unencrypted copy."""
    src = write_employees_csv(tmp_path / "employees.csv", 50)
    stratus = Stratus.from_settings(Settings(home=tmp_path / "home"))
    stratus.bootstrap()
    try:
        off: dict[str, str | None] = dict.fromkeys(PII_KINDS)
        stratus.tables.ingest(src, TABLE, owner="admin", key=("employee_id",), pii=off)
        assert stratus.tables.protector.pii_columns(TABLE) == {}
    finally:
        stratus.close()
    staff = people(50)
    found = leaks([tmp_path / "home"], needles(staff))
    for kind in ("email", "phone", "name", "salary"):
        decoded = [f for f in found if f.startswith(kind) and f.endswith("(decoded)")]
        assert len(decoded) >= 50, (kind, len(decoded))  # every value, through zstd
    log_stats = [f for f in found if "_delta_log" in f and "(decoded)" not in f]
    assert log_stats  # column statistics in the Delta log hold plaintext min/max values


def test_no_plaintext_pii_anywhere_on_disk_or_in_logs(hr: Hr) -> None:
    # more traffic that carries PII in requests, then make everything durable
    p = person(hr, 123)
    for who in ("admin", UNMASKER, READER):
        hr.client(who).get(ROWS, query_string={"email": p["email"], "salary": str(p["salary"])})
    hr.client().get(ROWS, query_string={"phone": p["phone"], "format": "csv"})
    hr.stratus.governance.audit.flush()
    DeltaTable(delta_url(hr.stratus)).create_checkpoint()  # checkpoints are scanned too
    for h in logging.getLogger().handlers:
        h.flush()
    home_files = files_of(hr.home)
    assert any("_delta_log" in f and f.endswith(".json") for f in home_files)
    assert any(f.startswith("lakehouse/system/access/audit") for f in home_files), home_files
    assert any(f.startswith("lakehouse/main/weather/quarantine") for f in home_files)
    assert any(f.startswith("metastore.db") for f in home_files)
    assert any(f.endswith(".checkpoint.parquet") for f in home_files)
    log_text = hr.log.read_bytes()
    assert b"DEBUG" in log_text  # the log really ran at DEBUG
    extra = {
        "debug log": log_text,
        **{f"cli run {i}": o.encode() for i, o in enumerate(hr.outputs)},
    }
    every = needles(hr.people) | needles(
        [{"employee_id": hr.changed_id, "salary": hr.old_salary}], ("salary",)
    )
    every |= {n: f"quarantined PII {n!r}" for n in BAD_PII}
    assert leaks([hr.home], every, extra) == []


def test_the_access_log_never_holds_query_strings(tmp_path: Path) -> None:
    """gunicorn's access log (``stratus serve``) logs the path, not the query: filters on PII
    columns (``?email=...``) must not reach it."""
    import datetime as dt
    from types import SimpleNamespace

    from gunicorn.glogging import Logger

    from stratus.api.server import _Gunicorn

    cfg = _Gunicorn(Settings(home=tmp_path)).cfg
    email = "jane.doe@example.com"
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": f"{ROWS}?email={email}",
        "PATH_INFO": ROWS,
        "QUERY_STRING": f"email={email}",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "192.0.2.1",
        "HTTP_REFERER": f"http://localhost/ui?email={email}",
        "HTTP_USER_AGENT": "pytest",
    }
    resp = SimpleNamespace(status="200 OK", sent=123, headers=[])
    atoms = Logger(cfg).atoms(resp, SimpleNamespace(headers=[]), environ, dt.timedelta(0, 0, 5))
    line = cfg.access_log_format % atoms
    assert f'"GET {ROWS} HTTP/1.1" 200 123' in line
    assert "email" not in line


# ---- tagging an existing column ----------------------------------------------------------------
def test_tagging_a_column_encrypts_it_and_untagging_decrypts(
    tmp_path: Path, debug_log: Path
) -> None:
    staff = people(40, seed=3)
    for p in staff:
        p["nickname"] = f"nick-{p['name'].split()[0].lower()}-{p['employee_id']:04d}"
    header = [*generate_employees(1).column_names, "nickname"]
    rows = [[*r, p["nickname"]] for r, p in zip(csv_rows(staff), staff, strict=True)]
    src = write_csv(tmp_path / "staff.csv", header, rows)
    name, owner, reader = "main.people.staff", "staff-owner", "staff-reader"
    home = tmp_path / "home"
    stratus = Stratus.from_settings(Settings(home=home))
    try:
        app = create_app(stratus=stratus)
        ms = stratus.governance.metastore
        ms.create_principal(owner)
        grant(stratus, "catalog", "main", owner, "USE CATALOG")
        report = stratus.tables.ingest(
            src, name, owner=owner, key=("employee_id",), pii={"nickname": None}
        )
        assert "nickname" not in report.pii_tagged and set(report.pii_tagged) == set(PII_KINDS)
        add_reader(stratus, reader, name, "SELECT")
        nick = needles(staff, ("nickname",))
        assert leaks([home], nick)  # plaintext before the tag: the scan sees it
        before = delta_version(stratus, name)
        as_owner = client_for(app, token_for(stratus, owner))
        as_admin = client_for(app, token_for(stratus))
        as_reader = client_for(app, token_for(stratus, reader))
        rows_url = f"/api/v1/tables/{name}/rows"
        assert as_reader.get(rows_url).get_json()["data"][0]["nickname"] == staff[0]["nickname"]

        key_tag = {"tags": {"pii": "other"}, "column": "employee_id"}
        refused = as_owner.put(f"{TAGS}/{name}", json=key_tag)
        assert refused.status_code == 400 and refused.get_json()["parameter"] == "column"
        assert delta_version(stratus, name) == before

        resp = as_owner.put(f"{TAGS}/{name}", json={"tags": {"pii": "name"}, "column": "nickname"})
        assert resp.status_code == 200, resp.get_json()
        tags = resp.get_json()["tags"]
        assert {"key": "pii", "value": "name", "column_name": "nickname"} in tags
        assert stratus.tables.protector.pii_columns(name)["nickname"] == "name"
        after = delta_version(stratus, name)
        assert after > before
        assert any(f.endswith(".checkpoint.parquet") for f in files_of(home))
        assert leaks([home], nick | needles(staff)) == []  # data files and the log alike
        # the versions that held the plaintext are gone, not merely unreferenced
        with pytest.raises(Exception, match=r"(?i)no files in log segment|version|not found"):
            DeltaTable(delta_url(stratus, name), version=before).to_pyarrow_table()
        body = as_reader.get(rows_url, query_string={"limit": 100}).get_json()
        assert "nickname" in body["masked"]
        assert [r["nickname"] for r in body["data"]] == [
            masked("name", p["nickname"]) for p in staff
        ]
        plain = as_admin.get(rows_url, query_string={"nickname": staff[5]["nickname"]}).get_json()
        assert [r["employee_id"] for r in plain["data"]] == [staff[5]["employee_id"]]
        assert plain["data"][0]["nickname"] == staff[5]["nickname"]
        # a re-ingest compares through the new token column: nothing changed
        again = stratus.tables.ingest(src, name, owner=owner)
        assert (again.written, again.unchanged) == (0, 40)

        denied = as_owner.delete(
            f"{TAGS}/{name}", query_string={"keys": "pii", "column": "nickname"}
        )
        assert denied.status_code == 403, denied.get_json()
        assert stratus.tables.protector.pii_columns(name)["nickname"] == "name"
        assert delta_version(stratus, name) == after

        gone = as_admin.delete(f"{TAGS}/{name}", query_string={"keys": "pii", "column": "nickname"})
        assert gone.status_code == 200, gone.get_json()
        assert "nickname" not in stratus.tables.protector.pii_columns(name)
        assert delta_version(stratus, name) > after
        body = as_reader.get(rows_url, query_string={"limit": 100}).get_json()
        assert "nickname" not in body["masked"] and "email" in body["masked"]
        assert [r["nickname"] for r in body["data"]] == [p["nickname"] for p in staff]
        assert all_rows(stratus, name) == staff

        actions = {
            (r["action_name"], r["user_identity"], r["status_code"])
            for r in audit_rows(stratus)
            if r["securable_full_name"] == name
        }
        assert {
            ("setTags", owner, 200),
            ("unsetTags", owner, 403),
            ("unsetTags", "admin", 200),
        } <= actions
    finally:
        stratus.close()
    assert not leaks([], needles(staff), {"debug log": debug_log.read_bytes()})


def test_a_key_column_cannot_be_pii(tmp_path: Path) -> None:
    src = write_employees_csv(tmp_path / "employees.csv", 5)
    stratus = Stratus.from_settings(Settings(home=tmp_path / "home"))
    stratus.bootstrap()
    try:
        from stratus.ingest.readers import IngestInputError

        with pytest.raises(IngestInputError, match="employee_id"):
            stratus.tables.ingest(
                src, TABLE, owner="admin", key=("employee_id",), pii={"employee_id": "other"}
            )
        stratus.tables.ingest(src, TABLE, owner="admin", key=("employee_id",))
        from stratus.catalog.errors import InvalidArgument

        with pytest.raises(InvalidArgument, match="key"):
            stratus.tables.set_pii(TABLE, "employee_id", "other")
    finally:
        stratus.close()


# ---- key rotation ------------------------------------------------------------------------------
def keyring(home: Path) -> dict[str, Any]:
    return json.loads((home / "keys" / "master.json").read_text())  # type: ignore[no-any-return]


def test_keys_rotate_rewraps_and_rotate_data_reencrypts(tmp_path: Path, debug_log: Path) -> None:
    src = write_employees_csv(tmp_path / "employees.csv", N)
    staff = people()
    home = tmp_path / "home"
    stratus = Stratus.from_settings(Settings(home=home))
    stratus.bootstrap()
    try:
        stratus.tables.ingest(src, TABLE, owner="admin", key=("employee_id",))
        url = delta_url(stratus)
        v1 = DeltaTable(url).version()
        files1 = sorted(DeltaTable(url).file_uris())
        ring1 = keyring(home)
        assert len(ring1["keys"]) == 1

        result = cli(home, "keys", "rotate")
        assert result.exit_code == 0, result.output
        assert "master key rotated" in result.output
        ring2 = keyring(home)
        assert len(ring2["keys"]) == 2 and ring2["current"] != ring1["current"]
        assert ring2["current"] in result.output
        assert DeltaTable(url).version() == v1 and sorted(DeltaTable(url).file_uris()) == files1
        stored = stratus.tables.protector.keys.store.all()
        assert stored and {k.master_id for k in stored} == {ring2["current"]}
        assert all_rows(stratus) == staff  # this process (cached data keys)
        fresh = Stratus.from_settings(Settings(home=home))
        try:
            assert all_rows(fresh) == staff  # a new process unwraps with the new master key
        finally:
            fresh.close()

        result = cli(home, "keys", "rotate", "--data")
        assert result.exit_code == 0, result.output
        assert f"re-encrypted {TABLE}" in result.output
        v2 = DeltaTable(url).version()
        assert v2 > v1
        assert len(keyring(home)["keys"]) == 3
        new_files = sorted(DeltaTable(url).file_uris())
        assert not set(new_files) & set(files1)
        fresh = Stratus.from_settings(Settings(home=home))
        try:
            assert all_rows(fresh) == staff
            keys = fresh.tables.protector.keys
            for column in PII_KINDS:
                assert keys.store.latest(f"{TABLE}.{column}").version == 2  # type: ignore[union-attr]
            # equality lookups still work on the re-encrypted data
            hit = fresh.tables.rows(TABLE, unmask=True, filters={"email": staff[9]["email"]})
            assert hit.table.column("employee_id").to_pylist() == [10]
            # time travel: the old version is still readable (its data keys still exist)
            old = DeltaTable(url, version=v1).to_pyarrow_table()
            new = DeltaTable(url).to_pyarrow_table()
            assert old.column("email").to_pylist() != new.column("email").to_pylist()
            spec = fresh.tables.spec(TABLE)
            pii = fresh.tables.protector.pii_columns(TABLE)
            shown = fresh.tables.protector.reveal(spec, old, pii, unmasked=True)
            assert sorted(shown.to_pylist(), key=lambda r: r["employee_id"]) == staff
            # and re-ingesting the source changes nothing
            again = fresh.tables.ingest(src, TABLE, owner="admin")
            assert (again.written, again.unchanged) == (0, N)
        finally:
            fresh.close()
        assert leaks([home], needles(staff), {"debug log": debug_log.read_bytes()}) == []
    finally:
        stratus.close()


# ---- lost keys ---------------------------------------------------------------------------------
def test_a_lost_keyring_gives_a_clear_error_never_garbage(tmp_path: Path) -> None:
    src = write_employees_csv(tmp_path / "employees.csv", 20)
    home = tmp_path / "home"
    stratus = Stratus.from_settings(Settings(home=home))
    stratus.bootstrap()
    try:
        stratus.tables.ingest(src, TABLE, owner="admin", key=("employee_id",))
        add_reader(stratus, READER, TABLE, "SELECT")
    finally:
        stratus.close()
    ring_path = home / "keys" / "master.json"
    ring = json.loads(ring_path.read_text())
    key_id = ring["current"]
    material = list(ring["keys"].values())
    ring_path.rename(tmp_path / "master.json.bak")

    stratus = Stratus.from_settings(Settings(home=home))
    try:
        with pytest.raises(KeyMissingError, match=key_id):
            stratus.tables.rows(TABLE, unmask=True)
        with pytest.raises(KeyMissingError):
            stratus.tables.rows(TABLE, unmask=False)
        # columns that are not PII stay readable without keys
        page = stratus.tables.rows(TABLE, unmask=False, fields=["employee_id", "hire_date"])
        assert page.table.num_rows == 20

        app = create_app(stratus=stratus)
        for who in ("admin", READER):
            client = client_for(app, token_for(stratus, who))
            resp = client.get(ROWS)
            assert resp.status_code == 500
            assert resp.mimetype == "application/problem+json"
            problem = resp.get_json()
            assert problem["title"] == "Encryption key unavailable"
            assert key_id in problem["detail"] and "local-file" in problem["detail"]
            body = resp.get_data(as_text=True)
            assert "Traceback" not in body and not [k for k in material if k in body]
        records = [r for r in audit_rows(stratus) if r["action_name"] == "readTableRows"]
        assert records and all(r["status_code"] == 500 for r in records)
        assert all(key_id in (r["error_message"] or "") for r in records)
        assert not ring_path.exists()  # reading never creates a new, useless keyring
    finally:
        stratus.close()

    for args in (
        ("ingest", str(src), "--table", TABLE),
        ("keys", "rotate"),
        ("keys", "rotate", "--data"),
    ):
        result = cli(home, *args)
        assert result.exit_code == 1, (args, result.output)
        assert isinstance(result.exception, SystemExit), result.exception
        assert key_id in result.output and "Traceback" not in result.output, result.output

    # restoring the keyring restores the data
    ring_path.unlink(missing_ok=True)
    shutil.copy(tmp_path / "master.json.bak", ring_path)
    ring_path.chmod(0o600)
    stratus = Stratus.from_settings(Settings(home=home))
    try:
        assert all_rows(stratus) == people(20)
    finally:
        stratus.close()


# ---- the environment key provider ------------------------------------------------------------
def test_env_key_provider_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import base64

    master = generate_master_key()
    monkeypatch.setenv("STRATUS_MASTER_KEY", master)
    src = write_employees_csv(tmp_path / "employees.csv", 60)
    staff = people(60)
    home = tmp_path / "home"
    env = {"STRATUS_KEY_PROVIDER": "env", "STRATUS_MASTER_KEY": master}
    result = cli(
        home, "ingest", str(src), "--table", "hr.employees", "--key", "employee_id", env=env
    )
    assert result.exit_code == 0, result.output
    assert not (home / "keys" / "master.json").exists()
    settings = Settings(home=home, key_provider="env")
    stratus = Stratus.from_settings(settings)
    try:
        assert stratus.tables.protector.keys.provider.name == "env"
        assert all_rows(stratus) == staff
        add_reader(stratus, READER, TABLE, "SELECT")
        app = create_app(stratus=stratus)
        body = client_for(app, token_for(stratus, READER)).get(ROWS).get_json()
        assert body["data"][0]["email"] == masked("email", staff[0]["email"])
        again = stratus.tables.ingest(src, TABLE, owner="admin")
        assert (again.written, again.unchanged) == (0, 60)
    finally:
        stratus.close()
    secret = {master.encode(): "the master key", base64.b64decode(master): "the raw master key"}
    assert leaks([home], needles(staff) | secret) == []

    # rotation is the operator's job with this provider: the CLI says so
    rotated = cli(home, "keys", "rotate", env=env)
    assert rotated.exit_code == 1 and "STRATUS_MASTER_KEY" in rotated.output

    # another key in the variable: a clear error, never garbage
    monkeypatch.setenv("STRATUS_MASTER_KEY", generate_master_key())
    stratus = Stratus.from_settings(settings)
    try:
        with pytest.raises(PiiError, match="master key"):
            stratus.tables.rows(TABLE, unmask=True)
        # the old key listed as previous makes the data readable again
        monkeypatch.setenv("STRATUS_MASTER_KEY_PREVIOUS", master)
        stratus.tables.protector.forget()
        assert all_rows(stratus) == staff
    finally:
        stratus.close()
