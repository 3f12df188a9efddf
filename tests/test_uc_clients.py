"""Engines read Stratus tables through the Unity Catalog API: Polars, delta-rs and the official SDK.

A real HTTP server (werkzeug, threaded) serves a Stratus holding the sample weather data, on local
disk and on Azurite (marker ``azure``). The clients are the real ones: ``polars.Catalog``,
``deltalake.DeltaTable("uc://...")`` / ``write_deltalake`` and ``unitycatalog-client``. On
Azurite the readers hold no storage key: only the account name and the emulator's endpoint (no
secret); every byte they read comes through the SAS Stratus vends. Principals:

- ``admin``: metastore admin
- ``reader``: USE CATALOG main, USE SCHEMA + SELECT on main.weather
- ``writer``: as reader, plus MODIFY on main.weather.notes and main.weather.people
- ``nosel``: USE CATALOG main and USE SCHEMA main.weather, no SELECT
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import polars as pl
import pyarrow as pa
import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import ContainerClient
from deltalake import DeltaTable
from openapi_spec_validator import validate
from unitycatalog.client import ApiClient, Configuration, TablesApi
from unitycatalog.client.api.temporary_credentials_api import TemporaryCredentialsApi
from unitycatalog.client.models.generate_temporary_table_credential import (
    GenerateTemporaryTableCredential,
)
from unitycatalog.client.models.table_operation import TableOperation
from werkzeug.serving import make_server

from stratus.api import create_app, uc_credentials
from stratus.config import Settings
from stratus.context import Stratus
from stratus.security.audit import AUDIT
from stratus.weather.sample import cities_path_for
from tests.conftest import AZURITE_ACCOUNT, azure_settings, free_port, token_for, wait_for_port

UC = "/api/2.1/unity-catalog"
HOURLY = "main.weather.hourly"
SPEC = Path(__file__).parent / "data" / "unity-catalog-oss-all.yaml"


@dataclass
class Server:
    url: str
    stratus: Stratus
    tokens: dict[str, str]
    backend: str
    endpoint: str | None = None  # Azurite's account endpoint

    def call(self, method: str, path: str, who: str = "admin", **kw: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}", **kw.pop("headers", {})}
        return requests.request(method, self.url + path, headers=headers, timeout=60, **kw)

    def ok(self, method: str, path: str, who: str = "admin", **kw: Any) -> Any:
        resp = self.call(method, path, who, **kw)
        assert resp.status_code < 300, resp.text
        return resp.json()

    @property
    def store(self) -> dict[str, str]:
        """What a reader knows about the storage: no secret, only where it is."""
        if self.endpoint is None:
            return {}
        return {
            "azure_storage_account_name": AZURITE_ACCOUNT,
            "azure_storage_endpoint": self.endpoint,
            "allow_http": "true",
        }

    def uc_options(self, who: str) -> dict[str, str]:
        return {
            "unity_workspace_url": self.url,
            "unity_access_token": self.tokens[who],
            "unity_allow_http_url": "true",
            **self.store,
        }

    def catalog(self, who: str) -> pl.Catalog:
        return pl.Catalog(self.url, bearer_token=self.tokens[who], require_https=False)

    def audit_rows(self) -> list[dict[str, Any]]:
        self.stratus.governance.audit.flush()
        url = self.stratus.lakehouse.url(AUDIT)
        return (
            DeltaTable(url, storage_options=self.stratus.storage.options)
            .to_pyarrow_table()
            .to_pylist()
        )


# delta-rs 1.6.6's uc:// often never returns on Azure (here 3-6 of 8 opens). After Stratus has
# answered its credentials request (200), DeltaTable() waits in native code on a futex, with no
# connection open and no further request. What we saw (py-spy, strace, gdb): the GIL is free, the
# server idle, both tokio runtimes parked. It is not the server: a fresh process holding only
# deltalake hangs alike, and `stratus serve` (gunicorn) gives the rate of this in-process server
# (6 vs 5 of 10). More tokio workers, a Python thread or without_files do not change it. Likely
# its nested block_on in the UC storage factory. Its native threads also sometimes abort at
# interpreter exit ("terminate called without an active exception").
# So each uc:// step runs in a fresh interpreter (this environment: no AZURE_* key) that prints
# its answer and ends at once, with a deadline, and is tried again when it hangs or dies by a
# signal before answering. A read-only step races UC_RACE processes per try and takes the first
# answer. A step that writes runs one process per try, with more tries (a hang comes before any
# write, and the tests check versions). If every try hangs, the test is reported as an expected
# failure (XFAIL, never a pass) naming this; every step that answers is checked. That delta-rs
# reads with vended credentials only is also shown without uc://
# (test_pii_tables_vend_ciphertext_and_refuse_writers_without_unmask opens the vended URL).
UC_DEADLINE = 5.0  # a step that answers does so in 0.1-0.6 s here
UC_TRIES = 3  # per read-only step, each racing UC_RACE processes
UC_RACE = 3
UC_WRITE_TRIES = 12  # per step that writes (a write hangs more often: 4-8 of 9 here)
_UC_PRELUDE = (
    "import json, os, sys\n"
    "from deltalake import DeltaTable, write_deltalake\n"
    "opts = json.loads(sys.argv[1])\n"
    "result = None\n"
)


def _uc(script: str, options: dict[str, str], *, writes: bool = False) -> Any:
    """Run ``script`` (delta-rs calls with ``opts``, setting ``result``) in a fresh process: its
    ``result``, or a RuntimeError with delta-rs's message."""
    code = _UC_PRELUDE + script + "\nprint(json.dumps(result), flush=True)\nos._exit(0)\n"
    argv = [sys.executable, "-c", code, json.dumps(options)]
    race = 1 if writes else UC_RACE
    for _ in range(UC_WRITE_TRIES if writes else UC_TRIES):
        procs = [
            subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(race)
        ]
        deadline = time.monotonic() + UC_DEADLINE
        try:
            while procs and time.monotonic() < deadline:
                for proc in [p for p in procs if p.poll() is not None]:
                    procs.remove(proc)
                    out, err = proc.communicate()
                    if proc.returncode < 0 and not out.strip():  # a signal in native code
                        continue
                    if proc.returncode != 0:
                        raise RuntimeError(err[-2000:])
                    return json.loads(out.strip().splitlines()[-1])
                time.sleep(0.05)
        finally:
            for proc in procs:
                proc.kill()
                proc.communicate()
    pytest.xfail(
        f"delta-rs uc:// on Azure hung (or aborted) in every try of {UC_DEADLINE:.0f} s (see _uc)"
    )


