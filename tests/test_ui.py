"""The Explorer (``/ui``) through Flask's test client: sign-in sessions and their cookies, CSRF,
security headers, and that every page shows and allows exactly what the API would."""

from __future__ import annotations

import datetime as dt
import html as htmllib
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from deltalake import DeltaTable
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from stratus.api import create_app
from stratus.catalog.metastore import hash_token
from stratus.config import ConfigError, Settings
from stratus.context import Stratus
from stratus.datasets import write_employees_csv
from stratus.security.audit import AUDIT
from stratus.ui import web
from stratus.ui.models import UiSession
from stratus.ui.sessions import SECRET_ENV, SessionStore, load_secret
from tests.conftest import client_for, token_for

EMPLOYEES = "main.hr.employees"
CITY = "new-york-jfk"
WEEK = {"city_id": CITY, "start": "2013-06-01", "end": "2013-06-07"}
LOCAL = "http://127.0.0.1"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


# ---- shared with test_ui_browser -----------------------------------------------------------
def build_platform(home: Path, sample_csv: Path) -> Stratus:
    """A Stratus with the weather sample, ``main.hr.employees`` (PII) and a ``reader`` who may
    read both but not unmask, and a ``stranger`` with no grants at all."""
    from stratus.weather.sample import cities_path_for

    stratus = Stratus.from_settings(Settings(home=home))
    stratus.bootstrap()
    stratus.ingest.ingest(cities_path_for(sample_csv), "cities")
    stratus.ingest.ingest(sample_csv, "hourly")
    csv = home.parent / "employees.csv"
    write_employees_csv(csv, 50)
    stratus.tables.ingest(csv, EMPLOYEES, owner="admin", key=("employee_id",))
    ms = stratus.governance.metastore
    for name in ("reader", "stranger"):
        ms.create_principal(name, "user")
    for kind, name, privs in (
        ("catalog", "main", ["USE CATALOG"]),
        ("schema", "main.weather", ["USE SCHEMA", "SELECT"]),
        ("schema", "main.hr", ["USE SCHEMA"]),
        ("table", EMPLOYEES, ["SELECT"]),
    ):
        ms.update_grants(kind, ms.securable(kind, name).id, [{"principal": "reader", "add": privs}])
    stratus.governance.authorizer.refresh()
    return stratus


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "no CSRF field in the page"
    return match.group(1)


def sign_in(client: FlaskClient, token: str) -> str:
    """Sign in through the form; returns the session's CSRF token (from the next page)."""
    form = client.get("/ui/login")
    assert form.status_code == 200
    resp = client.post(
        "/ui/login",
        data={"csrf_token": csrf_of(form.get_data(as_text=True)), "token": token, "next": "/ui/"},
    )
    assert resp.status_code == 303, resp.get_data(as_text=True)
    home = client.get("/ui/")
    assert home.status_code == 200
    return csrf_of(home.get_data(as_text=True))


def cell_values(html: str, table_id: str, column: str) -> list[str]:
    """The text of every ``<td data-column=column>`` in the table with ``id``."""
    body = html.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]
    cells = re.findall(rf'<td data-column="{re.escape(column)}"[^>]*>([^<]*)</td>', body)
    return [htmllib.unescape(c) for c in cells]


# ---- fixtures ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, sample_csv: Path) -> Iterator[Stratus]:
    stratus = build_platform(tmp_path_factory.mktemp("ui") / "home", sample_csv)
    yield stratus
    stratus.close()


@pytest.fixture(scope="module")
def app(platform: Stratus) -> Flask:
    return create_app(stratus=platform)


@pytest.fixture(scope="module")
def tokens(platform: Stratus) -> dict[str, str]:
    return {name: token_for(platform, name) for name in ("admin", "reader", "stranger")}


@pytest.fixture
def anon(app: Flask) -> FlaskClient:
    return app.test_client()


def _client(app: Flask, token: str) -> tuple[FlaskClient, str]:
    client = app.test_client()
    return client, sign_in(client, token)


