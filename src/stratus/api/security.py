"""Request limits, rate limits, CORS and security headers around every request.

**Rate limits** (flask-limiter; counters in ``STRATUS_RATE_LIMIT_STORAGE``, ``memory://`` by
default, which counts per worker process). Each request is counted once, against one limit,
right after whoever serves it has decided who is calling (:func:`check_rate_limit`):

- an authenticated Stratus principal (bearer token, OIDC, or an Explorer session): per principal,
  ``STRATUS_RATE_LIMIT``; a Delta Sharing recipient: per recipient, the same limit;
- anything without valid credentials (no token, a wrong/expired/revoked one, the open
  endpoints, the Explorer's sign-in page): per client IP, ``STRATUS_RATE_LIMIT_IP``;
- Delta Sharing's signed file downloads (``/delta-sharing/files/...``): per client IP, their own
  ``STRATUS_RATE_LIMIT_FILES``. A recipient's client reads each data file in about ten range
  requests and a query may return hundreds of files, so these would exhaust a per-principal
  budget sized for API calls; the signed URL is a short-lived credential of its own, and the
  separate, higher limit still bounds a flood or a leaked URL.
- ``/health`` is never limited (probes), nor the Explorer's static files.

Over a limit: 429, an RFC 9457 problem document with ``Retry-After``.

**Logs**: every log record of the process is scrubbed of credentials when it is made (bearer
tokens, JWTs, signed file URLs, ``sig=``/``password=``-style values, passwords in URLs, the
configured storage keys and signing secrets), tracebacks included; werkzeug's access lines lose
their query strings (gunicorn's format logs the path only, see :mod:`stratus.api.server`).

**Size limits**: a body over ``STRATUS_MAX_REQUEST_BYTES`` (declared or streamed): 413; a query
string over 8 KiB: 414; more than 100 header fields or one over 8 KiB: 431. (gunicorn refuses a
request line over 4094 bytes by itself, before the app sees it.)

**Headers** on every response (values a blueprint set, e.g. the Explorer's own CSP, are kept):
``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``, ``Referrer-Policy: no-referrer``,
a ``Content-Security-Policy`` that allows nothing (``/docs`` sets the one Swagger UI needs), and
``Cache-Control: no-store`` on everything but the static assets.

**CORS** (flask-cors) is off unless ``STRATUS_CORS_ORIGINS`` lists origins: then the API, the
Delta Sharing protocol and the OpenAPI document answer those origins' requests and preflights
(bearer tokens, no cookies: credentials are never allowed cross-origin).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import math
import os
import re
import threading
import time
import traceback
from typing import Any

import orjson
from flask import Flask, Response, current_app, g, request
from flask_cors import CORS
from flask_limiter import ApplicationLimit, Limiter, RateLimitExceeded
from limits import RateLimitItem, parse_many
from limits.errors import ConfigurationError
from limits.storage import MemoryStorage
from werkzeug.exceptions import (
    RequestEntityTooLarge,
    RequestHeaderFieldsTooLarge,
    RequestURITooLarge,
    TooManyRequests,
)

from stratus.api.problems import PROBLEM_JSON, Problem
from stratus.config import ConfigError, Settings

log = logging.getLogger(__name__)
EXTENSION = "stratus.limiter"
FAST_EXTENSION = "stratus.limits"
KEY_PREFIX = "stratus"
MAX_QUERY_BYTES = 8 * 1024
MAX_HEADER_FIELDS = 100
MAX_HEADER_BYTES = 8 * 1024
UNLIMITED_PATHS = ("/health",)
# the static assets: cacheable, never limited
STATIC_ENDPOINTS = ("meta.docs_static", "ui.static")
SHARING_PREFIX = "/delta-sharing/"

# nothing may load, frame or be framed: API answers are data, never documents
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": API_CSP,
}
# the browser may read these from a cross-origin response (when CORS is on)
EXPOSED_HEADERS = [
    "Retry-After",
    "X-Request-Id",
    "Location",
    "Content-Disposition",
    "Delta-Table-Version",
    "delta-sharing-capabilities",
]


# ---- rate limits ------------------------------------------------------------------------------
class QuietMemoryStorage(MemoryStorage):
    """``memory://`` counters that sweep expired keys once a second instead of starting a new
    timer thread every 10 ms under load (limits' MemoryStorage does; a thread start per few
    requests was the largest per-request cost of the limiter). Counts are unchanged: reads
    drop expired counters themselves; the sweep only frees memory."""

    STORAGE_SCHEME = ["stratus-memory"]
    SWEEP_SECONDS = 1.0

    def _MemoryStorage__schedule_expiry(self) -> None:  # replaces limits' private hook
        timer = self.timer
        if not timer.is_alive():
            # limits' own (name-mangled) sweep; limits is pinned <6 and the hook is checked in
            # _storage_uri, so a release without it falls back to the plain storage
            sweep = getattr(self, "_MemoryStorage__expire_events")  # noqa: B009
            self.timer = threading.Timer(self.SWEEP_SECONDS, sweep)
            self.timer.daemon = True
            self.timer.start()


def _storage_uri(uri: str) -> str:
    # the quiet variant only where limits' MemoryStorage has the hook it replaces
    hooked = hasattr(MemoryStorage, "_MemoryStorage__schedule_expiry")
    return "stratus-memory://" if uri == "memory://" and hooked else uri


def _client_ip() -> str:
    return request.remote_addr or "unknown"


def _principal_key() -> str:
    return str(g.get("rate_key") or "")


def _not(kind: str) -> Any:
    return lambda: g.get("rate_kind") != kind


def _limiter(settings: Settings) -> Limiter | None:
    limits = (settings.rate_limit, settings.rate_limit_ip, settings.rate_limit_files)
    if not settings.rate_limit_enabled or not any(limits):
        return None
    return Limiter(
        _client_ip,
        application_limits=[
            ApplicationLimit(
                settings.rate_limit,
                key_function=_principal_key,
                scope="principal",
                exempt_when=_not("principal"),
            ),
            ApplicationLimit(
                settings.rate_limit_ip, key_function=_client_ip, scope="ip", exempt_when=_not("ip")
            ),
            ApplicationLimit(
                settings.rate_limit_files,
                key_function=_client_ip,
                scope="files",
                exempt_when=_not("files"),
            ),
        ],
        storage_uri=_storage_uri(settings.rate_limit_storage),
        strategy="sliding-window-counter",
        headers_enabled=False,  # Retry-After on 429s is ours; no X-RateLimit-* on every answer
        swallow_errors=True,  # counter storage down (Redis): logged, and requests go through
        key_prefix=KEY_PREFIX,
        # unmatched URLs count too (flask-limiter exempts requests without an endpoint)
        request_identifier=lambda: request.endpoint or "-",
    )


class _Exceeded(RateLimitExceeded):
    """Over a limit (the same exception flask-limiter raises, handled by ``_rate_limited``)."""

    def __init__(self, item: RateLimitItem) -> None:
        TooManyRequests.__init__(self, description=str(item))
        self.limit = item  # type: ignore[assignment]
        self.response = None


class FastLimits:
    """The three limits checked by calling the limits library's strategy directly, with the
    keys, scopes and sliding-window counters flask-limiter would use (its per-request filtering
    and evaluation of application limits was the costliest part of every request). Storage
    failures are logged and the request goes through, as with flask-limiter's swallow_errors."""

    def __init__(self, limiter: Limiter, settings: Settings) -> None:
        self.strategy = limiter.limiter
        self.items = {
            kind: sorted(parse_many(value)) if value else []
            for kind, value in (
                ("principal", settings.rate_limit),
                ("ip", settings.rate_limit_ip),
                ("files", settings.rate_limit_files),
            )
        }

    def check(self, kind: str, key: str) -> None:
        items = self.items.get(kind)
        if not items or not key:
            return
        try:
            failed = [i for i in items if not self.strategy.hit(i, KEY_PREFIX, key, kind)]
            if failed:
                item = failed[0]
                reset = self.strategy.get_window_stats(item, KEY_PREFIX, key, kind).reset_time
                g.rate_retry_after = max(1, math.ceil(reset - time.time()))
        except Exception:  # counter storage down (Redis): logged, and requests go through
            log.exception("rate limit check failed; request let through")
            return
        if failed:
            raise _Exceeded(item)


