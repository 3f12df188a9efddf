"""The OpenAPI 3.1 description of ``/api/v1``, served at ``/openapi.json``.

Kept next to the blueprints it describes; the tests validate the document itself and check real
responses against its schemas, so the two cannot drift apart silently.
"""

from __future__ import annotations

from typing import Any

from stratus import __version__
from stratus.weather.schema import CITY_ID_PATTERN, HOURLY_FIELDS


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _param(name: str, schema: dict[str, Any], description: str, required: bool = False) -> dict:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "schema": schema,
        "description": description,
    }


_CITY_PARAM = {
    "name": "city_id",
    "in": "query",
    "required": True,
    "style": "form",
    "explode": True,
    "schema": {
        "type": "array",
        "minItems": 1,
        "maxItems": 100,
        "items": {"type": "string", "pattern": f"^{CITY_ID_PATTERN}$"},
    },
    "description": "One or more city ids (repeat the parameter or separate with commas).",
}
_DATE = {"type": "string", "format": "date"}
_FORMAT = _param(
    "format",
    {"type": "string", "enum": ["json", "csv", "parquet"], "default": "json"},
    "Response format. CSV/Parquet carry paging in X-Next-Cursor.",
)
_PROBLEM = {"application/problem+json": {"schema": _ref("Problem")}}
_UNAUTHENTICATED = {
    "description": "No, malformed, unknown, expired or revoked bearer token "
    "(with a WWW-Authenticate header)",
    "content": _PROBLEM,
}
_ERRORS = {
    "400": {"description": "Invalid parameter", "content": _PROBLEM},
    "401": _UNAUTHENTICATED,
    "403": {"description": "A privilege is missing; the detail names it", "content": _PROBLEM},
    "404": {
        "description": "Unknown city, or a table the caller may not see at all",
        "content": _PROBLEM,
    },
}
_OPEN: list[dict[str, list[str]]] = []  # `security: []`: no token needed
_AUDIT_ACTIONS = (
    "e.g. queryWeather, summarizeWeather, listCities, queryAuditLog, getTable, updatePermissions"
)
_TABLE_CONTENT = {
    "text/csv": {"schema": {"type": "string"}},
    "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
}
_NUM = {"type": ["number", "null"]}
_STAMP = {
    "type": "string",
    "description": "YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS[.ffffff]][Z|+HH:MM]",
}

SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem document",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "instance": {"type": ["string", "null"]},
            "parameter": {"type": "string"},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["parameter", "message"],
                    "properties": {
                        "parameter": {"type": "string"},
                        "message": {"type": "string"},
                    },
                },
            },
        },
    },
    "City": {
        "type": "object",
        "required": ["city_id", "rows", "first_date", "last_date"],
        "properties": {
            "city_id": {"type": "string"},
            "name": {"type": ["string", "null"]},
            "latitude": _NUM,
            "longitude": _NUM,
            "timezone": {"type": ["string", "null"]},
            "source": {"type": ["string", "null"]},
            "rows": {"type": "integer", "minimum": 0},
            "first_date": {"type": ["string", "null"], "format": "date"},
            "last_date": {"type": ["string", "null"], "format": "date"},
        },
    },
    "CityList": {
        "type": "object",
        "required": ["count", "data"],
        "properties": {
            "count": {"type": "integer"},
            "data": {"type": "array", "items": _ref("City")},
        },
    },
    "WeatherRow": {
        "type": "object",
        "description": "Hourly observation; units °C, m/s, mm over the hour, %. "
        "ts is local standard time (date + hour).",
        "properties": {
            "city_id": {"type": "string"},
            "date": {"type": "string", "format": "date"},
            "hour": {"type": "string", "pattern": "^([01][0-9]|2[0-3])[0-5][0-9]$|^2400$"},
            "ts": {"type": "string"},
            "temp": {"type": "number"},
            "wind_speed": _NUM,
            "description": {"type": ["string", "null"]},
            "precipitation": _NUM,
            "humidity": _NUM,
        },
        "additionalProperties": False,
    },
    "WeatherPage": {
        "type": "object",
        "required": ["city_ids", "start", "end", "fields", "limit", "count", "data"],
        "properties": {
            "city_ids": {"type": "array", "items": {"type": "string"}},
            "start": _DATE,
            "end": _DATE,
            "fields": {"type": "array", "items": {"type": "string", "enum": list(HOURLY_FIELDS)}},
            "limit": {"type": "integer"},
            "count": {"type": "integer"},
            "next_cursor": {"type": ["string", "null"]},
            "data": {"type": "array", "items": _ref("WeatherRow")},
        },
    },
    "SummaryRow": {
        "type": "object",
        "required": ["city_id", "period", "hours_observed"],
        "properties": {
            "city_id": {"type": "string"},
            "period": {"type": "string", "format": "date", "description": "day, or month start"},
            "temp_min": _NUM,
            "temp_max": _NUM,
            "temp_mean": _NUM,
            "precipitation_total": {
                **_NUM,
                "description": "null where the source reports no precipitation",
            },
            "humidity_mean": _NUM,
            "wind_speed_max": _NUM,
            "description_most_frequent": {"type": ["string", "null"]},
            "hours_observed": {"type": "integer"},
        },
    },
    "SummaryPage": {
        "type": "object",
        "required": ["city_ids", "start", "end", "granularity", "count", "data"],
        "properties": {
            "city_ids": {"type": "array", "items": {"type": "string"}},
            "start": _DATE,
            "end": _DATE,
            "granularity": {"type": "string", "enum": ["day", "month"]},
            "count": {"type": "integer"},
            "data": {"type": "array", "items": _ref("SummaryRow")},
        },
    },
    "AuditRecord": {
        "type": "object",
        "description": "One request that touched a securable, allowed or not.",
        "required": ["event_time", "request_id", "action_name", "outcome", "status_code"],
        "properties": {
            "event_time": {"type": "string", "format": "date-time"},
            "request_id": {"type": "string", "description": "The X-Request-Id of the response"},
            "service_name": {"type": ["string", "null"]},
            "action_name": {"type": "string", "description": _AUDIT_ACTIONS},
            "user_identity": {"type": ["string", "null"], "description": "Principal name"},
            "securable_type": {"type": ["string", "null"]},
            "securable_full_name": {"type": ["string", "null"]},
            "request_params": {
                "type": "object",
                "description": "Request parameters with secrets replaced by [REDACTED]",
            },
            "outcome": {"type": "string", "enum": ["allowed", "denied", "error"]},
            "status_code": {"type": "integer"},
            "error_message": {"type": ["string", "null"]},
            "source_ip_address": {"type": ["string", "null"]},
            "user_agent": {"type": ["string", "null"]},
        },
    },
    "AuditPage": {
        "type": "object",
        "required": ["count", "data"],
        "properties": {
            "count": {"type": "integer"},
            "data": {"type": "array", "items": _ref("AuditRecord")},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string"}, "storage": {"type": "string"}},
    },
    "Version": {
        "type": "object",
        "required": ["name", "version"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "deltalake": {"type": "string"},
            "duckdb": {"type": "string"},
        },
    },
}


