"""The Explorer in a real browser: Debian's Chromium, headless, driven by Playwright against a
live server (werkzeug in a thread). A screenshot of every page goes to ``tests/artifacts/``.

Chromium must be installed (``make test`` does it: ``apt-get install chromium``); without it
these tests FAIL rather than skip. ``playwright install`` is never used.
"""

from __future__ import annotations

import datetime as dt
import http.server
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
from werkzeug.serving import make_server

from stratus.api import create_app
from stratus.context import Stratus
from tests.conftest import ROOT, free_port, token_for, wait_for_port
from tests.test_ui import CITY, EMPLOYEES, WEEK, build_platform

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "tests" / "artifacts"
EXAMPLE = ROOT / "examples" / "lineage_menu_dinner.sql"
DINNER = "main.demo.dinner"
MENU = "main.demo.menu"
MENU_TAGS = "main.demo.menu_tags"
SHARE = "partners"
TIMEOUT = 20_000  # ms


def _has(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def run_menu_dinner(stratus: Stratus) -> None:
    """The SQL demonstration: menu and menu_tags, then dinner derived from them."""
    from stratus.sql.parse import split_statements

    for statement in split_statements(EXAMPLE.read_text()):
        stratus.sql.execute(statement)
    stratus.lineage.flush()


def add_shares(stratus: Stratus) -> None:
    """A share of weather and of employees (PII masked) for ``acme``; a revoked recipient."""
    from stratus.security.governance import LOCAL_ADMIN

    sharing = stratus.sharing
    sharing.admin.create_share(LOCAL_ADMIN, SHARE, comment="Weather and staff for partners")
    sharing.admin.add_table(
        LOCAL_ADMIN, SHARE, "main.weather.hourly", shared_as="weather.hourly", history=True
    )
    sharing.admin.add_table(
        LOCAL_ADMIN,
        SHARE,
        EMPLOYEES,
        shared_as="hr.staff",
        columns=["employee_id", "email", "hire_date"],
        pii="mask",
    )
    sharing.admin.create_recipient(LOCAL_ADMIN, "acme", comment="Acme Corp.")
    sharing.admin.grant(LOCAL_ADMIN, SHARE, "acme")
    sharing.admin.create_recipient(LOCAL_ADMIN, "former_partner")
    sharing.admin.revoke_tokens(LOCAL_ADMIN, "former_partner")


# ---- fixtures ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, sample_csv: Path) -> Iterator[Stratus]:
    stratus = build_platform(tmp_path_factory.mktemp("ui-browser") / "home", sample_csv)
    ms = stratus.governance.metastore
    ms.create_volume(
        "main",
        "hr",
        "documents",
        "admin",
        volume_type="MANAGED",
        storage_location=stratus.lakehouse.storage.table_url(".volumes/main/hr/documents"),
        comment="HR documents",
    )
    if EXAMPLE.exists() and _has("stratus.sql.service"):
        run_menu_dinner(stratus)
    if _has("stratus.sharing.service"):
        add_shares(stratus)
    yield stratus
    stratus.close()


@pytest.fixture(scope="module")
def server(platform: Stratus) -> Iterator[str]:
    app = create_app(stratus=platform)
    port = free_port()
    srv = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    wait_for_port(port)
    yield f"http://127.0.0.1:{port}"
    srv.shutdown()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: run `make test` (it installs Debian's chromium) "
            "or `apt-get install chromium`"
        )
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def tokens(platform: Stratus) -> dict[str, str]:
    return {name: token_for(platform, name) for name in ("admin", "reader")}


class Session:
    """A browser context signed in (or not) with console errors and failed requests kept."""

    def __init__(self, browser: Browser, base: str) -> None:
        self.context: BrowserContext = browser.new_context(
            base_url=base, viewport={"width": 1280, "height": 900}, accept_downloads=True
        )
        self.context.set_default_timeout(TIMEOUT)
        self.page: Page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        # a page answering 4xx is what some tests want; a script, style or fetch failing is not
        self.page.on(
            "response",
            lambda r: (
                self.errors.append(f"{r.status} {r.url}")
                if r.status >= 400 and r.request.resource_type != "document"
                else None
            ),
        )

    def _console(self, message: Any) -> None:
        # CSP violations and script errors; failed loads are caught by status above
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(message.text)

    def sign_in(self, token: str) -> Page:
        page = self.page
        page.goto("/ui/")
        expect(page).to_have_url(re.compile(r"/ui/login\?next="))
        page.get_by_label("API token").fill(token)
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator(".who strong")).to_be_visible()
        return page

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def admin(browser: Browser, server: str, tokens: dict[str, str]) -> Iterator[Session]:
    s = Session(browser, server)
    s.sign_in(tokens["admin"])
    yield s
    s.close()