def _grant(server: Server, kind: str, name: str, who: str, *privs: str) -> None:
    body = {"changes": [{"principal": who, "add": list(privs), "remove": []}]}
    server.ok("PATCH", f"{UC}/permissions/{kind}/{name}", json=body)


def _sql(server: Server, statement: str) -> Any:
    return server.ok("POST", "/api/v1/sql", json={"statement": statement})


def _serve(stratus: Stratus, backend: str, endpoint: str | None) -> Iterator[Server]:
    ms = stratus.governance.metastore
    for name in ("reader", "writer", "nosel"):
        ms.create_principal(name)
    tokens = {p: token_for(stratus, p) for p in ("admin", "reader", "writer", "nosel")}
    port = free_port()
    server = make_server("127.0.0.1", port, create_app(stratus=stratus), threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="uc-clients", daemon=True)
    thread.start()
    try:
        wait_for_port(port)
        live = Server(f"http://127.0.0.1:{port}", stratus, tokens, backend, endpoint)
        for who in ("reader", "writer", "nosel"):
            _grant(live, "catalog", "main", who, "USE CATALOG")
        _grant(live, "schema", "main.weather", "reader", "USE SCHEMA", "SELECT")
        _grant(live, "schema", "main.weather", "writer", "USE SCHEMA", "SELECT")
        _grant(live, "schema", "main.weather", "nosel", "USE SCHEMA")
        yield live
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        stratus.close()


@pytest.fixture(scope="module")
def local_live(tmp_path_factory: pytest.TempPathFactory, sample_csv: Path) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("ucc-local") / "home"
    stratus = Stratus.from_settings(Settings(home=home))
    stratus.ingest.ingest(cities_path_for(sample_csv), "cities")
    stratus.ingest.ingest(sample_csv, "hourly")
    yield from _serve(stratus, "local", None)


