"""Authentication (API tokens, OIDC/JWT) and authorization (grants, groups) over the weather API."""

from __future__ import annotations

import http.server
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from deltalake import DeltaTable
from flask import Flask
from flask.testing import FlaskClient

from stratus.api import create_app
from stratus.catalog.metastore import hash_token
from stratus.cli import main
from stratus.config import Settings
from stratus.context import Stratus
from stratus.security.audit import AUDIT
from tests.conftest import client_for, load_sample, token_for

CITY = "new-york-jfk"
WEEK = f"city_id={CITY}&start=2013-06-01&end=2013-06-07"
WEATHER = f"/api/v1/weather?{WEEK}"
SUMMARY = f"/api/v1/weather/summary?{WEEK}"
CITIES = "/api/v1/cities"
ISSUER = "https://idp.example.test"
AUDIENCE = "stratus-api"


def grant(stratus: Stratus, kind: str, full_name: str, principal: str, *privs: str) -> None:
    ms = stratus.governance.metastore
    ms.update_grants(
        kind, ms.securable(kind, full_name).id, [{"principal": principal, "add": list(privs)}]
    )


def audit_row(stratus: Stratus, request_id: str) -> dict[str, Any]:
    stratus.governance.audit.flush()
    table = DeltaTable(stratus.lakehouse.url(AUDIT)).to_pyarrow_table()
    found = [r for r in table.to_pylist() if r["request_id"] == request_id]
    assert len(found) == 1, f"{len(found)} audit records for request {request_id}"
    return found[0]


# ---- API tokens ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def loaded_local(
    tmp_path_factory: pytest.TempPathFactory, sample_csv: Path, metastore_url: str | None
) -> Iterator[Stratus]:
    """This module's own loaded lakehouse (conftest's, per metastore): the governance tests run
    on SQLite and on PostgreSQL."""
    home = tmp_path_factory.mktemp("auth") / "home"
    stratus = load_sample(
        Stratus.from_settings(Settings(home=home, metastore_url=metastore_url)), sample_csv
    )
    yield stratus
    stratus.close()


@pytest.fixture(scope="module")
def app(loaded_local: Stratus) -> Flask:
    return create_app(stratus=loaded_local)


@pytest.fixture(scope="module")
def admin_client(app: Flask, loaded_local: Stratus) -> FlaskClient:
    return client_for(app, token_for(loaded_local))


UNKNOWN = "stratus_" + "A" * 43
BAD_HEADERS = {
    "missing": None,
    "empty": "",
    "basic scheme": "Basic YWRtaW46YWRtaW4=",
    "bearer without token": "Bearer",
    "bearer with blank token": "Bearer    ",
    "token without scheme": UNKNOWN,
    "unknown api token": f"Bearer {UNKNOWN}",
    "not a token": "Bearer hello",
    "jwt shape, no oidc configured": "Bearer aaa.bbb.ccc",
}


@pytest.mark.parametrize("header", BAD_HEADERS.values(), ids=BAD_HEADERS.keys())
@pytest.mark.parametrize("path", [WEATHER, SUMMARY, CITIES, "/api/v1/audit"])
def test_no_valid_token_is_401_with_www_authenticate(
    app: Flask, header: str | None, path: str
) -> None:
    headers = {} if header is None else {"Authorization": header}
    resp = app.test_client().get(path, headers=headers)
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer ")
    assert resp.headers["Content-Type"] == "application/problem+json"
    body = resp.get_json()
    assert body["status"] == 401 and "data" not in body
    assert UNKNOWN not in resp.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/health", "/version", "/openapi.json", "/docs"])
def test_open_paths_need_no_token(app: Flask, path: str) -> None:
    resp = app.test_client().get(path)
    assert resp.status_code == 200
    assert "WWW-Authenticate" not in resp.headers


def test_a_valid_token_is_accepted(admin_client: FlaskClient) -> None:
    resp = admin_client.get(WEATHER)
    assert resp.status_code == 200
    assert resp.get_json()["count"] == 7 * 24


