"""The Unity Catalog OSS REST API at ``/api/2.1/unity-catalog``, plus Stratus's extensions.

Thin HTTP over :class:`~stratus.catalog.metastore.MetastoreService` (the data) and
:class:`~stratus.security.authz.Authorizer` (every decision); :mod:`stratus.catalog.wire` turns
ORM objects into the spec's JSON models, so the official ``unitycatalog-client`` works unchanged.

UC OSS endpoints (request and response bodies exactly as in the UC OSS ``all.yaml``):

- ``POST/GET /catalogs``, ``GET/PATCH/DELETE /catalogs/{name}`` (``?force=true``)
- ``POST/GET /schemas`` (list: ``catalog_name``), ``GET/PATCH/DELETE /schemas/{full_name}``
- ``POST/GET /tables`` (list: ``catalog_name``, ``schema_name``), ``GET/DELETE /tables/{full_name}``
- ``POST/GET /volumes`` (list: ``catalog_name``, ``schema_name``), ``GET/PATCH/DELETE
  /volumes/{name}``
- ``GET/PATCH /permissions/{securable_type}/{full_name}`` (GET ``?principal=``)
- ``GET /metastore_summary``

Lists take ``max_results`` (0 or absent: 100; larger values are capped at 1000; negative: 400)
and ``page_token``; they hold only what the caller may see and answer ``next_page_token`` while
more remains. PATCH bodies of catalogs, schemas and volumes also accept ``owner`` (a principal).

Stratus extensions under the same prefix:

- ``GET/PUT/DELETE /tags/{securable_type}/{full_name}``: PUT ``{"tags": {"key": "value" | null},
  "column": "optional column"}``, DELETE ``?keys=a,b&column=c``, GET ``?column=c``; all answer
  ``{"tags": [{"key", "value", "column_name"}]}`` (``column_name`` null on the securable itself).
- ``GET /information_schema/column_tags?catalog_name=&schema_name=&table_name=``: ``{"column_tags":
  [{"catalog_name", "schema_name", "table_name", "column_name", "tag_name", "tag_value"}]}``,
  only for tables the caller can see.

And ``GET /api/v1/permissions/{securable_type}/{full_name}`` (``?principal=``): the full view, with
Stratus's own privileges (APPLY TAG, MANAGE, WRITE VOLUME, ALL PRIVILEGES) that UC responses leave
out because the official client cannot deserialize them: ``{"securable_type", "full_name",
"owner", "privilege_assignments": [{"principal", "privileges"}], "effective_privileges"}`` (the
last: what the caller holds there, inherited and owned included).

Authorization follows UC: an object the caller cannot see is reported as not found (404, never
403, so names never leak); reading needs USE CATALOG / USE SCHEMA on the containers; creating needs
CREATE CATALOG on the metastore, CREATE SCHEMA on the catalog or CREATE TABLE / CREATE VOLUME on the
schema; changing or deleting needs ownership (of the object or a container above) or MANAGE; tags
need APPLY TAG or ownership. Built-in securables (the ``main`` and ``system`` catalogs, their
built-in schemas and tables) cannot be renamed or deleted, and nothing is created in ``system``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated, Any

from flask import Blueprint, Response, request
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    WithJsonSchema,
)

from stratus.api.auth import audit, current_identity
from stratus.api.encoding import json_response
from stratus.api.params import Name, QueryModel, json_body, parse_body, parse_query
from stratus.api.problems import UC_PREFIX, Problem, invalid
from stratus.api.state import platform
from stratus.catalog import registry, wire
from stratus.catalog.errors import InvalidArgument, NotFound, PermissionDenied
from stratus.catalog.metastore import (
    PRIVILEGES,
    MetastoreService,
    Page,
    check_name,
    split_name,
)
from stratus.security.authz import Authorizer, Identity
from stratus.tables.protect import PII_TAG

PREFIX = UC_PREFIX
SERVICE = "unityCatalog"
DEFAULT_PAGE = 100
MAX_PAGE = 1000
INT32_MAX = 2**31 - 1
SECURABLES = ("metastore", "catalog", "schema", "table", "volume")
TAGGABLE = ("catalog", "schema", "table", "volume")
_PARTS = {"catalog": 1, "schema": 2, "table": 3, "volume": 3}
# which privileges make sense where (all are inherited downwards from where they are granted)
APPLICABLE: dict[str, frozenset[str]] = {
    "metastore": frozenset(PRIVILEGES),
    "catalog": frozenset(PRIVILEGES) - {"CREATE CATALOG"},
    "schema": frozenset(PRIVILEGES) - {"CREATE CATALOG", "USE CATALOG", "CREATE SCHEMA"},
    "table": frozenset({"SELECT", "MODIFY", "APPLY TAG", "UNMASK", "MANAGE", "ALL PRIVILEGES"}),
    "volume": frozenset({"READ VOLUME", "WRITE VOLUME", "APPLY TAG", "MANAGE", "ALL PRIVILEGES"}),
}
BUILTIN = frozenset(
    {
        ("catalog", "main"),
        ("catalog", "system"),
        ("schema", "main.weather"),
        *(("table", t.full_name) for t in registry.builtin_tables()),
    }
)
MAX_TAG_VALUE = 1000

uc = Blueprint("uc", __name__, url_prefix=PREFIX)
native = Blueprint("uc_native", __name__, url_prefix="/api/v1")
bp = Blueprint("unity_catalog", __name__)  # both, registered on the app in one go

# ---- request bodies (the spec's request models; unknown fields are rejected) ----------------
Comment = Annotated[StrictStr, Field(max_length=65536)]
VolumeComment = Annotated[StrictStr, Field(min_length=1, max_length=65536)]
Props = dict[StrictStr, StrictStr]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CreateCatalogBody(_Body):
    name: StrictStr
    comment: Comment | None = None
    properties: Props | None = None
    storage_root: StrictStr | None = None


class UpdateBody(_Body):
    new_name: StrictStr | None = None
    comment: Comment | None = None
    properties: Props | None = None
    owner: StrictStr | None = None  # Stratus: transfer ownership


class CreateSchemaBody(_Body):
    name: StrictStr
    catalog_name: StrictStr
    comment: Comment | None = None
    properties: Props | None = None
    storage_root: StrictStr | None = None


class ColumnBody(_Body):
    name: StrictStr
    type_name: StrictStr
    type_text: StrictStr | None = None
    type_json: StrictStr | None = None
    type_precision: Annotated[StrictInt, Field(ge=0)] | None = None
    type_scale: Annotated[StrictInt, Field(ge=0)] | None = None
    type_interval_type: StrictStr | None = None
    position: Annotated[StrictInt, Field(ge=0)] | None = None
    comment: Comment | None = None
    nullable: StrictBool | None = None
    partition_index: Annotated[StrictInt, Field(ge=0)] | None = None


class CreateTableBody(_Body):
    name: StrictStr
    catalog_name: StrictStr
    schema_name: StrictStr
    table_type: StrictStr
    data_source_format: StrictStr = "DELTA"
    columns: list[ColumnBody]
    storage_location: Annotated[StrictStr, Field(min_length=1)] | None = None
    comment: Comment | None = None
    properties: Props | None = None
    view_definition: StrictStr | None = None
    view_dependencies: dict[str, Any] | None = None


class CreateVolumeBody(_Body):
    catalog_name: StrictStr
    schema_name: StrictStr
    name: StrictStr
    volume_type: StrictStr
    comment: VolumeComment | None = None
    storage_location: Annotated[StrictStr, Field(min_length=1)] | None = None


class UpdateVolumeBody(_Body):
    new_name: StrictStr | None = None
    comment: VolumeComment | None = None
    owner: StrictStr | None = None


class PermissionsChangeBody(_Body):
    principal: StrictStr
    add: list[StrictStr] = []
    remove: list[StrictStr] = []


class UpdatePermissionsBody(_Body):
    changes: list[PermissionsChangeBody]


def _tag_key(key: str) -> str:
    if not key or len(key) > 255 or "," in key:
        raise ValueError("keys are 1 to 255 characters without ','")
    return key


def _tag_value(value: str) -> str:
    if len(value) > MAX_TAG_VALUE:
        raise ValueError(f"values are at most {MAX_TAG_VALUE} characters")
    return value


TagKey = Annotated[StrictStr, AfterValidator(_tag_key)]
TagValue = Annotated[StrictStr, AfterValidator(_tag_value)]
TAGS_SCHEMA = {
    "type": "object",
    "minProperties": 1,
    "propertyNames": {"minLength": 1, "maxLength": 255, "pattern": "^[^,]*$"},
    "additionalProperties": {"type": ["string", "null"], "maxLength": MAX_TAG_VALUE},
    "description": "key: value (null: a tag without a value); the tag pii on a column encrypts it",
}


class SetTagsBody(_Body):
    tags: Annotated[dict[TagKey, TagValue | None], Field(min_length=1), WithJsonSchema(TAGS_SCHEMA)]
    column: StrictStr | None = Field(default=None, description="Tag this column of a table")


class TagQuery(QueryModel):
    column: str | None = Field(default=None, description="Only this column's tags.")


class UnsetTagsQuery(TagQuery):
    keys: str = Field(min_length=1, description="Tag keys (comma-separated).")


class PrincipalQuery(QueryModel):
    principal: str | None = Field(default=None, description="Only this principal's grants.")


class ColumnTagsQuery(QueryModel):
    catalog_name: Name | None = Field(default=None, description="Only this catalog.")
    schema_name: Name | None = Field(default=None, description="Only this schema.")
    table_name: Name | None = Field(default=None, description="Only this table.")


# ---- plumbing ------------------------------------------------------------------------------
def _me() -> Identity:
    return current_identity()


def _authz() -> Authorizer:
    return platform().governance.authorizer


def _ms() -> MetastoreService:
    return platform().governance.metastore


def _invalid(parameter: str, message: str, *more: tuple[str, str]) -> Problem:
    errors = [{"parameter": p, "message": msg} for p, msg in ((parameter, message), *more)]
    return invalid(errors)


def _audit(action: str, kind: str | None, name: str | None, body: dict | None = None) -> None:
    params: dict[str, Any] = request.args.to_dict()
    if body:
        params.update(body)
    audit(action, kind, name, params, service=SERVICE)


_json = json_body
_parse = parse_body


def _full(data: dict[str, Any], *keys: str) -> str | None:
    parts = [data.get(k) for k in keys]
    return ".".join(parts) if all(isinstance(p, str) for p in parts) else None  # type: ignore[arg-type]


def _only(*allowed: str) -> None:
    unknown = [k for k in request.args if k not in allowed]
    if unknown:
        raise _invalid(
            unknown[0], "unknown parameter", *((k, "unknown parameter") for k in unknown[1:])
        )


def _arg(name: str, required: bool = False) -> str | None:
    value = request.args.get(name)
    if value is None or value == "":
        if required:
            raise _invalid(name, "required")
        return None
    return value


def _name_arg(name: str) -> str:
    return check_name(_arg(name, required=True), name)  # type: ignore[arg-type]


def _bool_arg(name: str) -> bool:
    value = _arg(name)
    if value is None:
        return False
    if value.lower() not in ("true", "false"):
        raise _invalid(name, "must be true or false")
    return value.lower() == "true"


def _page_size() -> int:
    value = request.args.get("max_results")
    if value is None:
        return DEFAULT_PAGE
    try:
        n = int(value)
    except ValueError:
        raise _invalid("max_results", "must be an integer") from None
    if n < 0:
        raise _invalid("max_results", "must not be negative")
    if n > INT32_MAX:  # the spec's int32
        raise _invalid("max_results", f"must be at most {INT32_MAX}")
    return min(n, MAX_PAGE) if n else DEFAULT_PAGE


def _visible_page(
    fetch: Callable[[int, str | None], Page], visible: Callable[[Any], bool]
) -> tuple[list[Any], str | None]:
    """One page of only the visible items; the metastore is read in batches until the page is
    full, so pages stay full and the token resumes right after the last item returned."""
    limit = _page_size()
    cursor = _arg("page_token")
    out: list[Any] = []
    while True:
        page = fetch(limit + 1, cursor)
        for item in page.items:
            if visible(item):
                out.append(item)
                if len(out) > limit:
                    return out[:limit], out[limit - 1].name
        if page.next_page_token is None:
            return out, None
        cursor = page.next_page_token


def _listing(key: str, items: list[dict[str, Any]], next_token: str | None) -> Response:
    payload: dict[str, Any] = {key: items}
    if next_token is not None:
        payload["next_page_token"] = next_token
    return json_response(payload)


def _key(securable_type: str, full_name: str, allowed: Iterable[str] = SECURABLES) -> str:
    """Validate a securable type and full name from a path; the authorizer's full name."""
    allowed = tuple(allowed)
    if securable_type not in allowed:
        raise _invalid("securable_type", f"{securable_type!r} must be one of {', '.join(allowed)}")
    if securable_type == "metastore":
        return ""
    if securable_type == "catalog":
        return check_name(full_name, "full_name")
    return ".".join(split_name(full_name, _PARTS[securable_type], "full_name"))