@pytest.fixture(scope="module")
def azure_live(
    tmp_path_factory: pytest.TempPathFactory, sample_csv: Path, azurite: str
) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("ucc-azure") / "home"
    # Azurite knows no directory SAS (sr=d): vend container SAS here
    settings = azure_settings(azurite, home).model_copy(update={"uc_credential_scope": "container"})
    stratus = Stratus.from_settings(settings)
    stratus.ingest.ingest(cities_path_for(sample_csv), "cities")
    stratus.ingest.ingest(sample_csv, "hourly")
    yield from _serve(stratus, "azure", azurite)


@pytest.fixture(params=["local", pytest.param("azure", marks=pytest.mark.azure)])
def live(request: pytest.FixtureRequest) -> Server:
    return request.getfixturevalue(f"{request.param}_live")  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def no_storage_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """The clients' environment holds no Azure key (nor anything else AZURE_*)."""
    for name in list(os.environ):
        if name.startswith(("AZURE_", "DATABRICKS_", "UNITY_")):
            monkeypatch.delenv(name)


def _table_id(live: Server, full_name: str = HOURLY) -> str:
    return str(live.ok("GET", f"{UC}/tables/{full_name}")["table_id"])


def _vend(live: Server, who: str, full_name: str, operation: str) -> requests.Response:
    body = {"table_id": _table_id(live, full_name), "operation": operation}
    return live.call("POST", f"{UC}/temporary-table-credentials", who, json=body)


# ---- wire shapes ---------------------------------------------------------------------------
def test_every_securable_carries_the_fields_clients_require(live: Server) -> None:
    """What Polars' and delta-rs's models refuse to do without."""
    for catalog in live.ok("GET", f"{UC}/catalogs")["catalogs"]:
        assert catalog["updated_at"] == catalog["created_at"]  # never updated
        assert catalog["updated_by"] == catalog["created_by"]
        assert catalog["properties"] == {}
    schema = live.ok("GET", f"{UC}/schemas/main.weather")
    assert {"created_at", "updated_at", "properties", "schema_id", "full_name"} <= set(schema)
    table = live.ok("GET", f"{UC}/tables/{HOURLY}")
    for field in ("table_id", "storage_location", "data_source_format", "columns"):
        assert table[field]
    assert table["properties"] == {} and table["updated_at"] == table["created_at"]
    positions = [c["position"] for c in table["columns"]]
    assert positions == list(range(len(positions)))
    for col in table["columns"]:
        assert col["nullable"] is True
        assert {"type_name", "type_text", "type_json"} <= set(col)
        assert json.loads(col["type_json"])["name"] == col["name"]
    # after an update, updated_at moves on and updated_by names who changed it
    name = f"c_{uuid.uuid4().hex[:6]}"
    created = live.ok("POST", f"{UC}/catalogs", json={"name": name})
    assert created["updated_at"] == created["created_at"]
    time.sleep(0.01)
    updated = live.ok("PATCH", f"{UC}/catalogs/{name}", json={"comment": "changed"})
    assert updated["updated_at"] > updated["created_at"]
    live.ok("DELETE", f"{UC}/catalogs/{name}")


def test_polars_lists_gets_and_scans(live: Server) -> None:
    cat = live.catalog("reader")
    assert [c.name for c in cat.list_catalogs()] == ["main"]  # only what the reader may use
    assert "weather" in {n.name for n in cat.list_namespaces("main")}
    tables = {t.name: t for t in cat.list_tables("main", "weather")}
    assert {"hourly", "cities"} <= set(tables)
    info = cat.get_table_info("main", "weather", "hourly")
    assert info.table_id == tables["hourly"].table_id
    assert [c.name for c in info.columns or []][:2] == ["city_id", "date"]
    count = "SELECT count(*) AS n FROM main.weather.hourly"
    expected = live.ok("POST", "/api/v1/sql", json={"statement": count})["data"][0]["n"]
    frame = cat.scan_table("main", "weather", "hourly", storage_options=live.store or None)
    assert frame.select(pl.len()).collect().item() == expected > 1000
    by_city = frame.group_by("city_id").agg(pl.col("temp").mean()).collect()
    assert by_city.height >= 2


