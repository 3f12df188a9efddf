"""``POST /api/v1/sql``: one Databricks SQL statement, governed like the rest of the API.

Body ``{"statement": "...", "parameters": {...}}``: parameters bind ``:name`` placeholders
(an array binds ``?``; Databricks' ``[{"name", "value", "type"}]`` works too). ``?format=csv``
or ``parquet`` returns the rows as a file (the envelope then travels in ``X-*`` headers).
JSON: ``{"statement_id", "statement_type", "columns": [{"name", "type"}], "row_count",
"truncated", "affected_rows", "table", "count", "data": [{column: value}]}`` (decimals as strings,
binary as base64, a repeated column name made unique: ``date``, ``date_2``). Errors are problem
documents: a syntax error names its line and column, an unsupported statement the construct, a
denied one the missing privilege.
"""

from __future__ import annotations

from typing import Annotated, Any

from flask import Blueprint, Response, g, request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr, WithJsonSchema

from stratus.api.auth import audit, current_identity
from stratus.api.encoding import (
    json_response,
    json_rows,
    table_response,
    unique_names,
)
from stratus.api.params import Format, QueryModel, parse_body, parse_query
from stratus.api.problems import Problem
from stratus.api.state import platform
from stratus.sql.errors import SqlSyntaxError, SqlTimeout

bp = Blueprint("sql", __name__, url_prefix="/api/v1")
MAX_STATEMENT_CHARS = 1_000_000


@bp.errorhandler(SqlSyntaxError)
def _syntax(exc: SqlSyntaxError) -> Response:
    g.error_message = exc.message
    where = {"line": exc.line, "column": exc.column} if exc.line is not None else {}
    return Problem(
        400,
        "SQL syntax error",
        exc.message,
        type_="/problems/parse-syntax-error",
        parameter="statement",
        errors=[{"parameter": "statement", "message": exc.reason, **where}],
        error_code=exc.error_code,
    ).response()


@bp.errorhandler(SqlTimeout)
def _timeout(exc: SqlTimeout) -> Response:
    g.error_message = exc.message
    return Problem(
        504,
        "Statement timed out",
        exc.message,
        type_="/problems/sql-timeout",
        error_code=exc.error_code,
    ).response()


def _statement(text: str) -> str:
    if not text.strip():
        raise ValueError("required: one SQL statement")
    if len(text) > MAX_STATEMENT_CHARS:
        raise ValueError(f"at most {MAX_STATEMENT_CHARS:,} characters")
    return text


class SqlQuery(QueryModel):
    format: Format = "json"


class SqlRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    statement: Annotated[
        StrictStr,
        AfterValidator(_statement),
        WithJsonSchema(
            {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_STATEMENT_CHARS,
                "pattern": r"\S",
                "description": "One Databricks SQL statement",
                "example": "SELECT city_id, avg(temp) AS t FROM main.weather.hourly "
                "GROUP BY city_id",
            }
        ),
    ]
    parameters: dict[str, Any] | list[Any] | None = Field(
        default=None,
        description='Values for :name placeholders ({"name": value}), for ? placeholders '
        '([value, ...]), or Databricks\' [{"name", "value", "type"}]',
    )


def _parameter_names(parameters: Any) -> Any:
    """What the audit log keeps of the parameters: names (or the count), never values."""
    if isinstance(parameters, dict):
        return sorted(str(k) for k in parameters)
    if isinstance(parameters, list):
        named = [p.get("name") for p in parameters if isinstance(p, dict)]
        return named if named else len(parameters)
    return None


@bp.post("/sql")
def execute() -> Response:
    audit("executeSql", None, None, {})
    body = parse_body(SqlRequest)
    text, parameters = body.statement, body.parameters
    fmt = request.args.get("format", "json")
    params = {"statement": text, "parameters": _parameter_names(parameters), "format": fmt}
    audit("executeSql", None, None, params)
    parse_query(SqlQuery)
    service = platform().sql
    stmt = service.parse(text)
    audit("executeSql", *service.securable(stmt), params)
    result = service.run(stmt, parameters, current_identity())
    if fmt == "json":  # one key per column, even where a result repeats a name
        result.data = result.data.rename_columns(unique_names(result.data.column_names))
        return json_response(
            {**result.envelope(), "count": result.data.num_rows, "data": json_rows(result.data)}
        )
    resp = table_response(result.data, fmt, result.envelope(), f"sql-{result.statement_id}")
    resp.headers["X-Statement-Id"] = result.statement_id
    resp.headers["X-Statement-Type"] = result.statement_type
    resp.headers["X-Truncated"] = "true" if result.truncated else "false"
    return resp