# ---- authorization -------------------------------------------------------------------------
def _see(kind: str, full_name: str) -> None:
    """404 unless the caller may see the securable (admins see everything)."""
    if not _authz().can_see(_me(), kind, full_name):
        raise NotFound(f"{kind} {full_name} does not exist")


def _use(kind: str, full_name: str) -> None:
    """Visible, and USE CATALOG / USE SCHEMA on its containers."""
    _see(kind, full_name)
    _authz().require_use(_me(), kind, full_name)


def _manage(kind: str, full_name: str) -> None:
    """Changing or deleting: ownership (here or above) or MANAGE."""
    _use(kind, full_name)
    _authz().require(_me(), kind, full_name, ["OWNER", "MANAGE"])


def _create_in(catalog: str, schema: str | None, privilege: str) -> None:
    """Creating in a catalog (schema None) or a schema: USE on the containers, then
    ``privilege`` on the immediate parent."""
    authz, me = _authz(), _me()
    authz.require(me, "catalog", catalog, "USE CATALOG")
    if schema is None:
        authz.require(me, "catalog", catalog, privilege)
    else:
        authz.require(me, "schema", f"{catalog}.{schema}", "USE SCHEMA")
        authz.require(me, "schema", f"{catalog}.{schema}", privilege)
    if catalog == "system":
        raise PermissionDenied("catalog system is read-only: nothing can be created in it")