def check_rate_limit(principal: str | None = None, *, kind: str | None = None) -> None:
    """Count this request against its rate limit (429 when over), once per request.

    ``principal``: who was authenticated (a Stratus principal's name, or ``recipient:<id>``), or
    None for a request without valid credentials (per client IP). ``kind="files"``: a signed file
    download (per client IP, its own limit)."""
    if g.get("_rate_checked"):
        return
    g._rate_checked = True
    limits: FastLimits | None = current_app.extensions.get(FAST_EXTENSION)
    if limits is None or request.path in UNLIMITED_PATHS:
        return
    if (request.endpoint or "-").rsplit(".", 1)[-1] == "static":
        return  # static files (flask-limiter's rule: an endpoint named "static" is exempt)
    if kind is None:
        kind = "principal" if principal else "ip"
    g.rate_kind = kind
    if principal:
        # hashed: principal names may be e-mail addresses, and keys show up in limiter logs
        key = _principal_keys.get(principal)
        if key is None:
            key = "p-" + hashlib.sha256(principal.encode()).hexdigest()[:24]
            if len(_principal_keys) < 10_000:
                _principal_keys[principal] = key
        g.rate_key = key
    else:
        key = _client_ip()
    limits.check(kind, key)


_principal_keys: dict[str, str] = {}


