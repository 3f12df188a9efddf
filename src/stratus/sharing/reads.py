"""The Delta Sharing protocol's reads for an authenticated recipient, without HTTP.

Listing shares, schemas and tables; a table's version, metadata, files (``query``) and change
data feed (``changes``); and the downloads of pre-signed file URLs (:mod:`stratus.sharing.signing`).
Answers are plain Python (dicts for the NDJSON lines). Errors are
:class:`stratus.catalog.errors.CatalogError` subclasses, which the HTTP layer maps to the
protocol's ``{"errorCode", "message"}``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import orjson
from sqlalchemy import select

from stratus.catalog.errors import InvalidArgument, NotFound, PermissionDenied
from stratus.catalog.registry import TableSpec
from stratus.lakehouse.storage import Storage
from stratus.sharing import models as sm
from stratus.sharing import protocol as p
from stratus.sharing.common import (
    Download,
    Plan,
    RecipientContext,
    Snapshot,
    TableResponse,
    int_param,
    ms,
    now,
    parse_ts,
)
from stratus.sharing.derived import Sessions
from stratus.sharing.formats import Wire
from stratus.sharing.serving import SharedTables
from stratus.sharing.signing import AzureSigner, SignatureError, SignedFile, UrlSigner
from stratus.sharing.tokens import RecipientTokens

log = logging.getLogger(__name__)

DEFAULT_PAGE = 500
MAX_PAGE = 1000
# Clients read a file in several requests (HEAD, footer, column chunks): one audit record per
# recipient token and file in this many seconds (refusals are always recorded).
DOWNLOAD_AUDIT_SECONDS = 60.0
PARQUET = Wire()


def _flag(value: str | None, parameter: str) -> bool:
    """A boolean query parameter (``true`` / ``false``, any case; absent: false)."""
    if value is None:
        return False
    text = value.strip().lower()
    if text not in ("true", "false"):
        raise InvalidArgument(f"{parameter} must be true or false", parameter=parameter)
    return text == "true"


def _epoch_ms(value: Any) -> int:
    """An add action's modification time in ms (delta-rs gives ms or a timestamp)."""
    if value is None:
        return 0
    if isinstance(value, dt.datetime):
        return ms(value if value.tzinfo else value.replace(tzinfo=dt.UTC))
    return int(value)