def test_polars_creates_and_deletes(live: Server) -> None:
    cat = live.catalog("admin")
    name = f"pl_{uuid.uuid4().hex[:6]}"
    made = cat.create_catalog(name, comment="from polars")
    assert made.name == name and made.updated_at == made.created_at
    ns = cat.create_namespace(name, "ns", comment="a schema")
    assert ns.name == "ns"
    table = cat.create_table(
        name,
        "ns",
        "t",
        schema={"a": pl.Int64, "b": pl.String},
        table_type="MANAGED",
        data_source_format="DELTA",
    )
    assert [c.name for c in table.columns or []] == ["a", "b"]
    assert table.table_id
    assert {t.name for t in cat.list_tables(name, "ns")} == {"t"}
    cat.delete_table(name, "ns", "t")
    cat.delete_namespace(name, "ns")
    cat.delete_catalog(name)
    assert name not in {c.name for c in cat.list_catalogs()}


def test_official_sdk_pages_tables_and_vends(live: Server) -> None:
    async def flow() -> tuple[list[str], Any]:
        config = Configuration(host=live.url + UC)
        auth = f"Bearer {live.tokens['reader']}"
        async with ApiClient(config, "Authorization", auth) as api:
            tables = TablesApi(api)
            names, token = [], None
            while True:
                page = await tables.list_tables("main", "weather", max_results=1, page_token=token)
                names += [t.name for t in page.tables or []]
                assert len(page.tables or []) <= 1
                token = page.next_page_token
                if not token:
                    break
            hourly = await tables.get_table(HOURLY)
            assert hourly.columns and hourly.columns[0].position == 0
            creds = await TemporaryCredentialsApi(api).generate_temporary_table_credentials(
                GenerateTemporaryTableCredential(
                    table_id=hourly.table_id, operation=TableOperation.READ
                )
            )
            return names, creds

    names, creds = asyncio.run(flow())
    assert {"hourly", "cities"} <= set(names)
    assert creds.expiration_time > time.time() * 1000
    if live.backend == "local":
        assert creds.url.startswith("file://") and creds.azure_user_delegation_sas is None
    else:
        assert creds.azure_user_delegation_sas.sas_token


# ---- credential vending --------------------------------------------------------------------
def test_vending_needs_select_and_modify(live: Server) -> None:
    read = _vend(live, "reader", HOURLY, "READ")
    assert read.status_code == 200, read.text
    refused = _vend(live, "nosel", HOURLY, "READ")
    assert refused.status_code == 403
    assert refused.json()["error_code"] == "PERMISSION_DENIED"
    assert "SELECT" in refused.json()["message"]
    no_modify = _vend(live, "reader", HOURLY, "READ_WRITE")
    assert no_modify.status_code == 403 and "MODIFY" in no_modify.json()["message"]
    unknown = live.call(
        "POST",
        f"{UC}/temporary-table-credentials",
        "reader",
        json={"table_id": str(uuid.uuid4()), "operation": "READ"},
    )
    assert unknown.status_code == 404 and unknown.json()["error_code"] == "NOT_FOUND"
    bad = live.call(
        "POST", f"{UC}/temporary-table-credentials", "reader", json={"table_id": "x", "op": 1}
    )
    assert bad.status_code == 400 and bad.json()["error_code"] == "INVALID_ARGUMENT"
    # Polars sends the same fields in the query string
    query = live.call(
        "POST",
        f"{UC}/temporary-table-credentials",
        "reader",
        params={"table_id": _table_id(live), "operation": "READ"},
    )
    assert query.status_code == 200


def test_every_vend_is_audited_without_the_secret(live: Server) -> None:
    ok_id, denied_id = uuid.uuid4().hex, uuid.uuid4().hex
    body = {"table_id": _table_id(live), "operation": "READ"}
    path = f"{UC}/temporary-table-credentials"
    granted = live.call("POST", path, "reader", json=body, headers={"X-Request-Id": ok_id})
    denied = live.call("POST", path, "nosel", json=body, headers={"X-Request-Id": denied_id})
    assert (granted.status_code, denied.status_code) == (200, 403)
    rows = {r["request_id"]: r for r in live.audit_rows() if r["request_id"] in (ok_id, denied_id)}
    for rid, who, outcome in ((ok_id, "reader", "allowed"), (denied_id, "nosel", "denied")):
        row = rows[rid]
        assert row["action_name"] == "generateTemporaryTableCredentials"
        assert (row["user_identity"], row["outcome"]) == (who, outcome)
        assert (row["securable_type"], row["securable_full_name"]) == ("table", HOURLY)
    secret = (granted.json().get("azure_user_delegation_sas") or {}).get("sas_token")
    if secret:
        assert not any(secret in json.dumps(r, default=str) for r in rows.values())
        sig = parse_qs(secret)["sig"][0]
        assert not any(sig in json.dumps(r, default=str) for r in rows.values())