def _builtin(kind: str, full_name: str, doing: str) -> None:
    if full_name.split(".")[0] == "system" or (kind, full_name) in BUILTIN:
        raise PermissionDenied(f"{kind} {full_name} is built in and cannot be {doing}")


def _changed() -> None:
    """Grants, owners or names changed: decide the next request on fresh state."""
    _authz().refresh()


def _updates(body: UpdateBody | UpdateVolumeBody, kind: str, full_name: str) -> dict[str, Any]:
    changes = {k: v for k, v in body.model_dump().items() if v is not None}
    leaf = full_name.rsplit(".", 1)[-1]
    if changes.get("new_name") is not None:
        check_name(changes["new_name"], "new_name")
        if changes["new_name"] == leaf:
            del changes["new_name"]
        else:
            _builtin(kind, full_name, "renamed")
    if "owner" in changes:
        try:
            _ms().get_principal(changes["owner"])
        except NotFound:
            raise InvalidArgument(
                f"owner: principal {changes['owner']!r} does not exist", parameter="owner"
            ) from None
    return changes


# ---- catalogs ------------------------------------------------------------------------------
@uc.post("/catalogs")
def create_catalog() -> Response:
    _audit("createCatalog", "catalog", None)
    data = _json()
    _audit("createCatalog", "catalog", _full(data, "name"), data)
    _only()
    body = _parse(CreateCatalogBody, data)
    check_name(body.name, "name")
    _authz().require(_me(), "metastore", "", "CREATE CATALOG")
    c = _ms().create_catalog(
        body.name,
        _me().name,
        comment=body.comment,
        properties=body.properties,
        storage_root=body.storage_root,
    )
    _changed()
    return json_response(wire.catalog_info(c))