def _buffer_chunked(limit: int) -> None:
    """Read a chunked body (no Content-Length) up to ``limit`` bytes: over it, 413; else the
    request goes on with the body buffered and its length known. (werkzeug alone would hand
    handlers the first ``limit`` bytes of a longer body and fail only on a second read.)"""
    env = request.environ
    if not env.get("wsgi.input_terminated"):
        return  # the server does not end the stream: werkzeug reads nothing, safely
    stream, chunks, size = env["wsgi.input"], [], 0
    while size <= limit:
        block = stream.read(min(1 << 16, limit + 1 - size))
        if not block:
            break
        chunks.append(block)
        size += len(block)
    if size > limit:
        raise RequestEntityTooLarge()
    env["wsgi.input"] = io.BytesIO(b"".join(chunks))
    env["CONTENT_LENGTH"] = str(size)
    env.pop("HTTP_TRANSFER_ENCODING", None)


def _retry_after(limiter: Limiter | None) -> int:
    known = g.get("rate_retry_after")
    if known is not None:
        return int(known)
    current = limiter.current_limit if limiter is not None else None
    if current is None:
        return 60
    return max(1, math.ceil(current.reset_at - time.time()))


def problem_response(problem: Problem) -> Response:
    """The problem document; under /delta-sharing also with the protocol's ``errorCode`` and
    ``message`` members, which Delta Sharing clients read."""
    if not request.path.startswith(SHARING_PREFIX):
        return problem.response()
    doc = problem.to_dict()
    doc["errorCode"] = {413: "INVALID_PARAMETER_VALUE", 429: "RESOURCE_EXHAUSTED"}.get(
        problem.status, "INVALID_PARAMETER_VALUE"
    )
    doc["message"] = problem.detail
    resp = Response(orjson.dumps(doc), status=problem.status, mimetype=PROBLEM_JSON)
    resp.headers.update(problem.headers)
    return resp