@pytest.fixture
def admin(app: Flask, tokens: dict[str, str]) -> tuple[FlaskClient, str]:
    return _client(app, tokens["admin"])


@pytest.fixture
def reader(app: Flask, tokens: dict[str, str]) -> tuple[FlaskClient, str]:
    return _client(app, tokens["reader"])


# ---- sign-in, cookies, sessions --------------------------------------------------------------
def test_pages_need_a_session(anon: FlaskClient) -> None:
    resp = anon.get("/ui/weather?city_id=miami")
    assert resp.status_code == 303
    assert resp.headers["Location"] == "/ui/login?next=/ui/weather%3Fcity_id%3Dmiami"
    api = anon.get("/ui/api/v1/cities")
    assert api.status_code == 401
    assert api.mimetype == "application/problem+json"
    assert anon.get("/ui").status_code in (301, 308)  # to /ui/, then the sign-in page


def test_security_headers_on_every_ui_response(anon: FlaskClient) -> None:
    for path in ("/ui/login", "/ui/static/app.css", "/ui/api/v1/cities"):
        headers = anon.get(path).headers
        csp = headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Referrer-Policy"] == "same-origin"
    assert anon.get("/ui/login").headers["Cache-Control"] == "no-store"


def test_pages_have_no_inline_script_or_style(
    admin: tuple[FlaskClient, str], anon: FlaskClient
) -> None:
    client, _ = admin
    pages = ["/ui/", "/ui/weather", "/ui/catalog", f"/ui/table/{EMPLOYEES}", "/ui/admin/audit"]
    for html in [anon.get("/ui/login").get_data(as_text=True)] + [
        client.get(p).get_data(as_text=True) for p in pages
    ]:
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline script"
        assert " style=" not in html and "<style" not in html
        assert re.search(r" on[a-z]+=", html) is None, "inline event handler"
        assert "https://" not in html.split("<main", 1)[0], "a CDN or other remote asset"


def test_sign_in_sets_a_strict_httponly_session_cookie(
    app: Flask, tokens: dict[str, str], platform: Stratus
) -> None:
    client = app.test_client()
    form = client.get("/ui/login")
    login_cookie = form.headers["Set-Cookie"]
    assert login_cookie.startswith("stratus-ui-login=")
    assert "HttpOnly" in login_cookie and "SameSite=Strict" in login_cookie
    resp = client.post(
        "/ui/login",
        data={"csrf_token": csrf_of(form.get_data(as_text=True)), "token": tokens["reader"]},
    )
    assert resp.status_code == 303 and resp.headers["Location"] == "/ui/"
    cookie = next(c for c in resp.headers.getlist("Set-Cookie") if c.startswith("stratus-ui="))
    attrs = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "path", "max-age"} <= attrs
    assert "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "secure" not in attrs  # plain http is allowed on the loopback address only
    assert tokens["reader"] not in cookie
    # the server keeps the token's hash, never the token, in the metastore (every instance's)
    with platform.governance.metastore.reading() as db:
        rows = [tuple(r) for r in db.execute(select(UiSession.__table__))]
    assert tokens["reader"] not in repr(rows)
    assert hash_token(tokens["reader"]) in {r[2] for r in rows}
    assert not (platform.settings.home / "ui-sessions.db").exists()


def test_cookie_is_secure_and_host_prefixed_over_https(app: Flask, tokens: dict[str, str]) -> None:
    client = app.test_client()
    base = "https://stratus.example.test"
    form = client.get("/ui/login", base_url=base)
    assert form.headers["Set-Cookie"].startswith("__Host-stratus-ui-login=")
    resp = client.post(
        "/ui/login",
        base_url=base,
        data={"csrf_token": csrf_of(form.get_data(as_text=True)), "token": tokens["reader"]},
    )
    cookie = next(
        c for c in resp.headers.getlist("Set-Cookie") if c.startswith("__Host-stratus-ui=")
    )
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert client.get("/ui/", base_url=base).status_code == 200


