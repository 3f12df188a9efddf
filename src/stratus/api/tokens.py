"""API tokens over HTTP: thin handlers over the metastore's one bearer-token store.

``POST /api/v1/tokens`` issues a token (shown once; only its hash is stored), ``GET
/api/v1/tokens`` lists tokens (paged: ``max_results``, ``page_token`` -> ``next_page_token``),
``DELETE /api/v1/tokens/{token_id}`` revokes one. A principal manages its own tokens; a metastore
admin those of any principal (the ``principal.tokens`` action). Someone else's token, or a
principal the caller may not manage, is answered as if it did not exist. A token revoked here is
refused at once by this process, and by other instances within 0.2 s (the revocation bumps the
metastore generation, which empties their token caches).
What ``stratus admin create-token / list-tokens / revoke-token`` do on the machine, without the
never-expiring tokens the CLI can make.
"""

from __future__ import annotations

from typing import Annotated, Any

from flask import Blueprint, Response
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictStr

from stratus.api.auth import audit, current_identity
from stratus.api.encoding import json_response
from stratus.api.params import PAGING_ALIASES, Name, PageToken, QueryModel, parse_body, parse_query
from stratus.api.problems import invalid_parameter
from stratus.api.state import platform
from stratus.catalog import models as m
from stratus.catalog.errors import NotFound
from stratus.catalog.tokens import token_info
from stratus.security.actions import Resource
from stratus.security.authz import Identity

bp = Blueprint("tokens", __name__, url_prefix="/api/v1/tokens")

DEFAULT_DAYS = 90.0
MAX_DAYS = 3650.0
MAX_LIMIT = 500


class CreateTokenBody(BaseModel):
    """A new API token."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    principal: Name | None = Field(
        default=None, description="Whose token (default: the caller; others need admin)."
    )
    lifetime_days: Annotated[StrictFloat, Field(gt=0, le=MAX_DAYS)] | None = Field(
        default=None, description="Days until it expires (default 90; tokens here always expire)."
    )
    comment: Annotated[StrictStr, Field(max_length=255)] | None = Field(
        default=None, description="What the token is for."
    )


class TokenListParams(QueryModel):
    ALIASES = PAGING_ALIASES

    principal: Name | None = Field(
        default=None, description="Only this principal's tokens (default: the caller's)."
    )
    max_results: int = Field(
        default=100, ge=1, le=MAX_LIMIT, description="Page size (alias: limit)."
    )
    page_token: PageToken = None


def _manage(who: Identity, principal: str) -> None:
    """Return if ``who`` may manage ``principal``'s tokens (and it exists); else 404 naming
    the principal."""
    gov = platform().governance
    gov.authorizer.require(
        who, "principal.tokens", Resource("principal", principal, owner=principal)
    )
    if principal != who.name:
        gov.metastore.get_principal(principal)


def _view(token: m.Token, principal: str) -> dict[str, Any]:
    return {**token_info(token), "principal": principal}


@bp.post("")
def create_token() -> Response:
    audit("createToken", None, None, {})
    body = parse_body(CreateTokenBody)
    who = current_identity()
    principal = body.principal or who.name
    audit("createToken", None, None, {"principal": principal, "comment": body.comment})
    _manage(who, principal)
    days = float(body.lifetime_days) if body.lifetime_days is not None else DEFAULT_DAYS
    secret, token = platform().governance.metastore.create_token(
        principal, days=days, comment=body.comment
    )
    doc = {"token": secret, "token_info": _view(token, principal)}
    resp = json_response(doc, status=201)
    resp.headers["Location"] = f"/api/v1/tokens/{token.id}"
    resp.headers["Cache-Control"] = "no-store"  # the secret is in the body
    return resp


@bp.get("")
def list_tokens() -> Response:
    audit("listTokens", None, None)
    p = parse_query(TokenListParams)
    who = current_identity()
    principal = p.principal or who.name
    _manage(who, principal)
    rows = platform().governance.metastore.list_tokens(principal)
    start = 0
    if p.page_token is not None:
        ids = [t.id for t, _ in rows]
        if p.page_token not in ids:
            raise invalid_parameter("page_token", "is not a next_page_token of this listing")
        start = ids.index(p.page_token) + 1
    page = rows[start : start + p.max_results]
    more = start + p.max_results < len(rows)
    return json_response(
        {
            "tokens": [_view(t, name) for t, name in page],
            "next_page_token": page[-1][0].id if more and page else None,
        }
    )


@bp.delete("/<token_id>")
def revoke_token(token_id: str) -> Response:
    audit("revokeToken", None, None, {"id": token_id})  # "token..." keys are scrubbed
    who = current_identity()
    ms = platform().governance.metastore
    _, principal = ms.get_token(token_id)
    try:
        _manage(who, principal)
    except NotFound:  # someone else's token: as if there were none
        raise NotFound(f"token {token_id} does not exist") from None
    return json_response(_view(ms.revoke_token(token_id), principal))