def test_the_scheme_is_case_insensitive(app: Flask, loaded_local: Stratus) -> None:
    token = token_for(loaded_local)
    resp = app.test_client().get(WEATHER, headers={"Authorization": f"bearer {token}"})
    assert resp.status_code == 200


def test_expired_token_is_401(app: Flask, loaded_local: Stratus) -> None:
    ms = loaded_local.governance.metastore
    expired, _ = ms.create_token("admin", days=-1 / 24)  # expired an hour ago
    resp = client_for(app, expired).get(WEATHER)
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer ")
    assert "expired" in resp.get_json()["detail"]


def test_revocation_is_effective_immediately(app: Flask, loaded_local: Stratus) -> None:
    ms = loaded_local.governance.metastore
    secret, tok = ms.create_token("admin", days=1)
    other = token_for(loaded_local)
    client = client_for(app, secret)
    assert client.get(WEATHER).status_code == 200  # resolved, and now cached
    ms.revoke_token(tok.id)
    resp = client.get(WEATHER)  # no sleep: the very next request
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer ")
    assert client_for(app, other).get(WEATHER).status_code == 200  # only that token is gone


def test_disabled_principal_tokens_stop_working(app: Flask, loaded_local: Stratus) -> None:
    ms = loaded_local.governance.metastore
    name = f"auth-leaver-{uuid.uuid4().hex[:6]}"
    ms.create_principal(name, is_admin=True)
    secret, _ = ms.create_token(name, days=1)
    assert client_for(app, secret).get(WEATHER).status_code == 200
    from sqlalchemy import update

    from stratus.catalog import models as m

    with ms.session() as s:
        s.execute(update(m.Principal).where(m.Principal.name == name).values(active=False))
        ms._bump(s)
    assert client_for(app, secret).get(WEATHER).status_code == 401


def test_tokens_are_stored_only_as_hashes(tmp_path: Path) -> None:
    stratus = Stratus.from_settings(Settings(home=tmp_path / "home"))
    try:
        secret = token_for(stratus)
        tokens = stratus.governance.metastore.list_tokens("admin")
        assert tokens and all(t.token_hash != secret for t, _ in tokens)
        stratus.governance.metastore.engine.dispose()  # let SQLite checkpoint what it can
        data = b"".join(p.read_bytes() for p in (tmp_path / "home").glob("metastore.db*"))
    finally:
        stratus.close()
    assert hash_token(secret).encode() in data  # the scan does see the token rows
    assert secret.encode() not in data
    assert secret.removeprefix("stratus_").encode() not in data
    assert secret[8:30].encode() not in data  # not even a long fragment of the secret part


