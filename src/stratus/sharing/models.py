"""Delta Sharing's relational model, in the metastore database (same ``Base`` as the catalog, so
Alembic sees these tables): shares, their tables, recipients, recipient tokens and grants.

A share holds tables under a two-level shared name (``schema.table``) that need not match the
source table's catalog name. A recipient is someone outside the organisation: it is not a
principal and cannot call the Stratus API, only the protocol under ``/delta-sharing``, with one
of its own bearer tokens (stored as SHA-256 hashes, expiring, revocable).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, ForeignKey, String, Text
from sqlalchemy import UniqueConstraint as Unique
from sqlalchemy.orm import Mapped, mapped_column, relationship

from stratus.catalog.models import Base, BearerTokenColumns


def _uuid() -> str:
    return str(uuid.uuid4())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Share(Base):
    __tablename__ = "shares"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    comment: Mapped[str | None] = mapped_column(Text)
    owner: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    created_by: Mapped[str | None] = mapped_column(String(255))
    tables: Mapped[list[ShareTable]] = relationship(
        back_populates="share", cascade="all, delete-orphan", passive_deletes=True
    )


class ShareTable(Base):
    """A table in a share: what is shared of it (columns, rows, history, PII treatment)."""

    __tablename__ = "share_tables"
    __table_args__ = (Unique("share_id", "schema_name", "name"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    share_id: Mapped[str] = mapped_column(ForeignKey("shares.id", ondelete="CASCADE"))
    share: Mapped[Share] = relationship(back_populates="tables")
    schema_name: Mapped[str] = mapped_column(String(255))  # the shared schema name
    name: Mapped[str] = mapped_column(String(255))  # the shared table name
    source_table: Mapped[str] = mapped_column(String(767))  # catalog.schema.table
    columns: Mapped[list[Any] | None] = mapped_column(JSON)  # None: every column
    row_filter: Mapped[str | None] = mapped_column(Text)  # predicate on partition columns
    history_shared: Mapped[bool] = mapped_column(Boolean, default=False)
    pii_mode: Mapped[str] = mapped_column(String(16), default="omit")  # omit | mask
    comment: Mapped[str | None] = mapped_column(Text)
    # the first source version recipients may see history of (when served from its own files)
    history_start_version: Mapped[int | None] = mapped_column(BigInteger)
    # the source version and settings the derived (sanitised) copy was last built from
    derived_source_version: Mapped[int | None] = mapped_column(BigInteger)
    derived_signature: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    created_by: Mapped[str | None] = mapped_column(String(255))

    @property
    def shared_name(self) -> str:
        return f"{self.schema_name}.{self.name}"


class Recipient(Base):
    __tablename__ = "recipients"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    created_by: Mapped[str | None] = mapped_column(String(255))


class RecipientToken(BearerTokenColumns, Base):
    __tablename__ = "recipient_tokens"
    recipient_id: Mapped[str] = mapped_column(ForeignKey("recipients.id", ondelete="CASCADE"))


class ShareGrant(Base):
    """A share granted to a recipient (the recipient can read every table in it)."""

    __tablename__ = "share_grants"
    share_id: Mapped[str] = mapped_column(
        ForeignKey("shares.id", ondelete="CASCADE"), primary_key=True
    )
    recipient_id: Mapped[str] = mapped_column(
        ForeignKey("recipients.id", ondelete="CASCADE"), primary_key=True
    )
    granted_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