@uc.get("/catalogs")
def list_catalogs() -> Response:
    _audit("listCatalogs", "metastore", None)
    _only("max_results", "page_token")
    authz, me = _authz(), _me()
    items, nxt = _visible_page(
        lambda n, tok: _ms().list_catalogs(n, tok),
        lambda c: authz.can_see(me, "catalog", c.name),
    )
    return _listing("catalogs", [wire.catalog_info(c) for c in items], nxt)


@uc.get("/catalogs/<name>")
def get_catalog(name: str) -> Response:
    _audit("getCatalog", "catalog", name)
    _only()
    check_name(name, "name")
    _see("catalog", name)
    return json_response(wire.catalog_info(_ms().get_catalog(name)))


@uc.patch("/catalogs/<name>")
def update_catalog(name: str) -> Response:
    _audit("updateCatalog", "catalog", name)
    data = _json()
    _audit("updateCatalog", "catalog", name, data)
    _only()
    body = _parse(UpdateBody, data)
    check_name(name, "name")
    _manage("catalog", name)
    c = _ms().update_catalog(name, _me().name, **_updates(body, "catalog", name))
    _changed()
    return json_response(wire.catalog_info(c))


@uc.delete("/catalogs/<name>")
def delete_catalog(name: str) -> Response:
    _audit("deleteCatalog", "catalog", name)
    _only("force")
    force = _bool_arg("force")
    check_name(name, "name")
    _manage("catalog", name)
    _builtin("catalog", name, "deleted")
    _ms().delete_catalog(name, force=force)
    _changed()
    return json_response({})


