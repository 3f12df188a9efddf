"""Unity Catalog credential vending, and answers for the UC operations Stratus does not implement.

Engines (Polars, delta-rs, Spark, DuckDB, ...) read a governed table through the UC API: they get
the table (its ``table_id`` and ``storage_location``), then ask for a short-lived storage
credential for it and read the Delta files directly:

- ``POST /temporary-table-credentials`` ``{"table_id", "operation": "READ" | "READ_WRITE"}``:
  READ needs SELECT on the table, READ_WRITE needs MODIFY (each with USE CATALOG / USE SCHEMA on
  its containers, as any read or write). A table with encrypted (``pii``-tagged) columns is
  READ-only unless the caller may also UNMASK (or owns it): a writer holding raw storage access
  could store plaintext where ciphertext belongs.
- ``POST /temporary-volume-credentials`` ``{"volume_id", "operation": "READ_VOLUME" |
  "WRITE_VOLUME"}``: READ VOLUME or WRITE VOLUME on the volume.
- ``POST /temporary-path-credentials`` ``{"url", "operation": "PATH_READ" | "PATH_READ_WRITE"}``:
  the url must lie in a table's or a volume's storage location; then as for that table or volume.
  ``PATH_CREATE_TABLE`` is refused (400): create the table with ``POST /tables`` first.

Polars sends ``table_id`` and ``operation`` in the query string, not the body; both are taken.

The answer is a ``TemporaryCredentials``: ``url`` (the storage location the credential is for),
``expiration_time`` (epoch ms; ``STRATUS_UC_CREDENTIAL_TTL`` seconds from now) and, on Azure Blob,
``azure_user_delegation_sas.sas_token``: a SAS signed with the account key over the table's folder
(``STRATUS_UC_CREDENTIAL_SCOPE=directory``, the default; the account needs a hierarchical
namespace) or over the whole container (``container``: flat Blob storage and Azurite, which know
no directory SAS). On local disk the answer is the ``file://`` URL and no secret: whoever can run
an engine next to the files can read them anyway, so the catalog decision is all there is.

Files of a table with ``pii`` columns hold only ciphertext for those columns: a reader with a
vended credential sees the ciphertext (and the HMAC token columns), never plaintext and never
masks, which only Stratus's own read paths apply.

Every request is audited (allowed or refused); the SAS itself is never logged or recorded.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import re
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal, TypeVar

import orjson
from flask import Blueprint, Flask, Response, current_app, request
from pydantic import BaseModel, ConfigDict, StrictStr
from werkzeug.exceptions import HTTPException

from stratus.api.auth import audit, current_identity
from stratus.api.encoding import json_response
from stratus.api.params import json_body, parse_body
from stratus.api.problems import UC_PREFIX, Problem, invalid
from stratus.api.state import platform
from stratus.catalog.errors import NotFound, PermissionDenied
from stratus.lakehouse import sas
from stratus.security.actions import Resource
from stratus.security.authz import Identity

SERVICE = "unityCatalog"
# tests/data/unity-catalog-oss-all.yaml as JSON (a plain install has no YAML parser; a test checks
# that both say the same)
SPEC_FILE = "unity-catalog-oss-all.json"

bp = Blueprint("uc_credentials", __name__, url_prefix=UC_PREFIX)
T = TypeVar("T", bound=BaseModel)


# ---- request bodies --------------------------------------------------------------------------
class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TableCredentialBody(_Body):
    table_id: StrictStr
    operation: Literal["READ", "READ_WRITE"]


class VolumeCredentialBody(_Body):
    volume_id: StrictStr
    operation: Literal["READ_VOLUME", "WRITE_VOLUME"]


class PathCredentialBody(_Body):
    url: StrictStr
    operation: Literal["PATH_READ", "PATH_READ_WRITE", "PATH_CREATE_TABLE"]


def _invalid(parameter: str, message: str) -> Problem:
    return invalid([{"parameter": parameter, "message": message}])  # INVALID_ARGUMENT under UC


def _body(model: type[T]) -> T:
    """The JSON body, or (Polars) the same fields in the query string."""
    data = json_body()
    for key, value in request.args.items():
        data.setdefault(key, value)
    return parse_body(model, data)


# ---- authorization: the one place a vend is decided -------------------------------------------
ACTION = {
    ("table", "READ"): "table.read",  # SELECT
    ("table", "READ_WRITE"): "table.modify",  # MODIFY
    ("volume", "READ_VOLUME"): "volume.read",  # READ VOLUME
    ("volume", "WRITE_VOLUME"): "volume.write",  # WRITE VOLUME
}


def authorize(who: Identity, kind: str, full_name: str, operation: str) -> None:
    """May ``who`` get a storage credential for ``operation`` on the table or volume? Raises
    NotFound (cannot see it) or PermissionDenied; asks the normal authorizer's named actions
    (each includes visibility and USE CATALOG / USE SCHEMA on the containers)."""
    authz = platform().governance.authorizer
    resource = Resource(kind, full_name)
    authz.require(who, ACTION[(kind, operation)], resource)
    if (
        operation == "READ_WRITE"
        and platform().tables.protector.pii_columns(full_name)
        and not authz.allowed(who, "table.unmask", resource)
    ):
        raise PermissionDenied(
            f"table {full_name} has encrypted (pii) columns: READ_WRITE credentials "
            f"need UNMASK on it, which {who.name} lacks"
        )


# ---- lookups ---------------------------------------------------------------------------------
def _name_of(kind: str, securable_id: str) -> str:
    for (k, name), sid in platform().governance.authorizer.snapshot().ids.items():
        if k == kind and sid == securable_id:
            return name
    raise NotFound(f"{kind} {securable_id} does not exist")


def _location(kind: str, full_name: str) -> str:
    ms = platform().governance.metastore
    obj = ms.get_table(full_name) if kind == "table" else ms.get_volume(full_name)
    if not obj.storage_location:
        raise NotFound(f"{kind} {full_name} has no storage location")
    return str(obj.storage_location)


def _normal(url: str) -> str:
    """A location comparable with stored ones: local paths absolute without ``file://``."""
    url = url.strip()
    if url.startswith("file://"):
        url = url[len("file://") :]
    if "://" not in url:
        return str(Path(url).resolve()) if url else url
    return url.rstrip("/")


