"""Health, version, the OpenAPI document and the interactive docs page."""

from __future__ import annotations

from importlib.metadata import version as pkg_version

from flask import Blueprint, Response, send_from_directory
from swagger_ui_bundle import swagger_ui_path

from stratus import __version__
from stratus.api.encoding import json_response
from stratus.api.openapi import spec
from stratus.api.state import platform

bp = Blueprint("meta", __name__)

_DOCS_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Stratus API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script></body></html>
"""
_DOCS_INIT = (
    'window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", '
    "deepLinking: true});\n"
)


@bp.get("/health")
def health() -> Response:
    stratus = platform()
    return json_response({"status": "ok", "storage": stratus.storage.scheme})


@bp.get("/version")
def version() -> Response:
    return json_response(
        {
            "name": "stratus",
            "version": __version__,
            "deltalake": pkg_version("deltalake"),
            "duckdb": pkg_version("duckdb"),
        }
    )


@bp.get("/openapi.json")
def openapi() -> Response:
    return json_response(spec())


@bp.get("/docs")
def docs() -> Response:
    return Response(_DOCS_HTML, mimetype="text/html")


@bp.get("/docs/init.js")
def docs_init() -> Response:
    return Response(_DOCS_INIT, mimetype="text/javascript")


@bp.get("/docs/static/<path:filename>")
def docs_static(filename: str) -> Response:
    return send_from_directory(swagger_ui_path, filename, max_age=3600)