def test_plain_http_to_a_public_host_warns_that_sign_in_needs_https(anon: FlaskClient) -> None:
    html = anon.get("/ui/login", base_url="http://stratus.example.test").get_data(as_text=True)
    assert "not served over HTTPS" in html
    assert "not served over HTTPS" not in anon.get("/ui/login").get_data(as_text=True)


def test_wrong_token_is_refused(anon: FlaskClient) -> None:
    form = anon.get("/ui/login")
    resp = anon.post(
        "/ui/login",
        data={"csrf_token": csrf_of(form.get_data(as_text=True)), "token": "stratus_nope"},
    )
    assert resp.status_code == 401
    assert "not valid" in resp.get_data(as_text=True)
    assert not any(c.startswith("stratus-ui=") for c in resp.headers.getlist("Set-Cookie"))


def test_sign_in_form_needs_its_csrf_token(anon: FlaskClient, tokens: dict[str, str]) -> None:
    anon.get("/ui/login")
    missing = anon.post("/ui/login", data={"token": tokens["admin"]})
    assert missing.status_code == 400
    wrong = anon.post("/ui/login", data={"token": tokens["admin"], "csrf_token": "x" * 43})
    assert wrong.status_code == 403
    # a token from another browser's form does not fit this browser's cookie
    other = anon.application.test_client()
    theirs = csrf_of(other.get("/ui/login").get_data(as_text=True))
    mixed = anon.post("/ui/login", data={"token": tokens["admin"], "csrf_token": theirs})
    assert mixed.status_code == 403
    assert anon.get("/ui/").status_code == 303  # still signed out


def test_next_is_only_followed_inside_the_explorer(
    anon: FlaskClient, tokens: dict[str, str]
) -> None:
    for target, expected in (
        ("/ui/catalog", "/ui/catalog"),
        ("//evil.example/ui/", "/ui/"),
        ("https://evil.example/", "/ui/"),
        ("/ui/\\evil", "/ui/"),
        ("/api/v1/cities", "/ui/"),
    ):
        client = anon.application.test_client()
        form = client.get("/ui/login")
        resp = client.post(
            "/ui/login",
            data={
                "csrf_token": csrf_of(form.get_data(as_text=True)),
                "token": tokens["reader"],
                "next": target,
            },
        )
        assert resp.headers["Location"] == expected, target


def test_the_cookie_alone_does_not_open_the_api(reader: tuple[FlaskClient, str]) -> None:
    client, _ = reader
    assert client.get("/ui/api/v1/cities").status_code == 200
    assert client.get("/api/v1/cities").status_code == 401


def test_sign_out_needs_csrf_and_ends_the_session(reader: tuple[FlaskClient, str]) -> None:
    client, csrf = reader
    assert client.post("/ui/logout").status_code == 400
    assert client.post("/ui/logout", data={"csrf_token": "nope"}).status_code == 403
    assert client.get("/ui/").status_code == 200
    stolen = client.get_cookie("stratus-ui")
    assert stolen is not None
    resp = client.post("/ui/logout", data={"csrf_token": csrf})
    assert resp.status_code == 303 and resp.headers["Location"] == "/ui/login"
    assert client.get("/ui/").status_code == 303
    # replaying the old cookie does not bring the session back
    replay = client.application.test_client()
    replay.set_cookie("stratus-ui", stolen.value, domain="localhost")
    assert replay.get("/ui/").status_code == 303


def test_sessions_expire(app: Flask, tokens: dict[str, str]) -> None:
    client, _ = _client(app, tokens["reader"])
    store = app.extensions[web.EXTENSION]
    real = store.clock
    try:
        now = real()
        store.clock = lambda: now + store.idle + 1  # idle for too long
        assert client.get("/ui/").status_code == 303
        store.clock = real
        client, _ = _client(app, tokens["reader"])
        start = real()
        # busy all along (never idle for long), until past the absolute limit
        for step in range(0, int(store.max_age), int(store.idle) - 60):
            store.clock = lambda s=step: start + s
            assert client.get("/ui/").status_code == 200, step
        store.clock = lambda: start + store.max_age + 1
        assert client.get("/ui/").status_code == 303
    finally:
        store.clock = real


