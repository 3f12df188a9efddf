"""Bearer tokens at rest: one implementation for Stratus API tokens and sharing recipients' tokens.

A token is ``<prefix>`` + 43 random URL-safe characters (256 bits), shown once; only its SHA-256
is stored (a plain hash is a safe at-rest form for a secret that long), with a short prefix to
tell tokens apart in listings, an optional expiry and a revocation time. A presented token is
looked up by its hash (an index probe, never a string comparison): an unknown, malformed,
revoked or expired token takes that same path, costs the same work and gets the same answer.

Resolved tokens are cached for a few seconds (never past their expiry). :meth:`forget` empties
the cache (a revocation in this process applies at once); a caller may also pass a
``generation`` (the metastore's authorization generation) that empties it when it moves.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from stratus.catalog.errors import Unauthenticated

CACHE_SECONDS = 5.0
_CACHE_MAX = 100_000


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def bearer(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header (Unauthenticated otherwise)."""
    if not authorization:
        raise Unauthenticated("missing Authorization: Bearer <token>")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("Authorization must be 'Bearer <token>'")
    return token


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def iso(value: dt.datetime | None) -> str | None:
    """An instant as ISO 8601 in UTC with milliseconds and ``Z`` (naive values are UTC)."""
    value = aware(value)
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TokenRow(Protocol):
    """What a token table's rows have (``m.Token``, ``sm.RecipientToken``)."""

    id: Any
    token_hash: Any
    prefix: Any
    comment: Any
    created_at: Any
    expires_at: Any
    revoked_at: Any


def token_info(row: TokenRow) -> dict[str, Any]:
    """What a token's holder and its admins may see of it: never the secret or its hash."""
    return {
        "id": row.id,
        "prefix": row.prefix,
        "comment": row.comment,
        "created_at": iso(row.created_at),
        "expiration_time": iso(row.expires_at),
        "revoked_at": iso(row.revoked_at),
        "status": status(row),
    }


R = TypeVar("R")


def status(row: TokenRow) -> str:
    """``active``, ``revoked`` or ``expired``."""
    if row.revoked_at is not None:
        return "revoked"
    expires = aware(row.expires_at)
    if expires is not None and expires <= _now():
        return "expired"
    return "active"


def seconds_left(row: TokenRow, limit: float) -> float:
    """How long a valid token may be trusted without looking again: never past its expiry."""
    expires = aware(row.expires_at)
    if expires is None:
        return limit
    return max(0.0, min(limit, (expires - _now()).total_seconds()))


class BearerTokens:
    """The tokens of one table (``model``), each held by a row of ``owner`` (``owner_key`` is
    the token's foreign key to it): issue, resolve (cached), check by id (cached), revoke."""

    def __init__(
        self,
        sessions: Callable[[], AbstractContextManager[Session]],
        model: Any,
        owner: Any,
        owner_key: str,
        prefix: str,
        *,
        shown_chars: int = 4,
        cache_seconds: float = CACHE_SECONDS,
    ) -> None:
        self._sessions = sessions
        self.model = model
        self.owner = owner
        self.owner_key = owner_key
        self.prefix = prefix
        self.shown = len(prefix) + shown_chars
        self.cache_seconds = cache_seconds
        self._cache: dict[tuple[str, str], tuple[float, Any]] = {}
        self._generation: int | None = None
        self._lock = threading.Lock()

    # ---- issuing and revoking (inside the caller's transaction) -----------------------------
    def issue(
        self, s: Session, owner_id: str, *, days: float | None, comment: str | None
    ) -> tuple[str, Any]:
        """A new token for ``owner_id`` (``days`` None: it never expires); the plaintext is
        returned once and only its hash is stored."""
        secret = self.prefix + secrets.token_urlsafe(32)
        row = self.model(
            token_hash=hash_token(secret),
            prefix=secret[: self.shown],
            comment=comment,
            expires_at=_now() + dt.timedelta(days=days) if days else None,
        )
        setattr(row, self.owner_key, owner_id)
        s.add(row)
        s.flush()
        return secret, row

    def revoke(self, rows: Iterable[Any]) -> list[str]:
        """Revoke the rows not revoked yet (ids of those revoked now); empties the cache."""
        revoked = []
        for row in rows:
            if row.revoked_at is None:
                row.revoked_at = _now()
                revoked.append(row.id)
        self.forget()
        return revoked

    def forget(self) -> None:
        with self._lock:
            self._cache.clear()

    # ---- presented tokens ---------------------------------------------------------------------
    def lookup(self, secret: str) -> tuple[Any, Any] | None:
        """(token row, owner row) of a valid token, else None: one hash, one indexed lookup,
        whatever ``secret`` is."""
        return self._valid(self._by_hash(hash_token(secret)))

    def resolve(
        self,
        secret: str,
        accept: Callable[[Any, Any], R | None],
        *,
        generation: int | None = None,
    ) -> R | None:
        """``accept(token, owner)`` of a valid token (None from ``accept`` refuses it), cached
        by hash for a few seconds; None for any token that does not authenticate."""
        key = ("hash", hash_token(secret))
        hit = self._cached(key, generation)
        if hit is not None:
            return hit
        found = self._valid(self._by_hash(key[1]))
        if found is None:
            return None
        value = accept(*found)
        if value is not None:
            self._remember(key, value, seconds_left(found[0], self.cache_seconds))
        return value

    def holder(self, token_id: str, owner_id: str) -> Any | None:
        """The owner row if its token ``token_id`` is still valid, else None (cached)."""
        key = ("id", f"{token_id}\x00{owner_id}")
        hit = self._cached(key, None)
        if hit is not None:
            return hit
        with self._sessions() as s:
            row = s.execute(
                select(self.model, self.owner)
                .join(self.owner, getattr(self.model, self.owner_key) == self.owner.id)
                .where(self.model.id == token_id, self.owner.id == owner_id)
            ).first()
        found = self._valid(None if row is None else (row[0], row[1]))
        if found is None:
            return None
        self._remember(key, found[1], seconds_left(found[0], self.cache_seconds))
        return found[1]

    def _by_hash(self, token_hash: str) -> tuple[Any, Any] | None:
        with self._sessions() as s:
            row = s.execute(
                select(self.model, self.owner)
                .join(self.owner, getattr(self.model, self.owner_key) == self.owner.id)
                .where(self.model.token_hash == token_hash)
            ).first()
        return None if row is None else (row[0], row[1])

    @staticmethod
    def _valid(found: tuple[Any, Any] | None) -> tuple[Any, Any] | None:
        if found is None or status(found[0]) != "active":
            return None
        return found

    def _cached(self, key: tuple[str, str], generation: int | None) -> Any | None:
        now = time.monotonic()
        with self._lock:
            if generation is not None and generation != self._generation:
                self._cache.clear()
                self._generation = generation
            hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        return None

    def _remember(self, key: tuple[str, str], value: Any, seconds: float) -> None:
        if seconds <= 0:
            return
        with self._lock:
            if len(self._cache) > _CACHE_MAX:
                self._cache.clear()
            self._cache[key] = (time.monotonic() + seconds, value)