# ---- schemas -------------------------------------------------------------------------------
@uc.post("/schemas")
def create_schema() -> Response:
    _audit("createSchema", "schema", None)
    data = _json()
    _audit("createSchema", "schema", _full(data, "catalog_name", "name"), data)
    _only()
    body = _parse(CreateSchemaBody, data)
    check_name(body.catalog_name, "catalog_name")
    check_name(body.name, "name")
    if body.storage_root is not None:
        raise _invalid("storage_root", "not supported: schemas store under their catalog")
    _create_in(body.catalog_name, None, "CREATE SCHEMA")
    s = _ms().create_schema(
        body.catalog_name,
        body.name,
        _me().name,
        comment=body.comment,
        properties=body.properties,
    )
    _changed()
    return json_response(wire.schema_info(s))


@uc.get("/schemas")
def list_schemas() -> Response:
    _audit("listSchemas", "catalog", request.args.get("catalog_name"))
    _only("catalog_name", "max_results", "page_token")
    catalog = _name_arg("catalog_name")
    authz, me = _authz(), _me()
    authz.require(me, "catalog", catalog, "USE CATALOG")
    items, nxt = _visible_page(
        lambda n, tok: _ms().list_schemas(catalog, n, tok),
        lambda s: authz.can_see(me, "schema", f"{catalog}.{s.name}"),
    )
    return _listing("schemas", [wire.schema_info(s) for s in items], nxt)


@uc.get("/schemas/<full_name>")
def get_schema(full_name: str) -> Response:
    _audit("getSchema", "schema", full_name)
    _only()
    name = _key("schema", full_name)
    _use("schema", name)
    return json_response(wire.schema_info(_ms().get_schema(name)))


@uc.patch("/schemas/<full_name>")
def update_schema(full_name: str) -> Response:
    _audit("updateSchema", "schema", full_name)
    data = _json()
    _audit("updateSchema", "schema", full_name, data)
    _only()
    body = _parse(UpdateBody, data)
    name = _key("schema", full_name)
    _manage("schema", name)
    s = _ms().update_schema(name, _me().name, **_updates(body, "schema", name))
    _changed()
    return json_response(wire.schema_info(s))


@uc.delete("/schemas/<full_name>")
def delete_schema(full_name: str) -> Response:
    _audit("deleteSchema", "schema", full_name)
    _only("force")
    force = _bool_arg("force")
    name = _key("schema", full_name)
    _manage("schema", name)
    _builtin("schema", name, "deleted")
    _ms().delete_schema(name, force=force)
    _changed()
    return json_response({})


