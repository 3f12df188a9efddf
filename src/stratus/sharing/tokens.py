"""Recipients' bearer tokens: issued, checked and revoked through the one bearer-token store
(:class:`stratus.catalog.tokens.BearerTokens`, the same implementation as API tokens).

Tokens are ``dss_`` + 256 random bits, shown once, stored as SHA-256 hashes, always expiring
(at most ten years), revocable. Every token that does not authenticate (unknown, malformed,
revoked, expired) takes the same path and gets the same answer.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from stratus.catalog.errors import InvalidArgument, Unauthenticated
from stratus.catalog.tokens import BearerTokens, bearer, iso
from stratus.sharing import models as sm
from stratus.sharing.common import CACHE_SECONDS, RecipientContext

TOKEN_PREFIX = "dss_"  # noqa: S105 - a public prefix, not a secret
DEFAULT_TOKEN_DAYS = 90.0
MAX_TOKEN_DAYS = 3650.0
# the one answer to every recipient token that does not authenticate, whatever the reason
INVALID_TOKEN = "invalid or expired token"  # noqa: S105 - a message, not a secret


class RecipientTokens:
    def __init__(self, store: BearerTokens) -> None:
        self.store = store

    @classmethod
    def in_metastore(cls, sessions: Any) -> RecipientTokens:
        """The store over ``recipient_tokens`` (``sessions``: read-only session factory)."""
        return cls(
            BearerTokens(
                sessions,
                sm.RecipientToken,
                sm.Recipient,
                "recipient_id",
                TOKEN_PREFIX,
                shown_chars=8,
                cache_seconds=CACHE_SECONDS,
            )
        )

    def issue(
        self, s: Session, rcpt: sm.Recipient, days: float | None, comment: str | None
    ) -> tuple[str, sm.RecipientToken]:
        days = DEFAULT_TOKEN_DAYS if days is None else float(days)
        if not 0 < days <= MAX_TOKEN_DAYS:
            raise InvalidArgument(
                f"days must be more than 0 and at most {MAX_TOKEN_DAYS:g} (tokens always expire)",
                parameter="days",
            )
        secret, tok = self.store.issue(s, rcpt.id, days=days, comment=comment)
        return secret, tok

    def revoke(self, rows: list[sm.RecipientToken]) -> list[str]:
        return self.store.revoke(rows)

    def forget(self) -> None:
        self.store.forget()

    def authenticate(self, authorization: str | None) -> RecipientContext:
        secret = bearer(authorization)
        ctx = self.store.resolve(
            secret, lambda tok, rcpt: RecipientContext(rcpt.id, rcpt.name, tok.id)
        )
        if ctx is None:
            raise Unauthenticated(INVALID_TOKEN)
        return ctx

    def holder(self, recipient_id: str, token_id: str) -> str | None:
        """The recipient's name if this token of it is still valid, else None (cached a few
        seconds, never past the expiry; a revocation in this process applies at once)."""
        rcpt = self.store.holder(token_id, recipient_id)
        return None if rcpt is None else str(rcpt.name)

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