def test_local_disk_vends_the_file_url_and_no_secret(local_live: Server) -> None:
    live = local_live
    answer = _vend(live, "reader", HOURLY, "READ").json()
    assert set(answer) == {"url", "expiration_time"}
    location = live.ok("GET", f"{UC}/tables/{HOURLY}")["storage_location"]
    assert answer["url"] == Path(location).as_uri()
    # delta-rs's uc:// insists on a cloud credential, so on local disk an engine opens the URL
    assert DeltaTable(answer["url"]).to_pyarrow_table().num_rows > 1000
    path = live.ok(
        "POST",
        f"{UC}/temporary-path-credentials",
        "reader",
        json={"url": answer["url"] + "/_delta_log", "operation": "PATH_READ"},
    )
    assert path["url"].endswith("/_delta_log")
    outside = live.call(
        "POST",
        f"{UC}/temporary-path-credentials",
        "reader",
        json={"url": "/etc", "operation": "PATH_READ"},
    )
    assert outside.status_code == 404
    climbing = live.call(
        "POST",
        f"{UC}/temporary-path-credentials",
        "reader",
        json={"url": answer["url"] + "/../cities", "operation": "PATH_READ"},
    )
    assert climbing.status_code == 400 and climbing.json()["parameter"] == "url"
    create = live.call(
        "POST",
        f"{UC}/temporary-path-credentials",
        "reader",
        json={"url": answer["url"], "operation": "PATH_CREATE_TABLE"},
    )
    assert create.status_code == 400 and create.json()["parameter"] == "operation"


@pytest.mark.azure
@pytest.mark.timeout(420)  # up to 5 uc:// steps x UC_WRITE_TRIES x UC_DEADLINE, if all hang
def test_readers_read_through_vended_sas_only(azure_live: Server) -> None:
    live = azure_live
    assert not any(k.startswith("AZURE_") for k in os.environ)
    # without a credential of Stratus's, the storage refuses this reader
    with pytest.raises(Exception):  # noqa: B017 - Polars and object_store errors vary
        live.catalog("reader").scan_table(
            "main", "weather", "hourly", storage_options=live.store, credential_provider=None
        ).select(pl.len()).collect()
    # Polars: the catalog's credential provider asks Stratus for a SAS
    polars_rows = (
        live.catalog("reader")
        .scan_table("main", "weather", "hourly", storage_options=live.store)
        .select(pl.len())
        .collect()
        .item()
    )
    # delta-rs: uc:// asks for READ_WRITE first (refused: no MODIFY), then READ
    hourly = "t = DeltaTable('uc://main.weather.hourly', storage_options=opts)\n"
    uc_rows = _uc(hourly + "result = t.to_pyarrow_table().num_rows", live.uc_options("reader"))
    assert uc_rows == polars_rows > 1000
    with pytest.raises(RuntimeError, match=r"SELECT|credential|PERMISSION"):
        _uc(hourly, live.uc_options("nosel"))