def _owner_of_path(who: Identity, url: str) -> tuple[str, str]:
    """The visible table or volume whose storage location holds ``url``."""
    wanted = _normal(url)
    authz = platform().governance.authorizer
    for (kind, name), _ in sorted(authz.snapshot().ids.items()):
        if kind not in ("table", "volume") or not authz.can_see(who, kind, name):
            continue
        try:
            root = _normal(_location(kind, name))
        except NotFound:
            continue
        if wanted == root or wanted.startswith(root.rstrip("/") + "/"):
            return kind, name
    raise NotFound(f"no table or volume holds {url}")


# ---- the credential --------------------------------------------------------------------------
def credentials(location: str, *, write: bool) -> dict[str, Any]:
    """A TemporaryCredentials for ``location``."""
    stratus = platform()
    settings = stratus.settings
    expires = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(
        seconds=settings.uc_credential_ttl
    )
    out: dict[str, Any] = {"expiration_time": int(expires.timestamp() * 1000)}
    storage = stratus.storage
    if storage.is_local:
        out["url"] = Path(_normal(location)).as_uri()
        return out
    signed = sas.sign(
        storage, location, write=write, expires=expires, scope=settings.uc_credential_scope
    )
    out["url"] = location
    out["azure_user_delegation_sas"] = {"sas_token": signed.token}
    return out


def _vend(action: str, kind: str, full_name: str, operation: str, location: str | None) -> Response:
    audit(action, kind, full_name, {"operation": operation}, service=SERVICE)
    authorize(current_identity(), kind, full_name, operation)
    write = operation in ("READ_WRITE", "WRITE_VOLUME", "PATH_READ_WRITE")
    return json_response(credentials(location or _location(kind, full_name), write=write))


@bp.post("/temporary-table-credentials")
def table_credentials() -> Response:
    audit("generateTemporaryTableCredentials", "table", None, service=SERVICE)
    body = _body(TableCredentialBody)
    name = _name_of("table", body.table_id)
    return _vend("generateTemporaryTableCredentials", "table", name, body.operation, None)


@bp.post("/temporary-volume-credentials")
def volume_credentials() -> Response:
    audit("generateTemporaryVolumeCredentials", "volume", None, service=SERVICE)
    body = _body(VolumeCredentialBody)
    name = _name_of("volume", body.volume_id)
    return _vend("generateTemporaryVolumeCredentials", "volume", name, body.operation, None)


@bp.post("/temporary-path-credentials")
def path_credentials() -> Response:
    audit("generateTemporaryPathCredentials", None, None, service=SERVICE)
    body = _body(PathCredentialBody)
    if body.operation == "PATH_CREATE_TABLE":
        raise _invalid(
            "operation",
            "PATH_CREATE_TABLE is not supported: create the table with POST /tables, then ask "
            "for its table credentials",
        )
    segments = body.url.split("://", 1)[-1].split("/")
    if any(part in (".", "..") for part in segments):
        raise _invalid("url", "must not contain . or .. segments")
    kind, name = _owner_of_path(current_identity(), body.url)
    if kind == "table":
        operation = "READ" if body.operation == "PATH_READ" else "READ_WRITE"
    else:
        operation = "READ_VOLUME" if body.operation == "PATH_READ" else "WRITE_VOLUME"
    location = body.url if "://" in body.url else _normal(body.url)
    return _vend("generateTemporaryPathCredentials", kind, name, operation, location)