def test_a_revoked_token_ends_its_sessions(app: Flask, platform: Stratus) -> None:
    token = token_for(platform, "reader")
    client, _ = _client(app, token)
    ms = platform.governance.metastore
    tok = next(t for t, _ in ms.list_tokens("reader") if t.token_hash == hash_token(token))
    ms.revoke_token(tok.id)
    assert client.get("/ui/").status_code == 303


def test_tampered_cookie_is_ignored(app: Flask, tokens: dict[str, str]) -> None:
    client, _ = _client(app, tokens["reader"])
    value = client.get_cookie("stratus-ui").value  # type: ignore[union-attr]
    sid, mac = value.split(".")
    forged = app.test_client()
    forged.set_cookie("stratus-ui", f"{sid[:-1]}{'A' if sid[-1] != 'A' else 'B'}.{mac}")
    assert forged.get("/ui/").status_code == 303


def test_secret_file_is_private_and_env_wins(tmp_path: Path, platform: Stratus) -> None:
    secret = load_secret(tmp_path, env={})
    path = tmp_path / "ui-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret(tmp_path, env={}) == secret  # stable across restarts and workers
    assert load_secret(tmp_path, env={SECRET_ENV: "k" * 40}) == b"k" * 40
    with pytest.raises(ConfigError, match=SECRET_ENV):
        load_secret(tmp_path, env={SECRET_ENV: "short"})
    sessions = platform.governance.metastore.session
    store = SessionStore(sessions, secret)
    cookie, _ = store.create("admin", "stratus_x", "api", None)
    assert SessionStore(sessions, b"another secret" * 3).get(cookie) is None
    assert store.get(cookie) is not None


# ---- CSRF on state-changing forms ----------------------------------------------------------
def _grants(platform: Stratus, kind: str, name: str) -> dict[str, set[str]]:
    ms = platform.governance.metastore
    return ms.grants(kind, ms.securable(kind, name).id)


def test_grant_form_is_csrf_protected(admin: tuple[FlaskClient, str], platform: Stratus) -> None:
    client, csrf = admin
    url = f"/ui/permissions/table/{EMPLOYEES}"
    form = {"principal": "stranger", "privilege": "SELECT", "op": "add"}
    assert client.post(url, data=form).status_code == 400
    assert client.post(url, data={**form, "csrf_token": "forged"}).status_code == 403
    cross = client.post(
        url, data={**form, "csrf_token": csrf}, headers={"Origin": "https://evil.example"}
    )
    assert cross.status_code == 403
    assert "stranger" not in _grants(platform, "table", EMPLOYEES)
    # the real form: Origin is ours, the token is the session's
    ok = client.post(url, data={**form, "csrf_token": csrf}, headers={"Origin": "http://localhost"})
    assert ok.status_code == 303
    assert ok.headers["Location"] == f"/ui/table/{EMPLOYEES}?granted=1#grants"
    assert _grants(platform, "table", EMPLOYEES)["stranger"] == {"SELECT"}
    page = client.get(ok.headers["Location"]).get_data(as_text=True)
    assert "Privilege granted." in page and "stranger" in page
    revoke = client.post(url, data={**form, "op": "remove", "csrf_token": csrf})
    assert revoke.status_code == 303
    assert "stranger" not in _grants(platform, "table", EMPLOYEES)


def test_another_sessions_csrf_token_is_refused(
    admin: tuple[FlaskClient, str], reader: tuple[FlaskClient, str]
) -> None:
    client, _ = admin
    _, reader_csrf = reader
    resp = client.post(
        f"/ui/permissions/table/{EMPLOYEES}",
        data={
            "principal": "stranger",
            "privilege": "SELECT",
            "op": "add",
            "csrf_token": reader_csrf,
        },
    )
    assert resp.status_code == 403


def test_post_without_a_session_is_refused(anon: FlaskClient) -> None:
    resp = anon.post(
        f"/ui/permissions/table/{EMPLOYEES}",
        data={"principal": "stranger", "privilege": "SELECT", "op": "add", "csrf_token": "x"},
    )
    assert resp.status_code == 401