@pytest.mark.azure
def test_vended_sas_is_scoped_and_expires(azure_live: Server) -> None:
    live = azure_live
    answer = _vend(live, "reader", HOURLY, "READ").json()
    token = answer["azure_user_delegation_sas"]["sas_token"]
    fields = parse_qs(token)
    assert fields["sp"] == ["rl"]  # read and list only
    assert answer["expiration_time"] <= (time.time() + 3600 + 5) * 1000
    container = live.stratus.storage.container
    reader = ContainerClient(live.endpoint, container, credential=token)
    names = [b.name for b in reader.list_blobs(name_starts_with="lakehouse/main/weather/hourly")]
    assert any(n.endswith(".parquet") for n in names)
    with pytest.raises(HttpResponseError):  # read-only: no writing with it
        reader.upload_blob("lakehouse/main/weather/hourly/evil.txt", b"x")

    # a short-lived one stops working once expired
    settings = live.stratus.settings.model_copy(update={"uc_credential_ttl": 2})
    expires = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=2)
    from stratus.lakehouse import sas

    short = sas.sign(
        live.stratus.storage,
        live.ok("GET", f"{UC}/tables/{HOURLY}")["storage_location"],
        write=False,
        expires=expires,
        scope=settings.uc_credential_scope,
    )
    client = ContainerClient(live.endpoint, container, credential=short.token)
    assert next(iter(client.list_blobs(name_starts_with="lakehouse/main/weather/hourly")))
    time.sleep(max(0.0, (expires - dt.datetime.now(dt.UTC)).total_seconds()) + 1.5)
    with pytest.raises(HttpResponseError) as failure:
        next(iter(client.list_blobs(name_starts_with="lakehouse/main/weather/hourly")))
    assert failure.value.status_code == 403


@pytest.mark.azure
def test_directory_scope_signs_the_table_folder(azure_live: Server) -> None:
    live = azure_live
    from stratus.lakehouse import sas

    expires = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    location = live.ok("GET", f"{UC}/tables/{HOURLY}")["storage_location"]
    signed = sas.sign(live.stratus.storage, location, write=True, expires=expires)
    fields = parse_qs(signed.token)
    assert fields["sr"] == ["d"] and fields["sdd"] == ["4"]  # lakehouse/main/weather/hourly
    assert signed.prefix == "lakehouse/main/weather/hourly"
    assert set(fields["sp"][0]) == set("racwdl")
    container = sas.sign(
        live.stratus.storage, location, write=False, expires=expires, scope="container"
    )
    assert parse_qs(container.token)["sr"] == ["c"]


@pytest.mark.azure
@pytest.mark.timeout(420)  # up to 5 uc:// steps x UC_WRITE_TRIES x UC_DEADLINE, if all hang
def test_delta_rs_writes_through_uc_with_read_write(azure_live: Server, tmp_path: Path) -> None:
    live = azure_live
    _sql(
        live,
        "CREATE TABLE main.weather.notes AS SELECT city_id, temp FROM main.weather.hourly LIMIT 5",
    )
    _grant(live, "table", "main.weather.notes", "writer", "MODIFY")
    writer = live.uc_options("writer")
    notes = "t = DeltaTable('uc://main.weather.notes', storage_options=opts)\n"
    assert _uc(notes + "result = t.to_pyarrow_table().num_rows", writer) == 5
    # the rows to append, read here with Stratus's own storage key: the writing process opens
    # uc:// once (in write_deltalake), not twice
    location = live.ok("GET", f"{UC}/tables/main.weather.notes")["storage_location"]
    rows = DeltaTable(location, storage_options=live.stratus.storage.options).to_pyarrow_table()
    batch = tmp_path / "rows.arrow"
    with pa.ipc.new_file(batch, rows.schema) as out:
        out.write_table(rows)
    append = (
        "import pyarrow as pa\n"
        f"rows = pa.ipc.open_file({str(batch)!r}).read_all().slice(0, {{n}})\n"
        "write_deltalake('uc://main.weather.notes', rows, mode='append', storage_options=opts)"
    )
    state = notes + "result = [t.version(), t.to_pyarrow_table().num_rows]"
    _uc(append.format(n=2), writer, writes=True)
    assert _uc(state, writer) == [1, 7]
    # a reader without MODIFY cannot write: delta-rs gets only READ credentials (read-only SAS)
    with pytest.raises(RuntimeError):
        _uc(append.format(n=1), live.uc_options("reader"), writes=True)
    assert _uc(state, writer) == [1, 7]