def test_bootstrap_writes_an_owner_only_admin_token(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {"STRATUS_HOME": str(home), "STRATUS_LOG_LEVEL": "WARNING"}
    first = CliRunner().invoke(main, ["admin", "bootstrap"], env=env)
    assert first.exit_code == 0, first.output
    path = home / "admin.token"
    assert "created" in first.output and str(path.resolve()) in first.output
    assert path.stat().st_mode & 0o777 == 0o600
    token = path.read_text().strip()
    assert token.startswith("stratus_") and len(token) >= 40

    again = CliRunner().invoke(main, ["admin", "bootstrap"], env=env)
    assert again.exit_code == 0 and "kept" in again.output
    assert path.read_text().strip() == token  # a valid token is not replaced

    path.chmod(0o644)
    path.write_text("stratus_revoked-or-garbage\n")
    third = CliRunner().invoke(main, ["admin", "bootstrap"], env=env)
    assert third.exit_code == 0 and "created" in third.output
    assert path.stat().st_mode & 0o777 == 0o600  # tightened again on rewrite
    assert path.read_text().strip() not in (token, "stratus_revoked-or-garbage")

    stratus = Stratus.from_settings(Settings(home=home))
    try:
        resp = client_for(create_app(stratus=stratus), path.read_text().strip()).get(CITIES)
        assert resp.status_code == 200 and resp.get_json() == {"count": 0, "data": []}
        db = b"".join(p.read_bytes() for p in home.glob("metastore.db*"))
        assert token.encode() not in db
    finally:
        stratus.close()


# ---- OIDC / JWT ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    good = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    evil = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = (
        good.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return {"good": good, "evil": evil, "pem": pem}


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "ada-123",
        "email": "ada@example.com",
        "iat": now,
        "exp": now + 300,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(key: Any, kid: str | None = None, **overrides: Any) -> str:
    headers = {"kid": kid} if kid else None
    return jwt.encode(claims(**overrides), key, algorithm="RS256", headers=headers)


def oidc_stratus(home: Path, **oidc: str) -> Stratus:
    settings = Settings(home=home, oidc_issuer=ISSUER, oidc_audience=AUDIENCE, **oidc)
    stratus = Stratus.from_settings(settings)
    stratus.bootstrap()
    ms = stratus.governance.metastore
    ms.create_principal("ada@example.com")  # a reader of the main catalog
    grant(stratus, "catalog", "main", "ada@example.com", "USE CATALOG", "USE SCHEMA", "SELECT")
    ms.create_principal("bob@example.com")  # exists, holds nothing
    return stratus


@pytest.fixture(scope="module")
def pem_app(
    tmp_path_factory: pytest.TempPathFactory, keys: dict[str, Any]
) -> Iterator[tuple[Flask, Stratus]]:
    stratus = oidc_stratus(
        tmp_path_factory.mktemp("oidc-pem") / "home", oidc_public_key=keys["pem"]
    )
    yield create_app(stratus=stratus), stratus
    stratus.close()


def test_oidc_token_acts_as_the_mapped_principal(
    pem_app: tuple[Flask, Stratus], keys: dict[str, Any]
) -> None:
    app, stratus = pem_app
    client = client_for(app, sign(keys["good"]))
    resp = client.get(CITIES)
    assert resp.status_code == 200 and resp.get_json()["count"] == 0
    row = audit_row(stratus, resp.headers["X-Request-Id"])
    assert row["user_identity"] == "ada@example.com" and row["outcome"] == "allowed"
    # not an admin: the audit log is off limits
    assert client.get("/api/v1/audit").status_code == 403
    # bob is known but holds nothing: main.weather.cities is invisible to him
    bob = client_for(app, sign(keys["good"], email="bob@example.com")).get(CITIES)
    assert bob.status_code == 404


def test_oidc_pem_key_may_be_a_file(
    tmp_path: Path, keys: dict[str, Any], pem_app: tuple[Flask, Stratus]
) -> None:
    pem_file = tmp_path / "idp.pem"
    pem_file.write_text(keys["pem"])
    home = pem_app[1].settings.home  # same metastore: ada exists there
    stratus = Stratus.from_settings(
        Settings(
            home=home,
            oidc_issuer=ISSUER,
            oidc_audience=AUDIENCE,
            oidc_public_key=str(pem_file),
        )
    )
    try:
        assert (
            client_for(create_app(stratus=stratus), sign(keys["good"])).get(CITIES).status_code
            == 200
        )
    finally:
        stratus.close()


def _unsigned(**overrides: Any) -> str:
    return jwt.encode(claims(**overrides), None, algorithm="none")


BAD_JWTS = {
    "wrong issuer": lambda k: sign(k["good"], iss="https://evil.example.test"),
    "wrong audience": lambda k: sign(k["good"], aud="some-other-api"),
    "no audience": lambda k: sign(k["good"], aud=None),
    "expired": lambda k: sign(k["good"], exp=int(time.time()) - 60, iat=int(time.time()) - 600),
    "no expiry": lambda k: sign(k["good"], exp=None),
    "not yet valid": lambda k: sign(k["good"], nbf=int(time.time()) + 600),
    "bad signature": lambda k: sign(k["evil"]),
    "tampered payload": lambda k: _tamper(sign(k["good"]), email="bob@example.com"),
    "alg none": lambda k: _unsigned(),
    "hs256 with the public key": lambda k: _hs256(k["pem"]),
    "unknown principal": lambda k: sign(k["good"], email="mallory@example.com"),
    "no principal claim": lambda k: sign(k["good"], email=None),
    "principal claim not a string": lambda k: sign(k["good"], email=["ada@example.com"]),
}


def _tamper(token: str, **changes: Any) -> str:
    header, payload, signature = token.split(".")
    data = json.loads(jwt.utils.base64url_decode(payload))
    data.update(changes)
    forged = jwt.utils.base64url_encode(json.dumps(data).encode()).decode()
    return f"{header}.{forged}.{signature}"


def _hs256(pem: str) -> str:
    import base64
    import hashlib
    import hmac

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims()).encode())
    mac = hmac.new(pem.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


@pytest.mark.parametrize("make", BAD_JWTS.values(), ids=BAD_JWTS.keys())
def test_oidc_rejects_bad_tokens(
    pem_app: tuple[Flask, Stratus], keys: dict[str, Any], make: Any
) -> None:
    app, _ = pem_app
    assert client_for(app, sign(keys["good"])).get(CITIES).status_code == 200  # control
    resp = client_for(app, make(keys)).get(CITIES)
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer ")
    assert "data" not in resp.get_json()


class _JwksServer:
    """A tiny JWKS endpoint on 127.0.0.1 (counts the fetches)."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        outer = self
        self.hits = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                body = json.dumps(jwks).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _JwksServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_oidc_with_a_jwks_url(tmp_path: Path, keys: dict[str, Any]) -> None:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(keys["good"].public_key()))
    jwk.update(kid="key-1", use="sig", alg="RS256")
    with _JwksServer({"keys": [jwk]}) as idp:
        stratus = oidc_stratus(tmp_path / "home", oidc_jwks_url=idp.url)
        try:
            app = create_app(stratus=stratus)
            resp = client_for(app, sign(keys["good"], kid="key-1")).get(CITIES)
            assert resp.status_code == 200
            row = audit_row(stratus, resp.headers["X-Request-Id"])
            assert row["user_identity"] == "ada@example.com"
            assert idp.hits >= 1
            for bad in (
                sign(keys["evil"], kid="key-1"),  # right kid, wrong key
                sign(keys["good"], kid="key-2"),  # a key the issuer does not publish
                sign(keys["good"], kid="key-1", iss="https://evil.example.test"),
                sign(keys["good"], kid="key-1", aud="other"),
                sign(keys["good"], kid="key-1", exp=int(time.time()) - 60),
                sign(keys["good"], kid="key-1", email="mallory@example.com"),
            ):
                resp = client_for(app, bad).get(CITIES)
                assert resp.status_code == 401, jwt.decode(bad, options={"verify_signature": False})
        finally:
            stratus.close()


def test_jwks_url_unreachable_is_401_not_500(tmp_path: Path, keys: dict[str, Any]) -> None:
    with _JwksServer({"keys": []}) as idp:
        url = idp.url
    stratus = oidc_stratus(tmp_path / "home", oidc_jwks_url=url)  # nothing listens there now
    try:
        resp = client_for(create_app(stratus=stratus), sign(keys["good"], kid="k")).get(CITIES)
        assert resp.status_code == 401
    finally:
        stratus.close()


# ---- groups --------------------------------------------------------------------------------
def test_group_grants_apply_to_members_transitively(app: Flask, loaded_local: Stratus) -> None:
    ms = loaded_local.governance.metastore
    tag = uuid.uuid4().hex[:6]
    analysts, team = f"auth-analysts-{tag}", f"auth-team-{tag}"
    gina, tim, nate = f"auth-gina-{tag}", f"auth-tim-{tag}", f"auth-nate-{tag}"
    ms.create_principal(analysts, "group")
    ms.create_principal(team, "group")
    for user in (gina, tim, nate):
        ms.create_principal(user)
    ms.add_member(analysts, gina)
    ms.add_member(analysts, team)  # team is nested in analysts
    ms.add_member(team, tim)
    grant(loaded_local, "catalog", "main", analysts, "USE CATALOG")
    grant(loaded_local, "schema", "main.weather", analysts, "USE SCHEMA")
    for table in ("main.weather.hourly", "main.weather.cities"):
        grant(loaded_local, "table", table, analysts, "SELECT")
    tokens = {who: token_for(loaded_local, who) for who in (gina, tim, nate)}

    for member in (gina, tim):
        client = client_for(app, tokens[member])
        for path in (WEATHER, SUMMARY, CITIES):
            resp = client.get(path)
            assert resp.status_code == 200, (member, path, resp.get_json())
        assert client.get(WEATHER).get_json()["count"] == 7 * 24
    outsider = client_for(app, tokens[nate])
    assert outsider.get(WEATHER).status_code == 404
    assert outsider.get(CITIES).status_code == 404

    # the outsider may now use the schema, but SELECT still comes only with the group
    grant(loaded_local, "catalog", "main", nate, "USE CATALOG")
    grant(loaded_local, "schema", "main.weather", nate, "USE SCHEMA")
    resp = outsider.get(WEATHER)
    assert resp.status_code == 403 and "SELECT" in resp.get_json()["detail"]
    ms.add_member(team, nate)
    assert outsider.get(WEATHER).status_code == 200  # membership counts at once


def test_groups_cannot_hold_tokens(loaded_local: Stratus) -> None:
    from stratus.catalog.errors import InvalidArgument

    ms = loaded_local.governance.metastore
    name = f"auth-group-{uuid.uuid4().hex[:6]}"
    ms.create_principal(name, "group")
    with pytest.raises(InvalidArgument):
        ms.create_token(name)


# ---- the authorization matrix --------------------------------------------------------------
HOURLY, CITY_TABLE = "main.weather.hourly", "main.weather.cities"
# principal -> (kind, [(securable type, full name, privileges)])
PRINCIPALS: dict[str, tuple[str, list[tuple[str, str, tuple[str, ...]]]]] = {
    "admin": ("user", []),
    "reader": (
        "user",
        [
            ("catalog", "main", ("USE CATALOG",)),
            ("schema", "main.weather", ("USE SCHEMA",)),
            ("table", HOURLY, ("SELECT",)),
            ("table", CITY_TABLE, ("SELECT",)),
        ],
    ),
    "no-use-schema": (
        "user",
        [
            ("catalog", "main", ("USE CATALOG",)),
            ("table", HOURLY, ("SELECT",)),
            ("table", CITY_TABLE, ("SELECT",)),
        ],
    ),
    "no-use-catalog": (
        "user",
        [
            ("schema", "main.weather", ("USE SCHEMA",)),
            ("table", HOURLY, ("SELECT",)),
            ("table", CITY_TABLE, ("SELECT",)),
        ],
    ),
    "catalog-grantee": ("user", [("catalog", "main", ("USE CATALOG", "USE SCHEMA", "SELECT"))]),
    "schema-all": (
        "user",
        [("catalog", "main", ("USE CATALOG",)), ("schema", "main.weather", ("ALL PRIVILEGES",))],
    ),
    "use-only": (
        "user",
        [("catalog", "main", ("USE CATALOG",)), ("schema", "main.weather", ("USE SCHEMA",))],
    ),
    "modify-only": (
        "user",
        [
            ("catalog", "main", ("USE CATALOG",)),
            ("schema", "main.weather", ("USE SCHEMA",)),
            ("table", HOURLY, ("MODIFY",)),
            ("table", CITY_TABLE, ("MODIFY",)),
        ],
    ),
    "nothing": ("user", []),
    "other-catalog": ("user", [("catalog", "system", ("USE CATALOG", "USE SCHEMA", "SELECT"))]),
    "service": (
        "service_principal",
        [
            ("catalog", "main", ("USE CATALOG",)),
            ("schema", "main.weather", ("USE SCHEMA",)),
            ("table", HOURLY, ("SELECT",)),
        ],
    ),
}
OK = (200, None)
NO_SCHEMA = (403, "USE SCHEMA")
NO_CATALOG = (403, "USE CATALOG")
NO_SELECT = (403, "SELECT")
HIDDEN = (404, None)
# principal -> expected (status, privilege named in the 403) for weather, summary, cities
EXPECTED: dict[str, tuple[tuple[int, str | None], ...]] = {
    "admin": (OK, OK, OK),
    "reader": (OK, OK, OK),
    "no-use-schema": (NO_SCHEMA, NO_SCHEMA, NO_SCHEMA),
    "no-use-catalog": (NO_CATALOG, NO_CATALOG, NO_CATALOG),
    "catalog-grantee": (OK, OK, OK),  # inherited from the catalog
    "schema-all": (OK, OK, OK),  # ALL PRIVILEGES on the schema, inherited by its tables
    "use-only": (NO_SELECT, NO_SELECT, NO_SELECT),
    "modify-only": (NO_SELECT, NO_SELECT, NO_SELECT),
    "nothing": (HIDDEN, HIDDEN, HIDDEN),
    "other-catalog": (HIDDEN, HIDDEN, HIDDEN),  # grants elsewhere reveal nothing here
    "service": (OK, OK, NO_SELECT),  # cities needs SELECT on main.weather.cities too
}
ENDPOINTS = {"weather": WEATHER, "summary": SUMMARY, "cities": CITIES}
CELLS = [
    pytest.param(who, path, EXPECTED[who][i], id=f"{who}-{endpoint}")
    for who in PRINCIPALS
    for i, (endpoint, path) in enumerate(ENDPOINTS.items())
]


@pytest.fixture(scope="module")
def matrix_clients(app: Flask, loaded_local: Stratus) -> dict[str, FlaskClient]:
    ms = loaded_local.governance.metastore
    clients = {}
    for who, (kind, grants) in PRINCIPALS.items():
        name = who if who == "admin" else f"matrix-{who}"
        if who != "admin":
            ms.create_principal(name, kind)
        for securable_type, full_name, privs in grants:
            grant(loaded_local, securable_type, full_name, name, *privs)
        clients[who] = client_for(app, token_for(loaded_local, name))
    return clients


@pytest.mark.parametrize(("who", "path", "expected"), CELLS)
def test_authorization_matrix(
    matrix_clients: dict[str, FlaskClient],
    who: str,
    path: str,
    expected: tuple[int, str | None],
) -> None:
    status, privilege = expected
    resp = matrix_clients[who].get(path)
    body = resp.get_json()
    assert resp.status_code == status, body
    if status == 200:
        assert body["count"] > 0
    else:
        assert resp.headers["Content-Type"] == "application/problem+json"
        assert "data" not in body
        assert body["status"] == status
    if status == 403:
        assert privilege is not None
        assert f"lacks {privilege} on" in body["detail"]
        assert body["error_code"] == "PERMISSION_DENIED"
    if status == 404:
        assert body["error_code"] == "NOT_FOUND"
        assert not any(p in body["detail"] for p in ("SELECT", "USE ", "lacks"))


def test_matrix_principals_are_not_admins(matrix_clients: dict[str, FlaskClient]) -> None:
    for who, client in matrix_clients.items():
        expected = 200 if who == "admin" else 403
        assert client.get("/api/v1/audit?limit=1").status_code == expected, who


def test_revoking_a_grant_takes_effect_at_once(app: Flask, loaded_local: Stratus) -> None:
    ms = loaded_local.governance.metastore
    name = f"auth-flip-{uuid.uuid4().hex[:6]}"
    ms.create_principal(name)
    grant(loaded_local, "catalog", "main", name, "USE CATALOG", "USE SCHEMA", "SELECT")
    client = client_for(app, token_for(loaded_local, name))
    assert client.get(WEATHER).status_code == 200
    main_id = ms.securable("catalog", "main").id
    ms.update_grants("catalog", main_id, [{"principal": name, "remove": ["SELECT"]}])
    resp = client.get(WEATHER)
    assert resp.status_code == 403 and "lacks SELECT" in resp.get_json()["detail"]


def test_token_expiry_is_not_extended_by_the_cache(app: Flask, loaded_local: Stratus) -> None:
    ms = loaded_local.governance.metastore
    secret, _ = ms.create_token("admin", days=1.5 / 86400)  # valid for 1.5 s
    client = client_for(app, secret)
    assert client.get(WEATHER).status_code == 200
    time.sleep(2.0)
    assert client.get(WEATHER).status_code == 401


def test_settings_keep_the_oidc_key_out_of_repr(keys: dict[str, Any]) -> None:
    settings = Settings(oidc_issuer=ISSUER, oidc_public_key=keys["pem"])
    assert "BEGIN PUBLIC KEY" not in repr(settings)