# ---- tables --------------------------------------------------------------------------------
@uc.post("/tables")
def create_table() -> Response:
    _audit("createTable", "table", None)
    data = _json()
    _audit("createTable", "table", _full(data, "catalog_name", "schema_name", "name"), data)
    _only()
    body = _parse(CreateTableBody, data)
    for field in ("catalog_name", "schema_name", "name"):
        check_name(getattr(body, field), field)
    if body.table_type not in ("MANAGED", "EXTERNAL"):
        raise _invalid("table_type", "must be MANAGED or EXTERNAL (views are not supported)")
    if body.data_source_format not in wire.DATA_SOURCE_FORMATS:
        raise _invalid(
            "data_source_format", f"must be one of {', '.join(wire.DATA_SOURCE_FORMATS)}"
        )
    for field in ("view_definition", "view_dependencies"):
        if getattr(body, field) is not None:
            raise _invalid(field, "only for views, which are not supported")
    if body.table_type == "EXTERNAL" and body.storage_location is None:
        raise _invalid("storage_location", "required for EXTERNAL tables")
    columns = wire.columns_from_wire([c.model_dump() for c in body.columns])
    _create_in(body.catalog_name, body.schema_name, "CREATE TABLE")
    location = body.storage_location or platform().lakehouse.storage.table_url(
        f"{body.catalog_name}/{body.schema_name}/{body.name}"
    )
    t = _ms().create_table(
        body.catalog_name,
        body.schema_name,
        body.name,
        _me().name,
        columns=columns,
        table_type=body.table_type,
        data_source_format=body.data_source_format,
        storage_location=location,
        comment=body.comment,
        properties=body.properties,
    )
    _changed()
    return json_response(wire.table_info(t))


@uc.get("/tables")
def list_tables() -> Response:
    catalog, schema = request.args.get("catalog_name"), request.args.get("schema_name")
    _audit("listTables", "schema", f"{catalog}.{schema}" if catalog and schema else None)
    _only("catalog_name", "schema_name", "max_results", "page_token")
    catalog, schema = _name_arg("catalog_name"), _name_arg("schema_name")
    authz, me = _authz(), _me()
    authz.require(me, "catalog", catalog, "USE CATALOG")
    authz.require(me, "schema", f"{catalog}.{schema}", "USE SCHEMA")
    items, nxt = _visible_page(
        lambda n, tok: _ms().list_tables(catalog, schema, n, tok),
        lambda t: authz.can_see(me, "table", f"{catalog}.{schema}.{t.name}"),
    )
    return _listing("tables", [wire.table_info(t) for t in items], nxt)


@uc.get("/tables/<full_name>")
def get_table(full_name: str) -> Response:
    _audit("getTable", "table", full_name)
    _only("read_streaming_table_as_managed", "read_materialized_view_as_managed")
    _bool_arg("read_streaming_table_as_managed")
    _bool_arg("read_materialized_view_as_managed")
    name = _key("table", full_name)
    _use("table", name)
    return json_response(wire.table_info(_ms().get_table(name)))


@uc.delete("/tables/<full_name>")
def delete_table(full_name: str) -> Response:
    _audit("deleteTable", "table", full_name)
    _only()
    name = _key("table", full_name)
    _manage("table", name)
    _builtin("table", name, "deleted")
    _ms().delete_table(name)
    _changed()
    return json_response({})


# ---- volumes -------------------------------------------------------------------------------
@uc.post("/volumes")
def create_volume() -> Response:
    _audit("createVolume", "volume", None)
    data = _json()
    _audit("createVolume", "volume", _full(data, "catalog_name", "schema_name", "name"), data)
    _only()
    body = _parse(CreateVolumeBody, data)
    for field in ("catalog_name", "schema_name", "name"):
        check_name(getattr(body, field), field)
    if body.volume_type not in ("MANAGED", "EXTERNAL"):
        raise _invalid("volume_type", "must be MANAGED or EXTERNAL")
    if body.volume_type == "EXTERNAL" and body.storage_location is None:
        raise _invalid("storage_location", "required for EXTERNAL volumes")
    _create_in(body.catalog_name, body.schema_name, "CREATE VOLUME")
    # "." cannot occur in a name, so managed volumes never collide with a table's folder
    location = body.storage_location or platform().lakehouse.storage.table_url(
        f".volumes/{body.catalog_name}/{body.schema_name}/{body.name}"
    )
    v = _ms().create_volume(
        body.catalog_name,
        body.schema_name,
        body.name,
        _me().name,
        volume_type=body.volume_type,
        storage_location=location,
        comment=body.comment,
    )
    _changed()
    return json_response(wire.volume_info(v))