def test_pii_tables_vend_ciphertext_and_refuse_writers_without_unmask(live: Server) -> None:
    name = f"main.weather.people_{live.backend}"
    _sql(live, f"CREATE TABLE {name} AS SELECT 'ann@example.com' AS email, 1 AS id")
    live.ok("PUT", f"{UC}/tags/table/{name}", json={"tags": {"pii": "email"}, "column": "email"})
    _grant(live, "table", name, "writer", "MODIFY")
    refused = _vend(live, "writer", name, "READ_WRITE")
    assert refused.status_code == 403 and "UNMASK" in refused.json()["message"]
    assert _vend(live, "writer", name, "READ").status_code == 200
    _grant(live, "table", name, "writer", "UNMASK")
    assert _vend(live, "writer", name, "READ_WRITE").status_code == 200
    # a reader with raw files sees ciphertext, neither the value nor its mask
    answer = _vend(live, "reader", name, "READ").json()
    options = dict(live.store)
    if "azure_user_delegation_sas" in answer:
        options["azure_storage_sas_key"] = answer["azure_user_delegation_sas"]["sas_token"]
    raw = DeltaTable(answer["url"], storage_options=options or None).to_pyarrow_table()
    value = raw.column("email")[0].as_py()
    assert value not in ("ann@example.com", "***") and "ann" not in str(value)
    assert pa.types.is_binary(raw.schema.field("email").type) or isinstance(value, str)


# ---- what is not implemented, and the docs ---------------------------------------------------
def test_unsupported_operations_answer_501_and_missing_objects_404(live: Server) -> None:
    for method, path in (
        ("POST", "/functions"),
        ("GET", "/functions"),
        ("GET", "/functions/main.weather.f"),
        ("POST", "/models"),
        ("GET", "/models/main.weather.m/versions/1"),
        ("GET", "/credentials"),
        ("POST", "/staging-tables"),
        ("GET", "/delta/preview/commits"),
    ):
        resp = live.call(method, UC + path, json={})
        assert resp.status_code == 501, (method, path, resp.text)
        assert resp.json()["error_code"] == "NOT_IMPLEMENTED"
    for path in ("/tables/main.weather.nope", "/catalogs/nope", "/no-such-thing"):
        resp = live.call("GET", UC + path)
        assert resp.status_code == 404 and resp.json()["error_code"] == "NOT_FOUND", path


def test_docs_serve_the_implemented_uc_operations(live: Server) -> None:
    doc = requests.get(live.url + "/docs/unity-catalog.json", timeout=30).json()
    validate(doc)
    ops = {
        op["operationId"]
        for item in doc["paths"].values()
        for op in item.values()
        if "operationId" in op
    }
    assert {"listCatalogs", "getTable", "generateTemporaryTableCredentials"} <= ops
    assert {"generateTemporaryPathCredentials", "generateTemporaryVolumeCredentials"} <= ops
    assert not {"createFunction", "listRegisteredModels", "getCommits"} & ops
    page = requests.get(live.url + "/docs/unity-catalog", timeout=30)
    assert page.status_code == 200 and "unity-catalog/init.js" in page.text
    assert "/docs/unity-catalog" in requests.get(live.url + "/docs", timeout=30).text


def test_packaged_spec_is_the_vendored_one() -> None:
    """The package ships the spec as JSON (a plain install has no YAML parser): the same document,
    response codes as strings, as OpenAPI writes them."""
    packaged = uc_credentials.uc_spec()
    import yaml

    assert packaged == json.loads(json.dumps(yaml.safe_load(SPEC.read_text())))


def test_volume_credentials_need_read_volume(live: Server) -> None:
    name = f"files_{uuid.uuid4().hex[:6]}"
    body = {
        "catalog_name": "main",
        "schema_name": "weather",
        "name": name,
        "volume_type": "MANAGED",
    }
    volume = live.ok("POST", f"{UC}/volumes", json=body)
    ask = {"volume_id": volume["volume_id"], "operation": "READ_VOLUME"}
    path = f"{UC}/temporary-volume-credentials"
    assert live.call("POST", path, "reader", json=ask).status_code in (403, 404)
    _grant(live, "volume", volume["full_name"], "reader", "READ VOLUME")
    answer = live.ok("POST", path, "reader", json=ask)
    assert answer["expiration_time"] > time.time() * 1000
    write = {**ask, "operation": "WRITE_VOLUME"}
    assert live.call("POST", path, "reader", json=write).status_code == 403
    if live.backend == "local":
        assert answer["url"].startswith("file://") and len(answer) == 2
    else:
        assert parse_qs(answer["azure_user_delegation_sas"]["sas_token"])["sp"] == ["rl"]
