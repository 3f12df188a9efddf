"""Authentication and auditing around every request; the identity handlers act for.

Every request except the open ones (health, version, API description, docs) must carry a bearer
token. Handlers call :func:`audit` to say which securable they touch; the record is written (with
the outcome and status) after the response, allowed, denied or failed alike.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from flask import Flask, Response, g, request

from stratus.api.state import platform
from stratus.catalog.errors import CatalogError
from stratus.security.audit import AuditRecord
from stratus.security.authz import Identity
from stratus.security.governance import LOCAL_ADMIN

OPEN_PATHS = ("/health", "/version", "/openapi.json", "/ui")
# /ui: the Explorer authenticates its own sign-in sessions (stratus.ui)
OPEN_PREFIXES = ("/docs", "/ui/", "/delta-sharing/")  # /delta-sharing: recipient tokens


def current_identity() -> Identity:
    return g.identity  # type: ignore[no-any-return]


def audit(
    action: str,
    securable_type: str | None = None,
    full_name: str | None = None,
    params: dict[str, Any] | None = None,
    service: str = "stratus",
) -> None:
    """Mark this request as touching a securable; recorded when the response is sent."""
    g.audit = {
        "action_name": action,
        "securable_type": securable_type,
        "securable_full_name": full_name,
        "request_params": params if params is not None else request.args.to_dict(flat=False),
        "service_name": service,
    }


def install(app: Flask, *, enabled: bool = True) -> None:
    """Register the hooks; ``enabled=False`` (benchmarks only) acts as the local admin."""

    @app.before_request
    def _authenticate() -> None:
        g.request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
        g.started = dt.datetime.now(dt.UTC)
        if not enabled:
            g.identity = LOCAL_ADMIN
            return
        if request.path in OPEN_PATHS or request.path.startswith(OPEN_PREFIXES):
            return
        try:
            g.identity = platform().governance.authenticator.authenticate(
                request.headers.get("Authorization")
            )
        except CatalogError:
            g.identity = None
            raise

    @app.after_request
    def _record(resp: Response) -> Response:
        resp.headers["X-Request-Id"] = g.get("request_id", "")
        info = g.pop("audit", None)
        if info is None or not enabled:
            return resp
        write_audit(info, resp.status_code)
        return resp


def write_audit(info: dict[str, Any], status: int) -> None:
    """Record what :func:`audit` marked, with the outcome of ``status`` (also used by the
    Explorer for each API handler it calls in-process)."""
    outcome = "allowed" if status < 400 else ("denied" if status in (401, 403, 404) else "error")
    ident = g.get("identity")
    platform().governance.audit.record(
        AuditRecord(
            event_time=g.started,
            request_id=g.request_id,
            user_identity=ident.name if ident else None,
            outcome=outcome,
            status_code=status,
            error_message=g.pop("error_message", None),
            source_ip_address=request.remote_addr,
            user_agent=request.headers.get("User-Agent"),
            **info,
        )
    )