@uc.get("/volumes")
def list_volumes() -> Response:
    catalog, schema = request.args.get("catalog_name"), request.args.get("schema_name")
    _audit("listVolumes", "schema", f"{catalog}.{schema}" if catalog and schema else None)
    _only("catalog_name", "schema_name", "max_results", "page_token")
    catalog, schema = _name_arg("catalog_name"), _name_arg("schema_name")
    authz, me = _authz(), _me()
    authz.require(me, "catalog", catalog, "USE CATALOG")
    authz.require(me, "schema", f"{catalog}.{schema}", "USE SCHEMA")
    items, nxt = _visible_page(
        lambda n, tok: _ms().list_volumes(catalog, schema, n, tok),
        lambda v: authz.can_see(me, "volume", f"{catalog}.{schema}.{v.name}"),
    )
    return _listing("volumes", [wire.volume_info(v) for v in items], nxt)


@uc.get("/volumes/<name>")
def get_volume(name: str) -> Response:
    _audit("getVolume", "volume", name)
    _only()
    full = _key("volume", name)
    _use("volume", full)
    return json_response(wire.volume_info(_ms().get_volume(full)))


@uc.patch("/volumes/<name>")
def update_volume(name: str) -> Response:
    _audit("updateVolume", "volume", name)
    data = _json()
    _audit("updateVolume", "volume", name, data)
    _only()
    body = _parse(UpdateVolumeBody, data)
    full = _key("volume", name)
    _manage("volume", full)
    v = _ms().update_volume(full, _me().name, **_updates(body, "volume", full))
    _changed()
    return json_response(wire.volume_info(v))


@uc.delete("/volumes/<name>")
def delete_volume(name: str) -> Response:
    _audit("deleteVolume", "volume", name)
    _only()
    full = _key("volume", name)
    _manage("volume", full)
    _builtin("volume", full, "deleted")
    _ms().delete_volume(full)
    _changed()
    return json_response({})


# ---- permissions ---------------------------------------------------------------------------
def _grants_of(kind: str, full_name: str) -> tuple[Any, dict[str, set[str]]]:
    obj = _ms().securable(kind, full_name)
    return obj, _ms().grants(kind, obj.id)


@uc.get("/permissions/<securable_type>/<path:full_name>")
def get_permissions(securable_type: str, full_name: str) -> Response:
    _audit("getPermissions", securable_type, full_name)
    _only("principal")
    name = _key(securable_type, full_name)
    if securable_type != "metastore":
        _see(securable_type, name)
    _, grants = _grants_of(securable_type, name)
    return json_response(wire.permissions_list(grants, _arg("principal")))


@uc.patch("/permissions/<securable_type>/<path:full_name>")
def update_permissions(securable_type: str, full_name: str) -> Response:
    _audit("updatePermissions", securable_type, full_name)
    data = _json()
    _audit("updatePermissions", securable_type, full_name, data)
    _only()
    body = _parse(UpdatePermissionsBody, data)
    name = _key(securable_type, full_name)
    for i, ch in enumerate(body.changes):
        for op in ("add", "remove"):
            for priv in getattr(ch, op):
                if priv not in PRIVILEGES:
                    raise _invalid(f"changes[{i}].{op}", f"unknown privilege {priv!r}")
                if op == "add" and priv not in APPLICABLE[securable_type]:
                    raise _invalid(
                        f"changes[{i}].add", f"{priv} cannot be granted on a {securable_type}"
                    )
    if securable_type != "metastore":
        _see(securable_type, name)
    _authz().require(_me(), securable_type, name, ["OWNER", "MANAGE"])
    obj, _ = _grants_of(securable_type, name)
    _ms().update_grants(securable_type, obj.id, [ch.model_dump() for ch in body.changes])
    _changed()
    return json_response(wire.permissions_list(_ms().grants(securable_type, obj.id)))


@native.get("/permissions/<securable_type>/<path:full_name>")
def full_permissions(securable_type: str, full_name: str) -> Response:
    audit("getFullPermissions", securable_type, full_name, service="stratus")
    q = parse_query(PrincipalQuery)
    name = _key(securable_type, full_name)
    if securable_type != "metastore":
        _see(securable_type, name)
    obj, grants = _grants_of(securable_type, name)
    held = _authz().privileges(_me(), securable_type, name) - {"OWNER"}
    return json_response(
        {
            "securable_type": securable_type,
            "full_name": name,
            "owner": obj.owner,
            "privilege_assignments": wire.privilege_assignments(
                grants, principal=q.principal or None, uc_only=False
            ),
            "effective_privileges": [p for p in PRIVILEGES if p in held],
        }
    )


