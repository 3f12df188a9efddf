"""Delta Sharing administration: shares, their tables, recipients, their tokens and grants.

Metastore admins create shares and recipients; a share's owner (or an admin) adds its tables
(needing SELECT on each) and grants it. Shares hold tables under a ``schema.table`` shared name,
with an optional column subset, an optional row filter on partition columns, ``history_shared``
(time travel and change data feed; turns on ``delta.enableChangeDataFeed``) and a PII treatment
(``omit`` or ``mask``). A share invisible to the caller is reported as not existing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from stratus.catalog.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied
from stratus.catalog.metastore import MetastoreService, check_name
from stratus.catalog.registry import TableSpec
from stratus.catalog.tokens import iso, token_info
from stratus.security.actions import Resource
from stratus.security.authz import Authorizer, Identity
from stratus.sharing import models as sm
from stratus.sharing import protocol as p
from stratus.sharing.common import SHARING_DIR, leaves
from stratus.sharing.derived import DerivedCopies
from stratus.sharing.serving import SharedTables
from stratus.sharing.tokens import DEFAULT_TOKEN_DAYS, RecipientTokens
from stratus.tables.service import TableService, qualify

PII_MODES = ("omit", "mask")


class SharingAdmin:
    def __init__(
        self,
        metastore: MetastoreService,
        authorizer: Authorizer,
        tables: TableService,
        tokens: RecipientTokens,
        shared: SharedTables,
        derived: DerivedCopies,
    ) -> None:
        self.metastore = metastore
        self.authorizer = authorizer
        self.tables = tables
        self.tokens = tokens
        self.shared = shared
        self.derived = derived

    def _forget(self) -> None:
        """Drop every cached answer (after any change to shares, grants or recipients)."""
        self.tokens.forget()
        self.shared.forget()

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
        self.derived.drop(f"{SHARING_DIR}/{share_id}")

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
            self.shared.serve(self.shared.plan(row_id, share_name))
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
        for leaf in leaves(pred):
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
            self.derived.forget(row.id)
            s.delete(row)
        self._forget()
        self.derived.drop(path)

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
            secret, tok = self.tokens.issue(s, rcpt, days, "created with the recipient")
            return rcpt, secret, tok

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
            secret, tok = self.tokens.issue(s, rcpt, days, comment)
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
            revoked = self.tokens.revoke(rows)
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
