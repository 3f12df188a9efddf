"""The Explorer's blueprint plumbing: sign-in sessions, CSRF, security headers, error pages.

Every request under ``/ui`` (the API's bearer-token hook leaves these to us) is resolved to the
signed-in principal here, re-checked against the metastore each time (a revoked or expired token,
or a disabled principal, ends the session at once). State-changing requests must carry the
session's CSRF token in the ``csrf_token`` form field (missing: 400, wrong: 403) and, when the
browser sends one, an ``Origin`` equal to ours.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import threading
from typing import Any
from urllib.parse import quote, urlsplit

from flask import Blueprint, Response, abort, current_app, g, redirect, render_template, request
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from stratus.api.problems import Problem, from_catalog_error
from stratus.api.security import check_rate_limit
from stratus.api.state import platform
from stratus.catalog.errors import CatalogError
from stratus.security.authz import Identity
from stratus.ui.bridge import ApiError
from stratus.ui.sessions import Session, SessionStore, load_secret

log = logging.getLogger(__name__)

bp = Blueprint(
    "ui",
    __name__,
    url_prefix="/ui",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

EXTENSION = "stratus.ui"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
PUBLIC_ENDPOINTS = ("ui.login", "ui.login_post", "ui.static")
CSRF_FIELD = "csrf_token"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # (no-referrer makes Chromium send Origin: null)
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}
_store_lock = threading.Lock()


# ---- state ---------------------------------------------------------------------------------
def store() -> SessionStore:
    """This app's session store (created on first use, from the Stratus home)."""
    ext = current_app.extensions
    found = ext.get(EXTENSION)
    if found is None:
        with _store_lock:
            found = ext.get(EXTENSION)
            if found is None:
                home = platform().settings.home
                sessions = platform().governance.metastore.session
                found = ext[EXTENSION] = SessionStore(sessions, load_secret(home))
    return found


def loopback(host: str) -> bool:
    name = urlsplit(f"//{host}").hostname or ""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def secure_cookies() -> bool:
    """Cookies are ``Secure`` except over plain HTTP to a loopback address (local use, tests)."""
    return request.is_secure or not loopback(request.host)


def cookie_name(kind: str = "") -> str:
    base = "stratus-ui" + (f"-{kind}" if kind else "")
    return f"__Host-{base}" if secure_cookies() else base


def set_cookie(resp: BaseResponse, kind: str, value: str, max_age: int | None) -> None:
    resp.set_cookie(
        cookie_name(kind),
        value,
        max_age=max_age,
        path="/",
        secure=secure_cookies(),
        httponly=True,
        samesite="Strict",
    )


def clear_cookie(resp: BaseResponse, kind: str) -> None:
    resp.delete_cookie(
        cookie_name(kind), path="/", secure=secure_cookies(), httponly=True, samesite="Strict"
    )


def identity_for(session: Session) -> Identity | None:
    """The session's principal if its token (API token or OIDC sign-in) still stands."""
    governance = platform().governance
    ms = governance.metastore
    api = session.token_kind == "api"  # noqa: S105 - a kind, not a secret
    principal = ms.session_principal(session.principal, session.token_hash if api else None)
    if principal is None:
        return None
    return governance.authorizer.identity(principal)


def me() -> Identity:
    return g.identity


def session() -> Session:
    return g.ui_session


def csrf_token() -> str:
    sess = g.get("ui_session")
    return sess.csrf if sess is not None else g.get("login_csrf", "")


# ---- hooks ---------------------------------------------------------------------------------
def safe_next(target: str | None) -> str:
    if (
        target
        and (target == "/ui" or target.startswith("/ui/"))
        and "//" not in target
        and "\\" not in target
        and not any(ord(ch) < 32 for ch in target)
    ):
        return target
    return "/ui/"


@bp.before_request
def _resolve_session() -> BaseResponse | None:
    g.ui_session = None
    g.identity = None
    cookie = request.cookies.get(cookie_name())
    if cookie:
        sess = store().get(cookie)
        if sess is not None:
            ident = identity_for(sess)
            if ident is None:
                store().delete(cookie)
            else:
                g.ui_session, g.identity = sess, ident
    # per signed-in principal (the same budget as its API calls), else per client IP
    check_rate_limit(g.identity.name if g.identity is not None else None)
    if request.method not in SAFE_METHODS:
        _check_origin()
        if request.endpoint not in PUBLIC_ENDPOINTS:
            if g.ui_session is None:
                abort(401, "sign in first")
            _check_csrf(g.ui_session.csrf)
        return None
    if g.ui_session is None and request.endpoint not in PUBLIC_ENDPOINTS:
        if request.path.startswith("/ui/api/"):
            abort(401, "sign in to the Explorer first")
        return redirect(f"/ui/login?next={_quote(request.full_path.rstrip('?'))}", 303)
    return None


def _quote(text: str) -> str:
    return quote(text, safe="/")


def _check_origin() -> None:
    origin = request.headers.get("Origin")
    if origin is None:
        return
    hosts = {request.host, request.headers.get("X-Forwarded-Host", "").split(",")[0].strip()}
    if urlsplit(origin).netloc not in hosts - {""}:
        abort(403, "cross-origin form posts are refused")


def _check_csrf(expected: str) -> None:
    sent = request.form.get(CSRF_FIELD)
    if not sent:
        abort(400, "the form is missing its CSRF token: reload the page and try again")
    if not hmac.compare_digest(sent.encode(), expected.encode()):
        abort(403, "the form's CSRF token is not this session's: reload the page and try again")


@bp.after_request
def _headers(resp: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        resp.headers.setdefault(name, value)
    if request.endpoint != "ui.static":
        resp.headers["Cache-Control"] = "no-store"
    resp.vary.add("Cookie")
    return resp


@bp.context_processor
def _globals() -> dict[str, Any]:
    return {"csrf_token": csrf_token, "current": g.get("identity")}


# ---- errors --------------------------------------------------------------------------------
def _wants_json() -> bool:
    return request.path.startswith("/ui/api/")


def error_page(status: int, title: str, detail: str) -> Response:
    if _wants_json():
        return Problem(status, title, detail).response()
    html = render_template("error.html", status=status, title=title, detail=detail)
    return Response(html, status=status, mimetype="text/html")


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    return error_page(status, exc.name, exc.description or exc.name)


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError) -> Response:
    return error_page(exc.status, str(exc.problem.get("title") or "Error"), exc.message)


@bp.errorhandler(CatalogError)
def _catalog_error(exc: CatalogError) -> Response:
    problem = from_catalog_error(exc)
    return error_page(problem.status, problem.title, exc.message)


@bp.errorhandler(Problem)
def _problem(exc: Problem) -> Response:
    return error_page(exc.status, exc.title, exc.detail)


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> Response:
    log.exception("Explorer: unhandled error")
    return error_page(500, "Internal Server Error", "an unexpected error occurred")
