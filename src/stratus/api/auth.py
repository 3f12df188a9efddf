"""Authentication and auditing around every request; the identity handlers act for.

Every request except the open ones (health, version, API description, docs) and the OPTIONS
requests Flask answers itself (CORS preflights) must carry a bearer token. Once the caller is
known, or has failed to authenticate, the request is counted against its rate limit
(:mod:`stratus.api.security`). Handlers call :func:`audit` to say which securable they touch;
the record is written (with the outcome and status) after the response, allowed, denied or
failed alike.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from flask import Flask, Response, g, request

from stratus.api.security import check_rate_limit
from stratus.api.state import platform
from stratus.catalog.errors import CatalogError
from stratus.security.audit import AuditRecord
from stratus.security.authz import Identity
from stratus.security.governance import LOCAL_ADMIN

OPEN_PATHS = ("/health", "/version", "/openapi.json", "/ui")
# /ui: the Explorer authenticates its own sign-in sessions (stratus.ui)
OPEN_PREFIXES = ("/docs", "/ui/", "/delta-sharing/")  # /delta-sharing: recipient tokens


# blueprints under OPEN_PREFIXES that authenticate their callers themselves (and then call
# check_rate_limit): the Explorer's sessions, Delta Sharing's recipient tokens
SELF_AUTHENTICATING = ("ui", "sharing.delta_sharing")


def _automatic_options() -> bool:
    """An OPTIONS request Flask answers by itself (the allowed methods; a CORS preflight):
    it runs no handler, so it needs no credentials."""
    rule = request.url_rule
    return (
        request.method == "OPTIONS"
        and rule is not None
        and bool(getattr(rule, "provide_automatic_options", False))
    )


def current_identity() -> Identity:
    return g.identity


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
            check_rate_limit(LOCAL_ADMIN.name)
            return
        if _automatic_options():
            check_rate_limit()  # per client IP
            return
        if request.path in OPEN_PATHS or request.path.startswith(OPEN_PREFIXES):
            if request.blueprint not in SELF_AUTHENTICATING:
                check_rate_limit()  # per client IP (/health is never limited)
            return  # else the blueprint authenticates, then checks the rate limit
        try:
            g.identity = platform().governance.authenticator.authenticate(
                request.headers.get("Authorization")
            )
        except CatalogError:
            g.identity = None
            check_rate_limit()  # failed authentication: per client IP
            raise
        check_rate_limit(g.identity.name)

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
