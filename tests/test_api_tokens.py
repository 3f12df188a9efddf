"""API tokens over HTTP (``/api/v1/tokens``): issue, list, revoke; each principal its own, admins
any; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from stratus.api import create_app
from stratus.config import Settings
from stratus.context import Stratus
from stratus.security.audit import AUDIT
from tests.conftest import client_for, token_for

TOKENS = "/api/v1/tokens"


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory, metastore_url: str | None) -> Iterator[Stratus]:
    home = tmp_path_factory.mktemp("tokens") / "home"
    stratus = Stratus.from_settings(Settings(home=home, metastore_url=metastore_url))
    stratus.bootstrap()
    ms = stratus.governance.metastore
    for who in ("bob", "cara"):
        ms.create_principal(who)
    ms.create_principal("analysts", "group")
    yield stratus
    stratus.close()


@pytest.fixture(scope="module")
def app(lake: Stratus) -> Flask:
    return create_app(stratus=lake)


def as_(app: Flask, lake: Stratus, who: str) -> FlaskClient:
    return client_for(app, token_for(lake, who))


def issue(client: FlaskClient, **body: Any) -> dict[str, Any]:
    resp = client.post(TOKENS, json=body)
    assert resp.status_code == 201, resp.get_json()
    doc: dict[str, Any] = resp.get_json()
    assert resp.headers["Location"] == f"{TOKENS}/{doc['token_info']['id']}"
    assert resp.headers["Cache-Control"] == "no-store"
    return doc


def test_a_principal_issues_uses_lists_and_revokes_its_own_token(app: Flask, lake: Stratus) -> None:
    bob = as_(app, lake, "bob")
    doc = issue(bob, comment="laptop", lifetime_days=7)
    secret, info = doc["token"], doc["token_info"]
    assert secret.startswith("stratus_") and info["prefix"] == secret[: len(info["prefix"])]
    assert (info["principal"], info["comment"], info["status"]) == ("bob", "laptop", "active")
    expires = dt.datetime.fromisoformat(info["expiration_time"])
    left = expires - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=6.99) < left <= dt.timedelta(days=7)
    assert issue(bob)["token_info"]["expiration_time"] > info["expiration_time"]  # 90 days

    new = client_for(app, secret)
    listed = new.get(TOKENS).get_json()
    assert {t["principal"] for t in listed["tokens"]} == {"bob"}
    assert info["id"] in {t["id"] for t in listed["tokens"]}
    assert secret not in json.dumps(listed)  # the secret is shown once, at issue
    row, _ = lake.governance.metastore.get_token(info["id"])
    assert row.token_hash != secret and secret not in row.token_hash  # only a hash is stored

    # revoking the very token in use: refused from the next request on
    revoked = new.delete(f"{TOKENS}/{info['id']}")
    assert revoked.status_code == 200 and revoked.get_json()["status"] == "revoked"
    after = new.get(TOKENS)
    assert after.status_code == 401 and after.headers["WWW-Authenticate"].startswith("Bearer")
    again = bob.delete(f"{TOKENS}/{info['id']}")  # already revoked: unchanged, still 200
    assert (
        again.status_code == 200
        and again.get_json()["revoked_at"] == revoked.get_json()["revoked_at"]
    )


def test_others_tokens_are_invisible_to_non_admins(app: Flask, lake: Stratus) -> None:
    bob, cara = as_(app, lake, "bob"), as_(app, lake, "cara")
    cara_token = issue(cara)["token_info"]["id"]
    for resp in (
        bob.post(TOKENS, json={"principal": "cara"}),
        bob.get(f"{TOKENS}?principal=cara"),
        bob.get(f"{TOKENS}?principal=nobody-at-all"),
    ):
        assert resp.status_code == 404, resp.get_json()
    assert (
        "principal cara does not exist" in bob.get(f"{TOKENS}?principal=cara").get_json()["detail"]
    )
    stolen = bob.delete(f"{TOKENS}/{cara_token}")
    assert stolen.status_code == 404
    assert stolen.get_json()["detail"] == f"token {cara_token} does not exist"
    assert client_for(app, token_for(lake, "cara")).get(TOKENS).status_code == 200
    assert lake.governance.metastore.get_token(cara_token)[0].revoked_at is None


def test_an_admin_manages_anyones_tokens(app: Flask, lake: Stratus) -> None:
    admin = as_(app, lake, "admin")
    doc = issue(admin, principal="cara", comment="ci")
    assert doc["token_info"]["principal"] == "cara"
    cara = client_for(app, doc["token"])
    assert cara.get(TOKENS).status_code == 200
    listed = admin.get(f"{TOKENS}?principal=cara").get_json()["tokens"]
    assert doc["token_info"]["id"] in {t["id"] for t in listed}
    assert admin.delete(f"{TOKENS}/{doc['token_info']['id']}").status_code == 200
    assert cara.get(TOKENS).status_code == 401
    assert admin.post(TOKENS, json={"principal": "ghost"}).status_code == 404
    group = admin.post(TOKENS, json={"principal": "analysts"})
    assert group.status_code == 400 and "groups cannot hold tokens" in group.get_json()["detail"]
    assert admin.delete(f"{TOKENS}/no-such-token").status_code == 404


def test_listing_is_paged(app: Flask, lake: Stratus) -> None:
    lake.governance.metastore.create_principal("pager")
    pager = as_(app, lake, "pager")
    for _ in range(4):
        issue(pager)
    seen: list[str] = []
    url = f"{TOKENS}?max_results=2"
    pages = 0
    while url:
        doc = pager.get(url).get_json()
        assert len(doc["tokens"]) <= 2
        seen += [t["id"] for t in doc["tokens"]]
        pages += 1
        nxt = doc["next_page_token"]
        url = f"{TOKENS}?max_results=2&page_token={nxt}" if nxt else ""
    assert pages == 3 and len(seen) == len(set(seen)) == 5  # 4 here, 1 from token_for
    assert pager.get(f"{TOKENS}?limit=2").get_json()["next_page_token"]  # the old name


@pytest.mark.parametrize(
    ("body", "parameter"),
    [
        ({"lifetime_days": 0}, "lifetime_days"),
        ({"lifetime_days": -1}, "lifetime_days"),
        ({"lifetime_days": 3651}, "lifetime_days"),
        ({"lifetime_days": "7"}, "lifetime_days"),
        ({"lifetime_days": True}, "lifetime_days"),
        ({"principal": "bad name!"}, "principal"),
        ({"principal": 7}, "principal"),
        ({"comment": "x" * 256}, "comment"),
        ({"scope": "all"}, "scope"),
    ],
)
def test_bad_requests_name_the_parameter(
    app: Flask, lake: Stratus, body: dict[str, Any], parameter: str
) -> None:
    resp = as_(app, lake, "admin").post(TOKENS, json=body)
    assert resp.status_code == 400
    problem = resp.get_json()
    assert problem["parameter"] == parameter, problem


@pytest.mark.parametrize(
    "query", ["max_results=0", "max_results=501", "max_results=x", "page_token=zzz", "who=me"]
)
def test_bad_listing_parameters_are_400(app: Flask, lake: Stratus, query: str) -> None:
    resp = as_(app, lake, "bob").get(f"{TOKENS}?{query}")
    assert resp.status_code == 400 and resp.get_json()["parameter"] == query.split("=")[0]


def test_token_requests_are_audited_without_the_secret(app: Flask, lake: Stratus) -> None:
    bob = as_(app, lake, "bob")
    doc = issue(bob, comment="audited")
    bob.delete(f"{TOKENS}/{doc['token_info']['id']}")
    lake.governance.audit.flush()
    from deltalake import DeltaTable

    rows = (
        DeltaTable(lake.lakehouse.url(AUDIT), storage_options=lake.storage.options)
        .to_pyarrow_table()
        .to_pylist()
    )
    mine = [r for r in rows if r["action_name"] in ("createToken", "revokeToken")]
    assert {r["action_name"] for r in mine} == {"createToken", "revokeToken"}
    created = [r for r in mine if "audited" in (r["request_params"] or "")]
    assert [(r["action_name"], r["user_identity"]) for r in created] == [("createToken", "bob")]
    revoked = [r for r in mine if doc["token_info"]["id"] in (r["request_params"] or "")]
    assert [(r["action_name"], r["user_identity"]) for r in revoked] == [("revokeToken", "bob")]
    assert not any(doc["token"] in json.dumps(r, default=str) for r in rows)


def test_the_cli_and_the_api_see_the_same_tokens(app: Flask, lake: Stratus) -> None:
    admin = as_(app, lake, "admin")
    doc = issue(admin, principal="bob", comment="shared view")
    mine = {t.id for t, who in lake.governance.metastore.list_tokens("bob")}
    assert doc["token_info"]["id"] in mine
    lake.governance.metastore.revoke_token(doc["token_info"]["id"])  # what `revoke-token` does
    listed = admin.get(f"{TOKENS}?principal=bob").get_json()["tokens"]
    assert {t["id"]: t["status"] for t in listed}[doc["token_info"]["id"]] == "revoked"
