"""Explorer sign-in sessions: server-side rows behind a signed, opaque cookie.

The browser holds only ``<session id>.<HMAC-SHA256 of it>``; the server keeps, per session, the
principal, the SHA-256 of the API token it signed in with (never the token), a CSRF token, and
its timestamps, in the metastore's ``ui_sessions`` table (:class:`stratus.ui.models.UiSession`):
every worker and every instance sharing the metastore knows every session, so no sticky
sessions are needed behind a load balancer (the instances then need the same
``STRATUS_UI_SECRET``). Rows are keyed by the SHA-256 of the session id, so a copy of the table
cannot be replayed as cookies. A session ends at sign-out, after ``IDLE`` without a request,
``MAX_AGE`` after sign-in, when its token expires or is revoked, or when its principal is
disabled.

The signing secret is ``STRATUS_UI_SECRET`` (at least 32 characters) or, if unset, 32 random
bytes created once in ``$STRATUS_HOME/ui-secret`` with mode 0600.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session as DbSession

from stratus.config import ConfigError
from stratus.ui.models import UiSession

SECRET_ENV = "STRATUS_UI_SECRET"  # noqa: S105 - a variable name, not a secret
SECRET_FILE = "ui-secret"  # noqa: S105 - a file name, not a secret
MAX_AGE = 8 * 3600  # seconds from sign-in
IDLE = 30 * 60  # seconds without a request
TOUCH_EVERY = 60  # write last_seen at most this often
MIN_SECRET = 32
LOGIN_WINDOW = 3600  # seconds a sign-in form stays valid


def load_secret(home: Path, env: dict[str, str] | None = None) -> bytes:
    """The cookie-signing key: ``STRATUS_UI_SECRET`` or ``$STRATUS_HOME/ui-secret`` (created
    0600 on first use; concurrent workers agree because only one ``O_EXCL`` create wins)."""
    env = dict(os.environ) if env is None else env
    value = env.get(SECRET_ENV)
    if value:
        if len(value) < MIN_SECRET:
            raise ConfigError(f"{SECRET_ENV}: must be at least {MIN_SECRET} characters")
        return value.encode()
    path = home / SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32) + "\n")
    for _ in range(50):  # another worker may be between its create and its write
        text = path.read_text().strip()
        if text:
            break
        time.sleep(0.02)
    if len(text) < MIN_SECRET:
        raise ConfigError(f"{path}: the Explorer secret is too short; delete it to regenerate")
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)
    return text.encode()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    id_hash: str
    principal: str
    token_hash: str
    token_kind: str  # "api" (a Stratus token) or "oidc" (a JWT)
    csrf: str
    created: float
    last_seen: float
    expires: float


class SessionStore:
    def __init__(
        self,
        sessions: Callable[[], AbstractContextManager[DbSession]],
        secret: bytes,
        *,
        clock: Callable[[], float] = time.time,
        max_age: float = MAX_AGE,
        idle: float = IDLE,
    ) -> None:
        """``sessions``: a metastore transaction (``MetastoreService.session``)."""
        self._db = sessions
        self.secret = secret
        self.clock = clock
        self.max_age = max_age
        self.idle = idle

    # ---- signing -------------------------------------------------------------------------
    def sign(self, value: str, purpose: str = "session") -> str:
        mac = hmac.new(self.secret, f"{purpose}:{value}".encode(), hashlib.sha256).digest()
        return _b64(mac)

    def _cookie_for(self, sid: str) -> str:
        return f"{sid}.{self.sign(sid)}"

    def _sid_from(self, cookie: str | None) -> str | None:
        if not cookie or cookie.count(".") != 1:
            return None
        sid, mac = cookie.split(".")
        if not hmac.compare_digest(mac.encode(), self.sign(sid).encode()):
            return None
        return sid

    # ---- lifecycle -----------------------------------------------------------------------
    def create(
        self, principal: str, token: str, kind: str, token_expires: float | None
    ) -> tuple[str, Session]:
        """A new session; returns the cookie value and the session."""
        now = self.clock()
        sid = secrets.token_urlsafe(32)
        expires = now + self.max_age
        if token_expires is not None:
            expires = min(expires, token_expires)
        session = Session(
            id_hash=_sha(sid),
            principal=principal,
            token_hash=_sha(token),
            token_kind=kind,
            csrf=secrets.token_urlsafe(32),
            created=now,
            last_seen=now,
            expires=expires,
        )
        with self._db() as db:
            db.execute(
                delete(UiSession).where(
                    or_(UiSession.expires <= now, UiSession.last_seen <= now - self.idle)
                )
            )
            db.add(UiSession(**vars(session)))
        return self._cookie_for(sid), session

    def get(self, cookie: str | None) -> Session | None:
        """The live session a cookie names (its idle clock restarted), else None."""
        sid = self._sid_from(cookie)
        if sid is None:
            return None
        key = _sha(sid)
        with self._db() as db:
            row = db.get(UiSession, key)
            found = None if row is None else _session(row)
        if found is None:
            return None
        now = self.clock()
        if now >= found.expires or now - found.last_seen >= self.idle:
            self.delete(cookie)
            return None
        if now - found.last_seen >= TOUCH_EVERY:
            with self._db() as db:
                db.execute(update(UiSession).where(UiSession.id_hash == key).values(last_seen=now))
        return found

    def delete(self, cookie: str | None) -> None:
        sid = self._sid_from(cookie)
        if sid is not None:
            with self._db() as db:
                db.execute(delete(UiSession).where(UiSession.id_hash == _sha(sid)))

    def delete_for_token(self, token_hash: str) -> None:
        with self._db() as db:
            db.execute(delete(UiSession).where(UiSession.token_hash == token_hash))

    def count(self) -> int:
        with self._db() as db:
            return int(db.scalar(select(func.count()).select_from(UiSession)) or 0)

    # ---- the sign-in form's CSRF token (before any session exists) -------------------------
    def login_nonce(self) -> tuple[str, str]:
        """A fresh nonce (issue time and randomness) for the pre-sign-in cookie, and the form
        token bound to it."""
        nonce = f"{int(self.clock())}-{secrets.token_urlsafe(24)}"
        return nonce, self.sign(nonce, "login")

    def check_login(self, nonce: str | None, token: str | None) -> bool:
        """The sign-in form's token matches its cookie's nonce, issued within ``LOGIN_WINDOW``."""
        if not nonce or not token:
            return False
        if not hmac.compare_digest(token.encode(), self.sign(nonce, "login").encode()):
            return False
        issued = nonce.partition("-")[0]
        return issued.isdigit() and 0 <= self.clock() - int(issued) <= LOGIN_WINDOW


def _session(row: UiSession) -> Session:
    return Session(
        id_hash=row.id_hash,
        principal=row.principal,
        token_hash=row.token_hash,
        token_kind=row.token_kind,
        csrf=row.csrf,
        created=row.created,
        last_seen=row.last_seen,
        expires=row.expires,
    )


def expiry_of(timestamp: dt.datetime | None) -> float | None:
    if timestamp is None:
        return None
    if timestamp.tzinfo is None:
        timestamp = timestamp.replace(tzinfo=dt.UTC)
    return timestamp.timestamp()