@pytest.fixture
def reader(browser: Browser, server: str, tokens: dict[str, str]) -> Iterator[Session]:
    s = Session(browser, server)
    s.sign_in(tokens["reader"])
    yield s
    s.close()


# ---- tests ---------------------------------------------------------------------------------
def test_sign_in_and_out(browser: Browser, server: str, tokens: dict[str, str]) -> None:
    s = Session(browser, server)
    try:
        page = s.page
        page.goto("/ui/catalog")
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        s.shot("01-sign-in")
        page.get_by_label("API token").fill("stratus_not-a-token")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_contain_text("not valid")
        page.get_by_label("API token").fill(tokens["reader"])
        page.get_by_role("button", name="Sign in").click()
        # back where the sign-in started
        expect(page).to_have_url(f"{server}/ui/catalog")
        expect(page.locator(".who strong")).to_have_text("reader")
        cookie = next(c for c in s.context.cookies() if c["name"] == "stratus-ui")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert page.evaluate("document.cookie") == ""  # nothing readable by scripts
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        page.goto("/ui/catalog")
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        assert not s.errors, s.errors
    finally:
        s.close()


def test_keyboard_skip_link_and_labels(admin: Session) -> None:
    page = admin.page
    page.goto("/ui/weather")
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()
    unlabeled = page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), select')]
              .filter(el => !el.labels.length && !el.getAttribute('aria-label'))
              .map(el => el.name)"""
    )
    assert unlabeled == []


def test_hourly_chart_has_a_point_per_observation(admin: Session, platform: Stratus) -> None:
    start, end = (dt.date.fromisoformat(WEEK[k]) for k in ("start", "end"))
    rows = platform.weather.hourly(
        [CITY], start, end, fields=["temp", "precipitation", "wind_speed", "humidity"], limit=10_000
    ).table.to_pylist()
    assert len(rows) > 100
    page = admin.page
    page.goto(f"/ui/weather?city_id={CITY}&start={WEEK['start']}&end={WEEK['end']}&granularity=day")
    hourly = page.locator("#hourly")
    expect(hourly).to_have_attribute("data-ready", "true")
    assert hourly.get_attribute("data-rows") == str(len(rows))
    for field in ("temp", "precipitation", "wind_speed", "humidity"):
        figure = page.locator(f"#chart-{field}")
        points = sum(1 for r in rows if r[field] is not None)
        assert figure.get_attribute("data-points") == str(points), field
        assert figure.get_attribute("data-x") == str(len(rows))
        assert figure.get_attribute("data-series") == "1"
        expect(figure.locator("canvas")).to_have_count(1)
    summary = page.locator("#summary-charts")
    expect(summary).to_have_attribute("data-ready", "true")
    assert summary.get_attribute("data-rows") == "7"
    assert page.locator("#chart-summary-temp").get_attribute("data-points") == str(7 * 3)
    expect(page.locator("#summary-table tbody tr")).to_have_count(7)
    admin.shot("02-weather")
    # two cities: two series, one x value per distinct hour
    both = platform.weather.hourly(
        [CITY, "newark-ewr"], start, end, fields=["city_id", "ts"], limit=10_000
    ).table
    page.goto(f"/ui/weather?city_id={CITY}&city_id=newark-ewr&start={start}&end={end}")
    expect(hourly).to_have_attribute("data-ready", "true")
    assert page.locator("#chart-temp").get_attribute("data-series") == "2"
    assert hourly.get_attribute("data-rows") == str(both.num_rows)
    assert page.locator("#chart-temp").get_attribute("data-x") == str(
        len(set(both.column("ts").to_pylist()))
    )
    admin.shot("02-weather-two-cities")
    # the CSV download is the same rows
    page.goto(f"/ui/weather?city_id={CITY}&start={WEEK['start']}&end={WEEK['end']}")
    with page.expect_download() as info:
        page.get_by_role("link", name="CSV").first.click()
    lines = Path(info.value.path()).read_text().splitlines()
    assert len(lines) == len(rows) + 1
    assert not admin.errors, admin.errors


def test_pii_column_masked_for_reader_plain_for_admin(
    admin: Session, reader: Session, platform: Stratus
) -> None:
    plain = platform.tables.rows(EMPLOYEES, unmask=True, limit=20).table.to_pylist()
    masked = platform.tables.rows(EMPLOYEES, unmask=False, limit=20).table.to_pylist()
    for session, expected, name in ((admin, plain, "admin"), (reader, masked, "reader")):
        page = session.page
        page.goto(f"/ui/table/{EMPLOYEES}")
        cells = page.locator('#preview td[data-column="email"]')
        expect(cells).to_have_count(len(expected))
        assert cells.all_inner_texts() == [r["email"] for r in expected]
        # the column list flags PII for everyone
        expect(page.locator('#columns tr.pii[data-column="email"] .pii-flag')).to_be_visible()
        session.shot(f"03-table-pii-{name}")
    assert all("***" in r["email"] for r in masked)
    expect(reader.page.locator("#masked-note")).to_contain_text("email")
    expect(reader.page.locator("#grant-form")).to_have_count(0)
    expect(admin.page.locator("#grant-form")).to_be_visible()
    expect(admin.page.locator("#history tbody tr")).to_have_count(2)  # CREATE TABLE, MERGE


def test_grant_form_works_and_refuses_posts_without_csrf(admin: Session, platform: Stratus) -> None:
    ms = platform.governance.metastore
    grants = lambda: ms.grants("table", ms.securable("table", EMPLOYEES).id)  # noqa: E731
    page = admin.page
    page.goto(f"/ui/table/{EMPLOYEES}")
    form = page.locator("#grant-form")
    form.get_by_label("Principal").fill("stranger")
    form.get_by_label("Privilege").select_option("SELECT")
    form.get_by_role("button", name="Grant").click()
    expect(page.get_by_role("status").filter(has_text="Privilege granted.")).to_be_visible()
    assert grants()["stranger"] == {"SELECT"}
    page.get_by_role("button", name="Revoke SELECT from stranger").click()
    expect(page.get_by_role("status").filter(has_text="Privilege revoked.")).to_be_visible()
    assert "stranger" not in grants()

    # the same form without its CSRF field, then with a forged one
    for change, status in (
        ("f => f.querySelector('[name=csrf_token]').remove()", 400),
        ("f => f.querySelector('[name=csrf_token]').value = 'forged'", 403),
    ):
        page.goto(f"/ui/table/{EMPLOYEES}")
        form = page.locator("#grant-form")
        form.evaluate(change)
        form.get_by_label("Principal").fill("stranger")
        with page.expect_response(lambda r: "/ui/permissions/" in r.url) as resp:
            form.get_by_role("button", name="Grant").click()
        assert resp.value.status == status
        expect(page.get_by_role("alert")).to_contain_text("CSRF")
        admin.shot(f"04-csrf-refused-{status}")
        assert "stranger" not in grants()


def test_cross_site_form_post_is_refused(admin: Session, server: str, platform: Stratus) -> None:
    """A page on another site posts the grant form to the Explorer in the signed-in browser."""
    ms = platform.governance.metastore
    target = f"{server}/ui/permissions/table/{EMPLOYEES}"
    html = (
        f'<form id="f" method="post" action="{target}">'
        '<input name="principal" value="stranger"><input name="privilege" value="SELECT">'
        '<input name="op" value="add"><input name="csrf_token" value="guess">'
        '<button id="go">win a prize</button></form>'
    ).encode()

    class Evil(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(html)

        def log_message(self, *args: Any) -> None:
            pass

    port = free_port()
    evil = http.server.ThreadingHTTPServer(("127.0.0.1", port), Evil)
    thread = threading.Thread(target=evil.serve_forever, daemon=True)
    thread.start()
    try:
        page = admin.page
        page.goto(f"http://localhost:{port}/")  # another site than 127.0.0.1
        with page.expect_response(lambda r: r.url == target) as resp:
            page.click("#go")
        assert resp.value.status in (401, 403)
        assert "stranger" not in ms.grants("table", ms.securable("table", EMPLOYEES).id)
    finally:
        evil.shutdown()
        thread.join(timeout=5)


def test_lineage_graph_of_menu_and_dinner(admin: Session) -> None:
    if not (EXAMPLE.exists() and _has("stratus.sql.service") and _has("stratus.api.lineage")):
        pytest.fail("the SQL engine, lineage API and examples/lineage_menu_dinner.sql must exist")
    page = admin.page
    page.goto(f"/ui/lineage/{DINNER}")
    graph = page.locator("#lineage")
    expect(graph).to_have_attribute("data-ready", "true")
    nodes = page.locator("svg g.node")
    assert sorted(nodes.evaluate_all("ns => ns.map(n => n.dataset.id)")) == sorted(
        [DINNER, MENU, MENU_TAGS]
    )
    edges = page.locator("svg path.edge").evaluate_all(
        "es => es.map(e => [e.dataset.source, e.dataset.target])"
    )
    assert sorted(map(tuple, edges)) == [(MENU, DINNER), (MENU_TAGS, DINNER)]
    expect(page.locator(f'svg g.node[data-id="{DINNER}"]')).to_have_class("node root")
    # sources are drawn left of their target
    xs = {
        n: page.locator(f'svg g.node[data-id="{n}"]').bounding_box()["x"]  # type: ignore[index]
        for n in (MENU, MENU_TAGS, DINNER)
    }
    assert xs[MENU] < xs[DINNER] and xs[MENU_TAGS] < xs[DINNER]
    admin.shot("05-lineage")

    # click a column: its column lineage lights up
    page.locator(f'svg g.col[data-table="{DINNER}"][data-column="avg_price"]').click()
    expect(graph).to_have_attribute("data-selected", f"{DINNER}.avg_price")
    col_edges = page.locator("svg path.col-edge").evaluate_all(
        "es => es.map(e => [e.dataset.source, e.dataset.target])"
    )
    assert (f"{MENU}.price", f"{DINNER}.avg_price") in map(tuple, col_edges)
    lit = page.locator("svg g.col.hl").evaluate_all(
        "cs => cs.map(c => c.dataset.table + '.' + c.dataset.column)"
    )
    assert f"{MENU}.price" in lit and f"{DINNER}.avg_price" in lit
    assert f"{MENU}.name" not in lit
    expect(page.locator("#column-status")).to_contain_text(f"{MENU}.price")
    admin.shot("06-lineage-column")

    # keyboard: Tab to a column, Enter selects it, Escape clears
    calories = page.locator(f'svg g.col[data-table="{MENU}"][data-column="calories"]')
    calories.focus()
    page.keyboard.press("Enter")
    expect(graph).to_have_attribute("data-selected", f"{MENU}.calories")
    expect(calories).to_have_attribute("aria-pressed", "true")
    targets = page.locator("svg path.col-edge").evaluate_all("es => es.map(e => e.dataset.target)")
    assert f"{DINNER}.max_calories" in targets
    page.keyboard.press("Escape")
    expect(page.locator("svg g.col.hl")).to_have_count(0)
    assert not admin.errors, admin.errors


def test_lineage_marks_pii_columns(admin: Session, platform: Stratus) -> None:
    """A table derived by SQL from the PII employees table: PII flags on both nodes."""
    if not _has("stratus.sql.service"):
        pytest.fail("the SQL engine must exist")
    platform.sql.execute(
        "CREATE TABLE main.hr.contacts AS SELECT employee_id, email FROM main.hr.employees"
    )
    platform.lineage.flush()
    page = admin.page
    page.goto("/ui/lineage/main.hr.contacts")
    expect(page.locator("#lineage")).to_have_attribute("data-ready", "true")
    for table in (EMPLOYEES, "main.hr.contacts"):
        email = page.locator(f'svg g.col[data-table="{table}"][data-column="email"]')
        expect(email).to_have_class("col pii")
    expect(
        page.locator(f'svg g.col[data-table="{EMPLOYEES}"][data-column="hire_date"]')
    ).to_have_class("col")
    admin.shot("07-lineage-pii")


def test_every_page_renders_without_errors(admin: Session, reader: Session) -> None:
    pages = {
        "10-home": "/ui/",
        "11-catalogs": "/ui/catalog",
        "12-catalog-main": "/ui/catalog/main",
        "13-schema-hr": "/ui/catalog/main/hr",
        "14-volume": "/ui/volume/main.hr.documents",
        "15-table-hourly": "/ui/table/main.weather.hourly",
        "16-lineage-picker": "/ui/lineage",
        "17-jobs": "/ui/jobs",
        "18-shares": "/ui/admin/shares",
        "19-audit": "/ui/admin/audit?principal=admin",
    }
    for name, path in pages.items():
        resp = admin.page.goto(path)
        assert resp is not None and resp.status == 200, path
        expect(admin.page.locator("h1")).to_be_visible()
        admin.shot(name)
    assert not admin.errors, admin.errors
    expect(admin.page.locator("#audit tbody tr").first).to_be_visible()
    resp = reader.page.goto("/ui/admin/audit")
    assert resp is not None and resp.status == 403
    reader.shot("20-audit-denied-for-reader")


def test_shares_page_shows_tables_recipients_and_token_status(admin: Session) -> None:
    if not _has("stratus.sharing.service"):
        pytest.fail("Delta Sharing must exist")
    page = admin.page
    page.goto("/ui/admin/shares")
    share = page.locator(f'section[data-share="{SHARE}"]')
    rows = share.locator("table.shared-tables tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("hr.staff")
    expect(rows.nth(0)).to_contain_text("employee_id, email, hire_date")
    expect(rows.nth(0)).to_contain_text("mask")
    expect(rows.nth(1)).to_contain_text("main.weather.hourly")
    expect(share).to_contain_text("acme")
    recipients = page.locator("#recipients tbody tr")
    expect(recipients.filter(has_text="acme")).to_contain_text("active")
    expect(recipients.filter(has_text="acme")).to_contain_text(SHARE)
    expect(recipients.filter(has_text="former_partner")).to_contain_text("revoked")
    admin.shot("08-shares")
    assert not admin.errors, admin.errors


def test_submit_a_job_and_follow_it_to_its_table(admin: Session, platform: Stratus) -> None:
    if not _has("stratus.jobs.service"):
        pytest.fail("processing jobs must exist")
    page = admin.page
    page.goto("/ui/jobs")
    form = page.locator("#job-form")
    form.get_by_label("Job type").select_option("daily_summary")
    form.get_by_label("From", exact=True).fill(WEEK["start"])
    form.get_by_label("To", exact=True).fill(WEEK["end"])
    form.get_by_label("New York (JFK)").check()
    form.get_by_role("button", name="Submit the job").click()
    expect(page).to_have_url(re.compile(r"/ui/jobs/[0-9a-f-]{8,}$"))
    job = page.locator("#job")
    expect(job).to_have_attribute("data-state", "succeeded", timeout=60_000)
    expect(job).to_have_attribute("data-done", "true")
    expect(page.locator("#job-percent")).to_have_text("100%")
    admin.shot("09-job")
    page.locator("#job-output a").click()
    expect(page.locator("h1")).to_contain_text("main.jobs.daily_summary")
    expect(page.locator("#preview tbody tr")).to_have_count(7)
    page.goto("/ui/jobs")
    expect(page.locator("#jobs tbody tr").first).to_contain_text("succeeded")
    assert not admin.errors, admin.errors


def test_api_docs_render_the_openapi_document(browser: Browser, server: str) -> None:
    """/docs (Swagger UI, vendored) renders the OpenAPI 3.1 document under its strict CSP:
    operations listed, no "Unable to render this definition", no script or CSP errors."""
    s = Session(browser, server)
    try:
        page = s.page
        page.goto("/docs")
        expect(page.locator(".opblock-summary-path").first).to_be_visible()
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        assert any(p.startswith("/api/v1/weather") for p in paths), paths
        assert page.get_by_text("Unable to render this definition").count() == 0
        s.shot("api-docs")
        assert not s.errors, s.errors
    finally:
        s.close()
