"""Health, version, the OpenAPI document and the interactive docs page."""

from __future__ import annotations

from importlib.metadata import version as pkg_version
from importlib.resources import files

from flask import Blueprint, Response, current_app, send_from_directory

from stratus import __version__
from stratus.api import uc_credentials
from stratus.api.encoding import json_response
from stratus.api.openapi import spec
from stratus.api.state import platform

bp = Blueprint("meta", __name__)

# Swagger UI 5 (renders OpenAPI 3.1), vendored from npm beside the Explorer's libraries
SWAGGER_UI = str(files("stratus.ui") / "static" / "vendor" / "swagger-ui")

_DOCS_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Stratus API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><p><a href="/docs/unity-catalog">Unity Catalog API</a></p><div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script></body></html>
"""
_DOCS_INIT = (
    'window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", '
    "deepLinking: true, validatorUrl: null});\n"
)
# the UC OSS spec's operations Stratus implements, on a page of their own
_UC_DOCS_HTML = (
    _DOCS_HTML.replace("<title>Stratus API</title>", "<title>Stratus: Unity Catalog API</title>")
    .replace("/docs/init.js", "/docs/unity-catalog/init.js")
    .replace(
        '<a href="/docs/unity-catalog">Unity Catalog API</a>', '<a href="/docs">Stratus API</a>'
    )
)
_UC_DOCS_INIT = _DOCS_INIT.replace("/openapi.json", "/docs/unity-catalog.json")
# Swagger UI, served from this host only: its script and styles are files (no inline script or
# style: checked in Chromium, loading, expanding and "Try it out"), its icons data: SVGs in the
# CSS, "Try it out" calls this API
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
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
    resp = Response(_DOCS_HTML, mimetype="text/html")
    resp.headers["Content-Security-Policy"] = DOCS_CSP
    return resp


@bp.get("/docs/unity-catalog")
def docs_uc() -> Response:
    resp = Response(_UC_DOCS_HTML, mimetype="text/html")
    resp.headers["Content-Security-Policy"] = DOCS_CSP
    return resp


@bp.get("/docs/unity-catalog/init.js")
def docs_uc_init() -> Response:
    return Response(_UC_DOCS_INIT, mimetype="text/javascript")


@bp.get("/docs/unity-catalog.json")
def docs_unity_catalog() -> Response:
    return json_response(uc_credentials.docs_spec(uc_credentials.uc_rules(current_app)))


@bp.get("/docs/init.js")
def docs_init() -> Response:
    return Response(_DOCS_INIT, mimetype="text/javascript")


@bp.get("/docs/static/<path:filename>")
def docs_static(filename: str) -> Response:
    return send_from_directory(SWAGGER_UI, filename, max_age=3600)
