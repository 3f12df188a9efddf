"""Rows of any catalog table, with the weather API's paging, formats and error rules.

``GET /api/v1/tables/{full_name}/rows?fields=&limit=&cursor=&format=&<column>=<value>...``
Every query parameter that is not one of the reserved ones filters a column by equality. PII
columns come back decrypted for callers with UNMASK (or ownership) and masked for everyone else;
a filter on a masked column compares the masked text, so it cannot reveal plaintext.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from stratus.api.auth import audit, current_identity
from stratus.api.encoding import FORMATS, table_response
from stratus.api.problems import invalid_parameter
from stratus.api.state import platform
from stratus.security.actions import Resource
from stratus.tables.service import qualify

bp = Blueprint("tables", __name__, url_prefix="/api/v1/tables")
RESERVED = ("fields", "limit", "cursor", "format")


@bp.get("/<full_name>/rows")
def rows(full_name: str) -> Response:
    stratus = platform()
    who = current_identity()
    full_name = qualify(full_name)
    filters = {k: request.args.getlist(k)[-1] for k in request.args if k not in RESERVED}
    pii = stratus.tables.protector.pii_columns(full_name)
    params = {k: ("[PII]" if k in pii else v) for k, v in request.args.items()}
    audit("readTableRows", "table", full_name, params)
    authz, table = stratus.governance.authorizer, Resource("table", full_name)
    authz.require(who, "table.read", table)
    unmask = authz.allowed(who, "table.unmask", table)

    fmt = request.args.get("format", "json")
    if fmt not in FORMATS:
        raise invalid_parameter("format", f"must be one of {', '.join(FORMATS)}")
    settings = stratus.settings
    raw_limit = request.args.get("limit")
    try:
        limit = int(raw_limit) if raw_limit is not None else settings.default_page_size
    except ValueError:
        raise invalid_parameter("limit", "must be an integer") from None
    if not 1 <= limit <= settings.max_page_size:
        raise invalid_parameter("limit", f"must be between 1 and {settings.max_page_size}")
    fields = None
    if "fields" in request.args:
        fields = [f.strip() for f in request.args["fields"].split(",") if f.strip()]
        if not fields:
            raise invalid_parameter("fields", "must name at least one column")
    page = stratus.tables.rows(
        full_name,
        unmask=unmask,
        fields=fields,
        filters=filters,
        limit=limit,
        cursor=request.args.get("cursor"),
    )
    envelope = {
        "table": full_name,
        "fields": page.table.column_names,
        "masked": page.masked,
        "limit": limit,
        "next_cursor": page.next_cursor,
    }
    return table_response(page.table, fmt, envelope, full_name.replace(".", "-"))
