"""The Unity Catalog API against a live server, driven by the official ``unitycatalog-client``.

A real HTTP server (werkzeug, threaded) serves a Stratus holding the sample weather data; the
official async SDK and plain ``requests`` talk to it. Raw responses are validated against the
component schemas of the UC OSS OpenAPI document (vendored in ``tests/data``), tightened so that
a field the spec does not define also fails. Principals used here:

- ``admin``: metastore admin
- ``olivia``: owner of catalog ``main`` (handed over in the ``roles`` fixture)
- ``rita``: USE CATALOG on ``main``, USE SCHEMA + SELECT on ``main.weather``
- ``gina``: member of group ``analysts``, which holds USE CATALOG on ``main`` and USE SCHEMA,
  SELECT, CREATE TABLE and APPLY TAG on ``main.weather``
- ``nick``: nothing at all; ``sam``, ``pat``, ``vera``: used by single tests
"""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import jsonschema
import pytest
import requests
import yaml
from deltalake import DeltaTable
from unitycatalog.client import (
    ApiClient,
    ApiException,
    CatalogsApi,
    ColumnInfo,
    ColumnTypeName,
    Configuration,
    CreateCatalog,
    CreateSchema,
    CreateTable,
    CreateVolumeRequestContent,
    DataSourceFormat,
    GrantsApi,
    MetastoresApi,
    PermissionsChange,
    Privilege,
    SchemasApi,
    SecurableType,
    TablesApi,
    TableType,
    UpdateCatalog,
    UpdatePermissions,
    UpdateSchema,
    UpdateVolumeRequestContent,
    VolumesApi,
    VolumeType,
)
from unitycatalog.client.exceptions import (
    BadRequestException,
    ForbiddenException,
    NotFoundException,
    UnauthorizedException,
)
from werkzeug.serving import make_server

from stratus.api import create_app
from stratus.config import Settings
from stratus.context import Stratus
from stratus.security.audit import AUDIT
from stratus.weather.sample import cities_path_for
from tests.conftest import METASTORES, free_port, metastore_url_for, token_for, wait_for_port

SPEC_PATH = Path(__file__).parent / "data" / "unity-catalog-oss-all.yaml"
UC = "/api/2.1/unity-catalog"
USERS = ("olivia", "rita", "gina", "nick", "sam", "pat", "vera")
T = TypeVar("T")


def uniq(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@dataclass
class Live:
    url: str
    stratus: Stratus
    tokens: dict[str, str]

    def call(
        self, method: str, path: str, who: str | None = "admin", **kwargs: Any
    ) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if who is not None:
            headers["Authorization"] = f"Bearer {self.tokens[who]}"
        return requests.request(method, self.url + path, headers=headers, timeout=30, **kwargs)

    def sdk(self, who: str | None, flow: Callable[[ApiClient], Awaitable[T]]) -> T:
        """Run ``flow`` with an official client acting as ``who`` (None: no token)."""

        async def run() -> T:
            config = Configuration(host=self.url + UC)
            if who is None:
                client = ApiClient(config)
            else:  # the generated client sends no auth of its own: set the header
                client = ApiClient(config, "Authorization", f"Bearer {self.tokens[who]}")
            async with client as api:
                return await flow(api)

        return asyncio.run(run())


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, sample_csv: Path, metastore_url: str | None
) -> Iterator[Live]:
    home = tmp_path_factory.mktemp("uc") / "home"
    stratus = Stratus.from_settings(Settings(home=home, metastore_url=metastore_url))
    stratus.ingest.ingest(cities_path_for(sample_csv), "cities")
    stratus.ingest.ingest(sample_csv, "hourly")
    app = create_app(stratus=stratus)
    ms = stratus.governance.metastore
    for name in USERS:
        ms.create_principal(name)
    ms.create_principal("analysts", "group")
    ms.add_member("analysts", "gina")
    ms.create_principal("auditors", "group")  # nobody is a member: a harmless grant target
    tokens = {p: token_for(stratus, p) for p in ("admin", *USERS)}
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="uc-live-server", daemon=True)
    thread.start()
    try:
        wait_for_port(port)
        yield Live(f"http://127.0.0.1:{port}", stratus, tokens)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        stratus.close()
    assert not thread.is_alive()


def _ok(resp: requests.Response) -> dict[str, Any]:
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    return resp.json()  # type: ignore[no-any-return]


def _grant(live: Live, kind: str, name: str, principal: str, *privs: str) -> None:
    body = {"changes": [{"principal": principal, "add": list(privs), "remove": []}]}
    _ok(live.call("PATCH", f"{UC}/permissions/{kind}/{name}", json=body))


@pytest.fixture(scope="module")
def roles(live: Live) -> Live:
    _ok(live.call("PATCH", f"{UC}/catalogs/main", json={"owner": "olivia"}))
    _grant(live, "catalog", "main", "rita", "USE CATALOG")
    _grant(live, "schema", "main.weather", "rita", "USE SCHEMA", "SELECT")
    _grant(live, "catalog", "main", "analysts", "USE CATALOG")
    _grant(
        live,
        "schema",
        "main.weather",
        "analysts",
        "USE SCHEMA",
        "SELECT",
        "CREATE TABLE",
        "APPLY TAG",
    )
    return live