# ---- logs ---------------------------------------------------------------------------------------
_SIGNED_FILE = re.compile(r"(/delta-sharing/files/)[^\s?\"']+")
_REQUEST_LINE = re.compile(r"\b([A-Z]{3,7}) (\S+) (HTTP/\d(?:\.\d)?)")
# credentials by their shape: Stratus and Delta Sharing tokens, bearer values, JWTs, secrets in
# query strings and connection strings, passwords in URLs, signed file URLs
_SECRETS = (
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 <redacted>"),
    (re.compile(r"\b(stratus|dss)_[A-Za-z0-9_-]{16,}"), r"\1_<redacted>"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), "<jwt>"),
    (
        re.compile(
            r"(?i)\b(sig|signature|secret|password|passwd|pwd|token|access_token|api_?key|"
            r"accountkey|sharedaccesssignature|client_secret)=([^&\s;'\",]+)"
        ),
        r"\1=<redacted>",
    ),
    (re.compile(r"(://[^/\s:@]+):[^@\s/]+@"), r"\1:<redacted>@"),
    (_SIGNED_FILE, r"\1<signed>"),
)
_KNOWN_SECRETS: set[str] = set()
# secrets read from the environment elsewhere (PII keys, cookie and URL signing)
SECRET_VARIABLES = (
    "STRATUS_MASTER_KEY",
    "STRATUS_MASTER_KEY_PREVIOUS",
    "STRATUS_UI_SECRET",
    "STRATUS_SHARING_SECRET",
)


def redact(text: str) -> str:
    """``text`` without anything that looks like a credential, nor the configured storage keys."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    for secret in _KNOWN_SECRETS:
        if secret in text:
            text = text.replace(secret, "<redacted>")
    return text


def redact_request_line(line: str) -> str:
    """``GET /path?query HTTP/1.1`` without the query (filters may carry PII) and without a
    signed file URL's token (a credential)."""

    def clean(m: re.Match[str]) -> str:
        target = _SIGNED_FILE.sub(r"\1<signed>", m.group(2).partition("?")[0])
        return f"{m.group(1)} {target} {m.group(3)}"

    return _REQUEST_LINE.sub(clean, line)


