"""The Explorer's pages: server-rendered from the REST API's own handlers (see ``bridge``).

Pages: sign-in/out, home, weather, catalog browser (catalogs > schemas > tables/volumes, table
and volume pages with grants editing), lineage graph, jobs, and for metastore admins shares and
the audit log. ``/ui/api/<path>`` hands the page scripts any GET of the REST API, answered for the
signed-in principal exactly as ``/api/<path>`` would answer that principal's token.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
from collections import defaultdict
from typing import Any
from urllib.parse import urlencode

import jwt
from flask import Response, abort, g, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response as BaseResponse

from stratus.api.auth import audit
from stratus.api.state import platform
from stratus.catalog.commands import APPLICABLE
from stratus.catalog.errors import CatalogError
from stratus.catalog.metastore import PRIVILEGES, TOKEN_PREFIX, hash_token
from stratus.security.actions import Resource
from stratus.tables.protect import PII_TAG
from stratus.ui import bridge
from stratus.ui.bridge import ApiError, get, json_call
from stratus.ui.sessions import LOGIN_WINDOW
from stratus.ui.web import (
    CSRF_FIELD,
    bp,
    clear_cookie,
    cookie_name,
    loopback,
    me,
    safe_next,
    set_cookie,
    store,
)

UC = "/api/2.1/unity-catalog"
SERVICE = "explorer"
PREVIEW_ROWS = 20
HISTORY_ROWS = 25
MAX_LISTED = 5000
AUDIT_LIMIT = 200
HOURLY_FIELDS = ("temp", "precipitation", "wind_speed", "humidity")


def page(template: str, status: int = 200, **context: Any) -> Response:
    return Response(render_template(template, **context), status=status, mimetype="text/html")


def listing(path: str, key: str, **query: Any) -> list[dict[str, Any]]:
    """Every item of a paged UC list (up to ``MAX_LISTED``)."""
    out: list[dict[str, Any]] = []
    token = None
    while True:
        data = get(path, max_results=1000, page_token=token, **query)
        out += data.get(key, [])
        token = data.get("next_page_token")
        if not token or len(out) >= MAX_LISTED:
            return out


def has(module: str) -> bool:
    """Whether another part of Stratus (jobs, sharing, lineage API...) is installed yet."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def epoch_ms(value: Any) -> str:
    if not isinstance(value, int | float):
        return ""
    return dt.datetime.fromtimestamp(value / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


bp.add_app_template_filter(epoch_ms, "epoch_ms")


# ---- sign-in -------------------------------------------------------------------------------
def _login_page(error: str | None = None, status: int = 200) -> Response:
    nonce, form_token = store().login_nonce()
    g.login_csrf = form_token
    insecure = not request.is_secure and not loopback(request.host)
    resp = page(
        "login.html",
        status,
        next=safe_next(request.values.get("next")),
        error=error,
        insecure=insecure,
    )
    set_cookie(resp, "login", nonce, LOGIN_WINDOW)
    return resp


@bp.get("/login")
def login() -> BaseResponse:
    if g.ui_session is not None:
        return redirect(safe_next(request.args.get("next")), 303)
    return _login_page()


def _token_expiry(token: str) -> float | None:
    if token.startswith(TOKEN_PREFIX):
        ms = platform().governance.metastore
        expires = ms.token_expiry(hash_token(token))
        return None if expires is None else expires.timestamp()
    claims = jwt.decode(token, options={"verify_signature": False})
    exp = claims.get("exp")
    return float(exp) if isinstance(exp, int | float) else None


@bp.post("/login")
def login_post() -> BaseResponse:
    sent = request.form.get(CSRF_FIELD)
    if not sent:
        abort(400, "the sign-in form is missing its CSRF token: reload the page")
    if not store().check_login(request.cookies.get(cookie_name("login")), sent):
        abort(403, "the sign-in form has expired or was not issued here: reload the page")
    audit("signIn", None, None, {}, service=SERVICE)
    token = request.form.get("token", "").strip()
    try:
        ident = platform().governance.authenticator.authenticate(f"Bearer {token}")
    except CatalogError:
        return _login_page("That token is not valid, has expired or was revoked.", 401)
    kind = "api" if token.startswith(TOKEN_PREFIX) else "oidc"
    cookie, sess = store().create(ident.name, token, kind, _token_expiry(token))
    g.identity = ident
    resp = redirect(safe_next(request.form.get("next")), 303)
    set_cookie(resp, "", cookie, max(1, int(sess.expires - sess.created)))
    clear_cookie(resp, "login")
    return resp


@bp.post("/logout")
def logout() -> BaseResponse:
    audit("signOut", None, None, {}, service=SERVICE)
    store().delete(request.cookies.get(cookie_name()))
    resp = redirect(url_for("ui.login"), 303)
    clear_cookie(resp, "")
    return resp


# ---- home ----------------------------------------------------------------------------------
@bp.get("/")
def home() -> Response:
    catalogs = listing(f"{UC}/catalogs", "catalogs")
    return page("home.html", nav="home", catalogs=catalogs)


# ---- API for the page scripts --------------------------------------------------------------
@bp.get("/api/<path:rest>")
def api(rest: str) -> Response:
    return bridge.call("GET", f"/api/{rest}", query=request.query_string)


# ---- weather -------------------------------------------------------------------------------
@bp.get("/weather")
def weather() -> Response:
    try:
        cities = get("/api/v1/cities")["data"]
    except ApiError as exc:
        return page("weather.html", exc.status, nav="weather", error=exc.message, cities=[])
    with_data = [c for c in cities if c.get("rows")]
    chosen = [c for c in request.args.getlist("city_id") if c]
    if not chosen and with_data:
        chosen = [with_data[0]["city_id"]]
    first = next((c for c in cities if c["city_id"] in chosen), None)
    start, end = request.args.get("start", ""), request.args.get("end", "")
    if first and first.get("last_date") and not (start or end):
        last = dt.date.fromisoformat(first["last_date"])
        start, end = (last - dt.timedelta(days=6)).isoformat(), last.isoformat()
    granularity = request.args.get("granularity", "day")
    context: dict[str, Any] = {
        "nav": "weather",
        "cities": cities,
        "chosen": chosen,
        "start": start,
        "end": end,
        "granularity": granularity,
        "fields": HOURLY_FIELDS,
    }
    if not chosen:
        return page("weather.html", error="No city has data yet.", **context)
    base = {"city_id": ",".join(chosen), "start": start, "end": end}
    limit = platform().settings.max_page_size
    hourly = {**base, "fields": ",".join(("city_id", "ts", *HOURLY_FIELDS)), "limit": limit}
    summary = {**base, "granularity": granularity}
    context["hourly_src"] = "/ui/api/v1/weather?" + urlencode(hourly)
    context["summary_src"] = "/ui/api/v1/weather/summary?" + urlencode(summary)
    context["downloads"] = {
        "hourly": {
            f: "/ui/api/v1/weather?" + urlencode({**base, "limit": limit, "format": f})
            for f in ("csv", "parquet")
        },
        "summary": {
            f: "/ui/api/v1/weather/summary?" + urlencode({**summary, "format": f})
            for f in ("csv", "parquet")
        },
    }
    context["limit"] = limit
    try:
        context["summary"] = get("/api/v1/weather/summary", **summary)["data"]
    except ApiError as exc:
        return page("weather.html", exc.status, error=exc.message, **context)
    return page("weather.html", **context)


# ---- catalog -------------------------------------------------------------------------------
def permissions(kind: str, full_name: str) -> dict[str, Any]:
    try:
        data: dict[str, Any] = get(f"/api/v1/permissions/{kind}/{full_name}")
    except ApiError as exc:
        return {"error": exc.message}
    data["can_edit"] = "MANAGE" in data.get("effective_privileges", [])
    data["applicable"] = [p for p in PRIVILEGES if p in APPLICABLE[kind]]
    data["kind"] = kind
    return data


def _optional(path: str, key: str, **query: Any) -> tuple[list[dict[str, Any]], str | None]:
    try:
        return listing(path, key, **query), None
    except ApiError as exc:
        return [], exc.message


@bp.get("/catalog")
def catalogs() -> Response:
    return page("catalogs.html", nav="catalog", catalogs=listing(f"{UC}/catalogs", "catalogs"))


def _catalog_page(name: str, *, error: str | None = None, status: int = 200) -> Response:
    info = get(f"{UC}/catalogs/{name}")
    schemas, denied = _optional(f"{UC}/schemas", "schemas", catalog_name=name)
    return page(
        "catalog.html",
        status,
        nav="catalog",
        info=info,
        schemas=schemas,
        denied=denied,
        perms=permissions("catalog", name),
        error=error,
    )


def _schema_page(full_name: str, *, error: str | None = None, status: int = 200) -> Response:
    info = get(f"{UC}/schemas/{full_name}")
    catalog, schema = full_name.split(".", 1)
    tables, denied = _optional(f"{UC}/tables", "tables", catalog_name=catalog, schema_name=schema)
    volumes, _ = _optional(f"{UC}/volumes", "volumes", catalog_name=catalog, schema_name=schema)
    return page(
        "schema.html",
        status,
        nav="catalog",
        info=info,
        tables=tables,
        volumes=volumes,
        denied=denied,
        perms=permissions("schema", full_name),
        error=error,
    )


def history(full_name: str) -> tuple[list[dict[str, Any]], str | None]:
    """The Delta log's commits, newest first, for a caller who may read the table."""
    stratus = platform()
    try:
        stratus.governance.authorizer.require(me(), "table.read", Resource("table", full_name))
    except CatalogError:
        return [], "Reading the history needs SELECT on this table."
    audit("getTableHistory", "table", full_name, {}, service=SERVICE)
    try:
        spec = stratus.tables.spec(full_name)
        table = stratus.lakehouse.table(spec)
    except Exception:  # a view, or a table whose files are not in the lakehouse
        table = None
    if table is None:
        return [], "This table has no Delta log (it is a view or holds no data yet)."
    out = []
    for commit in stratus.lakehouse.commit_log(spec, HISTORY_ROWS, table):
        params = commit.get("operationParameters") or {}
        metrics = commit.get("operationMetrics") or {}
        user = next(
            (
                str(commit[k])
                for k in ("userName", "userId", "user", "stratus.principal", "principal")
                if commit.get(k)
            ),
            "",
        )
        out.append(
            {
                "version": commit.get("version"),
                "operation": commit.get("operation"),
                "timestamp": epoch_ms(commit.get("timestamp")),
                "user": user,
                "parameters": {k: v for k, v in params.items() if k != "metadata"},
                "metrics": metrics,
                "engine": commit.get("engineInfo") or commit.get("clientVersion") or "",
            }
        )
    return out, None


def _table_page(full_name: str, *, error: str | None = None, status: int = 200) -> Response:
    info = get(f"{UC}/tables/{full_name}")
    tags = get(f"{UC}/tags/table/{full_name}")["tags"]
    column_tags: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for tag in tags:
        if tag.get("column_name"):
            column_tags[tag["column_name"]].append(tag)
    pii = {
        t["column_name"]: t.get("value") or PII_TAG
        for t in tags
        if t["key"] == PII_TAG and t.get("column_name")
    }
    preview, preview_error = None, None
    try:
        preview = get(f"/api/v1/tables/{full_name}/rows", limit=PREVIEW_ROWS)
    except ApiError as exc:
        preview_error = exc.message
    commits, history_note = history(full_name)
    return page(
        "table.html",
        status,
        nav="catalog",
        info=info,
        full_name=full_name,
        table_tags=[t for t in tags if not t.get("column_name")],
        column_tags=column_tags,
        pii=pii,
        preview=preview,
        preview_error=preview_error,
        history=commits,
        history_note=history_note,
        perms=permissions("table", full_name),
        error=error,
        lineage=has("stratus.api.lineage"),
    )


def _volume_page(full_name: str, *, error: str | None = None, status: int = 200) -> Response:
    info = get(f"{UC}/volumes/{full_name}")
    try:
        tags = get(f"{UC}/tags/volume/{full_name}")["tags"]
    except ApiError:
        tags = []
    return page(
        "volume.html",
        status,
        nav="catalog",
        info=info,
        full_name=full_name,
        tags=tags,
        perms=permissions("volume", full_name),
        error=error,
    )


PAGES = {
    "catalog": _catalog_page,
    "schema": _schema_page,
    "table": _table_page,
    "volume": _volume_page,
}


@bp.get("/catalog/<catalog>")
def catalog(catalog: str) -> Response:
    return _catalog_page(catalog)


@bp.get("/catalog/<catalog>/<schema>")
def schema(catalog: str, schema: str) -> Response:
    return _schema_page(f"{catalog}.{schema}")


@bp.get("/table/<full_name>")
def table(full_name: str) -> Response:
    return _table_page(full_name)


@bp.get("/volume/<full_name>")
def volume(full_name: str) -> Response:
    return _volume_page(full_name)


def securable_url(kind: str, full_name: str) -> str:
    if kind == "catalog":
        return url_for("ui.catalog", catalog=full_name)
    if kind == "schema":
        catalog_name, schema_name = full_name.split(".", 1)
        return url_for("ui.schema", catalog=catalog_name, schema=schema_name)
    return url_for(f"ui.{kind}", full_name=full_name)


@bp.post("/permissions/<securable_type>/<full_name>")
def update_permissions(securable_type: str, full_name: str) -> BaseResponse:
    """Grant or revoke one privilege: the very handler of ``PATCH /permissions`` decides."""
    render = PAGES.get(securable_type)
    if render is None:
        abort(404)
    principal = request.form.get("principal", "").strip()
    privilege = request.form.get("privilege", "").strip()
    op = request.form.get("op", "")
    if op not in ("add", "remove") or not principal or not privilege:
        return render(full_name, error="Name a principal and a privilege.", status=400)
    try:
        json_call(
            "PATCH",
            f"{UC}/permissions/{securable_type}/{full_name}",
            body={"changes": [{"principal": principal, op: [privilege]}]},
        )
    except ApiError as exc:
        if exc.status == 404:
            raise
        return render(full_name, error=exc.message, status=exc.status)
    done = "granted" if op == "add" else "revoked"
    return redirect(f"{securable_url(securable_type, full_name)}?{done}=1#grants", 303)


# ---- lineage -------------------------------------------------------------------------------
@bp.get("/lineage")
def lineage() -> BaseResponse:
    chosen = request.args.get("table", "").strip()
    if chosen:
        return redirect(url_for("ui.lineage_of", full_name=chosen), 303)
    return page("lineage.html", nav="lineage", full_name=None, tables=_all_tables())


@bp.get("/lineage/<full_name>")
def lineage_of(full_name: str) -> Response:
    depth = request.args.get("depth", "3")
    if not depth.isdigit() or not 1 <= int(depth) <= 10:
        depth = "3"
    available = has("stratus.api.lineage")
    info = get(f"{UC}/tables/{full_name}")
    src = f"/ui/api/v1/lineage/tables/{full_name}"
    return page(
        "lineage.html",
        nav="lineage",
        full_name=full_name,
        info=info,
        tables=[],
        depth=depth,
        available=available,
        graph_src=src + "?" + urlencode({"direction": "both", "depth": depth}),
        column_src="/ui/api/v1/lineage/columns/",
    )


def _all_tables() -> list[str]:
    """Full names of the tables the caller may see (for the lineage picker)."""
    out: list[str] = []
    for c in listing(f"{UC}/catalogs", "catalogs"):
        schemas, _ = _optional(f"{UC}/schemas", "schemas", catalog_name=c["name"])
        for s in schemas:
            tables, _ = _optional(
                f"{UC}/tables", "tables", catalog_name=c["name"], schema_name=s["name"]
            )
            out += [f"{c['name']}.{s['name']}.{t['name']}" for t in tables]
            if len(out) >= MAX_LISTED:
                return out
    return out


# ---- jobs ----------------------------------------------------------------------------------
@bp.get("/jobs")
def jobs() -> Response:
    return _jobs_page()


def _jobs_page(error: str | None = None, status: int = 200, form: Any = None) -> Response:
    available = has("stratus.jobs")
    items: list[dict[str, Any]] = []
    listing_error = None
    if available:
        try:
            items = get("/api/v1/jobs", limit=50)["data"]
        except ApiError as exc:
            listing_error = exc.message
    try:
        cities = get("/api/v1/cities")["data"]
    except ApiError:
        cities = []
    return page(
        "jobs.html",
        status,
        nav="jobs",
        available=available,
        jobs=items,
        listing_error=listing_error,
        cities=cities,
        job_types=_job_types() if available else [],
        error=error,
        form=form or MultiDict(),
    )


def _job_types() -> list[tuple[str, str, str]]:
    """(name, title, default output table) of each job type the jobs package defines."""
    from stratus.jobs.definitions import JOB_TYPES, default_output

    return [(t.name, t.title, default_output(t.name)) for t in JOB_TYPES.values()]


@bp.post("/jobs")
def submit_job() -> BaseResponse:
    """Submit through the very handler of ``POST /api/v1/jobs`` (it validates and authorizes)."""
    form = request.form
    job_type = form.get("type", "")
    body: dict[str, Any] = {
        "type": job_type,
        "city_ids": [c for c in form.getlist("city_id") if c],
        "start": form.get("start", ""),
        "end": form.get("end", ""),
    }
    z = form.get("z", "").strip()
    if job_type == "anomalies" and z:
        try:
            body["options"] = {"z": float(z)}
        except ValueError:
            return _jobs_page("The z-score threshold must be a number.", 400, form)
    output = form.get("output", "").strip()
    if output:
        body["output"] = output
    try:
        job = json_call("POST", "/api/v1/jobs", body=body)
    except ApiError as exc:
        return _jobs_page(exc.message, exc.status, form)
    return redirect(url_for("ui.job", job_id=job["id"]), 303)


@bp.get("/jobs/<job_id>")
def job(job_id: str) -> Response:
    data = get(f"/api/v1/jobs/{job_id}")
    return page("job.html", nav="jobs", job=data, job_id=job_id)


# ---- admin ---------------------------------------------------------------------------------
def _admin() -> None:
    if not platform().governance.authorizer.allowed(me(), "metastore.admin", Resource("metastore")):
        abort(403, f"{me().name} is not a metastore admin: this page is for admins only")


@bp.get("/admin/audit")
def audit_log() -> Response:
    _admin()
    names = ("principal", "action", "outcome", "since", "until", "limit")
    filters = {k: request.args.get(k, "").strip() for k in names}
    query = {k: v for k, v in filters.items() if v}
    query.setdefault("limit", str(AUDIT_LIMIT))
    records, error, status = [], None, 200
    try:
        records = get("/api/v1/audit", **query)["data"]
    except ApiError as exc:
        if exc.status in (401, 403):
            raise
        error, status = exc.message, exc.status
    return page(
        "audit.html",
        status,
        nav="audit",
        filters=filters,
        records=records,
        error=error,
        limit=query["limit"],
    )


@bp.get("/admin/shares")
def shares() -> Response:
    _admin()
    available = has("stratus.sharing")
    items: list[dict[str, Any]] = []
    recipients: list[dict[str, Any]] = []
    error = None
    if available:
        try:
            items = [get(f"/api/v1/shares/{s['name']}") for s in get("/api/v1/shares")["shares"]]
            recipients = get("/api/v1/recipients")["recipients"]
        except ApiError as exc:
            error = exc.message
    return page(
        "shares.html",
        nav="shares",
        available=available,
        shares=items,
        recipients=recipients,
        error=error,
    )
