"""Rows of any catalog table, with the weather API's paging, formats and error rules.

``GET /api/v1/tables/{full_name}/rows?fields=&max_results=&page_token=&format=&<column>=<value>``
(``limit`` and ``cursor`` are the old names of ``max_results`` and ``page_token``). Every query
parameter that is not one of the reserved ones filters a column by equality. PII
columns come back decrypted for callers with UNMASK (or ownership) and masked for everyone else;
a filter on a masked column compares the masked text, so it cannot reveal plaintext.
"""

from __future__ import annotations

from flask import Blueprint, Response, request
from pydantic import ConfigDict, Field, field_validator

from stratus.api.auth import audit, current_identity
from stratus.api.encoding import table_response
from stratus.api.params import (
    PAGING_ALIASES,
    CsvList,
    Format,
    MaxResults,
    PageToken,
    QueryModel,
    parse_query,
)
from stratus.api.problems import invalid_parameter
from stratus.api.state import platform
from stratus.catalog.errors import InvalidArgument
from stratus.tables.service import qualify

bp = Blueprint("tables", __name__, url_prefix="/api/v1/tables")


class RowsParams(QueryModel):
    """The reserved parameters; any other is a column filter (``model_extra``)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    LISTS = frozenset({"fields"})
    ALIASES = PAGING_ALIASES

    fields: CsvList | None = Field(
        default=None, description="Columns to return (comma-separated); default all."
    )
    max_results: MaxResults = None
    page_token: PageToken = None
    format: Format = "json"

    @field_validator("fields")
    @classmethod
    def _fields(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and not v:
            raise ValueError("must name at least one column")
        return v


RESERVED = (*RowsParams.model_fields, *PAGING_ALIASES)


@bp.get("/<full_name>/rows")
def rows(full_name: str) -> Response:
    stratus = platform()
    who = current_identity()
    full_name = qualify(full_name)
    filters = {k: request.args.getlist(k)[-1] for k in request.args if k not in RESERVED}
    pii = stratus.tables.protector.pii_columns(full_name)
    params = {k: ("[PII]" if k in pii else v) for k, v in request.args.items()}
    audit("readTableRows", "table", full_name, params)
    authz = stratus.governance.authorizer
    authz.require_table(who, full_name, "SELECT")
    privileges = authz.privileges(who, "table", full_name)
    unmask = bool({"UNMASK", "OWNER"} & privileges)

    p = parse_query(RowsParams)
    settings = stratus.settings
    limit = p.max_results or settings.default_page_size
    if limit > settings.max_page_size:
        name = "limit" if "limit" in request.args else "max_results"
        raise invalid_parameter(name, f"must be between 1 and {settings.max_page_size}")
    try:
        page = stratus.tables.rows(
            full_name,
            unmask=unmask,
            fields=p.fields,
            filters=filters,
            limit=limit,
            cursor=p.page_token,
        )
    except InvalidArgument as exc:
        if exc.parameter == "page_token" and "cursor" in request.args:
            exc.parameter = "cursor"  # as the caller spelled it
        raise
    envelope = {
        "table": full_name,
        "fields": page.table.column_names,
        "masked": page.masked,
        "max_results": limit,
        "next_page_token": page.next_cursor,
        "limit": limit,  # deprecated names of the two above
        "next_cursor": page.next_cursor,
    }
    return table_response(page.table, p.format, envelope, full_name.replace(".", "-"))