class RequestLineFilter(logging.Filter):
    """On werkzeug's logger (``stratus serve --dev``, test servers), whose access lines hold the
    raw request line: logs :func:`redact_request_line` of it instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        with contextlib.suppress(Exception):  # a malformed record is logged as it is
            message = record.getMessage()
            clean = redact_request_line(message)
            if clean != message:
                record.msg, record.args = clean, None
        return True


def _install_log_redaction(settings: Settings) -> None:
    """Every log record of this process is scrubbed of credentials (:func:`redact`) when it is
    made, its message and its traceback alike, whatever handler writes it; werkzeug's access
    lines also lose their query strings."""
    env = os.environ
    for value in (
        settings.azure_account_key,
        settings.azure_sas_token,
        settings.azure_connection_string,
        *(env.get(name) for name in SECRET_VARIABLES),
    ):
        for part in re.split(r"[,\s]+", value or ""):  # lists: STRATUS_MASTER_KEY_PREVIOUS
            if len(part) >= 8:
                _KNOWN_SECRETS.add(part)
    werkzeug = logging.getLogger("werkzeug")
    if not any(isinstance(f, RequestLineFilter) for f in werkzeug.filters):
        werkzeug.addFilter(RequestLineFilter())
    factory = logging.getLogRecordFactory()
    if getattr(factory, "stratus_redacting", False):
        return

    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        with contextlib.suppress(Exception):  # never lose a record to its scrubbing
            message = record.getMessage()
            clean = redact(message)
            if clean != message:
                record.msg, record.args = clean, None
            if record.exc_info and not record.exc_text:
                lines = traceback.format_exception(*record.exc_info)
                record.exc_text = redact("".join(lines).rstrip("\n"))
        return record

    # a marker on the factory function: installing twice is detected by it
    make_record.stratus_redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(make_record)


# ---- install ----------------------------------------------------------------------------------
def install(app: Flask, settings: Settings) -> None:
    """Size limits, the rate limiter, CORS and the security headers, for every response."""
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    _install_log_redaction(settings)
    limiter = _limiter(settings)
    if limiter is not None:
        try:
            limiter.init_app(app)
        except ConfigurationError as exc:  # an unknown scheme, its client package missing
            raise ConfigError(f"STRATUS_RATE_LIMIT_STORAGE: {exc}") from None
        # not before every request: check_rate_limit runs it once the caller is known
        app.before_request_funcs[None].remove(limiter._check_request_limit)
        app.extensions[EXTENSION] = limiter
        app.extensions[FAST_EXTENSION] = FastLimits(limiter, settings)

    origins = settings.cors_origin_list
    if origins:
        CORS(
            app,
            resources={r"/api/*": {}, r"/delta-sharing/*": {}, r"/openapi\.json": {}},
            origins=origins,
            supports_credentials=False,
            expose_headers=EXPOSED_HEADERS,
            max_age=600,
        )

    @app.before_request
    def _sizes() -> None:
        length = request.content_length
        if length is not None and length > settings.max_request_bytes:
            raise RequestEntityTooLarge()
        if "chunked" in request.headers.get("Transfer-Encoding", "").lower():
            _buffer_chunked(settings.max_request_bytes)
        if len(request.query_string) > MAX_QUERY_BYTES:
            raise RequestURITooLarge()
        headers = request.headers
        if len(headers) > MAX_HEADER_FIELDS or any(
            len(k) + len(v) > MAX_HEADER_BYTES for k, v in headers.items()
        ):
            raise RequestHeaderFieldsTooLarge()

    @app.errorhandler(RateLimitExceeded)
    def _rate_limited(exc: RateLimitExceeded) -> Response:
        wait = _retry_after(current_app.extensions.get(EXTENSION))
        who = {"principal": "caller", "files": "client address (file downloads)"}.get(
            g.get("rate_kind", ""), "client address"
        )
        return problem_response(
            Problem(
                429,
                "Too many requests",
                f"rate limit of {exc.description} per {who} exceeded; retry in {wait} s",
                type_="/problems/rate-limited",
                headers={"Retry-After": str(wait)},
            )
        )

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(exc: RequestEntityTooLarge) -> Response:
        limit = settings.max_request_bytes
        return problem_response(
            Problem(
                413,
                "Request body too large",
                f"the request body is larger than the limit of {limit} bytes "
                "(STRATUS_MAX_REQUEST_BYTES)",
                type_="/problems/request-too-large",
            )
        )

    @app.errorhandler(RequestURITooLarge)
    def _uri_too_long(exc: RequestURITooLarge) -> Response:
        return problem_response(
            Problem(
                414,
                "Query string too long",
                f"the query string is longer than {MAX_QUERY_BYTES} bytes",
                type_="/problems/uri-too-long",
            )
        )

    @app.errorhandler(RequestHeaderFieldsTooLarge)
    def _headers_too_large(exc: RequestHeaderFieldsTooLarge) -> Response:
        return problem_response(
            Problem(
                431,
                "Request headers too large",
                f"at most {MAX_HEADER_FIELDS} header fields of at most {MAX_HEADER_BYTES} "
                "bytes each",
                type_="/problems/headers-too-large",
            )
        )

    @app.after_request
    def _security_headers(resp: Response) -> Response:
        headers = resp.headers
        for name, value in SECURITY_HEADERS.items():
            headers.setdefault(name, value)
        if request.is_secure:
            headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        if request.endpoint not in STATIC_ENDPOINTS and "no-store" not in (
            headers.get("Cache-Control") or ""
        ):
            headers["Cache-Control"] = "no-store"
        return resp
