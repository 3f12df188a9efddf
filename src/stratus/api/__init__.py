"""Flask app factory: blueprints, problem-document errors, the shared Stratus services."""

from __future__ import annotations

import logging

from flask import Flask, Response, g
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException

from stratus import ui
from stratus.api import (
    audit_api,
    auth,
    compression,
    lineage,
    meta,
    security,
    sharing,
    sql,
    tables,
    tokens,
    uc_credentials,
    unity_catalog,
    weather,
)
from stratus.api.jobs import bp as jobs_bp
from stratus.api.problems import Problem, from_catalog_error, from_http_exception
from stratus.api.state import EXTENSION
from stratus.catalog.errors import CatalogError
from stratus.config import Settings
from stratus.context import Stratus
from stratus.lakehouse.storage import StorageError
from stratus.pii import DecryptError, PiiError

log = logging.getLogger(__name__)


def create_app(
    stratus: Stratus | None = None,
    settings: Settings | None = None,
    *,
    auth_enabled: bool = True,
) -> Flask:
    """The WSGI app. ``auth_enabled=False`` exists only for benchmarks measuring its cost."""
    app = Flask(__name__)
    if isinstance(app.json, DefaultJSONProvider):
        app.json.sort_keys = False
    stratus = stratus or Stratus.from_settings(settings)
    stratus.bootstrap()
    app.extensions[EXTENSION] = stratus
    # size limits, rate limiter, CORS, security headers (its before_request runs first)
    security.install(app, stratus.settings)
    auth.install(app, enabled=auth_enabled)
    compression.install(app, stratus.settings)  # gzip/deflate when asked (stratus.api.compression)
    app.register_blueprint(meta.bp)
    app.register_blueprint(weather.bp)
    app.register_blueprint(unity_catalog.bp)
    app.register_blueprint(uc_credentials.bp)  # UC credential vending
    app.register_blueprint(audit_api.bp)
    app.register_blueprint(tables.bp)
    app.register_blueprint(sql.bp)
    app.register_blueprint(ui.bp)  # the Explorer at /ui (its own sign-in sessions)
    app.register_blueprint(lineage.bp)
    app.register_blueprint(tokens.bp)  # /api/v1/tokens: API tokens
    app.register_blueprint(jobs_bp)  # /api/v1/jobs; starts this process's job workers
    app.register_blueprint(sharing.bp)  # Delta Sharing: /delta-sharing and /api/v1/shares

    @app.errorhandler(CatalogError)
    def _catalog(exc: CatalogError) -> Response:
        g.error_message = exc.message
        return from_catalog_error(exc).response()

    @app.errorhandler(Problem)
    def _problem(exc: Problem) -> Response:
        return exc.response()

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        # a UC spec operation Stratus does not serve: 501 NOT_IMPLEMENTED, not 404
        problem = uc_credentials.not_implemented(exc) or from_http_exception(exc)
        return problem.response()

    @app.errorhandler(StorageError)
    def _storage(exc: StorageError) -> Response:
        log.error("storage unavailable: %s", exc)
        return Problem(
            503,
            "Storage unavailable",
            "the lakehouse storage cannot be reached; retry later",
            type_="/problems/storage-unavailable",
            headers={"Retry-After": "5"},
        ).response()

    @app.errorhandler(PiiError)
    def _pii(exc: PiiError) -> Response:
        # the pii library's messages name key ids, providers and columns, never key material
        # or values (a lost keyring, a wrong STRATUS_MASTER_KEY, a tampered ciphertext)
        g.error_message = str(exc)
        log.error("PII protection: %s", exc)
        if isinstance(exc, DecryptError):
            title, type_ = "Encrypted data unreadable", "/problems/encrypted-data-unreadable"
        else:
            title, type_ = "Encryption key unavailable", "/problems/encryption-key-unavailable"
        return Problem(500, title, str(exc), type_=type_).response()

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return Problem(500, "Internal Server Error", "an unexpected error occurred").response()

    return app
