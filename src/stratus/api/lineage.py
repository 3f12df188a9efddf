"""Lineage graphs: ``GET /api/v1/lineage/tables/{full_name}`` and
``GET /api/v1/lineage/columns/{full_name}/{column}``, with ``direction`` (upstream, downstream or
both; default both) and ``depth`` (1-10, default 3).

Table graph: ``{"root", "direction", "depth", "nodes": [{"id", "type": "table"|"path",
"full_name", "columns", "pii_columns"} | {"id", "type": "path", "full_name": null, "path"}],
"edges": [{"source", "target", "statement_ids", "statement_count", "last_event_time"}]}``.
Column graph: nodes ``{"id": "<table>.<column>", "type": "column", "table", "column", "pii"}``,
edges as above plus ``transformation`` (that of the latest run).

Only what the caller may see: a root table the caller cannot see is a 404 worded as for a table
that does not exist; other tables (and columns of tables) the caller cannot see are left out,
and so is everything reachable only through them. The in-process lineage queue is flushed
first, so a caller sees its own statements.
"""

from __future__ import annotations

from typing import Literal

from flask import Blueprint, Response, request
from pydantic import Field

from stratus.api.auth import audit, current_identity
from stratus.api.encoding import json_response
from stratus.api.params import QueryModel, parse_query
from stratus.api.state import platform
from stratus.lineage.graph import MAX_DEPTH
from stratus.tables.service import qualify

bp = Blueprint("lineage", __name__, url_prefix="/api/v1/lineage")


class GraphParams(QueryModel):
    direction: Literal["upstream", "downstream", "both"] = Field(
        default="both", description="Which way to walk."
    )
    depth: int = Field(default=3, ge=1, le=MAX_DEPTH, description="How many hops.")


@bp.get("/tables/<full_name>")
def table_lineage(full_name: str) -> Response:
    full_name = qualify(full_name)
    audit("getTableLineage", "table", full_name)
    p = parse_query(GraphParams, request.args)
    service = platform().lineage
    service.flush()
    graph = service.table_graph(current_identity(), full_name, p.direction, p.depth)
    return json_response(graph)


@bp.get("/columns/<full_name>/<column>")
def column_lineage(full_name: str, column: str) -> Response:
    full_name = qualify(full_name)
    audit("getColumnLineage", "table", full_name, {**request.args.to_dict(), "column": column})
    p = parse_query(GraphParams, request.args)
    service = platform().lineage
    service.flush()
    graph = service.column_graph(current_identity(), full_name, column, p.direction, p.depth)
    return json_response(graph)