# ---- authorization: what the API would show and allow ---------------------------------------
def test_reader_cannot_edit_grants(reader: tuple[FlaskClient, str], platform: Stratus) -> None:
    client, csrf = reader
    html = client.get(f"/ui/table/{EMPLOYEES}").get_data(as_text=True)
    assert 'id="grant-form"' not in html and "revoke" not in html
    resp = client.post(
        f"/ui/permissions/table/{EMPLOYEES}",
        data={"principal": "reader", "privilege": "UNMASK", "op": "add", "csrf_token": csrf},
    )
    assert resp.status_code == 403
    assert "lacks OWNER or MANAGE" in resp.get_data(as_text=True)
    assert "UNMASK" not in _grants(platform, "table", EMPLOYEES).get("reader", set())


def test_admin_sees_the_grant_form(admin: tuple[FlaskClient, str]) -> None:
    client, _ = admin
    html = client.get(f"/ui/table/{EMPLOYEES}").get_data(as_text=True)
    assert 'id="grant-form"' in html
    assert "<option>UNMASK</option>" in html and "<option>CREATE TABLE</option>" not in html


def test_pii_is_masked_for_a_reader_and_plain_for_the_admin(
    admin: tuple[FlaskClient, str], reader: tuple[FlaskClient, str], platform: Stratus
) -> None:
    plain = platform.tables.rows(EMPLOYEES, unmask=True, limit=20).table.to_pylist()
    masked = platform.tables.rows(EMPLOYEES, unmask=False, limit=20).table.to_pylist()
    admin_html = admin[0].get(f"/ui/table/{EMPLOYEES}").get_data(as_text=True)
    reader_html = reader[0].get(f"/ui/table/{EMPLOYEES}").get_data(as_text=True)
    for column in ("email", "phone", "name"):
        assert cell_values(admin_html, "preview", column) == [r[column] for r in plain]
        assert cell_values(reader_html, "preview", column) == [r[column] for r in masked]
        assert not set(cell_values(reader_html, "preview", column)) & {r[column] for r in plain}
    assert 'data-masked=""' in admin_html
    assert 'data-masked="name,email,phone,salary"' in reader_html
    # PII columns are flagged in the column list for both
    for html in (admin_html, reader_html):
        assert re.search(r'<tr class="pii" data-pii="[^"]+" data-column="email">', html)
        assert 'data-column="hire_date">' in html and 'class="pii" data-pii="' in html


def test_stranger_sees_nothing(app: Flask, tokens: dict[str, str]) -> None:
    client, _ = _client(app, tokens["stranger"])
    assert ">main</a>" not in client.get("/ui/catalog").get_data(as_text=True)
    for path in (f"/ui/table/{EMPLOYEES}", "/ui/catalog/main", "/ui/catalog/main/hr"):
        resp = client.get(path)
        assert resp.status_code == 404, path
        assert "does not exist" in resp.get_data(as_text=True)
    weather = client.get("/ui/weather")
    assert weather.status_code == 404
    assert (
        client.get(
            "/ui/api/v1/weather/summary?city_id=miami&start=2000-01-01&end=2000-01-02"
        ).status_code
        == 404
    )


def test_reader_browses_only_granted_objects(reader: tuple[FlaskClient, str]) -> None:
    client, _ = reader
    catalogs = client.get("/ui/catalog").get_data(as_text=True)
    assert ">main</a>" in catalogs and ">system</a>" not in catalogs
    hr = client.get("/ui/catalog/main/hr").get_data(as_text=True)
    assert ">employees</a>" in hr
    assert client.get("/ui/table/system.access.audit").status_code == 404


def test_admin_pages_are_for_admins(
    reader: tuple[FlaskClient, str], admin: tuple[FlaskClient, str]
) -> None:
    client, _ = reader
    for path in ("/ui/admin/audit", "/ui/admin/shares"):
        assert client.get(path).status_code == 403
    assert "Audit log" not in client.get("/ui/").get_data(as_text=True)
    assert "Audit log" in admin[0].get("/ui/").get_data(as_text=True)


