"""Delta Sharing: shares, recipients and the protocol's reads, without HTTP.

**Administration** (metastore admins; a share's owner manages its tables and grants): shares
hold tables under a ``schema.table`` shared name, with an optional column subset, an optional
row filter on partition columns, ``history_shared`` (time travel and change data feed; turns on
``delta.enableChangeDataFeed``) and a PII treatment (``omit`` or ``mask``). Recipients are
outsiders with their own bearer tokens: random, shown once, stored as SHA-256 hashes, expiring,
revocable. A share is granted to recipients.

**Serving a shared table.** A table without PII whose every column is shared is served from its
own files (pruned by the row filter, which names partition columns only and so selects whole
files exactly). Anything else is served from a *derived* copy: a Delta table under
``<root>/.sharing/<share id>/<share table id>`` holding only the shared columns, with PII
columns left out or masked (never decrypted into the copy) and no ``__token`` columns, rebuilt
from the source's current version whenever that version (or the share's settings) changed. With
history shared, a rebuild merges on the table's key, so the copy's own change data feed carries
row-level changes; its versions are the shared table's versions.

**Protocol reads** return plain Python (dicts for the NDJSON lines); file URLs are pre-signed
by :mod:`stratus.sharing.signing`. Errors are :class:`stratus.catalog.errors.CatalogError`
subclasses, which the HTTP layer maps to the protocol's ``{"errorCode", "message"}``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import logging
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import orjson
import pyarrow as pa
from deltalake import DeltaTable, WriterProperties, write_deltalake
from deltalake.exceptions import DeltaError, TableNotFoundError
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from stratus.catalog.errors import (
    AlreadyExists,
    CatalogError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from stratus.catalog.metastore import check_name, hash_token
from stratus.catalog.registry import TableSpec
from stratus.engine import TableScan
from stratus.lakehouse.storage import StorageError
from stratus.security.actions import Resource
from stratus.security.authz import Identity
from stratus.sharing import models as sm
from stratus.sharing import protocol as p
from stratus.sharing.signing import (
    AzureSigner,
    SignatureError,
    SignedFile,
    UrlSigner,
    load_secret,
    url_ttl,
)
from stratus.tables.service import qualify

if TYPE_CHECKING:
    from stratus.catalog.metastore import MetastoreService
    from stratus.config import Settings
    from stratus.engine import LocalEngine
    from stratus.lakehouse.storage import Storage
    from stratus.lakehouse.tables import Lakehouse
    from stratus.security.authz import Authorizer
    from stratus.tables.service import TableService

log = logging.getLogger(__name__)

TOKEN_PREFIX = "dss_"  # noqa: S105 - a public prefix, not a secret
PII_MODES = ("omit", "mask")
DEFAULT_TOKEN_DAYS = 90.0
MAX_TOKEN_DAYS = 3650.0
DEFAULT_PAGE = 500
MAX_PAGE = 1000
SHARING_DIR = ".sharing"
CDF = "delta.enableChangeDataFeed"
ENDPOINT_ENV = "STRATUS_SHARING_ENDPOINT"
# How long this process trusts what it read from the metastore (a recipient's token, a shared
# table's settings) without reading it again; changes made in this process apply at once.
TOKEN_CACHE_SECONDS = 5.0
# the one answer to every recipient token that does not authenticate, whatever the reason
INVALID_TOKEN = "invalid or expired token"  # noqa: S105 - a message, not a secret
# Clients read a file in several requests (HEAD, footer, column chunks): one audit record per
# recipient token and file in this many seconds (refusals are always recorded).
DOWNLOAD_AUDIT_SECONDS = 60.0
_SNAPSHOTS = 64  # immutable table versions kept in memory


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def _ms(value: dt.datetime) -> int:
    return int(value.timestamp() * 1000)


def iso(value: dt.datetime | None) -> str | None:
    value = _aware(value)
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---- what callers get back --------------------------------------------------------------------
@dataclass(frozen=True)
class RecipientContext:
    """An authenticated recipient request: who, and with which token."""

    id: str
    name: str
    token_id: str


@dataclass(frozen=True)
class Download:
    path: Path
    recipient: str
    file_id: str
    first: bool  # the first read of this file with this token in DOWNLOAD_AUDIT_SECONDS


@dataclass(frozen=True)
class TableResponse:
    version: int
    lines: list[dict[str, Any]]


@dataclass(frozen=True)
class Snapshot:
    """One version of a Delta table, as the protocol needs it."""

    version: int
    entries: list[p.FileEntry]
    schema_json: str
    partition_columns: list[str]
    configuration: dict[str, str]
    table_id: str
    types: dict[str, pa.DataType]


@dataclass(frozen=True)
class Plan:
    """How a share table is served right now."""

    share_id: str
    share_name: str
    table_id: str
    schema_name: str
    name: str
    comment: str | None
    history: bool
    history_start: int | None
    pii_mode: str
    source: TableSpec
    physical: TableSpec
    pii: dict[str, str]
    columns: list[str]
    row_filter: Any | None
    derived: bool


# ---- Delta tables, opened once and refreshed cheaply ------------------------------------------
class _Tables:
    """Snapshots of Delta tables by URL: the latest is refreshed when its log may have changed
    (local: the log folder's mtime; remote: at most every ``interval`` seconds); older versions
    are immutable and cached as they are."""

    def __init__(self, storage: Any, interval: float = 1.0) -> None:
        self.storage = storage
        self.interval = interval
        self._open: dict[str, tuple[DeltaTable, float, float]] = {}
        self._snaps: OrderedDict[tuple[str, int], Snapshot] = OrderedDict()
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, url: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(url, threading.Lock())

    def _mtime(self, url: str) -> float:
        if not self.storage.is_local:
            return 0.0
        try:
            return os.stat(os.path.join(url, "_delta_log")).st_mtime
        except FileNotFoundError:
            return -1.0

    def _remember(self, url: str, snap: Snapshot) -> Snapshot:
        with self._guard:
            self._snaps[(url, snap.version)] = snap
            self._snaps.move_to_end((url, snap.version))
            while len(self._snaps) > _SNAPSHOTS:
                self._snaps.popitem(last=False)
        return snap

    def _cached(self, url: str, version: int) -> Snapshot | None:
        with self._guard:
            return self._snaps.get((url, version))

    @staticmethod
    def _snapshot(table: DeltaTable) -> Snapshot:
        meta = table.metadata()
        return Snapshot(
            version=table.version(),
            entries=p.file_entries(pa.table(table.get_add_actions(flatten=True))),
            schema_json=table.schema().to_json(),
            partition_columns=list(meta.partition_columns),
            configuration=dict(meta.configuration or {}),
            table_id=str(meta.id),
            types=_types_of(table.schema()),
        )

    def latest(self, url: str) -> Snapshot | None:
        """The table's latest version, or None if there is no table at ``url``."""
        with self._lock(url):
            now = time.monotonic()
            opened = self._open.get(url)
            try:
                if opened is None:
                    mtime = self._mtime(url)
                    table = DeltaTable(url, storage_options=self.storage.options)
                    self._open[url] = (table, now, mtime)
                else:
                    table, checked, mtime = opened
                    current = self._mtime(url)
                    stale = (
                        current != mtime
                        if self.storage.is_local
                        else now - checked >= self.interval
                    )
                    if stale:
                        table.update_incremental()
                        self._open[url] = (table, now, current)
                version = table.version()
                return self._cached(url, version) or self._remember(url, self._snapshot(table))
            except TableNotFoundError:
                self._open.pop(url, None)
                return None
            except (DeltaError, OSError) as exc:
                self._open.pop(url, None)
                raise StorageError(f"cannot read a shared table: {exc}") from None

    def at(self, url: str, version: int) -> Snapshot:
        found = self._cached(url, version)
        if found is not None:
            return found
        try:
            table = DeltaTable(url, version=version, storage_options=self.storage.options)
        except (DeltaError, OSError) as exc:
            raise InvalidArgument(f"version {version} cannot be read: {exc}") from None
        return self._remember(url, self._snapshot(table))

    def history(self, url: str) -> list[tuple[int, int]]:
        """(version, commit timestamp in ms) of every version still in the log, oldest first."""
        try:
            table = DeltaTable(url, storage_options=self.storage.options)
            rows = table.history()
        except (DeltaError, OSError) as exc:
            raise StorageError(f"cannot read a shared table's history: {exc}") from None
        out = [(int(r["version"]), int(r.get("timestamp") or 0)) for r in rows if "version" in r]
        return sorted(out)

    def invalidate(self, url: str) -> None:
        with self._lock(url):
            self._open.pop(url, None)

    def read_log(self, url: str, version: int) -> list[dict[str, Any]]:
        """The actions of one commit (``_delta_log/<version>.json``)."""
        name = f"_delta_log/{version:020d}.json"
        try:
            if self.storage.is_local:
                raw = Path(url, name).read_bytes()
            else:
                import pyarrow.fs as pafs
                from deltalake.fs import DeltaStorageHandler

                fs = pafs.PyFileSystem(DeltaStorageHandler(url, self.storage.options))
                with fs.open_input_stream(name) as fh:
                    raw = fh.read()
        except (FileNotFoundError, OSError):
            raise InvalidArgument(
                f"version {version} is no longer in the table's log", parameter="version"
            ) from None
        return [orjson.loads(line) for line in raw.splitlines() if line.strip()]


# ---- the service ----------------------------------------------------------------------------
class SharingService:
    def __init__(
        self,
        settings: Settings,
        storage: Storage,
        lakehouse: Lakehouse,
        engine: LocalEngine,
        tables: TableService,
        metastore: MetastoreService,
        authorizer: Authorizer,
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.lakehouse = lakehouse
        self.engine = engine
        self.tables = tables
        self.metastore = metastore
        self.authorizer = authorizer
        self.url_ttl = url_ttl()
        self._signer: UrlSigner | None = None
        self._azure = None if self.storage.is_local else AzureSigner(self.storage)
        self._delta = _Tables(self.storage, self.lakehouse.refresh_interval)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        # token id -> (valid until (monotonic), recipient id, recipient name)
        self._active: dict[str, tuple[float, str, str]] = {}
        # bearer token hash -> (valid until, context); (recipient, share, schema, table) -> plan
        self._auth: dict[str, tuple[float, RecipientContext]] = {}
        self._plans: dict[tuple[Any, ...], tuple[float, Plan]] = {}
        self._built: dict[str, tuple[int, str]] = {}  # share table id -> (source version, sig)
        self._downloads: dict[tuple[str, str], float] = {}  # (token id, path) -> last audited

    def close(self) -> None:
        self._delta = _Tables(self.storage, self.lakehouse.refresh_interval)
        self._forget()

    def _forget(self) -> None:
        """Drop every cached answer (after any change to shares, grants or recipients)."""
        with self._guard:
            self._active.clear()
            self._auth.clear()
            self._plans.clear()

    @property
    def signer(self) -> UrlSigner:
        if self._signer is None:
            self._signer = UrlSigner(load_secret(self.settings.home))
        return self._signer

    def default_endpoint(self) -> str:
        """The profile endpoint: ``STRATUS_SHARING_ENDPOINT`` or the API's host and port."""
        env = os.environ.get(ENDPOINT_ENV)
        if env:
            return env.rstrip("/")
        s = self.settings
        return f"http://{s.host}:{s.port}/delta-sharing"

    # ---- database plumbing ---------------------------------------------------------------
    def _session(self) -> Any:
        return self.metastore.session()

    def _reader(self) -> Any:
        return self.metastore.reading()

    @staticmethod
    def _share_row(s: Session, name: str) -> sm.Share:
        row = s.scalar(
            select(sm.Share)
            .options(selectinload(sm.Share.tables))
            .where(func.lower(sm.Share.name) == str(name).lower())
        )
        if row is None:
            raise NotFound(f"share {name} does not exist")
        return row

    @staticmethod
    def _recipient_row(s: Session, name: str) -> sm.Recipient:
        row = s.scalar(
            select(sm.Recipient).where(func.lower(sm.Recipient.name) == str(name).lower())
        )
        if row is None:
            raise NotFound(f"recipient {name} does not exist")
        return row

    # ---- authorization -------------------------------------------------------------------
    def _admin(self, who: Identity) -> None:
        """Shares are created, and recipients managed, by metastore admins only."""
        self.authorizer.require(who, "share.admin", Resource("share"))

    def _owns(self, who: Identity, share: sm.Share) -> bool:
        return self.authorizer.allowed(
            who, "share.manage", Resource("share", share.name, owner=share.owner)
        )

    def _managed(self, s: Session, who: Identity, name: str) -> sm.Share:
        share = self._share_row(s, name)
        if not self._owns(who, share):
            raise NotFound(f"share {name} does not exist")  # invisible: names never leak
        return share

    # ---- shares --------------------------------------------------------------------------
    def create_share(
        self, who: Identity, name: str, *, comment: str | None = None, owner: str | None = None
    ) -> sm.Share:
        self._admin(who)
        check_name(name, "name")
        owner = owner or who.name
        if owner != who.name:
            self.metastore.get_principal(owner)  # NotFound if unknown
        with self._session() as s:
            exists = s.scalar(select(sm.Share).where(func.lower(sm.Share.name) == name.lower()))
            if exists is not None:
                raise AlreadyExists(f"share {name} already exists")
            share = sm.Share(name=name, comment=comment, owner=owner, created_by=who.name)
            s.add(share)
            s.flush()
            _ = share.tables
            return share

    def list_shares_admin(self, who: Identity) -> list[sm.Share]:
        with self._reader() as s:
            rows = s.scalars(
                select(sm.Share).options(selectinload(sm.Share.tables)).order_by(sm.Share.name)
            )
            return [r for r in rows if self._owns(who, r)]

    def get_share_admin(self, who: Identity, name: str) -> tuple[sm.Share, list[str]]:
        """The share with its tables, and the names of the recipients it is granted to."""
        with self._reader() as s:
            share = self._managed(s, who, name)
            recipients = list(
                s.scalars(
                    select(sm.Recipient.name)
                    .join(sm.ShareGrant, sm.ShareGrant.recipient_id == sm.Recipient.id)
                    .where(sm.ShareGrant.share_id == share.id)
                    .order_by(sm.Recipient.name)
                )
            )
            return share, recipients

    def delete_share(self, who: Identity, name: str) -> None:
        with self._session() as s:
            share = self._managed(s, who, name)
            share_id = share.id
            s.delete(share)
        self._forget()
        self._drop_derived(f"{SHARING_DIR}/{share_id}")

    # ---- share tables --------------------------------------------------------------------
    def add_table(
        self,
        who: Identity,
        share: str,
        table: str,
        *,
        shared_as: str | None = None,
        columns: Sequence[str] | None = None,
        row_filter: str | None = None,
        history: bool = False,
        pii: str = "omit",
        comment: str | None = None,
    ) -> sm.ShareTable:
        """Add ``table`` (catalog.schema.table) to ``share``; the caller must own the share
        (or be an admin) and be allowed to SELECT the table."""
        full_name = qualify(table)
        with self._reader() as s:
            self._managed(s, who, share)
        if full_name.split(".")[0] == "system":
            raise PermissionDenied("tables in catalog system cannot be shared")
        self.authorizer.require(who, "table.read", Resource("table", full_name))
        source = self.tables.spec(full_name)
        names = list(source.schema.names)
        if pii not in PII_MODES:
            raise InvalidArgument("pii must be omit or mask", parameter="pii")
        kept: list[str] | None = None
        if columns is not None:
            wanted = [c.strip() for c in columns if c and c.strip()]
            unknown = [c for c in wanted if c not in names]
            if unknown:
                raise InvalidArgument(
                    f"{full_name} has no column(s) {', '.join(unknown)}", parameter="columns"
                )
            if not wanted:
                raise InvalidArgument("columns must name at least one column", parameter="columns")
            kept = [c for c in names if c in wanted]
            if len(kept) == len(names):
                kept = None
        if row_filter is not None and row_filter.strip():
            self._check_filter(row_filter, source)
        else:
            row_filter = None
        schema_name, name = self._shared_name(shared_as, full_name)
        with self._session() as s:
            sh = self._managed(s, who, share)
            clash = s.scalar(
                select(sm.ShareTable).where(
                    sm.ShareTable.share_id == sh.id,
                    func.lower(sm.ShareTable.schema_name) == schema_name.lower(),
                    func.lower(sm.ShareTable.name) == name.lower(),
                )
            )
            if clash is not None:
                raise AlreadyExists(f"share {sh.name} already has a table {schema_name}.{name}")
            row = sm.ShareTable(
                share=sh,
                schema_name=schema_name,
                name=name,
                source_table=full_name,
                columns=kept,
                row_filter=row_filter,
                history_shared=history,
                pii_mode=pii,
                comment=comment,
                created_by=who.name,
            )
            s.add(row)
            s.flush()
            row_id, share_name = row.id, sh.name
        # Build what recipients will read now: errors surface to the admin, not a recipient.
        try:
            plan = self._plan(row_id, share_name)
            self._serve(plan)
        except Exception:
            with self._session() as s:
                gone = s.get(sm.ShareTable, row_id)
                if gone is not None:
                    s.delete(gone)
            raise
        with self._reader() as s:
            out = s.get(sm.ShareTable, row_id)
            assert out is not None
            _ = out.share.name
            return out

    @staticmethod
    def _shared_name(shared_as: str | None, full_name: str) -> tuple[str, str]:
        if not shared_as:
            _, schema, name = full_name.split(".")
            return schema, name
        parts = shared_as.split(".")
        if len(parts) != 2:
            raise InvalidArgument("shared_as must be schema.table", parameter="shared_as")
        return check_name(parts[0], "shared_as"), check_name(parts[1], "shared_as")

    @staticmethod
    def _check_filter(text: str, source: TableSpec) -> Any:
        try:
            pred = p.parse_sql(text)
        except p.PredicateError as exc:
            raise InvalidArgument(f"row_filter: {exc}", parameter="row_filter") from None
        used = p.columns_of(pred)
        bad = sorted(used - set(source.partition_by))
        if bad:
            parts = ", ".join(source.partition_by) or "none"
            raise InvalidArgument(
                f"row_filter may only name partition columns ({parts}); not {', '.join(bad)}",
                parameter="row_filter",
            )
        for leaf in _leaves(pred):
            t = source.schema.field(leaf.column).type
            values = leaf.values if isinstance(leaf, p.In) else (getattr(leaf, "value", None),)
            for v in values:
                try:
                    p.coerce(v, t)
                except (TypeError, ValueError):
                    raise InvalidArgument(
                        f"row_filter: {v!r} is not a value of {leaf.column} ({t})",
                        parameter="row_filter",
                    ) from None
        return pred

    def remove_table(self, who: Identity, share: str, shared_name: str) -> None:
        schema_name, _, name = shared_name.partition(".")
        with self._session() as s:
            sh = self._managed(s, who, share)
            row = next(
                (
                    t
                    for t in sh.tables
                    if t.schema_name.lower() == schema_name.lower()
                    and t.name.lower() == name.lower()
                ),
                None,
            )
            if row is None:
                raise NotFound(f"share {sh.name} has no table {shared_name}")
            path = f"{SHARING_DIR}/{sh.id}/{row.id}"
            self._built.pop(row.id, None)
            s.delete(row)
        self._forget()
        self._drop_derived(path)

    def _drop_derived(self, relative: str) -> None:
        """Delete a derived copy (local disk; on object storage it is left for cleanup)."""
        if not self.storage.is_local:
            return
        import shutil

        target = Path(self.storage.table_url(relative))
        if target.is_dir() and SHARING_DIR in target.parts:
            shutil.rmtree(target, ignore_errors=True)

    # ---- recipients ------------------------------------------------------------------------
    def create_recipient(
        self,
        who: Identity,
        name: str,
        *,
        comment: str | None = None,
        days: float | None = DEFAULT_TOKEN_DAYS,
    ) -> tuple[sm.Recipient, str, sm.RecipientToken]:
        """A recipient and its first token (the secret is returned once, never stored)."""
        self._admin(who)
        check_name(name, "name")
        with self._session() as s:
            exists = s.scalar(
                select(sm.Recipient).where(func.lower(sm.Recipient.name) == name.lower())
            )
            if exists is not None:
                raise AlreadyExists(f"recipient {name} already exists")
            rcpt = sm.Recipient(name=name, comment=comment, created_by=who.name)
            s.add(rcpt)
            s.flush()
            secret, tok = self._new_token(s, rcpt, days, "created with the recipient")
            return rcpt, secret, tok

    def _new_token(
        self, s: Session, rcpt: sm.Recipient, days: float | None, comment: str | None
    ) -> tuple[str, sm.RecipientToken]:
        days = DEFAULT_TOKEN_DAYS if days is None else float(days)
        if not 0 < days <= MAX_TOKEN_DAYS:
            raise InvalidArgument(
                f"days must be more than 0 and at most {MAX_TOKEN_DAYS:g} (tokens always expire)",
                parameter="days",
            )
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        tok = sm.RecipientToken(
            recipient_id=rcpt.id,
            token_hash=hash_token(secret),
            prefix=secret[:12],
            comment=comment,
            expires_at=_now() + dt.timedelta(days=days),
        )
        s.add(tok)
        s.flush()
        return secret, tok

    def create_token(
        self,
        who: Identity,
        recipient: str,
        *,
        days: float | None = None,
        comment: str | None = None,
    ) -> tuple[sm.Recipient, str, sm.RecipientToken]:
        self._admin(who)
        with self._session() as s:
            rcpt = self._recipient_row(s, recipient)
            secret, tok = self._new_token(s, rcpt, days, comment)
            return rcpt, secret, tok

    def list_recipients(self, who: Identity) -> list[dict[str, Any]]:
        self._admin(who)
        with self._reader() as s:
            out = []
            for r in s.scalars(select(sm.Recipient).order_by(sm.Recipient.name)):
                out.append(self._recipient_info(s, r))
            return out

    def get_recipient(self, who: Identity, name: str) -> dict[str, Any]:
        self._admin(who)
        with self._reader() as s:
            return self._recipient_info(s, self._recipient_row(s, name))

    def _recipient_info(self, s: Session, r: sm.Recipient) -> dict[str, Any]:
        shares = list(
            s.scalars(
                select(sm.Share.name)
                .join(sm.ShareGrant, sm.ShareGrant.share_id == sm.Share.id)
                .where(sm.ShareGrant.recipient_id == r.id)
                .order_by(sm.Share.name)
            )
        )
        tokens = s.scalars(
            select(sm.RecipientToken)
            .where(sm.RecipientToken.recipient_id == r.id)
            .order_by(sm.RecipientToken.created_at)
        )
        return {
            "name": r.name,
            "id": r.id,
            "comment": r.comment,
            "created_at": iso(r.created_at),
            "created_by": r.created_by,
            "shares": shares,
            "tokens": [token_info(t) for t in tokens],
        }

    def delete_recipient(self, who: Identity, name: str) -> None:
        self._admin(who)
        with self._session() as s:
            s.delete(self._recipient_row(s, name))
        self._forget()

    def revoke_tokens(
        self, who: Identity, recipient: str, token_id: str | None = None
    ) -> list[str]:
        """Revoke one token (by id) or, without an id, every active token of the recipient."""
        self._admin(who)
        with self._session() as s:
            rcpt = self._recipient_row(s, recipient)
            q = select(sm.RecipientToken).where(sm.RecipientToken.recipient_id == rcpt.id)
            if token_id is not None:
                q = q.where(sm.RecipientToken.id == token_id)
            rows = list(s.scalars(q))
            if token_id is not None and not rows:
                raise NotFound(f"recipient {rcpt.name} has no token {token_id}")
            revoked = []
            for tok in rows:
                if tok.revoked_at is None:
                    tok.revoked_at = _now()
                    revoked.append(tok.id)
        self._forget()
        return revoked

    def grant(self, who: Identity, share: str, recipient: str) -> None:
        with self._session() as s:
            sh = self._managed(s, who, share)
            rcpt = self._recipient_row(s, recipient)
            if s.get(sm.ShareGrant, (sh.id, rcpt.id)) is None:
                s.add(sm.ShareGrant(share_id=sh.id, recipient_id=rcpt.id, granted_by=who.name))
        self._forget()

    def revoke(self, who: Identity, share: str, recipient: str) -> None:
        with self._session() as s:
            sh = self._managed(s, who, share)
            rcpt = self._recipient_row(s, recipient)
            grant = s.get(sm.ShareGrant, (sh.id, rcpt.id))
            if grant is None:
                raise NotFound(f"share {sh.name} is not granted to {rcpt.name}")
            s.delete(grant)
        self._forget()

    @staticmethod
    def profile(secret: str, token: sm.RecipientToken, endpoint: str) -> dict[str, Any]:
        """The recipient's profile file (``.share``) for a freshly issued token."""
        doc: dict[str, Any] = {
            "shareCredentialsVersion": 1,
            "endpoint": endpoint.rstrip("/"),
            "bearerToken": secret,
        }
        if token.expires_at is not None:
            doc["expirationTime"] = iso(token.expires_at)
        return doc

    # ---- recipient authentication ----------------------------------------------------------
    def authenticate(self, authorization: str | None) -> RecipientContext:
        if not authorization:
            raise Unauthenticated("missing Authorization: Bearer <token>")
        scheme, _, secret = authorization.partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not secret:
            raise Unauthenticated("Authorization must be 'Bearer <token>'")
        key = hash_token(secret)
        now = time.monotonic()
        with self._guard:
            hit = self._auth.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        with self._reader() as s:
            row = s.execute(
                select(sm.RecipientToken, sm.Recipient)
                .join(sm.Recipient, sm.RecipientToken.recipient_id == sm.Recipient.id)
                .where(sm.RecipientToken.token_hash == key)
            ).first()
        # unknown, malformed, revoked or expired: the same lookup, the same answer
        if row is None:
            raise Unauthenticated(INVALID_TOKEN)
        tok, rcpt = row
        expires = _aware(tok.expires_at)
        if tok.revoked_at is not None or (expires is not None and expires <= _now()):
            raise Unauthenticated(INVALID_TOKEN)
        ctx = RecipientContext(rcpt.id, rcpt.name, tok.id)
        seconds = TOKEN_CACHE_SECONDS
        if expires is not None:  # never trusted past its expiry
            seconds = min(seconds, (expires - _now()).total_seconds())
        with self._guard:
            self._auth[key] = (now + seconds, ctx)
        return ctx

    def _token_active(self, recipient_id: str, token_id: str) -> str | None:
        """The recipient's name if this token of it is still valid, else None. Answers are
        cached for a few seconds (never past the token's expiry); a revocation in this process
        empties the cache at once (other processes see it within the cache time)."""
        now = time.monotonic()
        with self._guard:
            hit = self._active.get(token_id)
        if hit is not None and hit[0] > now and hit[1] == recipient_id:
            return hit[2]
        name, seconds = self._token_lookup(recipient_id, token_id)
        if name is not None and seconds > 0:
            with self._guard:
                self._active[token_id] = (now + seconds, recipient_id, name)
        return name

    def _token_lookup(self, recipient_id: str, token_id: str) -> tuple[str | None, float]:
        with self._reader() as s:
            row = s.execute(
                select(sm.RecipientToken, sm.Recipient.name)
                .join(sm.Recipient, sm.RecipientToken.recipient_id == sm.Recipient.id)
                .where(sm.RecipientToken.id == token_id, sm.Recipient.id == recipient_id)
            ).first()
        if row is None:
            return None, 0.0
        tok, name = row
        expires = _aware(tok.expires_at)
        if tok.revoked_at is not None or (expires is not None and expires <= _now()):
            return None, 0.0
        seconds = TOKEN_CACHE_SECONDS
        if expires is not None:  # never trusted past the expiry
            seconds = max(0.0, min(seconds, (expires - _now()).total_seconds()))
        return str(name), seconds

    # ---- protocol: listing ---------------------------------------------------------------
    def _granted(self, s: Session, ctx: RecipientContext, share: str) -> sm.Share:
        row = s.scalar(
            select(sm.Share)
            .options(selectinload(sm.Share.tables))
            .join(sm.ShareGrant, sm.ShareGrant.share_id == sm.Share.id)
            .where(
                sm.ShareGrant.recipient_id == ctx.id,
                func.lower(sm.Share.name) == str(share).lower(),
            )
        )
        if row is None:  # absent or not granted: the same answer, so names never leak
            raise NotFound(f"share {share} does not exist")
        return row

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
            row = self._granted(s, ctx, share)
            return {"name": row.name, "id": row.id}

    def list_schemas(
        self, ctx: RecipientContext, share: str, max_results: int | None, page_token: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        with self._reader() as s:
            row = self._granted(s, ctx, share)
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
            row = self._granted(s, ctx, share)
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

    # ---- protocol: tables ----------------------------------------------------------------
    def _find(self, ctx: RecipientContext, share: str, schema: str, table: str) -> Plan:
        """The plan of a table of a share granted to the recipient (NotFound otherwise),
        cached briefly; PII tags changed in this process apply at once (metastore generation)."""
        key = (
            ctx.id,
            share.lower(),
            schema.lower(),
            table.lower(),
            self.authorizer.snapshot().generation,
        )
        now = time.monotonic()
        with self._guard:
            hit = self._plans.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        plan = self._find_uncached(ctx, share, schema, table)
        with self._guard:
            if len(self._plans) > 10_000:
                self._plans.clear()
            self._plans[key] = (now + TOKEN_CACHE_SECONDS, plan)
        return plan

    def _find_uncached(self, ctx: RecipientContext, share: str, schema: str, table: str) -> Plan:
        with self._reader() as s:
            row = self._granted(s, ctx, share)
            st = next(
                (
                    t
                    for t in row.tables
                    if t.schema_name.lower() == schema.lower() and t.name.lower() == table.lower()
                ),
                None,
            )
            if st is None:
                raise NotFound(f"table {share}.{schema}.{table} does not exist")
            table_id, share_name = st.id, row.name
        return self._plan(table_id, share_name)

    def _plan(self, table_id: str, share_name: str) -> Plan:
        with self._reader() as s:
            st = s.get(sm.ShareTable, table_id)
            if st is None:
                raise NotFound("the shared table no longer exists")
            try:
                source = self.tables.spec(st.source_table)
            except (NotFound, KeyError):
                raise NotFound(f"the source of {st.shared_name} no longer exists") from None
            physical, pii = self.tables.physical(source)
            names = list(source.schema.names)
            columns = [c for c in names if st.columns is None or c in st.columns]
            if st.pii_mode != "mask":
                columns = [c for c in columns if c not in pii]
            if not columns:
                raise NotFound(f"table {st.shared_name} has no shareable columns left")
            return Plan(
                share_id=st.share_id,
                share_name=share_name,
                table_id=st.id,
                schema_name=st.schema_name,
                name=st.name,
                comment=st.comment,
                history=st.history_shared,
                history_start=st.history_start_version,
                pii_mode=st.pii_mode,
                source=source,
                physical=physical,
                pii=pii,
                columns=columns,
                row_filter=p.parse_sql(st.row_filter) if st.row_filter else None,
                # files hold ciphertext and token columns when there is PII; protocol clients
                # read whole files, so a column subset needs its own files too
                derived=bool(pii) or len(columns) != len(names),
            )

    def _source_url(self, plan: Plan) -> str:
        return self.lakehouse.url(plan.physical)

    def _source_snapshot(self, plan: Plan) -> Snapshot | None:
        """The source's latest snapshot; writes by this process show at once (on object
        storage, other writers' within the lakehouse refresh interval)."""
        url = self._source_url(plan)
        snap = self._delta.latest(url)
        try:
            known = self.lakehouse.version(plan.physical)
        except StorageError:
            known = None
        if snap is not None and known is not None and known > snap.version:
            self._delta.invalidate(url)
            snap = self._delta.latest(url)
        return snap

    def _derived_url(self, plan: Plan) -> str:
        return self.storage.table_url(f"{SHARING_DIR}/{plan.share_id}/{plan.table_id}")

    def _serve(self, plan: Plan) -> tuple[str, Snapshot, int]:
        """(URL of the Delta table recipients read, its latest snapshot, first version whose
        history is shared)."""
        if plan.derived:
            url = self._refresh(plan)
            snap = self._delta.latest(url)
            assert snap is not None
            return url, snap, 0
        url = self._source_url(plan)
        snap = self._source_snapshot(plan)
        if snap is None:
            self.lakehouse.ensure(plan.physical)
            snap = self._delta.latest(url)
            assert snap is not None
        floor = plan.history_start
        if plan.history and floor is None:
            floor = self._enable_history(plan, url, snap)
            snap = self._delta.latest(url) or snap
        return url, snap, snap.version if floor is None else floor

    def _enable_history(self, plan: Plan, url: str, snap: Snapshot) -> int:
        """Turn on the change data feed of a table served from its own files; history is
        shared from the version that did it on."""
        with self._lock_for(plan.table_id):
            if snap.configuration.get(CDF, "").lower() != "true":
                try:
                    table = DeltaTable(url, storage_options=self.storage.options)
                    table.alter.set_table_properties({CDF: "true"})
                except (DeltaError, OSError) as exc:
                    raise StorageError(f"cannot enable the change data feed: {exc}") from None
                self.lakehouse.invalidate(plan.physical)
                self._delta.invalidate(url)
            latest = self._delta.latest(url)
            version = latest.version if latest is not None else snap.version
            with self._session() as s:
                row = s.get(sm.ShareTable, plan.table_id)
                if row is not None and row.history_start_version is None:
                    row.history_start_version = version
                elif row is not None:
                    version = int(row.history_start_version or version)
            self._forget()
            return version

    def _lock_for(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    # ---- derived copies ------------------------------------------------------------------
    def _derived_schema(self, plan: Plan) -> pa.Schema:
        fields = []
        for name in plan.columns:
            f = plan.source.schema.field(name)
            fields.append(pa.field(name, pa.string()) if name in plan.pii else f)
        return pa.schema(fields)

    def _signature(self, plan: Plan) -> str:
        doc = {
            "columns": plan.columns,
            "pii": {c: plan.pii[c] for c in plan.columns if c in plan.pii},
            "mode": plan.pii_mode,
            "filter": repr(plan.row_filter),
            "schema": self._derived_schema(plan).to_string(),
            # the mask settings (functions have no stable repr across processes)
            "masks": sorted((k, v) for k, v in os.environ.items() if k.startswith("STRATUS_MASK_")),
        }
        return hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()

    def _refresh(self, plan: Plan) -> str:
        """Bring the derived copy up to the source's current version (and settings)."""
        url = self._derived_url(plan)
        with self._lock_for(plan.table_id):
            source = self._source_snapshot(plan)
            source_version = -1 if source is None else source.version
            signature = self._signature(plan)
            if self._built.get(plan.table_id) == (source_version, signature):
                return url  # built by this process from that very version
            with self._reader() as s:
                row = s.get(sm.ShareTable, plan.table_id)
                built = (row.derived_source_version, row.derived_signature) if row else (None, None)
            current = self._delta.latest(url)
            if current is not None and built == (source_version, signature):
                self._built[plan.table_id] = (source_version, signature)
                return url
            data = self._derive(plan, source)
            same_layout = current is not None and built[1] == signature
            self._write_derived(plan, url, data, incremental=same_layout)
            self._delta.invalidate(url)
            with self._session() as s:
                row = s.get(sm.ShareTable, plan.table_id)
                if row is not None:
                    row.derived_source_version = source_version
                    row.derived_signature = signature
            self._built[plan.table_id] = (source_version, signature)
            log.info(
                "shared copy of %s for %s.%s.%s rebuilt from version %d (%d rows)",
                plan.source.full_name,
                plan.share_name,
                plan.schema_name,
                plan.name,
                source_version,
                data.num_rows,
            )
        return url

    def _derive(self, plan: Plan, source: Snapshot | None) -> pa.Table:
        """The shared rows and columns of the source's current version: PII masked (``mask``)
        or absent (``omit``), token columns never read."""
        schema = self._derived_schema(plan)
        entries = source.entries if source is not None else []
        if plan.row_filter is not None:
            types = {f.name: f.type for f in plan.source.schema}
            entries = [e for e in entries if p.matches_exactly(plan.row_filter, e, types)]
        root = self._source_url(plan)
        scan = TableScan(plan.physical, [f"{root}/{e.path}" for e in entries])
        cols = ", ".join('"' + c.replace('"', '""') + '"' for c in plan.columns)
        raw = self.engine.query(f"SELECT {cols} FROM {{t}}", {"t": scan})
        pii = {c: kind for c, kind in plan.pii.items() if c in raw.column_names}
        shown = self.tables.protector.reveal(plan.source, raw, pii, unmasked=False)
        shown = shown.select(plan.columns).cast(schema)
        key = [k for k in plan.source.key if k in plan.columns]
        if key and shown.num_rows:
            shown = shown.sort_by([(k, "ascending") for k in key])
        return shown.combine_chunks()

    def _write_derived(self, plan: Plan, url: str, data: pa.Table, *, incremental: bool) -> None:
        opts = self.storage.options
        props = WriterProperties(compression="ZSTD")
        key = [k for k in plan.source.key if k in plan.columns and k not in plan.pii]
        try:
            if incremental and plan.history and key:
                # row-level changes only: the copy's change data feed is the recipients'
                table = DeltaTable(url, storage_options=opts)
                on = " AND ".join(f"t.{_q(k)} = s.{_q(k)}" for k in key)
                others = [c for c in data.column_names if c not in key]
                merger = table.merge(
                    data,
                    predicate=on,
                    source_alias="s",
                    target_alias="t",
                    writer_properties=props,
                )
                if others:
                    changed = " OR ".join(f"(t.{_q(c)} IS DISTINCT FROM s.{_q(c)})" for c in others)
                    merger = merger.when_matched_update_all(predicate=changed)
                merger.when_not_matched_insert_all().when_not_matched_by_source_delete().execute()
                return
            write_deltalake(
                url,
                data,
                mode="overwrite",
                schema_mode="overwrite",
                partition_by=[c for c in plan.source.partition_by if c in plan.columns] or None,
                configuration={CDF: "true"} if plan.history else None,
                storage_options=opts,
                writer_properties=props,
            )
        except (DeltaError, OSError) as exc:
            raise StorageError(f"cannot write the shared copy: {exc}") from None

    # ---- protocol: version, metadata, query, changes -------------------------------------
    def table_version(
        self,
        ctx: RecipientContext,
        share: str,
        schema: str,
        table: str,
        starting_timestamp: str | None = None,
    ) -> int:
        plan = self._find(ctx, share, schema, table)
        url, snap, floor = self._serve(plan)
        if starting_timestamp is None:
            return snap.version
        self._need_history(plan)
        when = _ms(_timestamp(starting_timestamp, "startingTimestamp"))
        for version, ts in self._delta.history(url):
            if version >= floor and ts >= when:
                return version
        raise InvalidArgument(
            f"startingTimestamp {starting_timestamp} is after the latest version",
            parameter="startingTimestamp",
        )

    def metadata(self, ctx: RecipientContext, share: str, schema: str, table: str) -> TableResponse:
        plan = self._find(ctx, share, schema, table)
        _, snap, _ = self._serve(plan)
        files = self._files(plan, snap)
        lines = [_protocol_line(), self._metadata_line(plan, snap, files)]
        return TableResponse(snap.version, lines)

    def query(
        self,
        ctx: RecipientContext,
        share: str,
        schema: str,
        table: str,
        body: Mapping[str, Any],
        endpoint: str,
    ) -> TableResponse:
        plan = self._find(ctx, share, schema, table)
        q = _QueryBody.parse(body)
        url, snap, floor = self._serve(plan)
        if q.starting_version is not None:
            self._need_history(plan)
            return self._changes(
                ctx, plan, url, snap, floor, q.starting_version, q.ending_version, endpoint, False
            )
        version = q.version
        if q.timestamp is not None:
            self._need_history(plan)
            version = self._version_at(url, q.timestamp, floor)
        if version is not None:
            self._need_history(plan)
            if version < floor or version > snap.version:
                raise InvalidArgument(
                    f"version {version} is not shared: versions {floor} to {snap.version} are",
                    parameter="version",
                )
            snap = self._delta.at(url, version) if version != snap.version else snap
        files = self._files(plan, snap)
        types = _types(snap)
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
        travelled = version if (q.version is not None or q.timestamp is not None) else None
        lines = [_protocol_line(), self._metadata_line(plan, snap, files, travelled)]
        for e in selected:
            line: dict[str, Any] = {
                "url": self._url(ctx, url, e.path, expires, endpoint),
                "id": p.file_id(snap.table_id, e.path),
                "partitionValues": {k: ("" if v is None else v) for k, v in e.partition.items()},
                "size": e.size,
                "expirationTimestamp": _ms(expires),
            }
            stats = p.stats_json(e)
            if stats is not None:
                line["stats"] = stats
            lines.append({"file": line})
        return TableResponse(snap.version, lines)

    def changes(
        self,
        ctx: RecipientContext,
        share: str,
        schema: str,
        table: str,
        params: Mapping[str, str],
        endpoint: str,
    ) -> TableResponse:
        plan = self._find(ctx, share, schema, table)
        self._need_history(plan)
        url, snap, floor = self._serve(plan)
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
        history = self._delta.history(url) if start_ts or end_ts else []
        if start_v is not None:
            start = _int_param(start_v, "startingVersion")
        else:
            when = _ms(_timestamp(str(start_ts), "startingTimestamp"))
            later = [v for v, ts in history if ts >= when]
            if not later:
                raise InvalidArgument(
                    f"startingTimestamp {start_ts} is after the latest version",
                    parameter="startingTimestamp",
                )
            start = max(later[0], floor)
        end: int | None = None
        if end_v is not None:
            end = _int_param(end_v, "endingVersion")
        elif end_ts is not None:
            when = _ms(_timestamp(str(end_ts), "endingTimestamp"))
            earlier = [v for v, ts in history if ts <= when]
            if not earlier:
                raise InvalidArgument(
                    f"endingTimestamp {end_ts} is before the first version",
                    parameter="endingTimestamp",
                )
            end = earlier[-1]
        return self._changes(ctx, plan, url, snap, floor, start, end, endpoint, True)

    def _changes(
        self,
        ctx: RecipientContext,
        plan: Plan,
        url: str,
        snap: Snapshot,
        floor: int,
        start: int,
        end: int | None,
        endpoint: str,
        cdf: bool,
    ) -> TableResponse:
        """Data change files of versions start..end: with ``cdf``, a version's change files
        when it has them (else its added and removed files); without, added/removed files."""
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
        types = _types(snap)
        keep = self._direct_filter(plan)
        expires = self._expiry()
        lines = [_protocol_line(), self._metadata_line(plan, snap, None)]
        for version in range(start, end + 1):
            actions = self._delta.read_log(url, version)
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
                wanted = [("cdf", a) for a in cdc]
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
                line: dict[str, Any] = {
                    "url": self._url(ctx, url, path, expires, endpoint),
                    "id": p.file_id(snap.table_id, path),
                    "partitionValues": parts,
                    "size": entry.size,
                    "timestamp": stamp,
                    "version": version,
                    "expirationTimestamp": _ms(expires),
                }
                if kind == "add" and action.get("stats"):
                    line["stats"] = action["stats"]
                lines.append({kind: line})
        return TableResponse(start, lines)

    def _need_history(self, plan: Plan) -> None:
        if not plan.history:
            raise InvalidArgument(
                f"history is not shared for table {plan.schema_name}.{plan.name}: no time "
                "travel and no change data feed",
                parameter="version",
            )

    def _version_at(self, url: str, timestamp: str, floor: int) -> int:
        when = _ms(_timestamp(timestamp, "timestamp"))
        earlier = [v for v, ts in self._delta.history(url) if ts <= when]
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
        types = _types(snap)
        return [e for e in snap.entries if p.matches_exactly(keep, e, types)]

    def _metadata_line(
        self,
        plan: Plan,
        snap: Snapshot,
        files: list[p.FileEntry] | None,
        version: int | None = None,
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "id": snap.table_id,
            "name": plan.name,
            "format": {"provider": "parquet"},
            "schemaString": p.sharing_schema(snap.schema_json),
            "partitionColumns": snap.partition_columns,
            "configuration": {},
        }
        if plan.comment:
            meta["description"] = plan.comment
        if plan.history and snap.configuration.get(CDF, "").lower() == "true":
            meta["configuration"] = {"enableChangeDataFeed": "true"}
        if version is not None:
            meta["version"] = version
        if files is not None:
            meta["size"] = sum(e.size for e in files)
            meta["numFiles"] = len(files)
        return {"metaData": meta}

    # ---- URLs ----------------------------------------------------------------------------
    def _expiry(self) -> dt.datetime:
        return _now() + dt.timedelta(seconds=self.url_ttl)

    def _url(
        self, ctx: RecipientContext, table_url: str, path: str, expires: dt.datetime, endpoint: str
    ) -> str:
        if self._azure is not None:
            return self._azure.url(table_url, path, expires)
        root = self.storage.root.rstrip("/")
        relative = table_url[len(root) + 1 :] if table_url.startswith(root + "/") else table_url
        token = self.signer.sign(f"{relative}/{path}", ctx.id, ctx.token_id, _ms(expires))
        return f"{endpoint.rstrip('/')}/files/{token}"

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
        name = self._token_active(signed.recipient_id, signed.token_id)
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


# ---- helpers --------------------------------------------------------------------------------
def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _leaves(pred: Any) -> Iterator[Any]:
    if isinstance(pred, p.And | p.Or):
        for c in pred.children:
            yield from _leaves(c)
    elif isinstance(pred, p.Not):
        yield from _leaves(pred.child)
    else:
        yield pred


def _types(snap: Snapshot) -> dict[str, pa.DataType]:
    return snap.types


def _types_of(schema: Any) -> dict[str, pa.DataType]:
    """Column types of a Delta schema as Arrow types (for comparing values when pruning)."""
    try:
        arrow = pa.schema(schema.to_arrow())
    except Exception:  # an exotic schema: pruning just becomes less precise
        return {}
    return {f.name: f.type for f in arrow}


def _protocol_line() -> dict[str, Any]:
    return {"protocol": {"minReaderVersion": 1}}


def _timestamp(text: str, parameter: str) -> dt.datetime:
    try:
        return p.parse_timestamp(text)
    except ValueError as exc:
        raise InvalidArgument(f"{parameter}: {exc}", parameter=parameter) from None


def _int_param(value: Any, parameter: str) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise InvalidArgument(f"{parameter} must be an integer", parameter=parameter) from None
    if n < 0:
        raise InvalidArgument(f"{parameter} must not be negative", parameter=parameter)
    return n


def token_info(t: sm.RecipientToken) -> dict[str, Any]:
    expires = _aware(t.expires_at)
    if t.revoked_at is not None:
        status = "revoked"
    elif expires is not None and expires <= _now():
        status = "expired"
    else:
        status = "active"
    return {
        "id": t.id,
        "prefix": t.prefix,
        "comment": t.comment,
        "created_at": iso(t.created_at),
        "expiration_time": iso(t.expires_at),
        "revoked_at": iso(t.revoked_at),
        "status": status,
    }


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


__all__ = [
    "CatalogError",
    "Download",
    "RecipientContext",
    "SharingService",
    "TableResponse",
    "token_info",
]