# ---- metastore -----------------------------------------------------------------------------
@uc.get("/metastore_summary")
def metastore_summary() -> Response:
    _audit("getMetastoreSummary", "metastore", None)
    _only()
    return json_response(wire.metastore_summary(_ms().metastore()))


# ---- tags (Stratus) ------------------------------------------------------------------------
def _tag_target(securable_type: str, full_name: str) -> str:
    name = _key(securable_type, full_name, TAGGABLE)
    _use(securable_type, name)
    return name


def _may_tag(securable_type: str, name: str, column: str | None) -> Any:
    _authz().require(_me(), securable_type, name, ["APPLY TAG", "OWNER"])
    obj = _ms().securable(securable_type, name)
    if column is not None:
        if securable_type != "table":
            raise _invalid("column", "columns exist only on tables")
        if column not in {c.get("name") for c in obj.columns or []}:
            raise _invalid("column", f"table {name} has no column {column!r}")
    return obj


def _tags_response(securable_type: str, securable_id: str, column: str | None) -> Response:
    tags = _ms().tags(securable_type, securable_id)
    if column is not None:
        tags = [t for t in tags if t.column_name == column]
    return json_response(wire.tag_list(tags))


@uc.get("/tags/<securable_type>/<path:full_name>")
def get_tags(securable_type: str, full_name: str) -> Response:
    _audit("getTags", securable_type, full_name)
    q = parse_query(TagQuery)
    name = _tag_target(securable_type, full_name)
    obj = _ms().securable(securable_type, name)
    return _tags_response(securable_type, obj.id, q.column or None)


@uc.put("/tags/<securable_type>/<path:full_name>")
def set_tags(securable_type: str, full_name: str) -> Response:
    _audit("setTags", securable_type, full_name)
    data = _json()
    _audit("setTags", securable_type, full_name, data)
    _only()
    body = parse_body(SetTagsBody, data)
    name = _tag_target(securable_type, full_name)
    obj = _may_tag(securable_type, name, body.column)
    tags = dict(body.tags)
    pii_kind = tags.pop(PII_TAG, None) if body.column else None
    if body.column and PII_TAG in body.tags:
        # a PII tag on a column encrypts it: the table is rewritten as a new version
        _pii_change(name, body.column, pii_kind or PII_TAG)
    if tags:
        _ms().set_tags(securable_type, obj.id, tags, body.column)
    return _tags_response(securable_type, obj.id, None)


def _pii_change(table: str, column: str, kind: str | None) -> None:
    if ("table", table) in BUILTIN:
        raise _invalid("column", f"{table} is a built-in table: its columns cannot be PII")
    platform().tables.set_pii(table, column, kind)


@uc.delete("/tags/<securable_type>/<path:full_name>")
def unset_tags(securable_type: str, full_name: str) -> Response:
    _audit("unsetTags", securable_type, full_name)
    q = parse_query(UnsetTagsQuery)
    keys = [k.strip() for k in q.keys.split(",") if k.strip()]
    if not keys:
        raise _invalid("keys", "name at least one tag key")
    column = q.column or None
    name = _tag_target(securable_type, full_name)
    obj = _may_tag(securable_type, name, column)
    if column and PII_TAG in keys:
        if not _me().is_admin:
            raise PermissionDenied(
                f"{_me().name} cannot remove the pii tag: it decrypts the column "
                "(metastore admins only)"
            )
        _pii_change(name, column, None)
        keys = [k for k in keys if k != PII_TAG]
    if keys:
        _ms().unset_tags(securable_type, obj.id, keys, column)
    return _tags_response(securable_type, obj.id, None)


@uc.get("/information_schema/column_tags")
def column_tags() -> Response:
    _audit("listColumnTags", "table", "system.information_schema.column_tags")
    q = parse_query(ColumnTagsQuery)
    wanted = {"catalog_name": q.catalog_name, "schema_name": q.schema_name}
    wanted["table_name"] = q.table_name
    authz, me = _authz(), _me()
    rows = [
        r
        for r in _ms().column_tags()
        if all(v is None or r[k] == v for k, v in wanted.items())
        and authz.can_see(me, "table", f"{r['catalog_name']}.{r['schema_name']}.{r['table_name']}")
    ]
    return json_response({"column_tags": rows})


bp.register_blueprint(uc)
bp.register_blueprint(native)
