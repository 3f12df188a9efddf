"""API protection (stratus.api.security and the authentication paths): rate limits per principal,
recipient and client IP; request size limits; security headers; CORS; bearer token failures that
all look and cost the same; no tracebacks or secrets in responses and logs."""

from __future__ import annotations

import datetime as dt
import io
import logging
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, Response
from sqlalchemy import event
from werkzeug.test import EnvironBuilder, TestResponse, run_wsgi_app

from stratus.api import create_app, meta
from stratus.api.security import API_CSP, redact
from stratus.api.server import AccessLogger, _Gunicorn
from stratus.config import ConfigError, Settings
from stratus.context import Stratus
from stratus.security.governance import LOCAL_ADMIN

CATALOGS = "/api/2.1/unity-catalog/catalogs"
SHARES = "/delta-sharing/shares"
PROBLEM = "application/problem+json"
JSON = "application/json"
OTHER_IP = {"REMOTE_ADDR": "192.0.2.7"}
# a high limit for everything a test does not look at
HIGH = "10000/minute"


class Lab:
    """Fresh Stratus homes with the settings a test names; all closed at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.made: list[Stratus] = []

    def stratus(self, **settings: Any) -> Stratus:
        home = self.root / f"h{len(self.made)}"
        stratus = Stratus.from_settings(Settings(home=home, **settings))
        self.made.append(stratus)
        return stratus

    def app(self, routes: Callable[[Flask], None] | None = None, **settings: Any) -> Flask:
        stratus = self.stratus(**settings)
        app = create_app(stratus=stratus)
        if routes is not None:
            routes(app)
        return app


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    made = Lab(tmp_path_factory.mktemp("security"))
    yield made
    for stratus in made.made:
        stratus.close()


def platform(app: Flask) -> Stratus:
    return app.extensions["stratus"]  # type: ignore[no-any-return]


def token(app: Flask, principal: str = "admin", days: float = 1) -> str:
    ms = platform(app).governance.metastore
    if principal != "admin":
        try:
            ms.get_principal(principal)
        except Exception:
            ms.create_principal(principal)
    return ms.create_token(principal, days=days)[0]


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def assert_rate_limited(resp: TestResponse) -> dict[str, Any]:
    assert resp.status_code == 429, resp.get_data(as_text=True)
    assert resp.mimetype == PROBLEM
    body = resp.get_json()
    assert body["status"] == 429 and body["type"] == "/problems/rate-limited"
    assert body["title"] == "Too many requests" and "retry in" in body["detail"]
    retry = resp.headers.get("Retry-After")
    assert retry is not None and retry.isdigit() and 1 <= int(retry) <= 60
    return body  # type: ignore[no-any-return]


# ---- rate limits --------------------------------------------------------------------------------
def test_each_principal_has_its_own_budget(lab: Lab) -> None:
    app = lab.app(rate_limit="3/minute", rate_limit_ip=HIGH)
    alice, bob = token(app, "alice"), token(app, "bob")
    client = app.test_client()
    assert [client.get(CATALOGS, headers=bearer(alice)).status_code for _ in range(3)] == [200] * 3
    assert_rate_limited(client.get(CATALOGS, headers=bearer(alice)))
    # another principal from the same address is not affected: the key is the principal
    assert client.get(CATALOGS, headers=bearer(bob)).status_code == 200
    # a second token of alice's shares her budget
    assert_rate_limited(client.get(CATALOGS, headers=bearer(token(app, "alice"))))


def test_failed_and_anonymous_requests_are_limited_per_ip(lab: Lab) -> None:
    app = lab.app(rate_limit=HIGH, rate_limit_ip="3/minute")
    good = token(app)
    client = app.test_client()
    wrong = bearer("stratus_" + secrets.token_urlsafe(32))
    statuses = [
        client.get(CATALOGS, headers=wrong).status_code,
        client.get(CATALOGS).status_code,  # no token
        client.get("/version").status_code,  # an open endpoint
    ]
    assert statuses == [401, 401, 200]
    assert_rate_limited(client.get(CATALOGS, headers=wrong))
    assert_rate_limited(client.get("/openapi.json"))
    # valid credentials are counted per principal, not against the address
    assert client.get(CATALOGS, headers=bearer(good)).status_code == 200
    # the health probe is never limited
    assert all(client.get("/health").status_code == 200 for _ in range(5))
    # another address has its own budget
    assert client.get(CATALOGS, headers=wrong, environ_base=OTHER_IP).status_code == 401
    # unknown paths count too (flask-limiter alone would skip requests without an endpoint)
    assert_rate_limited(client.get("/no/such/path"))


def test_explorer_requests_count_per_principal_after_sign_in(lab: Lab) -> None:
    app = lab.app(rate_limit="4/minute", rate_limit_ip="2/minute")
    client = app.test_client()
    form = client.get("/ui/login")  # anonymous: per address (1 of 2)
    assert form.status_code == 200
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.get_data(as_text=True))
    assert csrf is not None
    signed_in = client.post(
        "/ui/login", data={"csrf_token": csrf.group(1), "token": token(app), "next": "/ui/"}
    )  # (2 of 2)
    assert signed_in.status_code == 303
    # the address is spent, but the signed-in principal has its own budget (4)
    assert [client.get("/ui/").status_code for _ in range(4)] == [200] * 4
    resp = client.get("/ui/")
    assert_rate_limited(resp)
    assert resp.headers["Content-Security-Policy"].startswith("default-src 'self'")  # the UI's
    # static files are never limited
    assert client.get("/ui/static/app.css").status_code == 200


def test_delta_sharing_recipients_and_signed_files(lab: Lab) -> None:
    app = lab.app(rate_limit="3/minute", rate_limit_ip="2/minute", rate_limit_files="4/minute")
    sharing = platform(app).sharing
    _, secret, _ = sharing.admin.create_recipient(LOCAL_ADMIN, "acme")
    _, other, _ = sharing.admin.create_recipient(LOCAL_ADMIN, "globex")
    client = app.test_client()
    assert [client.get(SHARES, headers=bearer(secret)).status_code for _ in range(3)] == [200] * 3
    body = assert_rate_limited(client.get(SHARES, headers=bearer(secret)))
    # Delta Sharing clients read errorCode/message; RFC 9457 members are there as well
    assert body["errorCode"] == "RESOURCE_EXHAUSTED" and body["message"] == body["detail"]
    assert client.get(SHARES, headers=bearer(other)).status_code == 200  # per recipient
    # wrong recipient tokens: per client address
    wrong = bearer("dss_" + secrets.token_urlsafe(32))
    assert [client.get(SHARES, headers=wrong).status_code for _ in range(2)] == [401, 401]
    assert_rate_limited(client.get(SHARES, headers=wrong))
    # signed file URLs: their own per-address budget, untouched by the two above
    files = [client.get(f"/delta-sharing/files/x{i}.y").status_code for i in range(4)]
    assert all(400 <= s < 500 and s != 429 for s in files), files
    assert_rate_limited(client.get("/delta-sharing/files/x.y"))
    assert client.get("/delta-sharing/files/x.y", environ_base=OTHER_IP).status_code != 429


def test_limits_can_be_switched_off(lab: Lab) -> None:
    # one limit off: authenticated requests are unlimited, anonymous ones still limited
    app = lab.app(rate_limit="off", rate_limit_ip="1/minute")
    admin = token(app)
    client = app.test_client()
    assert all(client.get(CATALOGS, headers=bearer(admin)).status_code == 200 for _ in range(8))
    assert client.get("/version").status_code == 200
    assert_rate_limited(client.get("/version"))
    # all off
    off = lab.app(rate_limit_enabled=False, rate_limit="1/minute", rate_limit_ip="1/minute")
    anon = off.test_client()
    assert all(anon.get("/version").status_code == 200 for _ in range(5))
    # from the environment: empty or "off" means no limit; STRATUS_RATE_LIMIT_ENABLED=false
    env = Settings.from_env({"STRATUS_RATE_LIMIT": "", "STRATUS_RATE_LIMIT_IP": "off"})
    assert env.rate_limit == "" and env.rate_limit_ip == ""
    assert not Settings.from_env({"STRATUS_RATE_LIMIT_ENABLED": "false"}).rate_limit_enabled
    with pytest.raises(ConfigError, match=r"STRATUS_RATE_LIMIT: .*not a rate limit"):
        Settings.from_env({"STRATUS_RATE_LIMIT": "lots"})
    with pytest.raises(ConfigError, match="STRATUS_RATE_LIMIT_STORAGE"):
        Settings.from_env({"STRATUS_RATE_LIMIT_STORAGE": "memory"})
    with pytest.raises(ConfigError, match="STRATUS_RATE_LIMIT_STORAGE: unknown storage scheme"):
        lab.app(rate_limit_storage="bogus://host")
    defaults = Settings()
    assert defaults.rate_limit and defaults.rate_limit_ip and defaults.rate_limit_files
    assert defaults.rate_limit_storage == "memory://"


# ---- request sizes ------------------------------------------------------------------------------
def test_oversized_requests_get_problem_documents(lab: Lab) -> None:
    app = lab.app(max_request_bytes=2048)
    admin = token(app)
    client = app.test_client()
    big = b'{"statement": "' + b"x" * 4096 + b'"}'
    resp = client.post(
        "/api/v1/sql", data=big, content_type="application/json", headers=bearer(admin)
    )
    assert resp.status_code == 413 and resp.mimetype == PROBLEM
    assert resp.get_json()["type"] == "/problems/request-too-large"
    assert "2048 bytes" in resp.get_json()["detail"]
    # before authentication, too: nobody gets to upload a huge body
    assert client.post("/api/v1/sql", data=big, content_type="application/json").status_code == 413
    # the Delta Sharing protocol: the same document, with errorCode/message
    resp = client.post(
        f"{SHARES}/s/schemas/d/tables/t/query", data=big, content_type="application/json"
    )
    assert resp.status_code == 413 and resp.get_json()["errorCode"] == "INVALID_PARAMETER_VALUE"
    # a chunked body (no Content-Length) is refused once it passes the limit ...
    status, headers, body = _chunked(app, big, admin)
    assert status.startswith("413") and headers["Content-Type"] == PROBLEM
    assert b"request-too-large" in body
    # ... and one under it is read whole
    status, headers, body = _chunked(app, b'{"statement": "SELECT 1 AS one"}', admin)
    assert status.startswith("200"), body
    # a long query string, many headers, one huge header
    resp = client.get(CATALOGS + "?max_results=1&x=" + "a" * 9000, headers=bearer(admin))
    assert resp.status_code == 414 and resp.mimetype == PROBLEM
    many = {f"X-Pad-{i}": "1" for i in range(120)}
    resp = client.get(CATALOGS, headers={**bearer(admin), **many})
    assert resp.status_code == 431 and resp.mimetype == PROBLEM
    resp = client.get(CATALOGS, headers={**bearer(admin), "X-Pad": "a" * 9000})
    assert resp.status_code == 431 and resp.mimetype == PROBLEM
    # and a normal request still works
    assert client.get(CATALOGS, headers=bearer(admin)).status_code == 200


def _chunked(app: Flask, data: bytes, secret: str) -> tuple[str, Any, bytes]:
    """POST /api/v1/sql with a chunked body, as gunicorn hands it over (wsgi.input_terminated)."""
    environ = EnvironBuilder(
        "/api/v1/sql",
        method="POST",
        content_type=JSON,
        headers={**bearer(secret), "Transfer-Encoding": "chunked"},
    ).get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ["wsgi.input"], environ["wsgi.input_terminated"] = io.BytesIO(data), True
    body, status, headers = run_wsgi_app(app, environ, buffered=True)
    return status, headers, b"".join(body)


# ---- headers ------------------------------------------------------------------------------------
def _cache_routes(app: Flask) -> None:
    def public() -> Response:
        return Response(
            "{}", mimetype="application/json", headers={"Cache-Control": "public, max-age=60"}
        )

    def strict() -> Response:
        return Response(
            "{}", mimetype="application/json", headers={"Cache-Control": "private, no-store"}
        )

    app.add_url_rule("/api/v1/test-only/public", "test_public", public)
    app.add_url_rule("/api/v1/test-only/strict", "test_strict", strict)


def test_security_headers_on_every_response(lab: Lab) -> None:
    app = lab.app(routes=_cache_routes)
    admin = token(app)
    client = app.test_client()
    answers = {
        "json": client.get(CATALOGS, headers=bearer(admin)),
        "401": client.get(CATALOGS),
        "404": client.get("/api/v1/nothing-here", headers=bearer(admin)),
        "health": client.get("/health"),
        "sharing 401": client.get(SHARES),
    }
    for what, resp in answers.items():
        h = resp.headers
        assert h["X-Content-Type-Options"] == "nosniff", what
        assert h["X-Frame-Options"] == "DENY", what
        assert h["Referrer-Policy"] == "no-referrer", what
        assert h["Content-Security-Policy"] == API_CSP, what
        assert "frame-ancestors 'none'" in h["Content-Security-Policy"], what
        assert h["Cache-Control"] == "no-store", what
    # an authenticated answer that said "public" is not cached anyway; a stricter one is kept
    assert (
        client.get("/api/v1/test-only/public", headers=bearer(admin)).headers["Cache-Control"]
        == "no-store"
    )
    strict = client.get("/api/v1/test-only/strict", headers=bearer(admin))
    assert strict.headers["Cache-Control"] == "private, no-store"

    # the Explorer keeps its own policy (and Referrer-Policy, which its Origin checks rely on)
    ui = client.get("/ui/login")
    assert ui.headers["Content-Security-Policy"].startswith("default-src 'self'; script-src 'self'")
    assert ui.headers["Referrer-Policy"] == "same-origin"
    assert ui.headers["X-Frame-Options"] == "DENY" and ui.headers["Cache-Control"] == "no-store"

    # /docs: Swagger UI's own files only; no inline or eval'd script, never framed
    docs = client.get("/docs")
    assert docs.mimetype == "text/html"
    csp = docs.headers["Content-Security-Policy"]
    assert csp == meta.DOCS_CSP
    assert "script-src 'self';" in csp and "unsafe" not in csp and "frame-ancestors 'none'" in csp
    html = docs.get_data(as_text=True)
    assert "<script>" not in html  # every script is a file the policy allows
    for src in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert src.startswith("/docs/"), src
        assert client.get(src).status_code == 200, src
    # static assets stay cacheable
    static = client.get("/docs/static/swagger-ui.css")
    assert (
        "max-age" in static.headers["Cache-Control"]
        and "no-store" not in static.headers["Cache-Control"]
    )


def test_cors_is_off_by_default_and_follows_the_allow_list(lab: Lab) -> None:
    preflight = {
        "Origin": "https://app.example.com",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    }
    default = lab.app().test_client()
    resp = default.options(CATALOGS, headers=preflight)
    assert "Access-Control-Allow-Origin" not in resp.headers
    resp = default.get("/health", headers={"Origin": "https://app.example.com"})
    assert "Access-Control-Allow-Origin" not in resp.headers

    app = lab.app(cors_origins="https://app.example.com, http://localhost:3000")
    admin = token(app)
    client = app.test_client()
    resp = client.options(CATALOGS, headers=preflight)  # no token needed for a preflight
    assert resp.status_code == 200
    assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "authorization" in resp.headers["Access-Control-Allow-Headers"].lower()
    assert "Access-Control-Allow-Credentials" not in resp.headers
    got = client.get(CATALOGS, headers={**bearer(admin), "Origin": "https://app.example.com"})
    assert got.status_code == 200
    assert got.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "Retry-After" in got.headers["Access-Control-Expose-Headers"]
    # an origin that is not listed gets nothing
    evil = client.options(CATALOGS, headers={**preflight, "Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in evil.headers
    # the Explorer (cookies) is never shared cross-origin
    ui = client.get("/ui/login", headers={"Origin": "https://app.example.com"})
    assert "Access-Control-Allow-Origin" not in ui.headers
    with pytest.raises(ConfigError, match="STRATUS_CORS_ORIGINS"):
        Settings.from_env({"STRATUS_CORS_ORIGINS": "app.example.com/path"})


# ---- bearer token failures --------------------------------------------------------------------
class Spy:
    """Counts SHA-256 token hashes and metastore statements that read token rows."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, stratus: Stratus) -> None:
        import stratus.catalog.metastore as metastore
        import stratus.catalog.tokens as tokens

        self.hashes = 0
        self.lookups = 0
        real = metastore.hash_token

        def counting(token: str) -> str:
            self.hashes += 1
            return real(token)

        for module in (metastore, tokens):
            monkeypatch.setattr(module, "hash_token", counting)

        def statement(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
            if "token" in sql.lower():
                self.lookups += 1

        self.engine = stratus.governance.metastore.engine
        self.listener = statement
        event.listen(self.engine, "before_cursor_execute", statement)

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self.listener)

    def measure(self, fn: Callable[[], TestResponse]) -> tuple[TestResponse, int, int]:
        self.hashes = self.lookups = 0
        resp = fn()
        return resp, self.hashes, self.lookups


