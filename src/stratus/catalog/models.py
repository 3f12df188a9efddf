"""The metastore's relational model (SQLAlchemy 2): securables, principals, grants, tags.

Hierarchy: metastore > catalog > schema > table | volume. Every securable has an owner (a
principal name) and a UUID; grants and tags point at a securable by (type, id).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def _uuid() -> str:
    return str(uuid.uuid4())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def epoch_ms(value: dt.datetime | None) -> int | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return int(value.timestamp() * 1000)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class _Securable:
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    name: Mapped[str] = mapped_column(String(255))
    comment: Mapped[str | None] = mapped_column(Text)
    owner: Mapped[str] = mapped_column(String(255))
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    created_by: Mapped[str | None] = mapped_column(String(255))
    updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    updated_by: Mapped[str | None] = mapped_column(String(255))


class Metastore(Base):
    __tablename__ = "metastore"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    name: Mapped[str] = mapped_column(String(255))
    owner: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    # bumped on every grant/ownership/principal change: lets caches know they are stale
    generation: Mapped[int] = mapped_column(BigInteger, default=0)


class Catalog(_Securable, Base):
    __tablename__ = "catalogs"
    __table_args__ = (UniqueConstraint("name"),)
    storage_root: Mapped[str | None] = mapped_column(Text)
    schemas: Mapped[list[Schema]] = relationship(back_populates="catalog")


class Schema(_Securable, Base):
    __tablename__ = "schemas"
    __table_args__ = (UniqueConstraint("catalog_id", "name"),)
    catalog_id: Mapped[str] = mapped_column(ForeignKey("catalogs.id", ondelete="CASCADE"))
    catalog: Mapped[Catalog] = relationship(back_populates="schemas")
    tables: Mapped[list[Table]] = relationship(back_populates="schema")
    volumes: Mapped[list[Volume]] = relationship(back_populates="schema")

    @property
    def full_name(self) -> str:
        return f"{self.catalog.name}.{self.name}"


class Table(_Securable, Base):
    __tablename__ = "tables"
    __table_args__ = (UniqueConstraint("schema_id", "name"),)
    schema_id: Mapped[str] = mapped_column(ForeignKey("schemas.id", ondelete="CASCADE"))
    schema: Mapped[Schema] = relationship(back_populates="tables")
    table_type: Mapped[str] = mapped_column(String(32), default="MANAGED")
    data_source_format: Mapped[str] = mapped_column(String(32), default="DELTA")
    storage_location: Mapped[str | None] = mapped_column(Text)
    # [{name, type_name, type_text, type_json, position, nullable, comment, partition_index}]
    columns: Mapped[list[Any]] = mapped_column(default=list)

    @property
    def full_name(self) -> str:
        return f"{self.schema.full_name}.{self.name}"


class Volume(_Securable, Base):
    __tablename__ = "volumes"
    __table_args__ = (UniqueConstraint("schema_id", "name"),)
    schema_id: Mapped[str] = mapped_column(ForeignKey("schemas.id", ondelete="CASCADE"))
    schema: Mapped[Schema] = relationship(back_populates="volumes")
    volume_type: Mapped[str] = mapped_column(String(32), default="MANAGED")
    storage_location: Mapped[str | None] = mapped_column(Text)

    @property
    def full_name(self) -> str:
        return f"{self.schema.full_name}.{self.name}"


class Principal(Base):
    __tablename__ = "principals"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    kind: Mapped[str] = mapped_column(String(32))  # user | service_principal | group
    display_name: Mapped[str | None] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)  # metastore admin
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)


class GroupMember(Base):
    __tablename__ = "group_members"
    group_id: Mapped[str] = mapped_column(
        ForeignKey("principals.id", ondelete="CASCADE"), primary_key=True
    )
    member_id: Mapped[str] = mapped_column(
        ForeignKey("principals.id", ondelete="CASCADE"), primary_key=True
    )


class BearerTokenColumns:
    """The columns of a bearer-token table (API tokens here, sharing recipients' tokens in
    :mod:`stratus.sharing.models`), which :class:`stratus.catalog.tokens.BearerTokens` serves."""

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex
    prefix: Mapped[str] = mapped_column(String(16))  # shown in listings to tell tokens apart
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class Token(BearerTokenColumns, Base):
    __tablename__ = "tokens"
    principal_id: Mapped[str] = mapped_column(ForeignKey("principals.id", ondelete="CASCADE"))


class Grant(Base):
    __tablename__ = "grants"
    __table_args__ = (
        UniqueConstraint("securable_type", "securable_id", "principal", "privilege"),
        Index("ix_grants_securable", "securable_type", "securable_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    securable_type: Mapped[str] = mapped_column(String(32))
    securable_id: Mapped[str] = mapped_column(String(36))
    principal: Mapped[str] = mapped_column(String(255))
    privilege: Mapped[str] = mapped_column(String(64))


class Tag(Base):
    __tablename__ = "tags"
    __table_args__ = (
        UniqueConstraint("securable_type", "securable_id", "column_name", "key"),
        Index("ix_tags_securable", "securable_type", "securable_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    securable_type: Mapped[str] = mapped_column(String(32))
    securable_id: Mapped[str] = mapped_column(String(36))
    column_name: Mapped[str] = mapped_column(String(255), default="")  # "" = the securable
    key: Mapped[str] = mapped_column(String(255))
    value: Mapped[str | None] = mapped_column(Text)


class DataKeyRow(Base):
    """A wrapped PII data key (never the plaintext): one per (scope, version)."""

    __tablename__ = "data_keys"
    scope: Mapped[str] = mapped_column(String(512), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    master_id: Mapped[str] = mapped_column(String(128))
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
