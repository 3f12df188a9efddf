"""Delta Sharing over HTTP: the open protocol for recipients, and its administration.

**Protocol** under ``/delta-sharing`` (PROTOCOL.md of delta-io/delta-sharing), authenticated
with a *recipient's* bearer token (not a Stratus principal's):

- ``GET /shares`` (``maxResults``, ``pageToken``), ``GET /shares/{share}``,
  ``GET /shares/{share}/schemas``, ``GET /shares/{share}/schemas/{schema}/tables``,
  ``GET /shares/{share}/all-tables``
- ``GET|HEAD .../tables/{table}/version`` (``startingTimestamp``) and the deprecated
  ``HEAD .../tables/{table}``: the ``Delta-Table-Version`` header
- ``GET .../tables/{table}/metadata`` (``version`` | ``timestamp``), ``POST
  .../tables/{table}/query`` (``predicateHints``, ``jsonPredicateHints``, ``limitHint``,
  ``version``, ``timestamp``, ``startingVersion``, ``endingVersion``), ``GET
  .../tables/{table}/changes`` (``startingVersion`` | ``startingTimestamp``, ``endingVersion`` |
  ``endingTimestamp``, ``includeHistoricalMetadata``): ``application/x-ndjson``, in the parquet
  or (``delta-sharing-capabilities: responseformat=delta``) delta response format; the
  ``fileidhash`` header picks the file id scheme (echoed; 400 for unknown ones). Tables whose
  Delta protocol needs reader features not served here (deletion vectors, column mapping) are
  refused with 400.
- ``GET|HEAD /files/{signed token}``: a data file on local storage (Range requests work)

Errors are ``{"errorCode", "message"}`` (400 INVALID_PARAMETER_VALUE, 401 UNAUTHENTICATED, 403
PERMISSION_DENIED, 404 RESOURCE_DOES_NOT_EXIST, 503 TEMPORARILY_UNAVAILABLE, 500
INTERNAL_ERROR). A share that is not granted to the caller is reported as not existing. Every
request is audited (``service_name=deltaSharing``, the recipient's name as the identity); a
file's downloads once per recipient token, file and minute (clients read a file in several
range requests), refusals always.

**Administration** under ``/api/v1`` (Stratus principals; problem documents on errors):

- ``POST/GET /shares``, ``GET/DELETE /shares/{share}``
- ``POST /shares/{share}/tables`` ``{"table", "shared_as", "columns", "row_filter",
  "history_shared", "pii": "omit"|"mask", "comment"}``, ``DELETE /shares/{share}/tables/{s.t}``
- ``POST /shares/{share}/recipients`` ``{"recipient"}`` (grant), ``DELETE
  /shares/{share}/recipients/{recipient}`` (revoke)
- ``POST/GET /recipients``, ``GET/DELETE /recipients/{name}``; ``POST /recipients/{name}/tokens``
  ``{"days", "comment"}`` (a new token, shown once, with its profile), ``DELETE
  /recipients/{name}/tokens/{id}`` (revoke), ``POST /recipients/{name}/profile`` (a new token as
  a downloadable ``.share`` profile file)

Shares and recipients are created by metastore admins; a share's owner adds its tables (needs
SELECT on each) and grants it.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from flask import Blueprint, Response, g, request
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictStr
from werkzeug.exceptions import HTTPException
from werkzeug.http import http_date
from werkzeug.wsgi import wrap_file

from stratus.api.auth import audit, current_identity
from stratus.api.encoding import json_response
from stratus.api.params import Name, json_body, parse_body
from stratus.api.problems import Problem
from stratus.api.security import check_rate_limit
from stratus.api.state import platform
from stratus.catalog.errors import CatalogError, InvalidArgument
from stratus.catalog.tokens import iso, token_info
from stratus.lakehouse.storage import StorageError
from stratus.pii import PiiError
from stratus.security.audit import AuditRecord
from stratus.sharing import models as sm
from stratus.sharing.common import ENDPOINT_ENV, RecipientContext, TableResponse
from stratus.sharing.formats import CAPABILITIES, FILE_ID_HASH, Wire
from stratus.sharing.protocol import ndjson
from stratus.sharing.service import Sharing
from stratus.sharing.tokens import MAX_TOKEN_DAYS, RecipientTokens

log = logging.getLogger(__name__)

PREFIX = "/delta-sharing"
SERVICE = "deltaSharing"
JSON_UTF8 = "application/json; charset=utf-8"
NDJSON = "application/x-ndjson; charset=utf-8"

protocol = Blueprint("delta_sharing", __name__, url_prefix=PREFIX)
admin = Blueprint("sharing_admin", __name__, url_prefix="/api/v1")
bp = Blueprint("sharing", __name__)

_CODES = {
    400: "INVALID_PARAMETER_VALUE",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    405: "METHOD_NOT_ALLOWED",
    409: "RESOURCE_ALREADY_EXISTS",
    503: "TEMPORARILY_UNAVAILABLE",
}
_ACTIONS = {
    "list_shares": "listShares",
    "get_share": "getShare",
    "list_schemas": "listSchemas",
    "list_tables": "listTables",
    "list_all_tables": "listAllTables",
    "table_version": "getTableVersion",
    "table_version_head": "getTableVersion",
    "table_metadata": "getTableMetadata",
    "query_table": "queryTable",
    "table_changes": "queryTableChanges",
    "download": "downloadFile",
    "unknown": "unknownPath",
}


def _svc() -> Sharing:
    return platform().sharing


# ---- protocol plumbing ------------------------------------------------------------------------
def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    g.sharing_error = message
    body = {"errorCode": _CODES.get(status, "INTERNAL_ERROR"), "message": message}
    resp = Response(orjson.dumps(body), status=status, content_type="application/json")
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


@protocol.errorhandler(CatalogError)
def _catalog_error(exc: CatalogError) -> Response:
    headers = {"WWW-Authenticate": 'Bearer realm="delta-sharing"'} if exc.status == 401 else None
    return _error(exc.status, exc.message, headers)


@protocol.errorhandler(StorageError)
def _storage_error(exc: StorageError) -> Response:
    log.error("storage unavailable: %s", exc)
    return _error(503, "the storage is unavailable; retry later", {"Retry-After": "5"})


@protocol.errorhandler(PiiError)
def _pii_error(exc: PiiError) -> Response:
    log.error("PII protection while sharing: %s", exc)
    return _error(500, "the shared data cannot be prepared right now")


@protocol.errorhandler(Problem)
def _problem_error(exc: Problem) -> Response:
    """The HTTP edge's problems (stratus.api.params), in the protocol's error format."""
    return _error(exc.status, exc.detail, exc.headers)


@protocol.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    return _error(exc.code or 500, exc.description or exc.name)


@protocol.errorhandler(Exception)
def _unexpected(exc: Exception) -> Response:
    log.exception("unhandled error in the sharing protocol")
    return _error(500, "an unexpected error occurred")


@protocol.before_request
def _authenticate() -> None:
    g.sharing_started = dt.datetime.now(dt.UTC)
    g.sharing_request_id = g.get("request_id") or uuid.uuid4().hex
    g.recipient = None
    g.recipient_name = None
    endpoint = (request.endpoint or "").rsplit(".", 1)[-1]
    g.sharing_action = _ACTIONS.get(endpoint, endpoint or "unknownPath")
    args = request.view_args or {}
    if "table" in args:
        g.sharing_securable = ("table", f"{args['share']}.{args['schema']}.{args['table']}")
    elif "schema" in args:
        g.sharing_securable = ("schema", f"{args['share']}.{args['schema']}")
    elif "share" in args:
        g.sharing_securable = ("share", args["share"])
    else:
        g.sharing_securable = (None, None)
    if endpoint == "download":  # the signed URL is the credential
        check_rate_limit(kind="files")  # per client IP, a limit of their own
        return
    try:
        ctx = _svc().tokens.authenticate(request.headers.get("Authorization"))
    except CatalogError:
        check_rate_limit()  # failed authentication: per client IP
        raise
    g.recipient, g.recipient_name = ctx, ctx.name
    check_rate_limit(f"recipient:{ctx.id}")


@protocol.after_request
def _record(resp: Response) -> Response:
    status = resp.status_code
    if g.get("sharing_quiet") and status < 400:
        return resp
    outcome = "allowed" if status < 400 else ("denied" if status in (401, 403, 404) else "error")
    params: dict[str, Any] = request.args.to_dict(flat=True)
    body = g.get("sharing_body")
    if body:
        params.update(body)
    kind, name = g.get("sharing_securable", (None, None))
    try:
        platform().governance.audit.record(
            AuditRecord(
                event_time=g.get("sharing_started") or dt.datetime.now(dt.UTC),
                request_id=g.get("sharing_request_id") or uuid.uuid4().hex,
                service_name=SERVICE,
                action_name=g.get("sharing_action") or "unknownPath",
                user_identity=g.get("recipient_name"),
                securable_type=kind,
                securable_full_name=name,
                request_params=params,
                outcome=outcome,
                status_code=status,
                error_message=g.pop("sharing_error", None),
                source_ip_address=request.remote_addr,
                user_agent=request.headers.get("User-Agent"),
            )
        )
    except Exception:  # never fail a response because auditing failed
        log.exception("could not audit a sharing request")
    return resp


def _ctx() -> RecipientContext:
    return g.recipient


def _endpoint() -> str:
    """The protocol endpoint as recipients reach it (file URLs start with it)."""
    env = os.environ.get(ENDPOINT_ENV)
    if env:
        return env.rstrip("/")
    return request.host_url.rstrip("/") + PREFIX


def _max_results() -> int | None:
    raw = request.args.get("maxResults")
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise InvalidArgument("maxResults must be an integer", parameter="maxResults") from None
    if value < 0:
        raise InvalidArgument("maxResults must not be negative", parameter="maxResults")
    return value


def _listing(items: list[dict[str, Any]], next_token: str | None) -> Response:
    payload: dict[str, Any] = {"items": items}
    if next_token:
        payload["nextPageToken"] = next_token
    return Response(orjson.dumps(payload), content_type=JSON_UTF8)


def _wire() -> Wire:
    """The response format and file id scheme the client asked for (400 for unknown ones)."""
    return Wire.from_headers(request.headers.get(CAPABILITIES), request.headers.get(FILE_ID_HASH))


def _table_response(resp: TableResponse) -> Response:
    out = Response(ndjson(resp.lines), content_type=NDJSON)
    out.headers["Delta-Table-Version"] = str(resp.version)
    out.headers[CAPABILITIES] = "responseformat=parquet"
    out.headers.update(resp.headers)
    return out


def _version_response(version: int) -> Response:
    resp = Response(b"", status=200)
    resp.headers["Delta-Table-Version"] = str(version)
    return resp


# ---- protocol routes ------------------------------------------------------------------------
@protocol.get("/shares")
def list_shares() -> Response:
    items, token = _svc().reads.list_shares(_ctx(), _max_results(), request.args.get("pageToken"))
    return _listing(items, token)


@protocol.get("/shares/<share>")
def get_share(share: str) -> Response:
    payload = {"share": _svc().reads.get_share(_ctx(), share)}
    return Response(orjson.dumps(payload), content_type=JSON_UTF8)


@protocol.get("/shares/<share>/schemas")
def list_schemas(share: str) -> Response:
    items, token = _svc().reads.list_schemas(
        _ctx(), share, _max_results(), request.args.get("pageToken")
    )
    return _listing(items, token)


@protocol.get("/shares/<share>/schemas/<schema>/tables")
def list_tables(share: str, schema: str) -> Response:
    items, token = _svc().reads.list_tables(
        _ctx(), share, schema, _max_results(), request.args.get("pageToken")
    )
    return _listing(items, token)


@protocol.get("/shares/<share>/all-tables")
def list_all_tables(share: str) -> Response:
    items, token = _svc().reads.list_tables(
        _ctx(), share, None, _max_results(), request.args.get("pageToken")
    )
    return _listing(items, token)


@protocol.route("/shares/<share>/schemas/<schema>/tables/<table>/version", methods=["GET", "HEAD"])
def table_version(share: str, schema: str, table: str) -> Response:
    starting = request.args.get("startingTimestamp") or None
    return _version_response(_svc().reads.table_version(_ctx(), share, schema, table, starting))


@protocol.route("/shares/<share>/schemas/<schema>/tables/<table>", methods=["HEAD"])
def table_version_head(share: str, schema: str, table: str) -> Response:
    return _version_response(_svc().reads.table_version(_ctx(), share, schema, table))


@protocol.get("/shares/<share>/schemas/<schema>/tables/<table>/metadata")
def table_metadata(share: str, schema: str, table: str) -> Response:
    wire = _wire()
    params = {k: v for k, v in request.args.items() if v != "" and k in ("version", "timestamp")}
    return _table_response(_svc().reads.metadata(_ctx(), share, schema, table, params, wire))


@protocol.post("/shares/<share>/schemas/<schema>/tables/<table>/query")
def query_table(share: str, schema: str, table: str) -> Response:
    wire = _wire()
    body = json_body()  # a Problem if it is not a JSON object (answered as the protocol says)
    g.sharing_body = body
    return _table_response(
        _svc().reads.query(_ctx(), share, schema, table, body, _endpoint(), wire)
    )


@protocol.get("/shares/<share>/schemas/<schema>/tables/<table>/changes")
def table_changes(share: str, schema: str, table: str) -> Response:
    wire = _wire()
    params = {k: v for k, v in request.args.items() if v != ""}
    return _table_response(
        _svc().reads.changes(_ctx(), share, schema, table, params, _endpoint(), wire)
    )


@protocol.get("/files/<token>")
def download(token: str) -> Response:
    found = _svc().reads.open_download(token)
    g.recipient_name = found.recipient
    g.sharing_securable = ("file", found.file_id)
    g.sharing_quiet = not found.first  # the same file again, within the audit window
    return _file_response(found.path)


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_CHUNK = 1 << 20


def _file_response(path: Path) -> Response:
    """The file, or the one byte range asked for (206), lean: clients read a data file in
    several small requests, so each one should cost little. Other range forms get the file."""
    st = path.stat()
    size = st.st_size
    headers = {
        "Content-Type": "application/octet-stream",
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, no-store",
        "ETag": f'"{st.st_mtime_ns:x}-{size:x}"',
        "Last-Modified": http_date(st.st_mtime),
    }
    start, end, status = 0, size - 1, 200
    m = _RANGE.match((request.headers.get("Range") or "").strip())
    if m is not None and (m.group(1) or m.group(2)):
        first, last = m.groups()
        if not first:  # the last N bytes
            start, end = max(0, size - int(last)), size - 1
        else:
            start, end = int(first), min(int(last), size - 1) if last else size - 1
        if start >= size or start > end:
            return Response(status=416, headers={"Content-Range": f"bytes */{size}"})
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(max(0, end - start + 1))
    if request.method == "HEAD":
        return Response(status=status, headers=headers)
    if status == 200:
        body: Any = wrap_file(request.environ, path.open("rb"), buffer_size=_CHUNK)
    else:
        body = _read_range(path, start, end - start + 1)
    return Response(body, status=status, headers=headers, direct_passthrough=True)


def _read_range(path: Path, start: int, length: int) -> Iterator[bytes]:
    with path.open("rb") as fh:
        fh.seek(start)
        while length > 0:
            chunk = fh.read(min(_CHUNK, length))
            if not chunk:
                return
            length -= len(chunk)
            yield chunk


@protocol.route("/<path:rest>", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
def unknown(rest: str) -> Response:
    return _error(404, f"no such resource: {PREFIX}/{rest}")


# ---- administration ---------------------------------------------------------------------------
class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Comment = StrictStr


class CreateShareBody(_Body):
    name: Name
    comment: Comment | None = None
    owner: StrictStr | None = None


class AddTableBody(_Body):
    table: StrictStr
    shared_as: StrictStr | None = None
    columns: list[StrictStr] | None = None
    row_filter: StrictStr | None = None
    history_shared: StrictBool = False
    pii: Literal["omit", "mask"] = "omit"
    comment: Comment | None = None


class GrantBody(_Body):
    recipient: StrictStr


Days = Annotated[
    StrictFloat | None,
    Field(
        gt=0,
        le=MAX_TOKEN_DAYS,
        description="Days until the token expires (default 90; tokens always expire).",
    ),
]


class CreateRecipientBody(_Body):
    name: Name
    comment: Comment | None = None
    days: Days = None


class TokenBody(_Body):
    days: Days = None
    comment: Comment | None = None


_json_body = json_body
_parse = parse_body


def _audit(action: str, kind: str | None, name: str | None, body: dict[str, Any] | None = None):
    params: dict[str, Any] = request.args.to_dict()
    if body:
        params.update(body)
    audit(action, kind, name, params, service=SERVICE)


def _table_info(t: sm.ShareTable) -> dict[str, Any]:
    return {
        "id": t.id,
        "name": t.shared_name,
        "schema": t.schema_name,
        "table": t.name,
        "source_table": t.source_table,
        "columns": t.columns,
        "row_filter": t.row_filter,
        "history_shared": t.history_shared,
        "pii": t.pii_mode,
        "comment": t.comment,
        "created_at": iso(t.created_at),
        "created_by": t.created_by,
    }


def _share_info(share: sm.Share, recipients: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": share.name,
        "id": share.id,
        "comment": share.comment,
        "owner": share.owner,
        "created_at": iso(share.created_at),
        "created_by": share.created_by,
        "tables": [
            _table_info(t) for t in sorted(share.tables, key=lambda t: t.shared_name.lower())
        ],
    }
    if recipients is not None:
        out["recipients"] = recipients
    return out


def _admin_endpoint() -> str:
    env = os.environ.get(ENDPOINT_ENV)
    return env.rstrip("/") if env else request.host_url.rstrip("/") + PREFIX


def _issued(rcpt: sm.Recipient, secret: str, tok: sm.RecipientToken) -> dict[str, Any]:
    return {
        "recipient": rcpt.name,
        "token": secret,
        "token_info": token_info(tok),
        "profile": RecipientTokens.profile(secret, tok, _admin_endpoint()),
    }


@admin.post("/shares")
def create_share() -> Response:
    data = _json_body()
    _audit("createShare", "share", data.get("name") if isinstance(data.get("name"), str) else None)
    body = _parse(CreateShareBody, data)
    share = _svc().admin.create_share(
        current_identity(), body.name, comment=body.comment, owner=body.owner
    )
    return json_response(_share_info(share, []), status=201)


@admin.get("/shares")
def list_admin_shares() -> Response:
    _audit("listShares", "share", None)
    shares = _svc().admin.list_shares_admin(current_identity())
    return json_response({"shares": [_share_info(s) for s in shares]})


@admin.get("/shares/<share>")
def get_admin_share(share: str) -> Response:
    _audit("getShare", "share", share)
    row, recipients = _svc().admin.get_share_admin(current_identity(), share)
    return json_response(_share_info(row, recipients))


@admin.delete("/shares/<share>")
def delete_share(share: str) -> Response:
    _audit("deleteShare", "share", share)
    _svc().admin.delete_share(current_identity(), share)
    return json_response({})


@admin.post("/shares/<share>/tables")
def add_table(share: str) -> Response:
    data = _json_body()
    _audit("addShareTable", "share", share, data)
    body = _parse(AddTableBody, data)
    row = _svc().admin.add_table(
        current_identity(),
        share,
        body.table,
        shared_as=body.shared_as,
        columns=body.columns,
        row_filter=body.row_filter,
        history=body.history_shared,
        pii=body.pii,
        comment=body.comment,
    )
    return json_response(_table_info(row), status=201)


@admin.delete("/shares/<share>/tables/<shared_name>")
def remove_table(share: str, shared_name: str) -> Response:
    _audit("removeShareTable", "share", share, {"table": shared_name})
    _svc().admin.remove_table(current_identity(), share, shared_name)
    return json_response({})


@admin.post("/shares/<share>/recipients")
def grant_share(share: str) -> Response:
    data = _json_body()
    _audit("grantShare", "share", share, data)
    body = _parse(GrantBody, data)
    _svc().admin.grant(current_identity(), share, body.recipient)
    return json_response({"share": share, "recipient": body.recipient})


@admin.delete("/shares/<share>/recipients/<recipient>")
def revoke_share(share: str, recipient: str) -> Response:
    _audit("revokeShare", "share", share, {"recipient": recipient})
    _svc().admin.revoke(current_identity(), share, recipient)
    return json_response({})


@admin.post("/recipients")
def create_recipient() -> Response:
    data = _json_body()
    name = data.get("name") if isinstance(data.get("name"), str) else None
    _audit("createRecipient", "recipient", name, data)
    body = _parse(CreateRecipientBody, data)
    rcpt, secret, tok = _svc().admin.create_recipient(
        current_identity(), body.name, comment=body.comment, days=body.days
    )
    return json_response(_issued(rcpt, secret, tok), status=201)


@admin.get("/recipients")
def list_recipients() -> Response:
    _audit("listRecipients", "recipient", None)
    return json_response({"recipients": _svc().admin.list_recipients(current_identity())})


@admin.get("/recipients/<name>")
def get_recipient(name: str) -> Response:
    _audit("getRecipient", "recipient", name)
    return json_response(_svc().admin.get_recipient(current_identity(), name))


@admin.delete("/recipients/<name>")
def delete_recipient(name: str) -> Response:
    _audit("deleteRecipient", "recipient", name)
    _svc().admin.delete_recipient(current_identity(), name)
    return json_response({})


@admin.post("/recipients/<name>/tokens")
def create_token(name: str) -> Response:
    data = _json_body()
    _audit("createRecipientToken", "recipient", name, data)
    body = _parse(TokenBody, data)
    rcpt, secret, tok = _svc().admin.create_token(
        current_identity(), name, days=body.days, comment=body.comment
    )
    return json_response(_issued(rcpt, secret, tok), status=201)


@admin.delete("/recipients/<name>/tokens/<token_id>")
def revoke_token(name: str, token_id: str) -> Response:
    _audit("revokeRecipientToken", "recipient", name, {"token_id": token_id})
    revoked = _svc().admin.revoke_tokens(current_identity(), name, token_id)
    return json_response({"revoked": revoked})


@admin.post("/recipients/<name>/profile")
def download_profile(name: str) -> Response:
    """A new token for the recipient, as a profile file to hand over (shown once)."""
    data = _json_body()
    _audit("createRecipientProfile", "recipient", name, data)
    body = _parse(TokenBody, data)
    rcpt, secret, tok = _svc().admin.create_token(
        current_identity(), name, days=body.days, comment=body.comment or "profile download"
    )
    profile = RecipientTokens.profile(secret, tok, _admin_endpoint())
    resp = Response(orjson.dumps(profile, option=orjson.OPT_INDENT_2), content_type=JSON_UTF8)
    resp.headers["Content-Disposition"] = f'attachment; filename="{rcpt.name}.share"'
    resp.headers["Cache-Control"] = "no-store"
    return resp


bp.register_blueprint(protocol)
bp.register_blueprint(admin)
