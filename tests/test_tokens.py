"""The one bearer-token store (stratus.catalog.tokens.BearerTokens): API tokens and sharing
recipients' tokens are the same implementation — hashed at rest, expiring, revocable, one lookup
path, a cache that never outlives a token's expiry or a revocation in this process."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select

from stratus.catalog import models as m
from stratus.catalog.errors import Unauthenticated
from stratus.catalog.metastore import MetastoreService
from stratus.catalog.tokens import BearerTokens, bearer, hash_token, seconds_left, status
from stratus.config import Settings
from stratus.context import Stratus
from stratus.security.governance import LOCAL_ADMIN
from stratus.sharing import models as sm
from tests.conftest import METASTORES, metastore_url_for


@pytest.fixture(params=METASTORES)
def metastore(tmp_path: Path, request: pytest.FixtureRequest) -> MetastoreService:
    url = metastore_url_for(request, request.param)
    ms = MetastoreService(url or f"sqlite:///{tmp_path / 'metastore.db'}")
    ms.create_principal("alice")
    return ms


def test_api_and_recipient_tokens_share_one_store(tmp_path: Path) -> None:
    stratus = Stratus.from_settings(Settings(home=tmp_path / "home"))
    stratus.bootstrap()
    try:
        api = stratus.governance.metastore.tokens
        recipients = stratus.sharing.tokens.store
        assert type(api) is BearerTokens and type(recipients) is BearerTokens
        assert (api.model, recipients.model) == (m.Token, sm.RecipientToken)
        _, secret, tok = stratus.sharing.admin.create_recipient(LOCAL_ADMIN, "acme", days=1)
        assert secret.startswith("dss_") and tok.prefix == secret[:12]
        with stratus.governance.metastore.reading() as s:
            stored = s.get(sm.RecipientToken, tok.id)
            assert stored is not None and stored.token_hash == hash_token(secret)
        ctx = stratus.sharing.tokens.authenticate(f"Bearer {secret}")
        assert (ctx.name, ctx.token_id) == ("acme", tok.id)
        assert stratus.sharing.admin.revoke_tokens(LOCAL_ADMIN, "acme") == [tok.id]
        with pytest.raises(Unauthenticated, match="invalid or expired token"):
            stratus.sharing.tokens.authenticate(f"Bearer {secret}")  # revoked: at once
    finally:
        stratus.close()


def test_issue_lookup_revoke_and_expiry(metastore: MetastoreService) -> None:
    secret, tok = metastore.create_token("alice", days=1, comment="ci")
    assert secret.startswith("stratus_") and tok.prefix == secret[:12]
    assert status(tok) == "active"
    with metastore.reading() as s:
        hashes = list(s.scalars(select(m.Token.token_hash)))
    assert hashes == [hash_token(secret)] and secret not in hashes  # only the hash at rest
    found = metastore.tokens.lookup(secret)
    assert found is not None and found[1].name == "alice"
    for wrong in ("", "x", "stratus_" + "A" * 43, secret + "x"):
        assert metastore.tokens.lookup(wrong) is None
    metastore.revoke_token(tok.id)
    assert metastore.tokens.lookup(secret) is None
    expired, old = metastore.create_token("alice", days=1e-9)
    assert metastore.tokens.lookup(expired) is None and status(old) == "expired"
    never, forever = metastore.create_token("alice", days=None)
    assert forever.expires_at is None and metastore.tokens.lookup(never) is not None


def test_cache_follows_generation_and_expiry(metastore: MetastoreService) -> None:
    secret, tok = metastore.create_token("alice", days=1)
    seen: list[str] = []

    def accept(token: m.Token, principal: m.Principal) -> str:
        seen.append(principal.name)
        return str(principal.name)

    store = metastore.tokens
    assert store.resolve(secret, accept, generation=1) == "alice"
    # revoked behind the store's back (another process): the cache answers until the generation
    # moves (this process's revocations forget at once, see above)
    with metastore.session() as s:
        row = s.get(m.Token, tok.id)
        assert row is not None
        row.revoked_at = dt.datetime.now(dt.UTC)
    assert store.resolve(secret, accept, generation=1) == "alice" and seen == ["alice"]
    assert store.resolve(secret, accept, generation=2) is None
    # a refusal by the caller (e.g. a disabled principal) is not cached
    other, _ = metastore.create_token("alice", days=1)
    assert store.resolve(other, lambda _t, _p: None) is None
    assert store.resolve(other, accept) == "alice"
    # trusted at most until the token expires
    soon = m.Token(expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2))
    assert 0 < seconds_left(soon, 5.0) <= 2.0
    assert seconds_left(m.Token(expires_at=None), 5.0) == 5.0


def test_bearer_header_parsing() -> None:
    assert bearer("Bearer abc") == "abc" and bearer("bearer  abc ") == "abc"
    for header, message in ((None, "missing"), ("", "missing"), ("Basic abc", "Bearer <token>")):
        with pytest.raises(Unauthenticated, match=message):
            bearer(header)
    with pytest.raises(Unauthenticated):
        bearer("Bearer ")
