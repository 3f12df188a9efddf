"""The OpenAPI 3.1 description of ``/api/v1`` (and Stratus's Unity Catalog extensions), served
at ``/openapi.json``.

Kept next to the blueprints it describes; the tests validate the document itself, check real
responses against its schemas and fuzz every operation with schemathesis (``tests/test_fuzz.py``:
no 5xx, every status, content type and body as documented), so the two cannot drift apart
silently. The Unity Catalog OSS operations are described by the UC OSS spec and the Delta Sharing
protocol by its PROTOCOL.md; neither is repeated here.

The document is assembled from small builders: :func:`_op` makes an operation from its summary,
parameters, body, success response and the error statuses it really returns (each error is an
RFC 9457 problem document, :data:`SCHEMAS` ``Problem``).

Requests are not described by hand: request bodies (:data:`REQUEST_BODIES`) and query
parameters (:func:`query_params`) are generated with ``model_json_schema()`` from the pydantic
models the handlers validate with (``stratus.api.params``), so the two cannot say different
things; ``tests/test_http_edge.py`` checks that each documented operation's handler refuses
bad input with exactly the model documented. Responses are described here.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

from stratus import __version__
from stratus.api.audit_api import AuditParams
from stratus.api.jobs import JobListParams
from stratus.api.lineage import GraphParams
from stratus.api.params import QueryModel, SummaryParams, WeatherParams
from stratus.api.problems import UC_PREFIX
from stratus.api.sharing import (
    AddTableBody,
    CreateRecipientBody,
    CreateShareBody,
    GrantBody,
    TokenBody,
)
from stratus.api.sql import SqlQuery, SqlRequest
from stratus.api.tables import RowsParams
from stratus.api.tokens import CreateTokenBody, TokenListParams
from stratus.api.unity_catalog import (
    SECURABLES,
    TAGGABLE,
    ColumnTagsQuery,
    PrincipalQuery,
    SetTagsBody,
    TagQuery,
    UnsetTagsQuery,
)
from stratus.catalog.metastore import NAME, PRIVILEGES
from stratus.jobs.definitions import JOB_TYPES
from stratus.jobs.models import STATES
from stratus.jobs.validation import JobSubmissionBody
from stratus.sharing.admin import PII_MODES
from stratus.weather.schema import HOURLY_FIELDS

Schema = dict[str, Any]


# ---- requests, from the models that validate them ----------------------------------------------
# component name -> the body model of the operations that take it
REQUEST_BODIES: dict[str, type[BaseModel]] = {
    "SqlRequest": SqlRequest,
    "JobSubmission": JobSubmissionBody,
    "SetTags": SetTagsBody,
    "CreateShare": CreateShareBody,
    "AddShareTable": AddTableBody,
    "GrantShare": GrantBody,
    "CreateRecipient": CreateRecipientBody,
    "TokenRequest": TokenBody,
    "CreateApiToken": CreateTokenBody,
}
_REF = "#/components/schemas/{model}"


def _clean(schema: Any) -> Any:
    """pydantic's JSON schema without its generated titles (noise in a document)."""
    if isinstance(schema, list):
        return [_clean(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    return {
        k: (v if k in ("default", "example", "examples", "enum", "const") else _clean(v))
        for k, v in schema.items()
        if not (k == "title" and isinstance(v, str))
    }


def body_schema(model: type[BaseModel]) -> tuple[Schema, dict[str, Schema]]:
    """``model``'s schema and those of the models nested in it (components)."""
    schema = model.model_json_schema(ref_template=_REF)
    nested = schema.pop("$defs", {})
    schema.pop("description", None)  # the model's docstring is for developers
    return _clean(schema), {name: _clean(s) for name, s in nested.items()}


def request_schemas() -> dict[str, Schema]:
    out: dict[str, Schema] = {}
    for name, model in REQUEST_BODIES.items():
        schema, nested = body_schema(model)
        out.update(nested)
        out[name] = schema
    return out


def _present(schema: Schema) -> Schema:
    """A query parameter's schema: a parameter is absent or has a value, never null."""
    options = schema.get("anyOf")
    if options is not None:
        kept = [o for o in options if o.get("type") != "null"]
        if len(kept) == 1:
            rest = {k: v for k, v in schema.items() if k != "anyOf"}
            schema = {**kept[0], **rest}
    if schema.get("default", 0) is None:
        schema = {k: v for k, v in schema.items() if k != "default"}
    return schema


def query_params(model: type[QueryModel]) -> list[Schema]:
    """The query parameters of an operation whose handler parses ``model`` (and the old
    names of the paging parameters, marked deprecated)."""
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    old_names = {new: old for old, new in model.ALIASES.items()}
    out: list[Schema] = []
    for name, prop in schema["properties"].items():
        prop = _present(_clean(prop))
        description = prop.pop("description", "")
        examples = prop.pop("examples", None)
        param: Schema = {"name": name, "in": "query", "required": name in required}
        param["schema"] = prop
        param["description"] = description
        if examples:
            param["example"] = examples[0]
        if prop.get("type") == "array":
            param.update(style="form", explode=True)
        out.append(param)
        if name in old_names:
            alias = {**param, "name": old_names[name], "deprecated": True}
            alias["description"] = f"Old name of {name}."
            out.append(alias)
    return out


# ---- small builders ---------------------------------------------------------------------------
def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    """``schema`` or null (``type`` becomes a list with ``"null"``)."""
    kind = schema["type"]
    return {**schema, "type": [*(kind if isinstance(kind, list) else [kind]), "null"]}


def _obj(
    properties: dict[str, Schema],
    required: tuple[str, ...] | list[str] | None = None,
    *,
    description: str | None = None,
    closed: bool = False,
    example: Any = None,
) -> Schema:
    """An object schema; ``required`` defaults to every property, ``closed`` forbids others."""
    out: Schema = {"type": "object"}
    if description:
        out["description"] = description
    if example is not None:
        out["example"] = example
    out["required"] = list(properties) if required is None else list(required)
    out["properties"] = properties
    if closed:
        out["additionalProperties"] = False
    return out


def _array(items: Schema, **extra: Any) -> Schema:
    return {"type": "array", "items": items, **extra}


def _param(
    name: str,
    schema: Schema,
    description: str,
    required: bool = False,
    where: str = "query",
    **extra: Any,
) -> Schema:
    return {
        "name": name,
        "in": where,
        "required": required or where == "path",
        "schema": schema,
        "description": description,
        **extra,
    }


def _path(name: str, description: str, schema: Schema | None = None, **extra: Any) -> Schema:
    return _param(name, schema or _TEXT, description, where="path", **extra)


def _json(schema: Schema) -> dict[str, Schema]:
    return {"application/json": {"schema": schema}}


def _body(name: str, description: str, required: bool = True) -> Schema:
    return {"required": required, "description": description, "content": _json(_ref(name))}


def _ok(
    schema: str | Schema,
    *,
    status: str = "200",
    description: str = "OK",
    table: bool = False,
    headers: dict[str, Schema] | None = None,
) -> dict[str, Schema]:
    content: Schema = _json(_ref(schema) if isinstance(schema, str) else schema)
    if table:
        content.update(_TABLE_CONTENT)
    response: Schema = {"description": description, "content": content}
    if headers:
        response["headers"] = headers
    return {status: response}


def _header(description: str, schema: Schema | None = None) -> Schema:
    return {"description": description, "schema": schema or {"type": "string"}}


def _errors(*codes: int, **described: str) -> dict[str, Schema]:
    """Problem-document responses for ``codes``; ``described`` (``e404="..."``) overrides the
    generic descriptions. (:func:`_op` adds 401, 413 and 429 where they apply.)"""
    out: dict[str, Schema] = {}
    for code in sorted(codes):
        response: Schema = {
            "description": described.get(f"e{code}", _ERROR_TEXT[code]),
            "content": _PROBLEM,
        }
        if code in _ERROR_HEADERS:
            response["headers"] = {_ERROR_HEADERS[code]: _header(_ERROR_HEADER_TEXT[code])}
        out[str(code)] = response
    return out


def _op(
    summary: str,
    responses: dict[str, Schema],
    *,
    tag: str,
    op_id: str,
    description: str | None = None,
    params: list[Schema] | None = None,
    body: Schema | None = None,
    security: list[dict[str, list[str]]] | None = None,
    rate_limited: bool = True,
) -> Schema:
    """An operation. Every one may answer 414 and 431 (stratus.api.security's size limits),
    every one but the open ones (``security=[]``) 401, every one with a body 413 (over
    STRATUS_MAX_REQUEST_BYTES) and every rate-limited one 429."""
    op: Schema = {"tags": [tag], "operationId": op_id, "summary": summary}
    if description:
        op["description"] = description
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = body
    if security is not None:
        op["security"] = security
    implied = [414, 431]  # a query string over 8 KiB; too many or too large header fields
    implied += [
        c for c, applies in ((401, security is None), (413, body), (429, rate_limited)) if applies
    ]
    op["responses"] = dict(sorted({**_errors(*implied), **responses}.items()))
    return op


# ---- shared pieces ----------------------------------------------------------------------------
_TEXT: Schema = {"type": "string", "minLength": 1}
_STR: Schema = {"type": "string"}
_STR_N = _nullable(_STR)
_INT: Schema = {"type": "integer"}
_INT_N = _nullable(_INT)
_NUM = _nullable({"type": "number"})
_BOOL: Schema = {"type": "boolean"}
_DATE: Schema = {"type": "string", "format": "date"}
_STAMP_N: Schema = {"type": ["string", "null"], "format": "date-time"}
_NAME: Schema = {"type": "string", "pattern": f"^{NAME.pattern}$"}
_PRIVILEGE: Schema = {"type": "string", "enum": list(PRIVILEGES)}
_STRINGS = _array(_STR)
# what stratus.catalog.tokens.token_info shows of an API or recipient token
_TOKEN_INFO: dict[str, Schema] = {
    "id": _STR,
    "prefix": {**_STR, "description": "The first characters of the token"},
    "comment": _STR_N,
    "created_at": _STAMP_N,
    "expiration_time": _STAMP_N,
    "revoked_at": _STAMP_N,
    "status": {"type": "string", "enum": ["active", "expired", "revoked"]},
}
_EMPTY: Schema = {"type": "object", "maxProperties": 0, "description": "Nothing: {}"}
_OPEN: list[dict[str, list[str]]] = []  # `security: []`: no token needed

_PROBLEM = {"application/problem+json": {"schema": _ref("Problem")}}
_ERROR_TEXT = {
    400: "Invalid request: the problem names the offending parameter or body field",
    401: "No, malformed, unknown, expired or revoked bearer token",
    403: "A privilege is missing; the detail names it",
    404: "Not found, or not visible to the caller (names never leak)",
    409: "Conflicts with what exists",
    413: "The request body is larger than STRATUS_MAX_REQUEST_BYTES",
    414: "The query string is longer than 8 KiB",
    429: "Over the caller's rate limit (STRATUS_RATE_LIMIT; without valid credentials, "
    "STRATUS_RATE_LIMIT_IP per client address)",
    431: "More than 100 header fields, or one longer than 8 KiB",
    503: "The lakehouse storage cannot be reached; retry later",
    504: "The statement ran past STRATUS_SQL_TIMEOUT_SECONDS and was cancelled",
}
_ERROR_HEADERS = {401: "WWW-Authenticate", 429: "Retry-After", 503: "Retry-After"}
_ERROR_HEADER_TEXT = {
    401: 'Bearer realm="stratus"',
    429: "Seconds until the limit allows another request",
    503: "Seconds to wait",
}
_TABLE_CONTENT = {
    "text/csv": {"schema": {"type": "string"}},
    "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
}
_FILE_HEADERS = {
    "X-Row-Count": _header("Rows in the file (CSV and Parquet only)", {"type": "integer"}),
    "X-Next-Page-Token": _header("page_token of the next page, if any (CSV and Parquet only)"),
    "X-Next-Cursor": _header("Deprecated: X-Next-Page-Token under its old name"),
}
_ETAG = _header(
    "Weak entity tag of the answer (the tables' versions, the caller, the query): send it back "
    "in If-None-Match to get 304 while nothing changed"
)
_TAGGED_HEADERS = {**_FILE_HEADERS, "ETag": _ETAG}
_NOT_MODIFIED = {
    "304": {
        "description": "Not Modified: If-None-Match names the answer's ETag (no body)",
        "headers": {"ETag": _ETAG},
    }
}
_IF_NONE_MATCH: Schema = {
    "name": "If-None-Match",
    "in": "header",
    "required": False,
    "description": "ETags of an answer the client holds (or *): 304 if one is still current.",
    "schema": {"type": "string"},
}
_PAGE_TOKEN_OUT = {
    "type": ["string", "null"],
    "description": "page_token of the next page; null on the last page",
}
_DEPRECATED_LIMIT = {**_INT, "deprecated": True, "description": "Old name of max_results"}
_DEPRECATED_CURSOR = {**_STR_N, "deprecated": True, "description": "Old name of next_page_token"}
_AUDIT_ACTIONS = (
    "e.g. queryWeather, summarizeWeather, listCities, queryAuditLog, getTable, updatePermissions"
)
_TABLE_NAME = _path(
    "full_name",
    "Table: catalog.schema.table (or schema.table in catalog main).",
    example="main.weather.hourly",
)
_SECURABLE_TYPE = _path(
    "securable_type", "Kind of securable.", {"type": "string", "enum": list(SECURABLES)}
)
_TAGGABLE_TYPE = _path(
    "securable_type", "Kind of securable.", {"type": "string", "enum": list(TAGGABLE)}
)
_SECURABLE_NAME = _path(
    "full_name",
    "catalog, catalog.schema or catalog.schema.name (any value for the metastore).",
    example="main.weather",
)
_SHARE = _path("share", "Share name.", _NAME)
_RECIPIENT = _path("name", "Recipient name.", _NAME)


# ---- component schemas ------------------------------------------------------------------------
SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem document (plus error_code and message for Unity "
        "Catalog clients where the error is a catalog error)",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": _STR,
            "title": _STR,
            "status": _INT,
            "detail": _STR,
            "instance": _STR_N,
            "parameter": _STR,
            "errors": _array(
                _obj(
                    {"parameter": _STR, "message": _STR, "line": _INT, "column": _INT},
                    required=["parameter", "message"],
                )
            ),
            "error_code": _STR,
            "message": _STR,
        },
    },
    # -- weather ---------------------------------------------------------------------------
    "City": _obj(
        {
            "city_id": _STR,
            "name": _STR_N,
            "latitude": _NUM,
            "longitude": _NUM,
            "timezone": _STR_N,
            "source": _STR_N,
            "rows": {"type": "integer", "minimum": 0},
            "first_date": {"type": ["string", "null"], "format": "date"},
            "last_date": {"type": ["string", "null"], "format": "date"},
        },
        required=["city_id", "rows", "first_date", "last_date"],
    ),
    "CityList": _obj({"count": _INT, "data": _array(_ref("City"))}),
    "WeatherRow": _obj(
        {
            "city_id": _STR,
            "date": _DATE,
            "hour": {"type": "string", "pattern": "^([01][0-9]|2[0-3])[0-5][0-9]$|^2400$"},
            "ts": _STR,
            "temp": {"type": "number"},
            "wind_speed": _NUM,
            "description": _STR_N,
            "precipitation": _NUM,
            "humidity": _NUM,
        },
        required=[],
        description="Hourly observation; units °C, m/s, mm over the hour, %. "
        "ts is local standard time (date + hour).",
        closed=True,
    ),
    "WeatherPage": _obj(
        {
            "city_ids": _STRINGS,
            "start": _DATE,
            "end": _DATE,
            "fields": _array({"type": "string", "enum": list(HOURLY_FIELDS)}),
            "max_results": _INT,
            "next_page_token": _PAGE_TOKEN_OUT,
            "limit": _DEPRECATED_LIMIT,
            "next_cursor": _DEPRECATED_CURSOR,
            "count": _INT,
            "data": _array(_ref("WeatherRow")),
        },
        required=[
            *("city_ids", "start", "end", "fields"),
            *("max_results", "next_page_token", "count", "data"),
        ],
    ),
    "SummaryRow": _obj(
        {
            "city_id": _STR,
            "period": {**_DATE, "description": "day, or month start"},
            "temp_min": _NUM,
            "temp_max": _NUM,
            "temp_mean": _NUM,
            "precipitation_total": {
                **_NUM,
                "description": "null where the source reports no precipitation",
            },
            "humidity_mean": _NUM,
            "wind_speed_max": _NUM,
            "description_most_frequent": _STR_N,
            "hours_observed": _INT,
        },
        required=["city_id", "period", "hours_observed"],
    ),
    "SummaryPage": _obj(
        {
            "city_ids": _STRINGS,
            "start": _DATE,
            "end": _DATE,
            "granularity": {"type": "string", "enum": ["day", "month"]},
            "count": _INT,
            "data": _array(_ref("SummaryRow")),
        }
    ),
    # -- audit -----------------------------------------------------------------------------
    "AuditRecord": _obj(
        {
            "event_time": {"type": "string", "format": "date-time"},
            "request_id": {**_STR, "description": "The X-Request-Id of the response"},
            "service_name": _STR_N,
            "action_name": {**_STR, "description": _AUDIT_ACTIONS},
            "user_identity": {**_STR_N, "description": "Principal name"},
            "securable_type": _STR_N,
            "securable_full_name": _STR_N,
            "request_params": {
                "type": "object",
                "description": "Request parameters with secrets replaced by [REDACTED]",
            },
            "outcome": {"type": "string", "enum": ["allowed", "denied", "error"]},
            "status_code": _INT,
            "error_message": _STR_N,
            "source_ip_address": _STR_N,
            "user_agent": _STR_N,
        },
        required=["event_time", "request_id", "action_name", "outcome", "status_code"],
        description="One request that touched a securable, allowed or not.",
    ),
    "AuditPage": _obj({"count": _INT, "data": _array(_ref("AuditRecord"))}),
    # -- meta ------------------------------------------------------------------------------
    "Health": _obj({"status": _STR, "storage": _STR}, required=["status"]),
    "Version": _obj(
        {"name": _STR, "version": _STR, "deltalake": _STR, "duckdb": _STR},
        required=["name", "version"],
    ),
    # -- tables and SQL --------------------------------------------------------------------
    "TableRows": _obj(
        {
            "table": _STR,
            "fields": {**_STRINGS, "description": "Columns returned, in order"},
            "masked": {**_STRINGS, "description": "PII columns shown masked to this caller"},
            "max_results": _INT,
            "next_page_token": _PAGE_TOKEN_OUT,
            "limit": _DEPRECATED_LIMIT,
            "next_cursor": _DEPRECATED_CURSOR,
            "count": _INT,
            "data": _array({"type": "object"}),
        }
    ),
    "SqlColumn": _obj({"name": _STR, "type": {**_STR, "description": "SQL type, e.g. BIGINT"}}),
    "SqlResult": _obj(
        {
            "statement_id": _STR,
            "statement_type": {**_STR, "description": "e.g. SELECT, CREATE_TABLE, INSERT"},
            "columns": _array(_ref("SqlColumn")),
            "row_count": _INT,
            "truncated": {**_BOOL, "description": "More rows than STRATUS_SQL_MAX_ROWS"},
            "affected_rows": _INT_N,
            "table": {**_STR_N, "description": "Table created, written, dropped or described"},
            "count": _INT,
            "data": _array(
                {"type": "object", "description": "Decimals as strings, binary as base64"}
            ),
        }
    ),
    # -- lineage ---------------------------------------------------------------------------
    "LineageEdge": _obj(
        {
            "source": _STR,
            "target": _STR,
            "transformation": {**_STR, "description": "Column edges: of the latest run"},
            "statement_ids": _STRINGS,
            "statement_count": _INT,
            "last_event_time": {"type": "string", "format": "date-time"},
        },
        required=["source", "target", "statement_ids", "statement_count", "last_event_time"],
    ),
    "TableLineageNode": _obj(
        {
            "id": _STR,
            "type": {"type": "string", "enum": ["table", "path"]},
            "full_name": _STR_N,
            "path": _STR,
            "columns": _STRINGS,
            "pii_columns": _STRINGS,
            "exists": {**_BOOL, "description": "false: dropped since (admins only)"},
        },
        required=["id", "type", "full_name"],
    ),
    "TableLineage": _obj(
        {
            "root": _STR,
            "direction": {"type": "string", "enum": ["upstream", "downstream", "both"]},
            "depth": _INT,
            "nodes": _array(_ref("TableLineageNode")),
            "edges": _array(_ref("LineageEdge")),
        }
    ),
    "ColumnLineageNode": _obj(
        {
            "id": {**_STR, "description": "table.column"},
            "type": {"type": "string", "enum": ["column"]},
            "table": _STR,
            "column": _STR,
            "pii": {**_STR_N, "description": "PII kind, if the column is PII"},
        }
    ),
    "ColumnLineage": _obj(
        {
            "root": _STR,
            "direction": {"type": "string", "enum": ["upstream", "downstream", "both"]},
            "depth": _INT,
            "nodes": _array(_ref("ColumnLineageNode")),
            "edges": _array(_ref("LineageEdge")),
        }
    ),
    # -- jobs ------------------------------------------------------------------------------
    "Job": _obj(
        {
            "id": _STR,
            "type": {"type": "string", "enum": list(JOB_TYPES)},
            "state": {"type": "string", "enum": list(STATES)},
            "progress": {"type": "number", "minimum": 0, "maximum": 1},
            "principal": _STR,
            "engine": _STR,
            "city_ids": _STRINGS,
            "start": _DATE,
            "end": _DATE,
            "options": {"type": "object"},
            "output_table": _STR,
            "rows_written": _INT_N,
            "output_version": _INT_N,
            "error": _STR_N,
            "cancel_requested": _BOOL,
            "attempts": _INT,
            "timings": {
                "type": "object",
                "required": ["submitted_at", "started_at", "finished_at"],
                "properties": {
                    "submitted_at": _STAMP_N,
                    "started_at": _STAMP_N,
                    "finished_at": _STAMP_N,
                },
                "additionalProperties": _NUM,
            },
            "metrics": {"type": "object"},
            "links": _obj({"self": _STR, "output": _STR}),
        }
    ),
    "JobList": _obj(
        {"count": _INT, "data": _array(_ref("Job")), "next_page_token": _PAGE_TOKEN_OUT}
    ),
    # -- permissions and tags --------------------------------------------------------------
    "PrivilegeAssignment": _obj({"principal": _STR, "privileges": _array(_PRIVILEGE)}),
    "FullPermissions": _obj(
        {
            "securable_type": {"type": "string", "enum": list(SECURABLES)},
            "full_name": {**_STR, "description": "Empty for the metastore"},
            "owner": _STR_N,
            "privilege_assignments": _array(_ref("PrivilegeAssignment")),
            "effective_privileges": {
                **_array(_PRIVILEGE),
                "description": "What the caller holds here, inherited and owned included",
            },
        }
    ),
    "TagList": _obj({"tags": _array(_obj({"key": _STR, "value": _STR_N, "column_name": _STR_N}))}),
    "ColumnTagList": _obj(
        {
            "column_tags": _array(
                _obj(
                    {
                        "catalog_name": _STR,
                        "schema_name": _STR,
                        "table_name": _STR,
                        "column_name": _STR,
                        "tag_name": _STR,
                        "tag_value": _STR_N,
                    }
                )
            )
        }
    ),
    # -- Delta Sharing administration ------------------------------------------------------
    "ShareTable": _obj(
        {
            "id": _STR,
            "name": {**_STR, "description": "schema.table as recipients see it"},
            "schema": _STR,
            "table": _STR,
            "source_table": _STR,
            "columns": _nullable(_STRINGS),
            "row_filter": _STR_N,
            "history_shared": _BOOL,
            "pii": {"type": "string", "enum": list(PII_MODES)},
            "comment": _STR_N,
            "created_at": _STAMP_N,
            "created_by": _STR_N,
        }
    ),
    "Share": _obj(
        {
            "name": _STR,
            "id": _STR,
            "comment": _STR_N,
            "owner": _STR_N,
            "created_at": _STAMP_N,
            "created_by": _STR_N,
            "tables": _array(_ref("ShareTable")),
            "recipients": {**_STRINGS, "description": "Recipients granted (single share only)"},
        },
        required=["name", "id", "comment", "owner", "created_at", "created_by", "tables"],
    ),
    "ShareList": _obj({"shares": _array(_ref("Share"))}),
    "ShareGrant": _obj({"share": _STR, "recipient": _STR}),
    "TokenInfo": _obj(_TOKEN_INFO),
    "Recipient": _obj(
        {
            "name": _STR,
            "id": _STR,
            "comment": _STR_N,
            "created_at": _STAMP_N,
            "created_by": _STR_N,
            "shares": _STRINGS,
            "tokens": _array(_ref("TokenInfo")),
        }
    ),
    "RecipientList": _obj({"recipients": _array(_ref("Recipient"))}),
    "SharingProfile": _obj(
        {
            "shareCredentialsVersion": {"type": "integer", "enum": [1]},
            "endpoint": _STR,
            "bearerToken": _STR,
            "expirationTime": {"type": "string", "format": "date-time"},
        },
        required=["shareCredentialsVersion", "endpoint", "bearerToken"],
        description="A Delta Sharing profile file (.share)",
    ),
    "IssuedToken": _obj(
        {
            "recipient": _STR,
            "token": {**_STR, "description": "The bearer token: shown once, never stored"},
            "token_info": _ref("TokenInfo"),
            "profile": _ref("SharingProfile"),
        }
    ),
    "RevokedTokens": _obj({"revoked": {**_STRINGS, "description": "Ids of tokens revoked now"}}),
    # -- API tokens ------------------------------------------------------------------------
    "ApiToken": _obj({**_TOKEN_INFO, "principal": _STR}),
    "IssuedApiToken": _obj(
        {
            "token": {**_STR, "description": "The bearer token: shown once, never stored"},
            "token_info": _ref("ApiToken"),
        }
    ),
    "ApiTokenList": _obj({"tokens": _array(_ref("ApiToken")), "next_page_token": _PAGE_TOKEN_OUT}),
}


