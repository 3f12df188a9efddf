"""Who is calling: Stratus API tokens (hashed at rest) and OIDC/JWT bearer tokens.

API tokens are ``stratus_`` + 43 random URL-safe characters (256 bits), so a plain SHA-256 is a
safe at-rest form and the lookup is by hash (an index probe, not a string comparison), in the
one bearer-token store (:mod:`stratus.catalog.tokens`, shared with sharing recipients' tokens).
Resolved tokens are cached for a few seconds (never past their expiry); any revocation bumps the
metastore generation, which empties the cache at once (in this process; other processes see it
within the authorizer's check interval). OIDC tokens are verified against a configured issuer's
JWKS URL or PEM key, and a claim (``STRATUS_OIDC_PRINCIPAL_CLAIM``) names an existing principal.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import jwt

from stratus.catalog.errors import Unauthenticated
from stratus.catalog.metastore import TOKEN_PREFIX, MetastoreService
from stratus.catalog.tokens import bearer
from stratus.security.authz import Authorizer, Identity

# the one answer to every bearer token that does not authenticate, whatever the reason
INVALID = "invalid or expired token"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OidcConfig:
    issuer: str
    audience: str | None = None
    jwks_url: str | None = None
    public_key: str | None = None  # PEM text or a path to a PEM file
    claim: str = "email"
    algorithms: tuple[str, ...] = ("RS256", "ES256")

    def key_for(self, token: str) -> object:
        if self.public_key:
            text = self.public_key
            if not text.lstrip().startswith("-----BEGIN"):
                text = Path(text).read_text()
            return text
        if self.jwks_url:
            return _jwks_client(self.jwks_url).get_signing_key_from_jwt(token).key
        raise Unauthenticated("OIDC is configured without a JWKS URL or public key")


_JWKS: dict[str, jwt.PyJWKClient] = {}


def _jwks_client(url: str) -> jwt.PyJWKClient:
    client = _JWKS.get(url)
    if client is None:
        client = _JWKS[url] = jwt.PyJWKClient(url, cache_keys=True, lifespan=300)
    return client


class Authenticator:
    def __init__(
        self, metastore: MetastoreService, authorizer: Authorizer, oidc: OidcConfig | None = None
    ) -> None:
        self.metastore = metastore
        self.authorizer = authorizer
        self.oidc = oidc

    def authenticate(self, authorization: str | None) -> Identity:
        token = bearer(authorization)
        if self.oidc and token.count(".") == 2 and not token.startswith(TOKEN_PREFIX):
            return self._jwt(token)
        # Anything else takes the API token path, malformed or not: hashed and looked up like a
        # real token, so an unknown, malformed, revoked or expired token (or one of a disabled
        # principal) costs the same work and gets the same answer.
        return self._api_token(token)

    def _api_token(self, token: str) -> Identity:
        ident = self.metastore.tokens.resolve(
            token,
            lambda _token, principal: (
                self.authorizer.identity(principal) if principal.active else None
            ),
            generation=self.authorizer.snapshot().generation,
        )
        if ident is None:
            raise Unauthenticated(INVALID)
        return ident

    def _jwt(self, token: str) -> Identity:
        assert self.oidc is not None
        cfg = self.oidc
        try:
            claims = jwt.decode(
                token,
                cfg.key_for(token),
                algorithms=list(cfg.algorithms),
                audience=cfg.audience,
                issuer=cfg.issuer,
                options={"require": ["exp", "iss"], "verify_aud": cfg.audience is not None},
            )
        except (jwt.PyJWTError, OSError, ValueError):
            raise Unauthenticated(INVALID) from None
        except Unauthenticated:  # OIDC without a key source: the operator's log says so
            log.error("OIDC bearer token refused: no JWKS URL or public key is configured")
            raise Unauthenticated(INVALID) from None
        # a validly signed token for no usable principal: the same answer as a wrong token (the
        # reason goes to the log, without the token)
        name = claims.get(cfg.claim)
        if not isinstance(name, str) or not name:
            log.warning("OIDC bearer token refused: no string %r claim", cfg.claim)
            raise Unauthenticated(INVALID)
        try:
            principal = self.metastore.get_principal(name)
        except Exception:
            log.warning("OIDC bearer token refused: its %r claim names no principal", cfg.claim)
            raise Unauthenticated(INVALID) from None
        if not principal.active:
            log.warning("OIDC bearer token refused: the principal it names is disabled")
            raise Unauthenticated(INVALID)
        return self.authorizer.identity(principal)