def _same_answers(answers: dict[str, TestResponse]) -> None:
    def shape(resp: TestResponse) -> tuple[int, bytes, list[tuple[str, str]]]:
        headers = sorted((k, v) for k, v in resp.headers.items() if k != "X-Request-Id")
        return resp.status_code, resp.get_data(), headers

    first, *rest = answers
    for name in rest:
        assert shape(answers[name]) == shape(answers[first]), (first, name)


def test_api_token_failures_look_and_cost_the_same(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = lab.app(rate_limit=HIGH, rate_limit_ip=HIGH)
    stratus = platform(app)
    ms = stratus.governance.metastore
    revoked = token(app, "carol")
    ms.revoke_token(next(t.id for t, name in ms.list_tokens("carol") if name == "carol"))
    expired = token(app, "dave", days=1e-9)
    cases = {
        "unknown": "stratus_" + secrets.token_urlsafe(32),
        "malformed": "x",
        "not ours": secrets.token_urlsafe(48),
        "revoked": revoked,
        "expired": expired,
    }
    client = app.test_client()
    spy = Spy(monkeypatch, stratus)
    try:
        measured = {
            k: spy.measure(lambda v=v: client.get(CATALOGS, headers=bearer(v)))
            for k, v in cases.items()
        }
    finally:
        spy.close()
    answers = {k: r for k, (r, _, _) in measured.items()}
    _same_answers(answers)
    body = answers["unknown"].get_json()
    assert answers["unknown"].status_code == 401 and answers["unknown"].mimetype == PROBLEM
    assert (
        body["detail"] == "invalid or expired token" and body["type"] == "/problems/unauthenticated"
    )
    assert answers["unknown"].headers["WWW-Authenticate"] == 'Bearer realm="stratus"'
    # the same work on every path: the token is hashed and looked up, whatever it is
    work = {k: (hashes, lookups) for k, (_, hashes, lookups) in measured.items()}
    assert len(set(work.values())) == 1, work
    hashes, lookups = work["unknown"]
    assert hashes >= 1 and lookups == 1, work


def test_recipient_token_failures_look_and_cost_the_same(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = lab.app(rate_limit=HIGH, rate_limit_ip=HIGH)
    stratus = platform(app)
    sharing = stratus.sharing
    _, revoked, tok = sharing.admin.create_recipient(LOCAL_ADMIN, "initech")
    assert sharing.admin.revoke_tokens(LOCAL_ADMIN, "initech") == [tok.id]
    _, expired, _ = sharing.admin.create_recipient(LOCAL_ADMIN, "hooli", days=1e-9)
    cases = {
        "unknown": "dss_" + secrets.token_urlsafe(32),
        "malformed": "x",
        "revoked": revoked,
        "expired": expired,
    }
    client = app.test_client()
    spy = Spy(monkeypatch, stratus)
    try:
        measured = {
            k: spy.measure(lambda v=v: client.get(SHARES, headers=bearer(v)))
            for k, v in cases.items()
        }
    finally:
        spy.close()
    answers = {k: r for k, (r, _, _) in measured.items()}
    _same_answers(answers)
    assert answers["unknown"].status_code == 401
    assert answers["unknown"].get_json() == {
        "errorCode": "UNAUTHENTICATED",
        "message": "invalid or expired token",
    }
    work = {k: (hashes, lookups) for k, (_, hashes, lookups) in measured.items()}
    assert len(set(work.values())) == 1 and work["unknown"] == (1, 1), work


def test_oidc_unknown_user_and_wrong_signature_look_the_same(lab: Lab) -> None:
    def pem_and_key() -> tuple[str, Any]:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return pem.decode(), key

    pem, good = pem_and_key()
    _, evil = pem_and_key()
    issuer = "https://idp.example.test"
    app = lab.app(oidc_issuer=issuer, oidc_public_key=pem, rate_limit_ip=HIGH)
    platform(app).governance.metastore.create_principal("ada@example.com")

    def sign(key: Any, email: str | None) -> str:
        now = int(dt.datetime.now(dt.UTC).timestamp())
        claims: dict[str, Any] = {"iss": issuer, "iat": now, "exp": now + 300}
        if email is not None:
            claims["email"] = email
        return jwt.encode(claims, key, algorithm="RS256")

    client = app.test_client()
    assert client.get(CATALOGS, headers=bearer(sign(good, "ada@example.com"))).status_code in (
        200,
        403,
    )
    answers = {
        "unknown principal": client.get(
            CATALOGS, headers=bearer(sign(good, "mallory@example.com"))
        ),
        "no claim": client.get(CATALOGS, headers=bearer(sign(good, None))),
        "wrong key": client.get(CATALOGS, headers=bearer(sign(evil, "ada@example.com"))),
        "garbage": client.get(CATALOGS, headers=bearer("a.b.c")),
    }
    _same_answers(answers)
    assert answers["wrong key"].get_json()["detail"] == "invalid or expired token"


# ---- no tracebacks, no secrets ------------------------------------------------------------------
SIG = secrets.token_urlsafe(24)


def _boom_route(app: Flask) -> None:
    def boom() -> Response:
        from flask import request

        sent = (request.headers.get("Authorization") or "").removeprefix("Bearer ")
        raise RuntimeError(
            f"cannot reach https://acct.blob.core.windows.net/c/f?sv=2024&sig={SIG} "
            f"for token {sent} (password=hunter2-{SIG})"
        )

    app.add_url_rule("/api/v1/test-only/boom", "test_boom", boom)


def test_unexpected_errors_and_logs_hold_no_secrets(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    app = lab.app(routes=_boom_route, rate_limit_ip=HIGH)
    admin = token(app)
    wrong = "stratus_" + secrets.token_urlsafe(32)
    client = app.test_client()
    caplog.set_level(logging.DEBUG)

    resp = client.get("/api/v1/test-only/boom", headers=bearer(admin))
    assert resp.status_code == 500 and resp.mimetype == PROBLEM
    body = resp.get_data(as_text=True)
    assert resp.get_json()["detail"] == "an unexpected error occurred"
    for leak in ("Traceback", "RuntimeError", "hunter2", SIG, admin, "blob.core"):
        assert leak not in body, leak
    # the log keeps the traceback (the operator needs it), without the secrets
    assert "RuntimeError" in caplog.text and "boom" in caplog.text
    assert "sig=<redacted>" in caplog.text and "password=<redacted>" in caplog.text

    # a request with a good token, a wrong one, a failed sign-in to the Explorer, a sharing token
    assert client.get(CATALOGS, headers=bearer(admin)).status_code == 200
    assert client.get(CATALOGS, headers=bearer(wrong)).status_code == 401
    form = client.get("/ui/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert csrf is not None
    failed = client.post("/ui/login", data={"csrf_token": csrf.group(1), "token": wrong})
    assert failed.status_code == 401
    assert wrong not in failed.get_data(as_text=True)
    assert client.get(SHARES, headers=bearer(wrong)).status_code == 401
    # a test server's access line for a signed file URL with a query string
    logging.getLogger("werkzeug").info(
        '127.0.0.1 - - [x] "%s" %s %s',
        f"GET /delta-sharing/files/{SIG}.abc?email=a@b.c HTTP/1.1",
        200,
        1,
    )
    logging.getLogger("stratus.test").warning("a message naming Bearer %s", admin)

    text = caplog.text + "".join(str(r.args) for r in caplog.records)
    for secret in (admin, wrong, SIG, "hunter2", "a@b.c"):
        assert secret not in text, secret
    assert "GET /delta-sharing/files/<signed> HTTP/1.1" in caplog.text


def test_gunicorn_access_log_hides_signed_urls_and_credentials(tmp_path: Path) -> None:
    cfg = _Gunicorn(Settings(home=tmp_path)).cfg
    assert cfg.logger_class is AccessLogger
    sig = secrets.token_urlsafe(24)
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": f"/delta-sharing/files/{sig}.x?token={sig}",
        "PATH_INFO": f"/delta-sharing/files/{sig}.x",
        "QUERY_STRING": f"token={sig}",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "192.0.2.1",
        "HTTP_USER_AGENT": "pytest",
    }
    headers = [("AUTHORIZATION", f"Bearer {sig}")]
    resp = SimpleNamespace(status="200 OK", sent=1, headers=[])
    atoms = AccessLogger(cfg).atoms(
        resp, SimpleNamespace(headers=headers), environ, dt.timedelta(0, 0, 5)
    )
    line = cfg.access_log_format % atoms
    assert '"GET /delta-sharing/files/<signed> HTTP/1.1" 200 1' in line
    # even a format that names them gets nothing
    for name in ("r", "q", "{authorization}i"):
        assert sig not in str(atoms[name])
    assert sig not in line


def test_redact_knows_the_credential_shapes() -> None:
    samples = {
        "Authorization: Bearer abc.def-ghi_jkl": "Bearer <redacted>",
        "token stratus_" + "a" * 43: "stratus_<redacted>",
        "recipient dss_" + "b" * 43: "dss_<redacted>",
        "https://x.blob.core.windows.net/c?sv=1&sig=AbC%2Bd&se=2": "sig=<redacted>",
        "AccountName=x;AccountKey=Zm9vYmFyYmF6;EndpointSuffix=y": "AccountKey=<redacted>",
        "postgresql://stratus:s3cret@db/stratus": "stratus:<redacted>@db",
        "jwt eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln": "<jwt>",
    }
    for text, expected in samples.items():
        assert expected in redact(text), text
    assert redact("a plain message, 42 rows") == "a plain message, 42 rows"


def test_configured_secrets_never_reach_the_logs(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    key, old_a, old_b = (secrets.token_urlsafe(24) for _ in range(3))
    monkeypatch.setenv("STRATUS_MASTER_KEY_PREVIOUS", f"{old_a}, {old_b}")
    lab.app(azure_account_key=key)  # the app is made with these in its settings/environment
    caplog.set_level(logging.INFO)
    log = logging.getLogger("stratus.test")
    log.info("connecting with %s", key)
    try:
        raise ValueError(f"key {old_b} rejected")
    except ValueError:
        log.exception("old key %s", old_a)
    for secret in (key, old_a, old_b):
        assert secret not in caplog.text
    assert caplog.text.count("<redacted>") == 3 and "ValueError" in caplog.text
