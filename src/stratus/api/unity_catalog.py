"""The Unity Catalog OSS REST API at ``/api/2.1/unity-catalog``, plus Stratus's extensions.

Thin HTTP over :class:`~stratus.catalog.commands.CatalogCommands` (every catalog change and
listing, authorized there with the named actions of :mod:`stratus.security.actions`): handlers
parse, call a command and render; :mod:`stratus.catalog.wire` turns ORM objects into the spec's
JSON models, so the official ``unitycatalog-client`` works unchanged.

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

from collections.abc import Iterable
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
from stratus.catalog import wire
from stratus.catalog.commands import MAX_TAG_VALUE as MAX_TAG_VALUE  # for the OpenAPI document
from stratus.catalog.commands import CatalogCommands
from stratus.catalog.metastore import PRIVILEGES, check_name, split_name
from stratus.security.authz import Identity

PREFIX = UC_PREFIX
SERVICE = "unityCatalog"
DEFAULT_PAGE = 100
MAX_PAGE = 1000
INT32_MAX = 2**31 - 1
SECURABLES = ("metastore", "catalog", "schema", "table", "volume")
TAGGABLE = ("catalog", "schema", "table", "volume")
_PARTS = {"catalog": 1, "schema": 2, "table": 3, "volume": 3}

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


def _commands() -> CatalogCommands:
    return platform().catalog


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
    parts = [v for k in keys if isinstance(v := data.get(k), str)]
    return ".".join(parts) if len(parts) == len(keys) else None


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
    value = _arg(name, required=True)
    assert value is not None  # required: _arg raised otherwise
    return check_name(value, name)


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


# ---- catalogs ------------------------------------------------------------------------------
@uc.post("/catalogs")
def create_catalog() -> Response:
    _audit("createCatalog", "catalog", None)
    data = _json()
    _audit("createCatalog", "catalog", _full(data, "name"), data)
    _only()
    body = _parse(CreateCatalogBody, data)
    c = _commands().create_catalog(
        _me(),
        body.name,
        comment=body.comment,
        properties=body.properties,
        storage_root=body.storage_root,
    )
    return json_response(wire.catalog_info(c))


@uc.get("/catalogs")
def list_catalogs() -> Response:
    _audit("listCatalogs", "metastore", None)
    _only("max_results", "page_token")
    items, nxt = _commands().list_visible(_me(), "catalog", "", _page_size(), _arg("page_token"))
    return _listing("catalogs", [wire.catalog_info(c) for c in items], nxt)


@uc.get("/catalogs/<name>")
def get_catalog(name: str) -> Response:
    _audit("getCatalog", "catalog", name)
    _only()
    check_name(name, "name")
    return json_response(wire.catalog_info(_commands().get(_me(), "catalog", name)))


@uc.patch("/catalogs/<name>")
def update_catalog(name: str) -> Response:
    _audit("updateCatalog", "catalog", name)
    data = _json()
    _audit("updateCatalog", "catalog", name, data)
    _only()
    body = _parse(UpdateBody, data)
    check_name(name, "name")
    c = _commands().update(_me(), "catalog", name, body.model_dump())
    return json_response(wire.catalog_info(c))


@uc.delete("/catalogs/<name>")
def delete_catalog(name: str) -> Response:
    _audit("deleteCatalog", "catalog", name)
    _only("force")
    force = _bool_arg("force")
    check_name(name, "name")
    _commands().drop(_me(), "catalog", name, force=force)
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
    s = _commands().create_schema(
        _me(), body.catalog_name, body.name, comment=body.comment, properties=body.properties
    )
    return json_response(wire.schema_info(s))


@uc.get("/schemas")
def list_schemas() -> Response:
    _audit("listSchemas", "catalog", request.args.get("catalog_name"))
    _only("catalog_name", "max_results", "page_token")
    catalog = _name_arg("catalog_name")
    items, nxt = _commands().list_visible(
        _me(), "schema", catalog, _page_size(), _arg("page_token")
    )
    return _listing("schemas", [wire.schema_info(s) for s in items], nxt)


@uc.get("/schemas/<full_name>")
def get_schema(full_name: str) -> Response:
    _audit("getSchema", "schema", full_name)
    _only()
    name = _key("schema", full_name)
    return json_response(wire.schema_info(_commands().get(_me(), "schema", name)))


@uc.patch("/schemas/<full_name>")
def update_schema(full_name: str) -> Response:
    _audit("updateSchema", "schema", full_name)
    data = _json()
    _audit("updateSchema", "schema", full_name, data)
    _only()
    body = _parse(UpdateBody, data)
    name = _key("schema", full_name)
    s = _commands().update(_me(), "schema", name, body.model_dump())
    return json_response(wire.schema_info(s))


@uc.delete("/schemas/<full_name>")
def delete_schema(full_name: str) -> Response:
    _audit("deleteSchema", "schema", full_name)
    _only("force")
    force = _bool_arg("force")
    name = _key("schema", full_name)
    _commands().drop(_me(), "schema", name, force=force)
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
    t = _commands().create_table(
        _me(),
        body.catalog_name,
        body.schema_name,
        body.name,
        columns=columns,
        table_type=body.table_type,
        data_source_format=body.data_source_format,
        storage_location=body.storage_location,
        comment=body.comment,
        properties=body.properties,
    )
    return json_response(wire.table_info(t))


@uc.get("/tables")
def list_tables() -> Response:
    catalog, schema = request.args.get("catalog_name"), request.args.get("schema_name")
    _audit("listTables", "schema", f"{catalog}.{schema}" if catalog and schema else None)
    _only("catalog_name", "schema_name", "max_results", "page_token")
    catalog, schema = _name_arg("catalog_name"), _name_arg("schema_name")
    items, nxt = _commands().list_visible(
        _me(), "table", f"{catalog}.{schema}", _page_size(), _arg("page_token")
    )
    return _listing("tables", [wire.table_info(t) for t in items], nxt)


@uc.get("/tables/<full_name>")
def get_table(full_name: str) -> Response:
    _audit("getTable", "table", full_name)
    # full_name: Polars repeats the path's name in the query
    _only("read_streaming_table_as_managed", "read_materialized_view_as_managed", "full_name")
    _bool_arg("read_streaming_table_as_managed")
    _bool_arg("read_materialized_view_as_managed")
    name = _key("table", full_name)
    return json_response(wire.table_info(_commands().get(_me(), "table", name)))


@uc.delete("/tables/<full_name>")
def delete_table(full_name: str) -> Response:
    _audit("deleteTable", "table", full_name)
    _only()
    name = _key("table", full_name)
    _commands().drop(_me(), "table", name)  # a MANAGED table's data goes with it
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
    v = _commands().create_volume(
        _me(),
        body.catalog_name,
        body.schema_name,
        body.name,
        volume_type=body.volume_type,
        storage_location=body.storage_location,
        comment=body.comment,
    )
    return json_response(wire.volume_info(v))


@uc.get("/volumes")
def list_volumes() -> Response:
    catalog, schema = request.args.get("catalog_name"), request.args.get("schema_name")
    _audit("listVolumes", "schema", f"{catalog}.{schema}" if catalog and schema else None)
    _only("catalog_name", "schema_name", "max_results", "page_token")
    catalog, schema = _name_arg("catalog_name"), _name_arg("schema_name")
    items, nxt = _commands().list_visible(
        _me(), "volume", f"{catalog}.{schema}", _page_size(), _arg("page_token")
    )
    return _listing("volumes", [wire.volume_info(v) for v in items], nxt)


@uc.get("/volumes/<name>")
def get_volume(name: str) -> Response:
    _audit("getVolume", "volume", name)
    _only()
    full = _key("volume", name)
    return json_response(wire.volume_info(_commands().get(_me(), "volume", full)))


@uc.patch("/volumes/<name>")
def update_volume(name: str) -> Response:
    _audit("updateVolume", "volume", name)
    data = _json()
    _audit("updateVolume", "volume", name, data)
    _only()
    body = _parse(UpdateVolumeBody, data)
    full = _key("volume", name)
    v = _commands().update(_me(), "volume", full, body.model_dump())
    return json_response(wire.volume_info(v))


@uc.delete("/volumes/<name>")
def delete_volume(name: str) -> Response:
    _audit("deleteVolume", "volume", name)
    _only()
    full = _key("volume", name)
    _commands().drop(_me(), "volume", full)
    return json_response({})


# ---- permissions ---------------------------------------------------------------------------
@uc.get("/permissions/<securable_type>/<path:full_name>")
def get_permissions(securable_type: str, full_name: str) -> Response:
    _audit("getPermissions", securable_type, full_name)
    _only("principal")
    name = _key(securable_type, full_name)
    _, grants = _commands().permissions(_me(), securable_type, name)
    return json_response(wire.permissions_list(grants, _arg("principal")))


@uc.patch("/permissions/<securable_type>/<path:full_name>")
def update_permissions(securable_type: str, full_name: str) -> Response:
    _audit("updatePermissions", securable_type, full_name)
    data = _json()
    _audit("updatePermissions", securable_type, full_name, data)
    _only()
    body = _parse(UpdatePermissionsBody, data)
    name = _key(securable_type, full_name)
    changes = [ch.model_dump() for ch in body.changes]
    grants = _commands().update_permissions(_me(), securable_type, name, changes)
    return json_response(wire.permissions_list(grants))


@native.get("/permissions/<securable_type>/<path:full_name>")
def full_permissions(securable_type: str, full_name: str) -> Response:
    audit("getFullPermissions", securable_type, full_name, service="stratus")
    q = parse_query(PrincipalQuery)
    name = _key(securable_type, full_name)
    obj, grants = _commands().permissions(_me(), securable_type, name)
    held = platform().governance.authorizer.privileges(_me(), securable_type, name) - {"OWNER"}
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
    return json_response(wire.metastore_summary(platform().governance.metastore.metastore()))


# ---- tags (Stratus) ------------------------------------------------------------------------
def _tags_response(securable_type: str, name: str, column: str | None = None) -> Response:
    return json_response(wire.tag_list(_commands().tags(_me(), securable_type, name, column)))


@uc.get("/tags/<securable_type>/<path:full_name>")
def get_tags(securable_type: str, full_name: str) -> Response:
    _audit("getTags", securable_type, full_name)
    q = parse_query(TagQuery)
    name = _key(securable_type, full_name, TAGGABLE)
    return _tags_response(securable_type, name, q.column or None)


@uc.put("/tags/<securable_type>/<path:full_name>")
def set_tags(securable_type: str, full_name: str) -> Response:
    _audit("setTags", securable_type, full_name)
    data = _json()
    _audit("setTags", securable_type, full_name, data)
    _only()
    body = parse_body(SetTagsBody, data)
    name = _key(securable_type, full_name, TAGGABLE)
    _commands().set_tags(_me(), securable_type, name, body.tags, body.column)
    return _tags_response(securable_type, name)


@uc.delete("/tags/<securable_type>/<path:full_name>")
def unset_tags(securable_type: str, full_name: str) -> Response:
    _audit("unsetTags", securable_type, full_name)
    q = parse_query(UnsetTagsQuery)
    keys = [k.strip() for k in q.keys.split(",") if k.strip()]
    if not keys:
        raise _invalid("keys", "name at least one tag key")
    name = _key(securable_type, full_name, TAGGABLE)
    _commands().unset_tags(_me(), securable_type, name, keys, q.column or None)
    return _tags_response(securable_type, name)


@uc.get("/information_schema/column_tags")
def column_tags() -> Response:
    _audit("listColumnTags", "table", "system.information_schema.column_tags")
    q = parse_query(ColumnTagsQuery)
    wanted = {"catalog_name": q.catalog_name, "schema_name": q.schema_name}
    wanted["table_name"] = q.table_name
    return json_response({"column_tags": _commands().column_tags(_me(), **wanted)})


bp.register_blueprint(uc)
bp.register_blueprint(native)