# ---- the spec ------------------------------------------------------------------------------
def _strict(schema: Any) -> Any:
    """The schema with ``additionalProperties: false`` on every object listing its properties."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    if "properties" in out:
        out["properties"] = {k: _strict(v) for k, v in out["properties"].items()}
        out.setdefault("additionalProperties", False)
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), dict):
            out[key] = _strict(out[key])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in out:
            out[key] = [_strict(s) for s in out[key]]
    return out


@functools.cache
def _components() -> dict[str, Any]:
    spec = yaml.safe_load(SPEC_PATH.read_text())
    assert spec["openapi"].startswith("3.0")
    return {"schemas": {k: _strict(v) for k, v in spec["components"]["schemas"].items()}}


def conforms(payload: Any, schema_name: str) -> None:
    """Validate against a component schema of the UC spec (OpenAPI 3.0 = JSON Schema draft 4
    plus extensions; no schema here uses ``nullable``, so absent values must be left out)."""
    components = _components()
    schema = {**components["schemas"][schema_name], "components": components}
    jsonschema.Draft4Validator(schema).validate(payload)


def test_the_spec_check_rejects_what_the_spec_forbids() -> None:
    conforms({"name": "x", "created_at": 1, "properties": {"a": "b"}}, "CatalogInfo")
    bad = [
        ({"name": "x", "created_at": "yesterday"}, "CatalogInfo"),
        ({"name": "x", "full_name": "x"}, "CatalogInfo"),  # not a CatalogInfo field
        ({"name": "x", "properties": {"a": 1}}, "CatalogInfo"),
        ({"name": "x", "comment": None}, "SchemaInfo"),
        (
            {"privilege_assignments": [{"principal": "a", "privileges": ["MANAGE"]}]},
            "PermissionsList",
        ),
        ({"columns": [{"name": "c", "type_name": "INTEGER"}]}, "TableInfo"),
        ({"volume_type": "SHARED"}, "VolumeInfo"),
    ]
    for payload, name in bad:
        with pytest.raises(jsonschema.ValidationError):
            conforms(payload, name)


# ---- catalogs, schemas, tables, volumes through the official client ---------------------------
def test_catalog_lifecycle_with_the_official_client(live: Live) -> None:
    name = uniq("cat")
    started = int(time.time() * 1000)

    async def flow(api: ApiClient) -> dict[str, Any]:
        cats = CatalogsApi(api)
        out: dict[str, Any] = {}
        out["made"] = await cats.create_catalog(
            CreateCatalog(name=name, comment="first", properties={"team": "wx"})
        )
        out["got"] = await cats.get_catalog(name)
        out["listed"] = await cats.list_catalogs()
        out["renamed"] = await cats.update_catalog(
            name, UpdateCatalog(new_name=f"{name}_r", comment="second", properties={"tier": "1"})
        )
        with pytest.raises(NotFoundException):
            await cats.get_catalog(name)
        await SchemasApi(api).create_schema(CreateSchema(name="s", catalog_name=f"{name}_r"))
        with pytest.raises(BadRequestException) as not_empty:
            await cats.delete_catalog(f"{name}_r")
        out["not_empty"] = not_empty.value
        out["deleted"] = await cats.delete_catalog(f"{name}_r", force=True)
        with pytest.raises(NotFoundException):
            await cats.get_catalog(f"{name}_r")
        return out

    out = live.sdk("admin", flow)
    made, renamed = out["made"], out["renamed"]
    assert (made.name, made.owner, made.created_by) == (name, "admin", "admin")
    assert (made.comment, made.properties) == ("first", {"team": "wx"})
    assert uuid.UUID(made.id) and started - 1000 <= made.created_at <= time.time() * 1000 + 1000
    assert made.updated_at is None and made.updated_by is None
    assert out["got"] == made
    listed = [c.name for c in out["listed"].catalogs]
    assert {"main", "system", name} <= set(listed) and listed == sorted(listed)
    assert (renamed.name, renamed.id, renamed.comment) == (f"{name}_r", made.id, "second")
    assert renamed.properties == {"team": "wx", "tier": "1"}
    assert renamed.updated_by == "admin" and renamed.updated_at >= made.created_at
    err = json.loads(out["not_empty"].body)
    assert out["not_empty"].status == 400 and err["error_code"] == "FAILED_PRECONDITION"
    assert "not empty" in err["message"]
    assert out["deleted"] == {}


def test_schema_lifecycle_with_the_official_client(live: Live) -> None:
    cat = uniq("sc")

    async def flow(api: ApiClient) -> dict[str, Any]:
        await CatalogsApi(api).create_catalog(CreateCatalog(name=cat))
        schemas = SchemasApi(api)
        out: dict[str, Any] = {}
        out["made"] = await schemas.create_schema(
            CreateSchema(name="raw", catalog_name=cat, comment="landing", properties={"k": "v"})
        )
        out["got"] = await schemas.get_schema(f"{cat}.raw")
        out["listed"] = await schemas.list_schemas(catalog_name=cat)
        out["renamed"] = await schemas.update_schema(
            f"{cat}.raw", UpdateSchema(new_name="bronze", comment="renamed")
        )
        with pytest.raises(NotFoundException):
            await schemas.get_schema(f"{cat}.raw")
        await schemas.delete_schema(f"{cat}.bronze")
        out["after"] = await schemas.list_schemas(catalog_name=cat)
        await CatalogsApi(api).delete_catalog(cat)
        return out

    out = live.sdk("admin", flow)
    made = out["made"]
    assert (made.name, made.catalog_name, made.full_name) == ("raw", cat, f"{cat}.raw")
    assert (made.owner, made.comment, made.properties) == ("admin", "landing", {"k": "v"})
    assert uuid.UUID(made.schema_id) and out["got"] == made
    assert [s.full_name for s in out["listed"].schemas] == [f"{cat}.raw"]
    renamed = out["renamed"]
    assert (renamed.full_name, renamed.schema_id, renamed.comment) == (
        f"{cat}.bronze",
        made.schema_id,
        "renamed",
    )
    assert out["after"].schemas == [] and out["after"].next_page_token is None


def test_table_lifecycle_with_the_official_client(live: Live) -> None:
    cat = uniq("tb")
    columns = [
        ColumnInfo(name="id", type_name=ColumnTypeName.LONG, nullable=False),
        ColumnInfo(name="city", type_name=ColumnTypeName.STRING, partition_index=0),
        ColumnInfo(
            name="amount", type_name=ColumnTypeName.DECIMAL, type_precision=10, type_scale=2
        ),
    ]

    async def flow(api: ApiClient) -> dict[str, Any]:
        await CatalogsApi(api).create_catalog(CreateCatalog(name=cat))
        await SchemasApi(api).create_schema(CreateSchema(name="s", catalog_name=cat))
        tables = TablesApi(api)
        out: dict[str, Any] = {}
        out["managed"] = await tables.create_table(
            CreateTable(
                name="orders",
                catalog_name=cat,
                schema_name="s",
                table_type=TableType.MANAGED,
                data_source_format=DataSourceFormat.DELTA,
                columns=columns,
                comment="orders",
                properties={"delta.appendOnly": "true"},
            )
        )
        out["external"] = await tables.create_table(
            CreateTable(
                name="ext",
                catalog_name=cat,
                schema_name="s",
                table_type=TableType.EXTERNAL,
                data_source_format=DataSourceFormat.PARQUET,
                columns=[ColumnInfo(name="x", type_name=ColumnTypeName.INT)],
                storage_location="az://bucket/ext",
            )
        )
        out["got"] = await tables.get_table(f"{cat}.s.orders")
        out["listed"] = await tables.list_tables(catalog_name=cat, schema_name="s")
        await tables.delete_table(f"{cat}.s.orders")
        with pytest.raises(NotFoundException):
            await tables.get_table(f"{cat}.s.orders")
        out["after"] = await tables.list_tables(catalog_name=cat, schema_name="s")
        await CatalogsApi(api).delete_catalog(cat, force=True)
        return out

    out = live.sdk("admin", flow)
    t = out["managed"]
    assert (t.name, t.catalog_name, t.schema_name) == ("orders", cat, "s")
    assert (t.table_type, t.data_source_format) == (TableType.MANAGED, DataSourceFormat.DELTA)
    assert t.storage_location == live.stratus.lakehouse.storage.table_url(f"{cat}/s/orders")
    assert (t.owner, t.comment, t.properties) == ("admin", "orders", {"delta.appendOnly": "true"})
    assert uuid.UUID(t.table_id)
    cols = {c.name: c for c in t.columns}
    assert [c.name for c in t.columns] == ["id", "city", "amount"]
    assert [c.position for c in t.columns] == [0, 1, 2]
    assert (cols["id"].type_text, cols["id"].nullable) == ("bigint", False)
    assert json.loads(cols["id"].type_json)["type"] == "long"
    assert cols["city"].partition_index == 0 and cols["id"].partition_index is None
    assert cols["amount"].type_text == "decimal(10,2)"
    assert json.loads(cols["amount"].type_json)["type"] == "decimal(10,2)"
    assert out["got"] == t
    ext = out["external"]
    assert (ext.table_type, ext.storage_location) == (TableType.EXTERNAL, "az://bucket/ext")
    assert [x.name for x in out["listed"].tables] == ["ext", "orders"]
    assert [x.name for x in out["after"].tables] == ["ext"]


def test_volume_lifecycle_with_the_official_client(live: Live) -> None:
    cat = uniq("vo")

    async def flow(api: ApiClient) -> dict[str, Any]:
        await CatalogsApi(api).create_catalog(CreateCatalog(name=cat))
        await SchemasApi(api).create_schema(CreateSchema(name="files", catalog_name=cat))
        vols = VolumesApi(api)
        out: dict[str, Any] = {}
        out["managed"] = await vols.create_volume(
            CreateVolumeRequestContent(
                catalog_name=cat,
                schema_name="files",
                name="raw",
                volume_type=VolumeType.MANAGED,
                comment="drops",
            )
        )
        out["external"] = await vols.create_volume(
            CreateVolumeRequestContent(
                catalog_name=cat,
                schema_name="files",
                name="ext",
                volume_type=VolumeType.EXTERNAL,
                storage_location="az://bucket/files",
            )
        )
        out["got"] = await vols.get_volume(f"{cat}.files.raw")
        out["listed"] = await vols.list_volumes(catalog_name=cat, schema_name="files")
        out["updated"] = await vols.update_volume(
            f"{cat}.files.raw", UpdateVolumeRequestContent(new_name="landing", comment="new")
        )
        with pytest.raises(NotFoundException):
            await vols.get_volume(f"{cat}.files.raw")
        await vols.delete_volume(f"{cat}.files.landing")
        with pytest.raises(NotFoundException):
            await vols.get_volume(f"{cat}.files.landing")
        out["after"] = await vols.list_volumes(catalog_name=cat, schema_name="files")
        await CatalogsApi(api).delete_catalog(cat, force=True)
        return out

    out = live.sdk("admin", flow)
    v = out["managed"]
    assert (v.full_name, v.volume_type, v.comment, v.owner) == (
        f"{cat}.files.raw",
        VolumeType.MANAGED,
        "drops",
        "admin",
    )
    assert v.storage_location.endswith(f"/{cat}/files/raw") and uuid.UUID(v.volume_id)
    assert out["external"].storage_location == "az://bucket/files"
    assert out["got"] == v
    assert [x.name for x in out["listed"].volumes] == ["ext", "raw"]
    up = out["updated"]
    assert (up.full_name, up.comment, up.volume_id) == (f"{cat}.files.landing", "new", v.volume_id)
    assert up.updated_by == "admin"
    assert [x.name for x in out["after"].volumes] == ["ext"]


async def _walk(call: Callable[..., Awaitable[Any]], key: str, size: int) -> list[list[str]]:
    pages: list[list[str]] = []
    token = None
    while True:
        resp = await call(max_results=size, page_token=token)
        pages.append([x.name for x in getattr(resp, key)])
        token = resp.next_page_token
        if not token:
            return pages
        assert len(pages) < 50, "paging does not end"


def test_paging_walks_every_item_exactly_once(live: Live) -> None:
    tag = uuid.uuid4().hex[:6]
    cats = [f"pg{tag}_{i}" for i in range(7)]
    cat = cats[0]

    async def flow(api: ApiClient) -> dict[str, list[list[str]]]:
        capi, sapi, tapi, vapi = CatalogsApi(api), SchemasApi(api), TablesApi(api), VolumesApi(api)
        for c in cats:
            await capi.create_catalog(CreateCatalog(name=c))
        for i in range(5):
            await sapi.create_schema(CreateSchema(name=f"s{i}", catalog_name=cat))
        for i in range(5):
            await tapi.create_table(
                CreateTable(
                    name=f"t{i}",
                    catalog_name=cat,
                    schema_name="s0",
                    table_type=TableType.MANAGED,
                    columns=[ColumnInfo(name="x", type_name=ColumnTypeName.INT)],
                )
            )
            await vapi.create_volume(
                CreateVolumeRequestContent(
                    catalog_name=cat, schema_name="s0", name=f"v{i}", volume_type=VolumeType.MANAGED
                )
            )
        return {
            "catalogs": await _walk(capi.list_catalogs, "catalogs", 3),
            "schemas": await _walk(
                functools.partial(sapi.list_schemas, catalog_name=cat), "schemas", 2
            ),
            "tables": await _walk(
                functools.partial(tapi.list_tables, catalog_name=cat, schema_name="s0"),
                "tables",
                2,
            ),
            "volumes": await _walk(
                functools.partial(vapi.list_volumes, catalog_name=cat, schema_name="s0"),
                "volumes",
                4,
            ),
        }

    walked = live.sdk("admin", flow)
    expected = {
        "catalogs": set(cats),
        "schemas": {f"s{i}" for i in range(5)},
        "tables": {f"t{i}" for i in range(5)},
        "volumes": {f"v{i}" for i in range(5)},
    }
    sizes = {"catalogs": 3, "schemas": 2, "tables": 2, "volumes": 4}
    for key, pages in walked.items():
        seen = [n for page in pages for n in page]
        assert len(seen) == len(set(seen)), f"{key}: an item came twice"
        assert expected[key] <= set(seen), f"{key}: missing {expected[key] - set(seen)}"
        assert all(len(p) == sizes[key] for p in pages[:-1]) and len(pages[-1]) <= sizes[key]
    assert len(walked["schemas"]) == 3 and len(walked["tables"]) == 3
    assert walked["volumes"] == [["v0", "v1", "v2", "v3"], ["v4"]]

    # pages hold only what the caller can see, yet stay full and end exactly
    for i in (1, 4, 6):
        _grant(live, "catalog", cats[i], "pat", "USE CATALOG")
    pat_pages = live.sdk("pat", lambda api: _walk(CatalogsApi(api).list_catalogs, "catalogs", 2))
    assert pat_pages == [[cats[1], cats[4]], [cats[6]]]

    # max_results 0 means the server's page size; a larger one is capped, not refused
    everything = _ok(
        live.call("GET", f"{UC}/schemas", params={"catalog_name": cat, "max_results": 0})
    )
    assert len(everything["schemas"]) == 5 and "next_page_token" not in everything
    capped = _ok(live.call("GET", f"{UC}/catalogs", params={"max_results": 5000}))
    assert set(cats) <= {c["name"] for c in capped["catalogs"]}
    for c in cats:
        _ok(live.call("DELETE", f"{UC}/catalogs/{c}", params={"force": "true"}))


# ---- grants --------------------------------------------------------------------------------
def _change(principal: str, add: list[Privilege], remove: list[Privilege]) -> UpdatePermissions:
    return UpdatePermissions(
        changes=[PermissionsChange(principal=principal, add=add, remove=remove)]
    )


def test_schema_grants_through_the_client_are_inherited_by_tables(live: Live) -> None:
    hourly = "main.weather.hourly"
    assert live.call("GET", "/api/v1/cities", "sam").status_code == 404

    async def denied(api: ApiClient) -> None:
        with pytest.raises(NotFoundException):
            await TablesApi(api).get_table(hourly)

    live.sdk("sam", denied)

    async def grant(api: ApiClient) -> dict[str, Any]:
        g = GrantsApi(api)
        out: dict[str, Any] = {}
        out["catalog"] = await g.update(
            SecurableType.CATALOG, "main", _change("sam", [Privilege.USE_CATALOG], [])
        )
        out["schema"] = await g.update(
            SecurableType.SCHEMA,
            "main.weather",
            _change("sam", [Privilege.USE_SCHEMA, Privilege.SELECT], []),
        )
        out["get"] = await g.get(SecurableType.SCHEMA, "main.weather", principal="sam")
        out["table"] = await g.get(SecurableType.TABLE, hourly)
        return out

    out = live.sdk("admin", grant)
    cat_grants = {a.principal: set(a.privileges) for a in out["catalog"].privilege_assignments}
    assert cat_grants["sam"] == {Privilege.USE_CATALOG}
    sch_grants = {a.principal: set(a.privileges) for a in out["schema"].privilege_assignments}
    assert sch_grants["sam"] == {Privilege.USE_SCHEMA, Privilege.SELECT}
    assert [(a.principal, set(a.privileges)) for a in out["get"].privilege_assignments] == [
        ("sam", {Privilege.USE_SCHEMA, Privilege.SELECT})
    ]
    assert "sam" not in {a.principal for a in out["table"].privilege_assignments}  # inherited

    cities = live.call("GET", "/api/v1/cities", "sam")
    assert cities.status_code == 200 and cities.json()["count"] == 6
    table = live.sdk("sam", lambda api: TablesApi(api).get_table(hourly))
    assert table.name == "hourly" and "temp" in {c.name for c in table.columns}

    live.sdk(
        "admin",
        lambda api: GrantsApi(api).update(
            SecurableType.SCHEMA, "main.weather", _change("sam", [], [Privilege.SELECT])
        ),
    )
    revoked = live.call("GET", "/api/v1/cities", "sam")
    assert revoked.status_code == 403 and "SELECT" in revoked.json()["detail"]
    # reading the table's metadata needs no SELECT: it is visible and the containers are usable
    assert live.sdk("sam", lambda api: TablesApi(api).get_table(hourly)).name == "hourly"


def test_stratus_privileges_are_kept_out_of_uc_responses(live: Live) -> None:
    path = "permissions/table/main.weather.cities"
    body = {"changes": [{"principal": "auditors", "add": ["SELECT", "APPLY TAG", "MANAGE"]}]}
    patched = _ok(live.call("PATCH", f"{UC}/{path}", json=body))
    conforms(patched, "PermissionsList")
    assert {"principal": "auditors", "privileges": ["SELECT"]} in patched["privilege_assignments"]
    via_sdk = live.sdk(
        "admin", lambda api: GrantsApi(api).get(SecurableType.TABLE, "main.weather.cities")
    )
    assert {a.principal: a.privileges for a in via_sdk.privilege_assignments}["auditors"] == [
        Privilege.SELECT
    ]
    full = _ok(live.call("GET", f"/api/v1/{path}"))
    assert (full["securable_type"], full["full_name"], full["owner"]) == (
        "table",
        "main.weather.cities",
        "admin",
    )
    by_principal = {a["principal"]: set(a["privileges"]) for a in full["privilege_assignments"]}
    assert by_principal["auditors"] == {"SELECT", "APPLY TAG", "MANAGE"}
    assert {"MANAGE", "APPLY TAG", "SELECT"} <= set(full["effective_privileges"])

    remove = {"changes": [{"principal": "auditors", "add": [], "remove": ["SELECT"]}]}
    patched = _ok(live.call("PATCH", f"{UC}/{path}", json=remove))
    assert "auditors" not in {a["principal"] for a in patched["privilege_assignments"]}
    only = _ok(live.call("GET", f"/api/v1/{path}", params={"principal": "auditors"}))
    assert only["privilege_assignments"] == [
        {"principal": "auditors", "privileges": ["APPLY TAG", "MANAGE"]}
    ]
    rest = {"changes": [{"principal": "auditors", "remove": ["APPLY TAG", "MANAGE"]}]}
    _ok(live.call("PATCH", f"{UC}/{path}", json=rest))
    assert _ok(live.call("GET", f"/api/v1/{path}", params={"principal": "auditors"})) == {
        **only,
        "privilege_assignments": [],
    }


# ---- errors as the official client sees them -----------------------------------------------
def _body(exc: ApiException) -> dict[str, Any]:
    return json.loads(exc.body)  # type: ignore[no-any-return]


def test_client_errors_carry_status_and_uc_error_codes(roles: Live) -> None:
    live = roles

    async def admin_errors(api: ApiClient) -> dict[str, ApiException]:
        cats = CatalogsApi(api)
        out: dict[str, ApiException] = {}
        with pytest.raises(NotFoundException) as missing:
            await cats.get_catalog("no_such_catalog")
        with pytest.raises(ApiException) as dup:
            await cats.create_catalog(CreateCatalog(name="main"))
        with pytest.raises(BadRequestException) as bad:
            await cats.create_catalog(CreateCatalog(name="bad name!"))
        with pytest.raises(BadRequestException) as bad_table:
            await TablesApi(api).get_table("main.weather")
        out.update(missing=missing.value, dup=dup.value, bad=bad.value, bad_table=bad_table.value)
        return out

    errs = live.sdk("admin", admin_errors)
    assert errs["missing"].status == 404 and _body(errs["missing"])["error_code"] == "NOT_FOUND"
    assert "no_such_catalog" in _body(errs["missing"])["message"]
    assert type(errs["dup"]) is ApiException and errs["dup"].status == 409
    assert _body(errs["dup"])["error_code"] == "ALREADY_EXISTS"
    assert errs["bad"].status == 400 and _body(errs["bad"])["parameter"] == "name"
    assert _body(errs["bad"])["error_code"] == "INVALID_ARGUMENT"
    assert _body(errs["bad_table"])["parameter"] == "full_name"

    async def anonymous(api: ApiClient) -> ApiException:
        with pytest.raises(UnauthorizedException) as info:
            await CatalogsApi(api).list_catalogs()
        return info.value

    unauth = live.sdk(None, anonymous)
    assert unauth.status == 401 and _body(unauth)["error_code"] == "UNAUTHENTICATED"
    assert unauth.headers["WWW-Authenticate"].startswith("Bearer")

    async def reader(api: ApiClient) -> ApiException:
        with pytest.raises(ForbiddenException) as info:
            await SchemasApi(api).create_schema(CreateSchema(name="nope", catalog_name="main"))
        return info.value

    denied = live.sdk("rita", reader)
    assert denied.status == 403 and _body(denied)["error_code"] == "PERMISSION_DENIED"
    assert "CREATE SCHEMA" in _body(denied)["message"] and "rita" in _body(denied)["message"]


def test_unprivileged_user_sees_nothing_and_gets_404_not_403(roles: Live) -> None:
    live = roles

    async def flow(api: ApiClient) -> dict[str, Any]:
        out: dict[str, Any] = {"catalogs": await CatalogsApi(api).list_catalogs()}
        calls = {
            "catalog": CatalogsApi(api).get_catalog("main"),
            "missing": CatalogsApi(api).get_catalog("no_such_catalog"),
            "schemas": SchemasApi(api).list_schemas(catalog_name="main"),
            "schema": SchemasApi(api).get_schema("main.weather"),
            "tables": TablesApi(api).list_tables(catalog_name="main", schema_name="weather"),
            "table": TablesApi(api).get_table("main.weather.hourly"),
            "grants": GrantsApi(api).get(SecurableType.CATALOG, "main"),
            "delete": TablesApi(api).delete_table("main.weather.hourly"),
            "update": CatalogsApi(api).update_catalog("system", UpdateCatalog(comment="x")),
        }
        for key, call in calls.items():
            with pytest.raises(NotFoundException) as info:
                await call
            out[key] = info.value
        out["summary"] = await MetastoresApi(api).summary()
        return out

    out = live.sdk("nick", flow)
    assert out["catalogs"].catalogs == [] and out["catalogs"].next_page_token is None
    for key in ("catalog", "schemas", "schema", "tables", "table", "grants", "delete", "update"):
        assert out[key].status == 404, key
        assert _body(out[key])["error_code"] == "NOT_FOUND"
    # an existing catalog looks exactly like a missing one
    existing, missing = _body(out["catalog"]), _body(out["missing"])
    assert existing["message"].replace("main", "X") == missing["message"].replace(
        "no_such_catalog", "X"
    )
    assert uuid.UUID(out["summary"].metastore_id)


# ---- raw JSON against the spec ---------------------------------------------------------------
def test_raw_responses_conform_to_the_uc_spec(live: Live) -> None:
    cat = uniq("raw")
    checks: list[tuple[dict[str, Any], str]] = []

    def check(method: str, path: str, schema: str, body: dict | None = None, **kw: Any) -> dict:
        if body is not None:
            request_schema = {
                ("POST", "/catalogs"): "CreateCatalog",
                ("POST", "/schemas"): "CreateSchema",
                ("POST", "/tables"): "CreateTable",
                ("POST", "/volumes"): "CreateVolumeRequestContent",
            }.get((method, path))
            if request_schema:
                conforms(body, request_schema)  # what we send is a valid UC request, too
        payload = _ok(live.call(method, UC + path, json=body, **kw))
        checks.append((payload, schema))
        return payload

    check(
        "POST", "/catalogs", "CatalogInfo", {"name": cat, "comment": "c", "properties": {"a": "b"}}
    )
    check("GET", f"/catalogs/{cat}", "CatalogInfo")
    check("GET", "/catalogs", "ListCatalogsResponse", params={"max_results": 1})
    check("PATCH", f"/catalogs/{cat}", "CatalogInfo", {"comment": "d", "properties": {"x": "y"}})
    check("POST", "/schemas", "SchemaInfo", {"name": "s", "catalog_name": cat, "comment": "c"})
    check("GET", f"/schemas/{cat}.s", "SchemaInfo")
    check("GET", "/schemas", "ListSchemasResponse", params={"catalog_name": cat})
    check("PATCH", f"/schemas/{cat}.s", "SchemaInfo", {"properties": {"p": "q"}})
    table = {
        "name": "t",
        "catalog_name": cat,
        "schema_name": "s",
        "table_type": "MANAGED",
        "data_source_format": "DELTA",
        "columns": [
            {"name": "a", "type_name": "INT", "type_text": "int", "position": 0},
            {"name": "b", "type_name": "TIMESTAMP", "nullable": False, "comment": "when"},
        ],
        "properties": {"owner_team": "wx"},
    }
    check("POST", "/tables", "TableInfo", table)
    check("GET", f"/tables/{cat}.s.t", "TableInfo")
    check("GET", "/tables/main.weather.hourly", "TableInfo")
    check("GET", "/tables/system.access.audit", "TableInfo")
    check("GET", "/tables", "ListTablesResponse", params={"catalog_name": cat, "schema_name": "s"})
    volume = {"catalog_name": cat, "schema_name": "s", "name": "v", "volume_type": "MANAGED"}
    check("POST", "/volumes", "VolumeInfo", volume)
    check("GET", f"/volumes/{cat}.s.v", "VolumeInfo")
    check(
        "GET",
        "/volumes",
        "ListVolumesResponseContent",
        params={"catalog_name": cat, "schema_name": "s"},
    )
    check("PATCH", f"/volumes/{cat}.s.v", "VolumeInfo", {"comment": "files"})
    grant = {"changes": [{"principal": "auditors", "add": ["USE CATALOG"], "remove": []}]}
    check("PATCH", f"/permissions/catalog/{cat}", "PermissionsList", grant)
    check("GET", f"/permissions/catalog/{cat}", "PermissionsList")
    check("GET", "/permissions/metastore/stratus", "PermissionsList")
    check("GET", "/metastore_summary", "GetMetastoreSummaryResponse")
    for payload, schema in checks:
        conforms(payload, schema)
    assert len(checks) == 21

    by_schema = {s: p for p, s in checks}
    t = by_schema["ListTablesResponse"]["tables"][0]
    assert [c["name"] for c in t["columns"]] == ["a", "b"] and t["columns"][1]["nullable"] is False
    assert by_schema["GetMetastoreSummaryResponse"]["metastore_id"]
    for path in (
        f"/volumes/{cat}.s.v",
        f"/tables/{cat}.s.t",
        f"/schemas/{cat}.s",
        f"/catalogs/{cat}",
    ):
        assert _ok(live.call("DELETE", UC + path)) == {}
    missing = live.call("GET", f"{UC}/catalogs/{cat}")
    assert missing.status_code == 404
    assert missing.headers["Content-Type"] == "application/problem+json"
    problem = missing.json()
    assert problem["status"] == 404 and problem["error_code"] == "NOT_FOUND"
    assert isinstance(problem["message"], str) and cat in problem["message"]


# ---- bad input -----------------------------------------------------------------------------
_COLS = [{"name": "a", "type_name": "INT"}]
_TABLE = {"name": "t", "catalog_name": "main", "schema_name": "weather", "table_type": "MANAGED"}
BAD_INPUT = [
    ("POST", "/catalogs", {}, None, "name"),
    ("POST", "/catalogs", {"name": 5}, None, "name"),
    ("POST", "/catalogs", {"name": "ok", "bogus": 1}, None, "bogus"),
    ("POST", "/catalogs", {"name": "a.b"}, None, "name"),
    ("POST", "/catalogs", {"name": "x", "properties": {"k": 1}}, None, "properties.k"),
    ("POST", "/catalogs", b"{not json", None, "body"),
    ("POST", "/catalogs", [1, 2], None, "body"),
    ("GET", "/catalogs", None, {"max_results": "-1"}, "max_results"),
    ("GET", "/catalogs", None, {"max_results": "ten"}, "max_results"),
    ("GET", "/catalogs", None, {"limit": "1"}, "limit"),
    ("PATCH", "/catalogs/main", {"owner": "nobody-at-all"}, None, "owner"),
    ("PATCH", "/catalogs/main", {"new_name": "no way"}, None, "new_name"),
    ("DELETE", "/catalogs/nothing_here", None, {"force": "maybe"}, "force"),
    ("POST", "/schemas", {"name": "s"}, None, "catalog_name"),
    (
        "POST",
        "/schemas",
        {"name": "s", "catalog_name": "main", "storage_root": "/x"},
        None,
        "storage_root",
    ),
    ("GET", "/schemas", None, None, "catalog_name"),
    ("GET", "/schemas/main", None, None, "full_name"),
    ("GET", "/tables", None, {"catalog_name": "main"}, "schema_name"),
    ("GET", "/tables/main.weather", None, None, "full_name"),
    ("GET", "/tables/a.b.c.d", None, None, "full_name"),
    ("POST", "/tables", {**_TABLE}, None, "columns"),
    (
        "POST",
        "/tables",
        {**_TABLE, "columns": [{"name": "a", "type_name": "INTEGER"}]},
        None,
        "columns[0].type_name",
    ),
    ("POST", "/tables", {**_TABLE, "columns": [{"name": "a"}]}, None, "columns[0].type_name"),
    (
        "POST",
        "/tables",
        {**_TABLE, "columns": [*_COLS, {"name": "A", "type_name": "LONG"}]},
        None,
        "columns[1].name",
    ),
    (
        "POST",
        "/tables",
        {**_TABLE, "columns": [{"name": "s", "type_name": "STRUCT"}]},
        None,
        "columns[0].type_json",
    ),
    (
        "POST",
        "/tables",
        {**_TABLE, "columns": _COLS, "table_type": "EXTERNAL"},
        None,
        "storage_location",
    ),
    ("POST", "/tables", {**_TABLE, "columns": _COLS, "table_type": "VIEW"}, None, "table_type"),
    (
        "POST",
        "/tables",
        {**_TABLE, "columns": _COLS, "data_source_format": "XLS"},
        None,
        "data_source_format",
    ),
    (
        "POST",
        "/volumes",
        {"catalog_name": "main", "schema_name": "weather", "name": "v", "volume_type": "X"},
        None,
        "volume_type",
    ),
    (
        "POST",
        "/volumes",
        {"catalog_name": "main", "schema_name": "weather", "name": "v"},
        None,
        "volume_type",
    ),
    (
        "POST",
        "/volumes",
        {"catalog_name": "main", "schema_name": "weather", "name": "v", "volume_type": "EXTERNAL"},
        None,
        "storage_location",
    ),
    ("PATCH", "/volumes/main.weather.v", {"comment": ""}, None, "comment"),
    ("GET", "/permissions/function/main.weather.f", None, None, "securable_type"),
    ("GET", "/permissions/table/main.weather", None, None, "full_name"),
    ("PATCH", "/permissions/table/main.weather.hourly", {}, None, "changes"),
    (
        "PATCH",
        "/permissions/table/main.weather.hourly",
        {"changes": [{"principal": "rita", "add": ["READ MINDS"]}]},
        None,
        "changes[0].add",
    ),
    (
        "PATCH",
        "/permissions/table/main.weather.hourly",
        {"changes": [{"principal": "rita", "add": ["CREATE CATALOG"]}]},
        None,
        "changes[0].add",
    ),
    (
        "PATCH",
        "/permissions/table/main.weather.hourly",
        {"changes": [{"principal": "ghost", "add": ["SELECT"]}]},
        None,
        "principal",
    ),
    (
        "PATCH",
        "/permissions/table/main.weather.hourly",
        {"changes": [{"add": ["SELECT"]}]},
        None,
        "changes[0].principal",
    ),
    (
        "PUT",
        "/tags/table/main.weather.hourly",
        {"tags": {"pii": "x"}, "column": "nope"},
        None,
        "column",
    ),
    (
        "PUT",
        "/tags/schema/main.weather",
        {"tags": {"pii": "x"}, "column": "city_id"},
        None,
        "column",
    ),
    ("PUT", "/tags/table/main.weather.hourly", {"tags": {}}, None, "tags"),
    ("PUT", "/tags/table/main.weather.hourly", {"tags": {"a,b": "x"}}, None, "tags.a,b"),
    ("PUT", "/tags/table/main.weather.hourly", {"tags": {"k": "v" * 1001}}, None, "tags.k"),
    ("PUT", "/tags/metastore/stratus", {"tags": {"k": "v"}}, None, "securable_type"),
    ("DELETE", "/tags/table/main.weather.hourly", None, None, "keys"),
    ("GET", "/information_schema/column_tags", None, {"table_name": "a b"}, "table_name"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "params", "parameter"),
    BAD_INPUT,
    ids=[f"{m} {p} {param}" for m, p, _, _, param in BAD_INPUT],
)
def test_bad_input_is_a_400_naming_the_parameter(
    live: Live, method: str, path: str, body: Any, params: dict | None, parameter: str
) -> None:
    kwargs: dict[str, Any] = {"params": params}
    if isinstance(body, bytes):
        kwargs.update(data=body, headers={"Content-Type": "application/json"})
    elif body is not None:
        kwargs["json"] = body
    resp = live.call(method, UC + path, **kwargs)
    assert resp.status_code == 400, resp.text
    assert resp.headers["Content-Type"] == "application/problem+json"
    problem = resp.json()
    assert problem["parameter"] == parameter, problem
    assert problem["error_code"] == "INVALID_ARGUMENT" and problem["message"]


# ---- tags ----------------------------------------------------------------------------------
def test_tags_on_securables_and_columns(roles: Live) -> None:
    live = roles
    cat = uniq("tg")
    _ok(live.call("POST", f"{UC}/catalogs", json={"name": cat}))
    _ok(live.call("POST", f"{UC}/schemas", json={"name": "s", "catalog_name": cat}))
    cols = [{"name": "id", "type_name": "LONG"}, {"name": "email", "type_name": "STRING"}]
    table = {**_TABLE, "catalog_name": cat, "schema_name": "s", "columns": cols}
    _ok(live.call("POST", f"{UC}/tables", json=table))
    t = f"{cat}.s.t"

    put = _ok(
        live.call("PUT", f"{UC}/tags/catalog/{cat}", json={"tags": {"domain": "wx", "gold": None}})
    )
    assert put == {
        "tags": [
            {"key": "domain", "value": "wx", "column_name": None},
            {"key": "gold", "value": None, "column_name": None},
        ]
    }
    _ok(
        live.call("PUT", f"{UC}/tags/table/{t}", json={"tags": {"pii": "email"}, "column": "email"})
    )
    both = _ok(live.call("PUT", f"{UC}/tags/table/{t}", json={"tags": {"owner": "crm"}}))
    assert both["tags"] == [
        {"key": "owner", "value": "crm", "column_name": None},
        {"key": "pii", "value": "email", "column_name": "email"},
    ]
    only_col = _ok(live.call("GET", f"{UC}/tags/table/{t}", params={"column": "email"}))
    assert only_col["tags"] == [{"key": "pii", "value": "email", "column_name": "email"}]
    # changing a value replaces it
    _ok(
        live.call(
            "PUT", f"{UC}/tags/table/{t}", json={"tags": {"pii": "contact"}, "column": "email"}
        )
    )
    row = {
        "catalog_name": cat,
        "schema_name": "s",
        "table_name": "t",
        "column_name": "email",
        "tag_name": "pii",
        "tag_value": "contact",
    }
    mine = {"catalog_name": cat}
    assert _ok(live.call("GET", f"{UC}/information_schema/column_tags", params=mine)) == {
        "column_tags": [row]
    }

    # rita cannot see the catalog: no rows, and the tags endpoint says not found
    assert _ok(live.call("GET", f"{UC}/information_schema/column_tags", "rita", params=mine)) == {
        "column_tags": []
    }
    assert live.call("GET", f"{UC}/tags/table/{t}", "rita").status_code == 404
    _grant(live, "catalog", cat, "rita", "USE CATALOG", "USE SCHEMA")
    assert _ok(live.call("GET", f"{UC}/information_schema/column_tags", "rita", params=mine)) == {
        "column_tags": [row]
    }
    assert len(_ok(live.call("GET", f"{UC}/tags/table/{t}", "rita"))["tags"]) == 2
    denied = live.call("PUT", f"{UC}/tags/table/{t}", "rita", json={"tags": {"x": "y"}})
    assert denied.status_code == 403 and "APPLY TAG" in denied.json()["detail"]
    _grant(live, "table", t, "rita", "APPLY TAG")
    _ok(live.call("PUT", f"{UC}/tags/table/{t}", "rita", json={"tags": {"x": "y"}}))

    left = _ok(
        live.call("DELETE", f"{UC}/tags/table/{t}", params={"keys": "pii", "column": "email"})
    )
    assert {x["key"] for x in left["tags"]} == {"owner", "x"}
    assert _ok(live.call("GET", f"{UC}/information_schema/column_tags", params=mine)) == {
        "column_tags": []
    }
    left = _ok(live.call("DELETE", f"{UC}/tags/table/{t}", params={"keys": "owner,x"}))
    assert left == {"tags": []}
    _ok(live.call("DELETE", f"{UC}/catalogs/{cat}", params={"force": "true"}))


# ---- ownership, built-ins, audit -----------------------------------------------------------
def test_the_creator_owns_and_can_hand_over(live: Live) -> None:
    name = uniq("own")

    async def create(api: ApiClient) -> Any:
        return await CatalogsApi(api).create_catalog(CreateCatalog(name=name))

    async def refused(api: ApiClient) -> ApiException:
        with pytest.raises(ForbiddenException) as info:
            await create(api)
        return info.value

    assert "CREATE CATALOG" in _body(live.sdk("vera", refused))["message"]
    live.sdk(
        "admin",
        lambda api: GrantsApi(api).update(
            SecurableType.METASTORE, "stratus", _change("vera", [Privilege.CREATE_CATALOG], [])
        ),
    )
    made = live.sdk("vera", create)
    assert (made.owner, made.created_by) == ("vera", "vera")
    # the owner may do anything inside, and grant
    _ok(live.call("POST", f"{UC}/schemas", "vera", json={"name": "s", "catalog_name": name}))
    assert live.call("GET", f"{UC}/catalogs/{name}", "rita").status_code == 404
    _ok(
        live.call(
            "PATCH",
            f"{UC}/permissions/catalog/{name}",
            "vera",
            json={"changes": [{"principal": "rita", "add": ["USE CATALOG"], "remove": []}]},
        )
    )
    assert _ok(live.call("GET", f"{UC}/catalogs/{name}", "rita"))["owner"] == "vera"
    assert live.call("DELETE", f"{UC}/catalogs/{name}", "rita").status_code == 403
    # hand the catalog over: vera keeps her schema (so still sees the catalog) but not the catalog
    handed = _ok(live.call("PATCH", f"{UC}/catalogs/{name}", "vera", json={"owner": "olivia"}))
    assert (handed["owner"], handed["updated_by"]) == ("olivia", "vera")
    gone = live.call("DELETE", f"{UC}/catalogs/{name}", "vera", params={"force": "true"})
    assert gone.status_code == 403 and "OWNER or MANAGE" in gone.json()["detail"]
    _ok(live.call("DELETE", f"{UC}/catalogs/{name}", "olivia", params={"force": "true"}))
    live.sdk(
        "admin",
        lambda api: GrantsApi(api).update(
            SecurableType.METASTORE, "stratus", _change("vera", [], [Privilege.CREATE_CATALOG])
        ),
    )


def test_builtin_securables_cannot_be_dropped_or_renamed(live: Live) -> None:
    refused = [
        ("DELETE", "/catalogs/system", None, {"force": "true"}),
        ("DELETE", "/catalogs/main", None, {"force": "true"}),
        ("PATCH", "/catalogs/main", {"new_name": "primary"}, None),
        ("DELETE", "/schemas/main.weather", None, {"force": "true"}),
        ("DELETE", "/schemas/system.access", None, {"force": "true"}),
        ("DELETE", "/tables/main.weather.hourly", None, None),
        ("DELETE", "/tables/system.access.audit", None, None),
        ("POST", "/schemas", {"name": "mine", "catalog_name": "system"}, None),
    ]
    for method, path, body, params in refused:
        resp = live.call(method, UC + path, json=body, params=params)
        assert resp.status_code == 403, (path, resp.text)
        assert resp.json()["error_code"] == "PERMISSION_DENIED"
    for path in ("/catalogs/main", "/schemas/main.weather", "/tables/main.weather.hourly"):
        _ok(live.call("GET", UC + path))
    # comments, properties and owners of built-ins may still change
    comment = _ok(live.call("PATCH", f"{UC}/schemas/main.weather", json={"comment": "obs"}))
    assert comment["comment"] == "obs"


def test_uc_requests_are_audited_even_when_denied(roles: Live) -> None:
    live = roles
    rid = uuid.uuid4().hex
    resp = live.call(
        "POST",
        f"{UC}/schemas",
        "rita",
        json={"name": "nope", "catalog_name": "main"},
        headers={"X-Request-Id": rid},
    )
    assert resp.status_code == 403
    live.stratus.governance.audit.flush()
    rows = DeltaTable(live.stratus.lakehouse.url(AUDIT)).to_pyarrow_table().to_pylist()
    found = [r for r in rows if r["request_id"] == rid]
    assert len(found) == 1
    row = found[0]
    assert (row["action_name"], row["service_name"], row["user_identity"]) == (
        "createSchema",
        "unityCatalog",
        "rita",
    )
    assert (row["securable_type"], row["securable_full_name"]) == ("schema", "main.nope")
    assert (row["outcome"], row["status_code"]) == ("denied", 403)
    assert "CREATE SCHEMA" in row["error_message"]
    assert json.loads(row["request_params"])["catalog_name"] == "main"

    bad_id = uuid.uuid4().hex
    bad = live.call("POST", f"{UC}/catalogs", json={"name": 5}, headers={"X-Request-Id": bad_id})
    assert bad.status_code == 400
    live.stratus.governance.audit.flush()
    rows = DeltaTable(live.stratus.lakehouse.url(AUDIT)).to_pyarrow_table().to_pylist()
    [row] = [r for r in rows if r["request_id"] == bad_id]
    assert (row["action_name"], row["outcome"], row["status_code"]) == (
        "createCatalog",
        "error",
        400,
    )
    assert row["securable_full_name"] is None and row["error_message"].startswith("name:")


# ---- the authorization matrix --------------------------------------------------------------
ENDPOINTS = (
    "get_catalog",
    "list_schemas",
    "get_table",
    "create_schema",
    "create_table",
    "update_permissions",
    "delete_table",
    "set_tags",
)
EXPECTED = {
    "admin": (200, 200, 200, 200, 200, 200, 200, 200),
    "olivia": (200, 200, 200, 200, 200, 200, 200, 200),  # owns catalog main
    "rita": (200, 200, 200, 403, 403, 403, 403, 403),  # USE + SELECT only
    "gina": (200, 200, 200, 403, 200, 403, 403, 200),  # via group analysts
    "nick": (404, 404, 404, 404, 404, 404, 404, 404),  # nothing: sees nothing
}
CELLS = [(who, ep, EXPECTED[who][i]) for who in EXPECTED for i, ep in enumerate(ENDPOINTS)]


def _matrix_request(live: Live, who: str, endpoint: str, victim: str) -> requests.Response:
    hourly = "main.weather.hourly"
    new = uniq(f"m_{who}")
    if endpoint == "get_catalog":
        return live.call("GET", f"{UC}/catalogs/main", who)
    if endpoint == "list_schemas":
        return live.call("GET", f"{UC}/schemas", who, params={"catalog_name": "main"})
    if endpoint == "get_table":
        return live.call("GET", f"{UC}/tables/{hourly}", who)
    if endpoint == "create_schema":
        return live.call("POST", f"{UC}/schemas", who, json={"name": new, "catalog_name": "main"})
    if endpoint == "create_table":
        body = {**_TABLE, "name": new, "columns": _COLS}
        return live.call("POST", f"{UC}/tables", who, json=body)
    if endpoint == "update_permissions":
        body = {"changes": [{"principal": "auditors", "add": ["MODIFY"], "remove": []}]}
        return live.call("PATCH", f"{UC}/permissions/table/{hourly}", who, json=body)
    if endpoint == "delete_table":
        return live.call("DELETE", f"{UC}/tables/main.weather.{victim}", who)
    assert endpoint == "set_tags"
    return live.call("PUT", f"{UC}/tags/table/{hourly}", who, json={"tags": {"matrix": who}})


@pytest.mark.parametrize(
    ("who", "endpoint", "status"), CELLS, ids=[f"{w}-{e}" for w, e, _ in CELLS]
)
def test_authorization_matrix(roles: Live, who: str, endpoint: str, status: int) -> None:
    live = roles
    victim = uniq("victim")
    if endpoint == "delete_table":
        _ok(live.call("POST", f"{UC}/tables", json={**_TABLE, "name": victim, "columns": _COLS}))
    try:
        resp = _matrix_request(live, who, endpoint, victim)
        assert resp.status_code == status, resp.text
        if status != 200:
            code = {403: "PERMISSION_DENIED", 404: "NOT_FOUND"}[status]
            assert resp.json()["error_code"] == code
            return
        body = resp.json()
        if endpoint in ("create_schema", "create_table"):
            assert body["owner"] == who and body["created_by"] == who  # the creator owns it
        elif endpoint == "list_schemas":
            assert "weather" in {s["name"] for s in body["schemas"]}
        elif endpoint == "delete_table":
            gone = live.call("GET", f"{UC}/tables/main.weather.{victim}")
            assert gone.status_code == 404
        elif endpoint == "set_tags":
            assert {"key": "matrix", "value": who, "column_name": None} in body["tags"]
        elif endpoint == "update_permissions":
            assert {"principal": "auditors", "privileges": ["MODIFY"]} in body[
                "privilege_assignments"
            ]
    finally:
        if endpoint == "delete_table":
            live.call("DELETE", f"{UC}/tables/main.weather.{victim}")


@pytest.mark.parametrize("db", METASTORES)
@pytest.mark.parametrize("kind", ["catalog", "schema", "table", "volume"])
def test_a_name_created_concurrently_elsewhere_is_already_exists(
    tmp_path: Path, kind: str, db: str, request: pytest.FixtureRequest
) -> None:
    """Two metastore services on one database (two gunicorn workers): the second creator passes
    its own existence check, then the first commits the same name: it gets AlreadyExists (409),
    never a raw IntegrityError (500), and one object exists."""
    from sqlalchemy import event

    from stratus.catalog import models as m
    from stratus.catalog.errors import AlreadyExists
    from stratus.catalog.metastore import MetastoreService

    url = metastore_url_for(request, db) or f"sqlite:///{tmp_path / 'metastore.db'}"
    mine, theirs = MetastoreService(url), MetastoreService(url)
    mine.create_catalog("c", "admin")
    mine.create_schema("c", "s", "admin")

    def create(ms: MetastoreService) -> None:
        if kind == "catalog":
            ms.create_catalog("race", "admin")
        elif kind == "schema":
            ms.create_schema("c", "race", "admin")
        elif kind == "table":
            ms.create_table("c", "s", "race", "admin", columns=[])
        else:
            ms.create_volume("c", "s", "race", "admin")

    model = {"catalog": m.Catalog, "schema": m.Schema, "table": m.Table, "volume": m.Volume}[kind]
    # between my existence check and my insert (when my object is built), the other commits
    event.listen(model, "init", lambda *_: create(theirs), once=True)
    with pytest.raises(AlreadyExists, match="already exists"):
        create(mine)
    lister = {
        "catalog": lambda: [c.name for c in mine.list_catalogs().items],
        "schema": lambda: [x.name for x in mine.list_schemas("c").items],
        "table": lambda: [t.name for t in mine.list_tables("c", "s").items],
        "volume": lambda: [v.name for v in mine.list_volumes("c", "s").items],
    }[kind]
    assert lister().count("race") == 1