# ---- the spec: what is implemented, what answers 501 ------------------------------------------
@functools.cache
def uc_spec() -> dict[str, Any]:
    """The Unity Catalog OSS OpenAPI document (vendored, unchanged)."""
    text = (files("stratus.api") / "specs" / SPEC_FILE).read_bytes()
    doc: dict[str, Any] = orjson.loads(text)
    return doc


def _template(path: str) -> re.Pattern[str]:
    parts = re.split(r"\{[^}]+\}", path)
    return re.compile("^" + "[^/]+".join(re.escape(p) for p in parts) + "$")


@functools.cache
def _operations() -> tuple[tuple[str, str, str, re.Pattern[str]], ...]:
    return tuple(
        (method.upper(), path, str(op.get("operationId")), _template(path))
        for path, item in uc_spec()["paths"].items()
        for method, op in item.items()
        if isinstance(op, dict) and method in ("get", "post", "put", "patch", "delete")
    )


def implemented(app_rules: list[tuple[str, str]]) -> set[str]:
    """The operationIds of the spec served by a route of the app (``(METHOD, rule)`` pairs,
    rules relative to the UC prefix with ``{name}`` placeholders)."""
    served = {(m, re.sub(r"\{[^}]+\}", "{}", r)) for m, r in app_rules}
    return {
        op_id
        for method, path, op_id, _ in _operations()
        if (method, re.sub(r"\{[^}]+\}", "{}", path)) in served
    }


def _served(app: Flask) -> set[str]:
    key = "stratus.uc_served_operations"
    if key not in app.extensions:
        app.extensions[key] = implemented(uc_rules(app))
    served: set[str] = app.extensions[key]
    return served


def not_implemented(exc: HTTPException) -> Problem | None:
    """For a 404 or 405 from routing under the UC prefix: 501 NOT_IMPLEMENTED when the request
    is an operation of the UC spec that Stratus does not serve."""
    if exc.code not in (404, 405) or not request.path.startswith(UC_PREFIX + "/"):
        return None
    if request.url_rule is not None and exc.code == 404:
        return None  # a handler's own "not found"
    path = request.path[len(UC_PREFIX) :]
    served = _served(current_app)
    for method, template, op_id, pattern in _operations():
        if op_id in served:
            continue  # implemented: a path its route refuses (bad characters) stays a 404
        if method == request.method and pattern.match(path):
            return Problem(
                501,
                "Not implemented",
                f"Stratus does not implement the Unity Catalog operation {op_id} "
                f"({method} {template})",
                type_="/problems/not-implemented",
                error_code="NOT_IMPLEMENTED",
            )
    return None


def _fix_boolean_defaults(node: Any) -> None:
    """The vendored spec writes ``default: 'true'`` on booleans (ColumnInfo.nullable); a valid
    document for Swagger UI has ``true``."""
    if isinstance(node, dict):
        if node.get("type") == "boolean" and node.get("default") in ("true", "false"):
            node["default"] = node["default"] == "true"
        for value in node.values():
            _fix_boolean_defaults(value)
    elif isinstance(node, list):
        for value in node:
            _fix_boolean_defaults(value)


def uc_rules(app: Flask) -> list[tuple[str, str]]:
    """The app's routes under the UC prefix as ``(METHOD, /path/{param})``."""
    out = []
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(UC_PREFIX + "/"):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule[len(UC_PREFIX) :])
            out += [(m, path) for m in (rule.methods or ()) if m not in ("HEAD", "OPTIONS")]
    return out


def docs_spec(app_rules: list[tuple[str, str]]) -> dict[str, Any]:
    """The UC spec cut down to the operations Stratus implements, for ``/docs``."""
    doc = copy.deepcopy(uc_spec())
    keep = implemented(app_rules)
    paths: dict[str, Any] = {}
    for path, item in doc["paths"].items():
        ops = {
            m: op
            for m, op in item.items()
            if not isinstance(op, dict) or op.get("operationId") in keep or m == "parameters"
        }
        if any(isinstance(op, dict) and "operationId" in op for op in ops.values()):
            paths[path] = ops
    doc["paths"] = paths
    _fix_boolean_defaults(doc)
    doc["servers"] = [{"url": UC_PREFIX}]
    doc.setdefault("components", {})["securitySchemes"] = {
        "bearerAuth": {"type": "http", "scheme": "bearer"}
    }
    doc["security"] = [{"bearerAuth": []}]
    info = doc.setdefault("info", {})
    info["title"] = "Stratus: Unity Catalog API (implemented operations)"
    info["description"] = (
        "The Unity Catalog OSS operations Stratus serves; every other operation of the spec "
        "answers 501 with error_code NOT_IMPLEMENTED."
    )
    return doc


__all__ = [
    "authorize",
    "bp",
    "credentials",
    "docs_spec",
    "implemented",
    "not_implemented",
    "uc_rules",
    "uc_spec",
]