def _ok(schema: str, table: bool = False) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": _ref(schema)}}
    if table:
        content.update(_TABLE_CONTENT)
    return {"description": "OK", "content": content}


def spec() -> dict[str, Any]:
    window = [
        _CITY_PARAM,
        _param("start", _DATE, "First date (inclusive), YYYY-MM-DD.", required=True),
        _param("end", _DATE, "Last date (inclusive), YYYY-MM-DD.", required=True),
    ]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Stratus API",
            "version": __version__,
            "description": "Hourly weather from Delta Lake tables. Errors are RFC 9457 "
            "problem documents naming the offending parameter.",
        },
        "security": [{"bearerAuth": []}],
        "paths": {
            "/health": {
                "get": {
                    "summary": "Liveness and storage check",
                    "security": _OPEN,
                    "responses": {"200": _ok("Health")},
                }
            },
            "/version": {
                "get": {
                    "summary": "Versions",
                    "security": _OPEN,
                    "responses": {"200": _ok("Version")},
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "security": _OPEN,
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1 document",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
            "/docs": {
                "get": {
                    "summary": "Interactive API documentation (Swagger UI)",
                    "security": _OPEN,
                    "responses": {
                        "200": {
                            "description": "HTML page",
                            "content": {"text/html": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/api/v1/cities": {
                "get": {
                    "summary": "Cities with row counts and the date span of their data",
                    "description": "Needs SELECT on main.weather.cities and "
                    "main.weather.hourly (with USE CATALOG and USE SCHEMA).",
                    "responses": {
                        "200": _ok("CityList"),
                        "401": _ERRORS["401"],
                        "403": _ERRORS["403"],
                        "404": _ERRORS["404"],
                    },
                }
            },
            "/api/v1/weather": {
                "get": {
                    "summary": "Hourly observations, sorted by time",
                    "parameters": [
                        *window,
                        _param(
                            "fields",
                            {
                                "type": "array",
                                "items": {"type": "string", "enum": list(HOURLY_FIELDS)},
                            },
                            "Columns to return (comma-separated); default all.",
                        ),
                        _param("limit", {"type": "integer", "minimum": 1}, "Page size."),
                        _param("cursor", {"type": "string"}, "next_cursor of the previous page."),
                        _FORMAT,
                    ],
                    "responses": {"200": _ok("WeatherPage", table=True), **_ERRORS},
                }
            },
            "/api/v1/weather/summary": {
                "get": {
                    "summary": "Per city and day or month: temp, precipitation, humidity, wind",
                    "parameters": [
                        *window,
                        _param(
                            "granularity",
                            {"type": "string", "enum": ["day", "month"], "default": "day"},
                            "Period length.",
                        ),
                        _FORMAT,
                    ],
                    "responses": {"200": _ok("SummaryPage", table=True), **_ERRORS},
                }
            },
            "/api/v1/audit": {
                "get": {
                    "summary": "The audit log (system.access.audit), newest first",
                    "description": "Metastore admins only: anyone else gets 403, whatever the "
                    "parameters. since and until are inclusive; a date alone means the start "
                    "(since) or the whole (until) of that UTC day; times without an offset "
                    "are UTC.",
                    "parameters": [
                        _param("principal", {"type": "string"}, "Principal name."),
                        _param("action", {"type": "string"}, f"Action name, {_AUDIT_ACTIONS}."),
                        _param(
                            "outcome",
                            {"type": "string", "enum": ["allowed", "denied", "error"]},
                            "Outcome of the request.",
                        ),
                        _param("since", _STAMP, "Earliest event time, ISO 8601."),
                        _param("until", _STAMP, "Latest event time, ISO 8601."),
                        _param(
                            "limit",
                            {"type": "integer", "minimum": 1, "maximum": 10000, "default": 1000},
                            "Most records to return.",
                        ),
                    ],
                    "responses": {
                        "200": _ok("AuditPage"),
                        "400": _ERRORS["400"],
                        "401": _ERRORS["401"],
                        "403": {"description": "Not a metastore admin", "content": _PROBLEM},
                    },
                }
            },
        },
        "components": {
            "schemas": SCHEMAS,
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