def test_audit_page_filters(
    admin: tuple[FlaskClient, str], reader: tuple[FlaskClient, str]
) -> None:
    reader[0].get(f"/ui/table/{EMPLOYEES}")
    client, _ = admin
    html = client.get("/ui/admin/audit?principal=reader&action=getTable").get_data(as_text=True)
    rows = html.split('id="audit"', 1)[1].split("</table>")[0]
    assert rows.count("<tr class=") >= 1
    assert "getTable" in rows and EMPLOYEES in rows
    principals = re.findall(r'<tr class="outcome-\w+"><td>[^<]*</td><td>([^<]*)</td>', rows)
    assert principals and set(principals) == {"reader"}
    bad = client.get("/ui/admin/audit?since=yesterday")
    assert bad.status_code == 400 and "ISO 8601" in bad.get_data(as_text=True)


def test_ui_reads_are_audited_as_the_principal(
    reader: tuple[FlaskClient, str], platform: Stratus
) -> None:
    client, _ = reader
    resp = client.get(f"/ui/table/{EMPLOYEES}")
    request_id = resp.headers["X-Request-Id"]
    platform.governance.audit.flush()
    records = [
        r
        for r in DeltaTable(platform.lakehouse.url(AUDIT)).to_pyarrow_table().to_pylist()
        if r["request_id"].startswith(request_id + ".") or r["request_id"] == request_id
    ]
    actions = {r["action_name"]: r for r in records}
    assert {"getTable", "getTags", "getFullPermissions", "readTableRows"} <= set(actions)
    assert "getTableHistory" in actions
    assert {r["user_identity"] for r in records} == {"reader"}
    assert len({r["request_id"] for r in records}) == len(records)  # one id per API call


def test_table_page_shows_columns_owner_history(admin: tuple[FlaskClient, str]) -> None:
    client, _ = admin
    html = client.get(f"/ui/table/{EMPLOYEES}").get_data(as_text=True)
    assert '<dd id="owner">admin</dd>' in html
    assert "<code>bigint</code>" in html.lower() or "<code>long</code>" in html.lower()
    history = html.split('id="history"', 1)[1].split("</table>")[0]
    assert "MERGE" in history and "CREATE TABLE" in history


def test_weather_page_summary_and_downloads(
    reader: tuple[FlaskClient, str], platform: Stratus
) -> None:
    client, _ = reader
    html = client.get("/ui/weather", query_string={**WEEK, "granularity": "day"}).get_data(
        as_text=True
    )
    table = html.split('id="summary-table"', 1)[1].split("</table>")[0]
    assert table.count("<tr><td>") == 7
    src = re.search(r'id="hourly" class="charts" data-src="([^"]+)"', html).group(1)
    data = orjson.loads(client.get(src.replace("&amp;", "&")).data)
    start, end = (dt.date.fromisoformat(WEEK[k]) for k in ("start", "end"))
    expected = platform.weather.hourly([CITY], start, end, fields=["temp"], limit=10_000)
    expected = expected.table.num_rows
    assert data["count"] == expected
    csv_url = re.search(r'<a href="([^"]+format=csv)" download>CSV</a>', html).group(1)
    csv = client.get(csv_url.replace("&amp;", "&"))
    assert csv.mimetype == "text/csv" and csv.headers["X-Row-Count"] == str(expected)
    parquet_url = re.search(r'<a href="([^"]+format=parquet)" download>Parquet</a>', html)
    assert parquet_url is not None
    bad = client.get("/ui/weather", query_string={**WEEK, "end": "2013-05-01"})
    assert bad.status_code == 400 and "before start" in bad.get_data(as_text=True)