# ---- paths ------------------------------------------------------------------------------------
def _meta_paths() -> dict[str, Schema]:
    def page(summary: str, op_id: str, media: str, schema: Schema) -> Schema:
        ok = {"200": {"description": "OK", "content": {media: {"schema": schema}}}}
        return {"get": _op(summary, ok, tag="meta", op_id=op_id, security=_OPEN)}

    return {
        "/health": {
            "get": _op(
                "Liveness and storage check",
                _ok("Health"),
                tag="meta",
                op_id="getHealth",
                security=_OPEN,
                rate_limited=False,
            )
        },
        "/version": {
            "get": _op("Versions", _ok("Version"), tag="meta", op_id="getVersion", security=_OPEN)
        },
        "/openapi.json": page(
            "This document", "getOpenApi", "application/json", {"type": "object"}
        ),
        "/docs": page("Interactive API documentation (Swagger UI)", "getDocs", "text/html", _STR),
    }


def _weather_paths() -> dict[str, Schema]:
    return {
        "/api/v1/cities": {
            "get": _op(
                "Cities with row counts and the date span of their data",
                {**_ok("CityList"), **_errors(403, 404, 503)},
                tag="weather",
                op_id="listCities",
                description="Needs SELECT on main.weather.cities and main.weather.hourly "
                "(with USE CATALOG and USE SCHEMA).",
            )
        },
        "/api/v1/weather": {
            "get": _op(
                "Hourly observations, sorted by time",
                {
                    **_ok("WeatherPage", table=True, headers=_TAGGED_HEADERS),
                    **_NOT_MODIFIED,
                    **_errors(400, 403, 404, 503, e404="Unknown city"),
                },
                tag="weather",
                op_id="queryWeather",
                params=[*query_params(WeatherParams), _IF_NONE_MATCH],
            )
        },
        "/api/v1/weather/summary": {
            "get": _op(
                "Per city and day or month: temp, precipitation, humidity, wind",
                {
                    **_ok("SummaryPage", table=True, headers=_TAGGED_HEADERS),
                    **_NOT_MODIFIED,
                    **_errors(400, 403, 404, 503, e404="Unknown city"),
                },
                tag="weather",
                op_id="summarizeWeather",
                params=[*query_params(SummaryParams), _IF_NONE_MATCH],
            )
        },
    }


