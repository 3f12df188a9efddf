"""The Explorer's sign-in sessions, in the metastore (shared by every Stratus instance)."""

from __future__ import annotations

from sqlalchemy import Float, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from stratus.catalog.models import Base


class UiSession(Base):
    """One signed-in browser: the principal, the SHA-256 of the token it signed in with (never
    the token), its CSRF token and its clock. Keyed by the SHA-256 of the session id, so a copy
    of the table cannot be replayed as cookies."""

    __tablename__ = "ui_sessions"
    __table_args__ = (
        Index("ix_ui_sessions_token_hash", "token_hash"),
        Index("ix_ui_sessions_expires", "expires"),
    )
    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    principal: Mapped[str] = mapped_column(String(255))
    token_hash: Mapped[str] = mapped_column(String(64))
    token_kind: Mapped[str] = mapped_column(String(8))  # "api" or "oidc"
    csrf: Mapped[str] = mapped_column(String(64))
    created: Mapped[float] = mapped_column(Float)
    last_seen: Mapped[float] = mapped_column(Float)
    expires: Mapped[float] = mapped_column(Float)