class ProtocolReads:
    def __init__(
        self,
        storage: Storage,
        shared: SharedTables,
        tokens: RecipientTokens,
        reader: Sessions,
        signer: Callable[[], UrlSigner],
        url_ttl: float,
    ) -> None:
        self.storage = storage
        self.shared = shared
        self.tokens = tokens
        self._reader = reader
        self._signer_factory = signer
        self._signer: UrlSigner | None = None
        self.url_ttl = url_ttl
        self._azure = None if storage.is_local else AzureSigner(storage)
        self._downloads: dict[tuple[str, str], float] = {}  # (token id, path) -> last audited
        self._guard = threading.Lock()

    @property
    def signer(self) -> UrlSigner:
        if self._signer is None:
            self._signer = self._signer_factory()
        return self._signer

    def _at(self, spec: TableSpec, version: int) -> Snapshot:
        snap = self.shared.snapshot(spec, version)
        if snap is None:
            raise InvalidArgument(f"version {version} cannot be read", parameter="version")
        return snap

    # ---- listing -------------------------------------------------------------------------
    def list_shares(
        self, ctx: RecipientContext, max_results: int | None, page_token: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        with self._reader() as s:
            rows = s.execute(
                select(sm.Share.name, sm.Share.id)
                .join(sm.ShareGrant, sm.ShareGrant.share_id == sm.Share.id)
                .where(sm.ShareGrant.recipient_id == ctx.id)
            ).all()
        items = {name.lower(): {"name": name, "id": sid} for name, sid in rows}
        return _page(items, max_results, page_token)

    def get_share(self, ctx: RecipientContext, share: str) -> dict[str, Any]:
        with self._reader() as s:
            row = self.shared.granted(s, ctx, share)
            return {"name": row.name, "id": row.id}

    def list_schemas(
        self, ctx: RecipientContext, share: str, max_results: int | None, page_token: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        with self._reader() as s:
            row = self.shared.granted(s, ctx, share)
            items = {
                t.schema_name.lower(): {"name": t.schema_name, "share": row.name}
                for t in row.tables
            }
        return _page(items, max_results, page_token)

    def list_tables(
        self,
        ctx: RecipientContext,
        share: str,
        schema: str | None,
        max_results: int | None,
        page_token: str | None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Tables of one schema of the share (``schema`` None: of every schema)."""
        with self._reader() as s:
            row = self.shared.granted(s, ctx, share)
            tables = [
                t for t in row.tables if schema is None or t.schema_name.lower() == schema.lower()
            ]
            if schema is not None and not tables:
                raise NotFound(f"schema {share}.{schema} does not exist")
            items = {
                f"{t.schema_name.lower()}\x00{t.name.lower()}": {
                    "name": t.name,
                    "schema": t.schema_name,
                    "share": row.name,
                    "shareId": row.id,
                    "id": t.id,
                }
                for t in tables
            }
        return _page(items, max_results, page_token)

    # ---- protocol: version, metadata, query, changes -------------------------------------
    def table_version(
        self,
        ctx: RecipientContext,
        share: str,
        schema: str,
        table: str,
        starting_timestamp: str | None = None,
    ) -> int:
        plan = self.shared.find(ctx, share, schema, table)
        spec, snap, floor = self.shared.serve(plan)
        if starting_timestamp is None:
            return snap.version
        self._need_history(plan)
        when = ms(parse_ts(starting_timestamp, "startingTimestamp"))
        for version, ts in self.shared.history(spec):
            if version >= floor and ts >= when:
                return version
        raise InvalidArgument(
            f"startingTimestamp {starting_timestamp} is after the latest version",
            parameter="startingTimestamp",
        )

    def metadata(
        self,
        ctx: RecipientContext,
        share: str,
        schema: str,
        table: str,
        params: Mapping[str, str] | None = None,
        wire: Wire = PARQUET,
    ) -> TableResponse:
        """The table's protocol and metadata, latest or at ``version`` / ``timestamp``."""
        params = params or {}
        version = params.get("version")
        when = params.get("timestamp")
        if version is not None and when is not None:
            raise InvalidArgument(
                "give at most one of version and timestamp", parameter="timestamp"
            )
        plan = self.shared.find(ctx, share, schema, table)
        spec, snap, floor = self.shared.serve(plan)
        at = None if version is None else int_param(version, "version")
        snap, travelled = self._travel(plan, spec, snap, floor, at, when)
        files = self._files(plan, snap)
        lines = [wire.protocol_line(snap), wire.metadata_line(plan, snap, files, travelled)]
        return TableResponse(snap.version, lines, wire.headers())

    def _travel(
        self,
        plan: Plan,
        spec: TableSpec,
        snap: Snapshot,
        floor: int,
        version: int | None,
        when: str | None,
    ) -> tuple[Snapshot, int | None]:
        """The snapshot at ``version`` or ``when`` (a timestamp), with the version travelled to
        (None when neither is given: the latest)."""
        if when is not None:
            self._need_history(plan)
            version = self._version_at(spec, when, floor)
        if version is None:
            return snap, None
        self._need_history(plan)
        if version < floor or version > snap.version:
            raise InvalidArgument(
                f"version {version} is not shared: versions {floor} to {snap.version} are",
                parameter="version",
            )
        return (self._at(spec, version) if version != snap.version else snap), version

    def query(
        self,
        ctx: RecipientContext,
        share: str,
        schema: str,
        table: str,
        body: Mapping[str, Any],
        endpoint: str,
        wire: Wire = PARQUET,
    ) -> TableResponse:
        plan = self.shared.find(ctx, share, schema, table)
        q = _QueryBody.parse(body)
        spec, snap, floor = self.shared.serve(plan)
        if q.starting_version is not None:
            self._need_history(plan)
            return self._changes(
                ctx,
                plan,
                spec,
                snap,
                floor,
                (q.starting_version, q.ending_version),
                endpoint,
                wire,
                cdf=False,
            )
        snap, travelled = self._travel(plan, spec, snap, floor, q.version, q.timestamp)
        files = self._files(plan, snap)
        types = snap.types
        hints: list[Any] = []
        for text in q.predicate_hints:
            try:
                hints.append(p.parse_sql(text))
            except p.PredicateError:
                log.debug("skipping predicate hint %r", text)  # best effort, as the protocol says
        if q.json_predicate_hints:
            try:
                hints.append(p.parse_json(q.json_predicate_hints))
            except p.PredicateError:
                log.debug("skipping jsonPredicateHints")
        selected = p.limit_files(p.prune(files, hints, types), q.limit_hint)
        expires = self._expiry()
        lines = [wire.protocol_line(snap), wire.metadata_line(plan, snap, files, travelled)]
        for e in selected:
            url = self._url(ctx, spec, e.path, expires, endpoint)
            stats = p.stats_json(e)
            if wire.delta:
                add: dict[str, Any] = {
                    "path": url,
                    "partitionValues": dict(e.partition),
                    "size": e.size,
                    "modificationTime": _epoch_ms(e.modification_time),
                    "dataChange": True,
                }
                if stats is not None:
                    add["stats"] = stats
                lines.append(
                    {
                        "file": {
                            "id": wire.file_id(snap.table_id, e.path),
                            "size": e.size,
                            "expirationTimestamp": ms(expires),
                            "deltaSingleAction": {"add": add},
                        }
                    }
                )
                continue
            line: dict[str, Any] = {
                "url": url,
                "id": wire.file_id(snap.table_id, e.path),
                "partitionValues": {k: ("" if v is None else v) for k, v in e.partition.items()},
                "size": e.size,
                "expirationTimestamp": ms(expires),
            }
            if stats is not None:
                line["stats"] = stats
            lines.append({"file": line})
        return TableResponse(snap.version, lines, wire.headers())

    def changes(
        self,
        ctx: RecipientContext,
        share: str,
        schema: str,
        table: str,
        params: Mapping[str, str],
        endpoint: str,
        wire: Wire = PARQUET,
    ) -> TableResponse:
        plan = self.shared.find(ctx, share, schema, table)
        self._need_history(plan)
        historical = _flag(params.get("includeHistoricalMetadata"), "includeHistoricalMetadata")
        spec, snap, floor = self.shared.serve(plan)
        start_v, start_ts = params.get("startingVersion"), params.get("startingTimestamp")
        end_v, end_ts = params.get("endingVersion"), params.get("endingTimestamp")
        if (start_v is None) == (start_ts is None):
            raise InvalidArgument(
                "give exactly one of startingVersion and startingTimestamp",
                parameter="startingVersion",
            )
        if end_v is not None and end_ts is not None:
            raise InvalidArgument(
                "give at most one of endingVersion and endingTimestamp", parameter="endingVersion"
            )
        history = self.shared.history(spec) if start_ts or end_ts else []
        if start_v is not None:
            start = int_param(start_v, "startingVersion")
        else:
            when = ms(parse_ts(str(start_ts), "startingTimestamp"))
            later = [v for v, ts in history if ts >= when]
            if not later:
                raise InvalidArgument(
                    f"startingTimestamp {start_ts} is after the latest version",
                    parameter="startingTimestamp",
                )
            start = max(later[0], floor)
        end: int | None = None
        if end_v is not None:
            end = int_param(end_v, "endingVersion")
        elif end_ts is not None:
            when = ms(parse_ts(str(end_ts), "endingTimestamp"))
            earlier = [v for v, ts in history if ts <= when]
            if not earlier:
                raise InvalidArgument(
                    f"endingTimestamp {end_ts} is before the first version",
                    parameter="endingTimestamp",
                )
            end = earlier[-1]
        return self._changes(
            ctx, plan, spec, snap, floor, (start, end), endpoint, wire, historical=historical
        )

    def _changes(
        self,
        ctx: RecipientContext,
        plan: Plan,
        spec: TableSpec,
        snap: Snapshot,
        floor: int,
        versions: tuple[int, int | None],
        endpoint: str,
        wire: Wire,
        *,
        cdf: bool = True,
        historical: bool = False,
    ) -> TableResponse:
        """Data change files of versions start..end: with ``cdf``, a version's change files
        when it has them (else its added and removed files); without, added/removed files.
        With ``historical``, the metadata of every version in the range that changed it."""
        start, end = versions
        end = snap.version if end is None else min(end, snap.version)
        if start < floor:
            raise InvalidArgument(
                f"history of this table is shared from version {floor}; "
                f"startingVersion {start} is earlier",
                parameter="startingVersion",
            )
        if start > snap.version:
            raise InvalidArgument(
                f"startingVersion {start} is after the latest version {snap.version}",
                parameter="startingVersion",
            )
        if end < start:
            raise InvalidArgument(
                "the ending version is before the starting version", parameter="endingVersion"
            )
        types = snap.types
        keep = self._direct_filter(plan)
        expires = self._expiry()
        # delta format: the head metadata is the starting version's (a Delta reader replays
        # the log from there); parquet: the latest, as before
        head = self._at(spec, start) if wire.delta and start != snap.version else snap
        lines = [
            wire.protocol_line(snap),
            wire.metadata_line(plan, head, None, start if wire.delta else None),
        ]
        for version in range(start, end + 1):
            actions = self.shared.commit(spec, version)
            if historical and version != start and any("metaData" in a for a in actions):
                lines.append(wire.metadata_line(plan, self._at(spec, version), None, version))
            stamp = next(
                (
                    int(a["commitInfo"].get("inCommitTimestamp") or a["commitInfo"]["timestamp"])
                    for a in actions
                    if "commitInfo" in a and "timestamp" in a["commitInfo"]
                ),
                0,
            )
            cdc = [a["cdc"] for a in actions if "cdc" in a]
            if cdf and cdc:
                wanted = [("cdc", a) for a in cdc]
            else:
                wanted = [
                    (kind, a[kind])
                    for a in actions
                    for kind in ("add", "remove")
                    if kind in a and a[kind].get("dataChange", True)
                ]
            for kind, action in wanted:
                path = unquote(action["path"])
                parts = {
                    k: ("" if v is None else str(v))
                    for k, v in (action.get("partitionValues") or {}).items()
                }
                entry = p.FileEntry(path, int(action.get("size") or 0), dict(parts))
                if keep is not None and not p.matches_exactly(keep, entry, types):
                    continue
                url = self._url(ctx, spec, path, expires, endpoint)
                if wire.delta:
                    delta_action = {**action, "path": url}
                    lines.append(
                        {
                            "file": {
                                "id": wire.file_id(snap.table_id, path),
                                "size": entry.size,
                                "version": version,
                                "timestamp": stamp,
                                "expirationTimestamp": ms(expires),
                                "deltaSingleAction": {kind: delta_action},
                            }
                        }
                    )
                    continue
                line: dict[str, Any] = {
                    "url": url,
                    "id": wire.file_id(snap.table_id, path),
                    "partitionValues": parts,
                    "size": entry.size,
                    "timestamp": stamp,
                    "version": version,
                    "expirationTimestamp": ms(expires),
                }
                if kind == "add" and action.get("stats"):
                    line["stats"] = action["stats"]
                lines.append({"cdf" if kind == "cdc" else kind: line})
        return TableResponse(start, lines, wire.headers())

    def _need_history(self, plan: Plan) -> None:
        if not plan.history:
            raise InvalidArgument(
                f"history is not shared for table {plan.schema_name}.{plan.name}: no time "
                "travel and no change data feed",
                parameter="version",
            )

    def _version_at(self, spec: TableSpec, timestamp: str, floor: int) -> int:
        when = ms(parse_ts(timestamp, "timestamp"))
        earlier = [v for v, ts in self.shared.history(spec) if ts <= when]
        if not earlier or earlier[-1] < floor:
            raise InvalidArgument(
                f"timestamp {timestamp} is before the shared history", parameter="timestamp"
            )
        return earlier[-1]

    def _direct_filter(self, plan: Plan) -> Any | None:
        """The row filter still to apply to file lists (derived copies are already filtered)."""
        return None if plan.derived else plan.row_filter

    def _files(self, plan: Plan, snap: Snapshot) -> list[p.FileEntry]:
        keep = self._direct_filter(plan)
        if keep is None:
            return snap.entries
        types = snap.types
        return [e for e in snap.entries if p.matches_exactly(keep, e, types)]

    # ---- URLs ----------------------------------------------------------------------------
    def _expiry(self) -> dt.datetime:
        return now() + dt.timedelta(seconds=self.url_ttl)

    def _url(
        self, ctx: RecipientContext, spec: TableSpec, path: str, expires: dt.datetime, endpoint: str
    ) -> str:
        table_url = self.shared.lakehouse.url(spec)
        if self._azure is not None:
            return self._azure.url(table_url, path, expires)
        root = self.storage.root.rstrip("/")
        relative = table_url[len(root) + 1 :] if table_url.startswith(root + "/") else table_url
        token = self.signer.sign(f"{relative}/{path}", ctx.id, ctx.token_id, ms(expires))
        # ``sp=r`` (signed permissions: read, as in an Azure SAS) marks the URL as pre-signed for
        # Delta readers (delta-kernel fetches only such URLs over HTTP); the token is the
        # credential, the server ignores the query
        return f"{endpoint.rstrip('/')}/files/{token}?sp=r"

    def sign_for_test(self, relative: str, ctx: RecipientContext, expires_ms: int) -> str:
        """A download token for ``relative`` (tests use it to craft expired URLs)."""
        return self.signer.sign(relative, ctx.id, ctx.token_id, expires_ms)

    def open_download(self, token: str) -> Download:
        """The local file a Stratus-signed URL names, after checking its signature, expiry
        and that the token it was issued to is still valid (PermissionDenied otherwise)."""
        if not self.storage.is_local:
            raise NotFound("no such file")
        try:
            signed: SignedFile = self.signer.verify(token)
        except SignatureError as exc:
            raise PermissionDenied(str(exc)) from None
        name = self.tokens.holder(signed.recipient_id, signed.token_id)
        if name is None:
            raise PermissionDenied("the token this URL was issued to is no longer valid")
        root = Path(self.storage.root).resolve()
        target = (root / signed.path).resolve()
        if not target.is_relative_to(root) or target.suffix != ".parquet":
            raise PermissionDenied("the URL does not name a shared data file")
        if "_delta_log" in target.parts or not target.is_file():
            raise NotFound("the file no longer exists")
        now = time.monotonic()
        key = (signed.token_id, signed.path)
        with self._guard:
            last = self._downloads.get(key)
            first = last is None or now - last >= DOWNLOAD_AUDIT_SECONDS
            if first:
                if len(self._downloads) > 100_000:
                    self._downloads.clear()
                self._downloads[key] = now
        return Download(target, name, p.file_id("", signed.path), first)


def _page(
    items: Mapping[str, dict[str, Any]], max_results: int | None, page_token: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of ``items`` (by sort key) after ``page_token``; the next token if more."""
    if max_results is None:
        limit = DEFAULT_PAGE
    elif max_results < 0:
        raise InvalidArgument("maxResults must not be negative", parameter="maxResults")
    else:
        limit = min(max_results, MAX_PAGE)
    after = ""
    if page_token:
        try:
            doc = orjson.loads(base64.urlsafe_b64decode(page_token + "=" * (-len(page_token) % 4)))
            after = str(doc["after"])
        except (binascii.Error, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
            raise InvalidArgument(
                "pageToken is not one this server issued", parameter="pageToken"
            ) from None
    keys = sorted(k for k in items if k > after)
    page = keys[:limit]
    more = len(keys) > limit
    token = None
    if more:
        last = page[-1] if page else after
        token = base64.urlsafe_b64encode(orjson.dumps({"after": last})).decode().rstrip("=")
    return [items[k] for k in page], token


@dataclass(frozen=True)
class _QueryBody:
    predicate_hints: list[str]
    json_predicate_hints: str | None
    limit_hint: int | None
    version: int | None
    timestamp: str | None
    starting_version: int | None
    ending_version: int | None

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> _QueryBody:
        if not isinstance(body, Mapping):
            raise InvalidArgument("the body must be a JSON object", parameter="body")
        hints = body.get("predicateHints")
        if hints is not None and (
            not isinstance(hints, list) or not all(isinstance(h, str) for h in hints)
        ):
            raise InvalidArgument(
                "predicateHints must be a list of strings", parameter="predicateHints"
            )
        json_hints = body.get("jsonPredicateHints")
        if json_hints is not None and not isinstance(json_hints, str):
            json_hints = orjson.dumps(json_hints).decode() if isinstance(json_hints, dict) else None

        def opt_int(name: str) -> int | None:
            value = body.get(name)
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidArgument(f"{name} must be an integer", parameter=name)
            if value < 0:
                raise InvalidArgument(f"{name} must not be negative", parameter=name)
            return value

        timestamp = body.get("timestamp")
        if timestamp is not None and not isinstance(timestamp, str):
            raise InvalidArgument("timestamp must be a string", parameter="timestamp")
        out = cls(
            predicate_hints=list(hints or []),
            json_predicate_hints=json_hints,
            limit_hint=opt_int("limitHint"),
            version=opt_int("version"),
            timestamp=timestamp,
            starting_version=opt_int("startingVersion"),
            ending_version=opt_int("endingVersion"),
        )
        given = [
            n
            for n, v in (
                ("version", out.version),
                ("timestamp", out.timestamp),
                ("startingVersion", out.starting_version),
            )
            if v is not None
        ]
        if len(given) > 1:
            raise InvalidArgument(
                f"give at most one of version, timestamp and startingVersion (got "
                f"{', '.join(given)})",
                parameter=given[1],
            )
        return out