def _audit_paths() -> dict[str, Schema]:
    return {
        "/api/v1/audit": {
            "get": _op(
                "The audit log (system.access.audit), newest first",
                {**_ok("AuditPage"), **_errors(400, 403, 503, e403="Not a metastore admin")},
                tag="audit",
                op_id="queryAuditLog",
                description="Metastore admins only: anyone else gets 403, whatever the "
                "parameters. since and until are inclusive; a date alone means the start "
                "(since) or the whole (until) of that UTC day; times without an offset "
                "are UTC.",
                params=query_params(AuditParams),
            )
        }
    }


def _table_paths() -> dict[str, Schema]:
    return {
        "/api/v1/tables/{full_name}/rows": {
            "get": _op(
                "Rows of any catalog table, paged; other parameters filter columns by equality",
                {
                    **_ok("TableRows", table=True, headers=_FILE_HEADERS),
                    **_errors(400, 403, 404, 503),
                },
                tag="tables",
                op_id="readTableRows",
                description="Needs SELECT (with USE CATALOG and USE SCHEMA). PII columns come "
                "back decrypted with UNMASK or ownership, masked otherwise; a filter on a masked "
                "column compares the masked text.",
                params=[
                    _TABLE_NAME,
                    *query_params(RowsParams),
                    _param(
                        "filters",
                        {"type": "object", "additionalProperties": {"type": "string"}},
                        "Any other parameter: column=value (equality).",
                        style="form",
                        explode=True,
                    ),
                ],
            )
        },
        "/api/v1/sql": {
            "post": _op(
                "Run one Databricks SQL statement, governed like the rest of the API",
                {
                    **_ok(
                        "SqlResult",
                        table=True,
                        headers={
                            "X-Statement-Id": _header("CSV and Parquet only"),
                            "X-Statement-Type": _header("CSV and Parquet only"),
                            "X-Truncated": _header("CSV and Parquet only: true or false"),
                            **_FILE_HEADERS,
                        },
                    ),
                    **_errors(
                        400,
                        403,
                        404,
                        409,
                        503,
                        504,
                        e400="Syntax error (line and column in errors), unsupported statement, "
                        "bad parameter or a statement the engine refused",
                        e404="A table or schema that does not exist or is not visible",
                    ),
                },
                tag="sql",
                op_id="executeSql",
                description="SELECT, SHOW, DESCRIBE, CREATE/DROP TABLE, INSERT, GRANT and "
                "more; decided by the same grants as the REST APIs. Results are at most "
                "STRATUS_SQL_MAX_ROWS rows (truncated says so).",
                params=query_params(SqlQuery),
                body=_body("SqlRequest", "The statement and its parameters"),
            )
        },
    }