# ---- jobs ----------------------------------------------------------------------------------
def test_job_form_needs_csrf_and_the_apis_authorization(
    admin: tuple[FlaskClient, str], reader: tuple[FlaskClient, str], platform: Stratus
) -> None:
    form = {"type": "daily_summary", "city_id": CITY, "start": "2013-06-01", "end": "2013-06-03"}
    client, csrf = reader
    assert client.post("/ui/jobs", data=form).status_code == 400
    assert client.post("/ui/jobs", data={**form, "csrf_token": "x"}).status_code == 403
    denied = client.post("/ui/jobs", data={**form, "csrf_token": csrf})
    assert denied.status_code in (403, 404)
    html = denied.get_data(as_text=True)
    assert 'id="job-error"' in html and 'value="2013-06-03"' in html  # the form is kept
    bad = client.post("/ui/jobs", data={**form, "end": "2013-05-01", "csrf_token": csrf})
    assert bad.status_code == 400 and "before start" in bad.get_data(as_text=True)

    client, csrf = admin
    resp = client.post("/ui/jobs", data={**form, "csrf_token": csrf})
    assert resp.status_code == 303
    job_id = resp.headers["Location"].rsplit("/", 1)[1]
    assert platform.jobs.wait(job_id).state == "succeeded"
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert 'data-state="succeeded"' in page
    assert '<a href="/ui/table/main.jobs.daily_summary">main.jobs.daily_summary</a>' in page
    listing = client.get("/ui/jobs").get_data(as_text=True)
    assert f"/ui/jobs/{job_id}" in listing
    # someone else's job is not found, as in the API
    assert reader[0].get(f"/ui/jobs/{job_id}").status_code == 404


def test_ui_api_answers_exactly_as_the_api(
    reader: tuple[FlaskClient, str], app: Flask, tokens: dict[str, str]
) -> None:
    client, _ = reader
    api = client_for(app, tokens["reader"])
    week = "city_id=new-york-jfk&start=2013-06-01&end=2013-06-07"
    for path in (
        f"/v1/weather/summary?{week}",
        f"/v1/weather?{week}&limit=5",
        "/2.1/unity-catalog/catalogs",
        "/2.1/unity-catalog/schemas?catalog_name=main",
        f"/v1/tables/{EMPLOYEES}/rows?limit=5",
        f"/v1/permissions/table/{EMPLOYEES}",
        "/v1/audit",  # 403: admins only
        "/2.1/unity-catalog/tables/system.access.audit",  # 404: invisible
        "/v1/weather/summary?city_id=new-york-jfk",  # 400: start and end missing
    ):
        ours, theirs = client.get(f"/ui/api{path}"), api.get(f"/api{path}")
        assert ours.status_code == theirs.status_code, path
        assert orjson.loads(ours.data) == orjson.loads(theirs.data), path
    assert client.post("/ui/api/v1/jobs", data={}).status_code in (400, 403, 405)


def test_ui_api_refuses_odd_paths(reader: tuple[FlaskClient, str]) -> None:
    client, _ = reader
    for path in (
        "/ui/api/v1/../v1/cities",
        "/ui/api/v1/tables/main.hr.employees%3Flimit=1/rows",
        "/ui/api/v1/nothing-here",
        "/ui/api/v1/tables/a%0Ab/rows",
    ):
        assert client.get(path).status_code == 404, path


def test_every_catalog_page_renders_for_the_admin(admin: tuple[FlaskClient, str]) -> None:
    client, _ = admin
    catalogs = re.findall(r'href="/ui/catalog/([\w-]+)"', client.get("/ui/catalog").get_data(True))
    assert {"main", "system"} <= set(catalogs)
    tables = []
    for catalog in catalogs:
        page = client.get(f"/ui/catalog/{catalog}")
        assert page.status_code == 200, catalog
        for schema in re.findall(rf'href="/ui/catalog/{catalog}/([\w-]+)"', page.get_data(True)):
            listing = client.get(f"/ui/catalog/{catalog}/{schema}")
            assert listing.status_code == 200, schema
            tables += re.findall(r'href="/ui/table/([\w.-]+)"', listing.get_data(True))
    assert {EMPLOYEES, "main.weather.hourly", "system.access.audit"} <= set(tables)
    assert "system.information_schema.column_tags" in tables  # a view: no rows, no history
    for name in tables:
        assert client.get(f"/ui/table/{name}").status_code == 200, name