def _lineage_paths() -> dict[str, Schema]:
    graph = query_params(GraphParams)
    invisible = "A table that does not exist or that the caller cannot see"
    return {
        "/api/v1/lineage/tables/{full_name}": {
            "get": _op(
                "Table lineage graph",
                {**_ok("TableLineage"), **_errors(400, 404, e404=invisible)},
                tag="lineage",
                op_id="getTableLineage",
                description="Only what the caller may see: other tables, and what is reachable "
                "only through them, are left out.",
                params=[_TABLE_NAME, *graph],
            )
        },
        "/api/v1/lineage/columns/{full_name}/{column}": {
            "get": _op(
                "Column lineage graph",
                {**_ok("ColumnLineage"), **_errors(400, 404, e404=invisible)},
                tag="lineage",
                op_id="getColumnLineage",
                params=[_TABLE_NAME, _path("column", "Column name.", example="temp"), *graph],
            )
        },
    }


def _job_paths() -> dict[str, Schema]:
    job_id = _path("job_id", "Job id.")
    return {
        "/api/v1/jobs": {
            "post": _op(
                "Submit a processing job",
                {
                    **_ok(
                        "Job",
                        status="202",
                        description="Queued (or, with a reused Idempotency-Key, the earlier job)",
                        headers={
                            "Location": _header("The job's URL"),
                            "Idempotent-Replayed": _header("true: the earlier job"),
                        },
                    ),
                    **_errors(
                        400,
                        403,
                        404,
                        409,
                        e404="Unknown city",
                        e409="Idempotency-Key reused for another request, or an output table "
                        "of another shape",
                    ),
                },
                tag="jobs",
                op_id="submitJob",
                description="Needs SELECT on main.weather.hourly and CREATE TABLE (or MODIFY "
                "on an existing table) where the output goes.",
                params=[
                    _param(
                        "Idempotency-Key",
                        {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
                        "The same key and request return the same job.",
                        where="header",
                    )
                ],
                body=_body("JobSubmission", "What to compute"),
            ),
            "get": _op(
                "The caller's jobs, newest first",
                {**_ok("JobList"), **_errors(400)},
                tag="jobs",
                op_id="listJobs",
                params=query_params(JobListParams),
            ),
        },
        "/api/v1/jobs/{job_id}": {
            "get": _op(
                "A job",
                {**_ok("Job"), **_errors(404, e404="No such job of the caller's")},
                tag="jobs",
                op_id="getJob",
                params=[job_id],
            ),
            "delete": _op(
                "Cancel a job",
                {
                    **_ok("Job", description="Cancelled (it was queued)"),
                    **_ok("Job", status="202", description="Asked to stop at its next step"),
                    **_errors(404, 409, e409="The job has already succeeded or failed"),
                },
                tag="jobs",
                op_id="cancelJob",
                params=[job_id],
            ),
        },
    }


def _token_paths() -> dict[str, Schema]:
    token_id = _path("token_id", "Token id (see GET /api/v1/tokens).")
    return {
        "/api/v1/tokens": {
            "post": _op(
                "Issue an API token (shown once)",
                {
                    **_ok(
                        "IssuedApiToken",
                        status="201",
                        description="Issued; only its hash is stored",
                        headers={"Location": _header("The token's URL")},
                    ),
                    **_errors(400, 404, e404="No such principal (or not the caller's to manage)"),
                },
                tag="tokens",
                op_id="createApiToken",
                description="For the caller, or (metastore admins) for another principal.",
                body=_body("CreateApiToken", "Whose token, its lifetime and comment", False),
            ),
            "get": _op(
                "API tokens of the caller (or, for admins, of a principal)",
                {**_ok("ApiTokenList"), **_errors(400, 404)},
                tag="tokens",
                op_id="listApiTokens",
                params=query_params(TokenListParams),
            ),
        },
        "/api/v1/tokens/{token_id}": {
            "delete": _op(
                "Revoke an API token",
                {
                    **_ok("ApiToken", description="Revoked (already revoked: unchanged)"),
                    **_errors(404, e404="No such token of the caller's"),
                },
                tag="tokens",
                op_id="revokeApiToken",
                params=[token_id],
            ),
        },
    }


def _governance_paths() -> dict[str, Schema]:
    tags = f"{UC_PREFIX}/tags/{{securable_type}}/{{full_name}}"
    tag_errors = _errors(400, 403, 404)
    return {
        "/api/v1/permissions/{securable_type}/{full_name}": {
            "get": _op(
                "Grants on a securable, with Stratus's own privileges and the caller's "
                "effective privileges",
                {**_ok("FullPermissions"), **_errors(400, 404)},
                tag="permissions",
                op_id="getFullPermissions",
                params=[_SECURABLE_TYPE, _SECURABLE_NAME, *query_params(PrincipalQuery)],
            )
        },
        tags: {
            "get": _op(
                "Tags of a securable (Stratus extension to Unity Catalog)",
                {**_ok("TagList"), **tag_errors},
                tag="tags",
                op_id="getTags",
                params=[_TAGGABLE_TYPE, _SECURABLE_NAME, *query_params(TagQuery)],
            ),
            "put": _op(
                "Set tags (APPLY TAG or ownership)",
                {**_ok("TagList"), **tag_errors},
                tag="tags",
                op_id="setTags",
                description="The tag pii on a column encrypts it (the table is rewritten).",
                params=[_TAGGABLE_TYPE, _SECURABLE_NAME],
                body=_body("SetTags", "Tags to set"),
            ),
            "delete": _op(
                "Remove tags (removing pii from a column: metastore admins only)",
                {**_ok("TagList"), **tag_errors},
                tag="tags",
                op_id="unsetTags",
                params=[_TAGGABLE_TYPE, _SECURABLE_NAME, *query_params(UnsetTagsQuery)],
            ),
        },
        f"{UC_PREFIX}/information_schema/column_tags": {
            "get": _op(
                "Column tags of the tables the caller can see",
                {**_ok("ColumnTagList"), **_errors(400)},
                tag="tags",
                op_id="listColumnTags",
                params=query_params(ColumnTagsQuery),
            )
        },
    }


def _sharing_paths() -> dict[str, Schema]:
    admin = "Metastore admins only."
    owner = "The share's owner or a metastore admin (anyone else gets 404)."
    share_404 = "No such share, or not the caller's"
    rcpt_404 = "No such recipient"

    def share_op(summary: str, op_id: str, ok: dict, *codes: int, **kw: Any) -> Schema:
        e404 = kw.pop("e404", share_404)
        errors = _errors(404, *codes, e403="A privilege on the table is missing", e404=e404)
        return _op(summary, {**ok, **errors}, tag="sharing", op_id=op_id, **kw)

    def recipient_op(summary: str, op_id: str, ok: dict, *codes: int, **kw: Any) -> Schema:
        errors = _errors(403, 404, *codes, e403=admin, e404=rcpt_404)
        return _op(summary, {**ok, **errors}, tag="sharing", op_id=op_id, **kw)

    token_body = _body("TokenRequest", "Expiry and comment (both optional)", required=False)
    return {
        "/api/v1/shares": {
            "post": _op(
                "Create a Delta Sharing share",
                {
                    **_ok("Share", status="201", description="Created"),
                    **_errors(400, 403, 404, 409, e403=admin, e404="Unknown owner"),
                },
                tag="sharing",
                op_id="createShare",
                description=admin,
                body=_body("CreateShare", "The share"),
            ),
            "get": _op(
                "Shares the caller owns (all of them, for admins)",
                _ok("ShareList"),
                tag="sharing",
                op_id="listShares",
            ),
        },
        "/api/v1/shares/{share}": {
            "get": share_op(
                "A share with its tables and recipients",
                "getShare",
                _ok("Share"),
                params=[_SHARE],
                description=owner,
            ),
            "delete": share_op(
                "Delete a share", "deleteShare", _ok(_EMPTY), params=[_SHARE], description=owner
            ),
        },
        "/api/v1/shares/{share}/tables": {
            "post": share_op(
                "Add a table to a share (needs SELECT on it)",
                "addShareTable",
                _ok("ShareTable", status="201", description="Added"),
                400,
                403,
                409,
                params=[_SHARE],
                body=_body("AddShareTable", "The table and how it is shared"),
                description=owner,
            )
        },
        "/api/v1/shares/{share}/tables/{shared_name}": {
            "delete": share_op(
                "Remove a table from a share",
                "removeShareTable",
                _ok(_EMPTY),
                params=[_SHARE, _path("shared_name", "schema.table as recipients see it.")],
                description=owner,
            )
        },
        "/api/v1/shares/{share}/recipients": {
            "post": share_op(
                "Grant a share to a recipient",
                "grantShare",
                _ok("ShareGrant"),
                400,
                e404="No such share (or not the caller's), or no such recipient",
                params=[_SHARE],
                body=_body("GrantShare", "The recipient"),
                description=owner,
            )
        },
        "/api/v1/shares/{share}/recipients/{recipient}": {
            "delete": share_op(
                "Revoke a share from a recipient",
                "revokeShare",
                _ok(_EMPTY),
                e404="No such share (or not the caller's), recipient or grant",
                params=[_SHARE, _path("recipient", "Recipient name.", _NAME)],
                description=owner,
            )
        },
        "/api/v1/recipients": {
            "post": _op(
                "Create a recipient and its first bearer token (shown once)",
                {
                    **_ok("IssuedToken", status="201", description="Created"),
                    **_errors(400, 403, 409, e403=admin),
                },
                tag="sharing",
                op_id="createRecipient",
                description=admin,
                body=_body("CreateRecipient", "The recipient"),
            ),
            "get": _op(
                "Recipients with their shares and tokens",
                {**_ok("RecipientList"), **_errors(403, e403=admin)},
                tag="sharing",
                op_id="listRecipients",
            ),
        },
        "/api/v1/recipients/{name}": {
            "get": recipient_op(
                "A recipient", "getRecipient", _ok("Recipient"), params=[_RECIPIENT]
            ),
            "delete": recipient_op(
                "Delete a recipient (its tokens stop working)",
                "deleteRecipient",
                _ok(_EMPTY),
                params=[_RECIPIENT],
            ),
        },
        "/api/v1/recipients/{name}/tokens": {
            "post": recipient_op(
                "Issue a new token (shown once) with its profile",
                "createRecipientToken",
                _ok("IssuedToken", status="201", description="Issued"),
                400,
                params=[_RECIPIENT],
                body=token_body,
            )
        },
        "/api/v1/recipients/{name}/tokens/{token_id}": {
            "delete": recipient_op(
                "Revoke a token",
                "revokeRecipientToken",
                _ok("RevokedTokens"),
                params=[_RECIPIENT, _path("token_id", "Token id.")],
            )
        },
        "/api/v1/recipients/{name}/profile": {
            "post": recipient_op(
                "Issue a new token as a downloadable .share profile file (shown once)",
                "createRecipientProfile",
                {
                    "200": {
                        "description": "The profile (Content-Disposition: attachment)",
                        "content": _json(_ref("SharingProfile")),
                    }
                },
                400,
                params=[_RECIPIENT],
                body=token_body,
            )
        },
    }


def spec() -> dict[str, Any]:
    paths: dict[str, Schema] = {}
    for part in (
        _meta_paths,
        _weather_paths,
        _audit_paths,
        _table_paths,
        _lineage_paths,
        _job_paths,
        _token_paths,
        _governance_paths,
        _sharing_paths,
    ):
        paths.update(part())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Stratus API",
            "version": __version__,
            "description": "Hourly weather from Delta Lake tables, SQL, lineage, processing "
            "jobs, permissions and Delta Sharing administration. Errors are RFC 9457 problem "
            "documents naming the offending parameter. The Unity Catalog API "
            f"({UC_PREFIX}) follows the Unity Catalog OSS spec; only Stratus's extensions to "
            "it (tags, information_schema) are described here.",
        },
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            # callers may change their copy
            "schemas": {**copy.deepcopy(SCHEMAS), **request_schemas()},
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A Stratus API token (stratus_..., from `stratus admin "
                    "bootstrap` or `stratus admin create-token`) or a JWT from the configured "
                    "OIDC issuer.",
                }
            },
        },
    }
