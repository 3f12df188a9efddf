"""The HTTP edge: one parser, one error translation, one paging convention, and an OpenAPI
document whose requests are the models the handlers validate with."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from typing import Annotated, Any

import flask
import orjson
import pytest
from flask import Flask
from flask.testing import FlaskClient
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from stratus.api import create_app
from stratus.api.openapi import REQUEST_BODIES, body_schema, query_params
from stratus.context import Stratus
from stratus.inputs import validation_errors
from tests.conftest import client_for, token_for

CITY = "greensboro"
WINDOW = f"city_id={CITY}&start=1970-01-01&end=2030-12-31"
# path parameters that reach real objects, so that each handler gets as far as its parser
PATH_VALUES = {
    "full_name": "main.weather.hourly",
    "securable_type": "table",
    "column": "temp",
    "share": "edge_share",
    "name": "edge_rcpt",
    "job_id": "no-such-job",
    "shared_name": "weather.hourly",
    "recipient": "edge_rcpt",
    "token_id": "no-such-token",
}
# an input each handler's model refuses (an unknown name, unless unknown names are allowed)
BAD_QUERY = {"readTableRows": {"max_results": "0"}}
GOOD_BODY = {"executeSql": {"statement": "SELECT 1 AS x"}}


@pytest.fixture(scope="module")
def app(loaded_local: Stratus) -> Iterator[Flask]:
    app = create_app(stratus=loaded_local)
    admin = client_for(app, token_for(loaded_local))
    assert admin.post("/api/v1/shares", json={"name": "edge_share"}).status_code == 201
    rcpt = admin.post("/api/v1/recipients", json={"name": "edge_rcpt"})
    assert rcpt.status_code == 201
    app.config["EDGE_RECIPIENT_TOKEN"] = rcpt.get_json()["token"]
    yield app


@pytest.fixture(scope="module")
def client(app: Flask, loaded_local: Stratus) -> FlaskClient:
    return client_for(app, token_for(loaded_local))


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            yield path, method, op


def _fill(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], path)


def test_every_documented_request_is_what_its_handler_validates_with(
    client: FlaskClient,
) -> None:
    """For every operation of /openapi.json with a body or query parameters: the handler
    refuses a bad request with the pydantic model, and the document describes exactly that
    model (body component, or the query parameters generated from it)."""
    doc = client.get("/openapi.json").get_json()
    components = doc["components"]["schemas"]
    checked: set[str] = set()
    expected: set[str] = set()
    for path, method, op in _operations(doc):
        op_id = op["operationId"]
        url = _fill(path)
        body_ref = op.get("requestBody", {}).get("content", {}).get("application/json", {})
        ref = body_ref.get("schema", {}).get("$ref")
        documented_query = [p for p in op.get("parameters", []) if p["in"] == "query"]
        if ref:
            expected.add(f"{op_id} body")
            name = ref.rsplit("/", 1)[-1]
            with client:
                resp = client.open(url, method=method.upper(), json={"zz_unknown": 1})
                model = flask.g.get("body_model")
            assert resp.status_code == 400, (op_id, resp.get_json())
            problem = resp.get_json()
            assert {"parameter": "zz_unknown", "message": "unknown field"} in problem["errors"]
            assert model is REQUEST_BODIES[name], (op_id, model)
            assert components[name] == body_schema(model)[0], op_id
            checked.add(f"{op_id} body")
        if documented_query:
            expected.add(f"{op_id} query")
            query = BAD_QUERY.get(op_id, {"zz_unknown": "1"})
            body = GOOD_BODY.get(op_id)
            if ref and body is None:
                raise AssertionError(f"{op_id}: add a valid body to GOOD_BODY")
            with client:
                resp = client.open(url, method=method.upper(), query_string=query, json=body)
                model = flask.g.get("query_model")
            assert resp.status_code == 400, (op_id, resp.get_json())
            named = {e["parameter"] for e in resp.get_json()["errors"]}
            assert next(iter(query)) in named, (op_id, named)
            assert model is not None, op_id
            filters = [p for p in documented_query if p["name"] == "filters"]
            assert documented_query == [*query_params(model), *filters], op_id
            checked.add(f"{op_id} query")
    assert checked == expected
    assert len(checked) >= 17  # the bodies and queries of /api/v1 and the UC extensions


def test_old_paging_names_are_aliases(client: FlaskClient) -> None:
    new = client.get(f"/api/v1/weather?{WINDOW}&max_results=25").get_json()
    old = client.get(f"/api/v1/weather?{WINDOW}&limit=25").get_json()
    assert new["data"] == old["data"] and len(new["data"]) == 25
    assert new["max_results"] == new["limit"] == 25
    token = new["next_page_token"]
    assert token and token == new["next_cursor"] == old["next_page_token"]
    second = client.get(f"/api/v1/weather?{WINDOW}&max_results=25&page_token={token}").get_json()
    second_old = client.get(f"/api/v1/weather?{WINDOW}&limit=25&cursor={token}").get_json()
    assert second["data"] == second_old["data"] and second["data"][0] != new["data"][0]
    csv = client.get(f"/api/v1/weather?{WINDOW}&max_results=25&format=csv")
    assert csv.headers["X-Next-Page-Token"] == csv.headers["X-Next-Cursor"] == token
    # an old name is reported as the caller spelled it
    bad = client.get(f"/api/v1/weather?{WINDOW}&limit=0").get_json()
    assert bad["parameter"] == "limit"
    both = client.get(f"/api/v1/weather?{WINDOW}&limit=5&max_results=5")
    assert both.status_code == 400 and both.get_json()["parameter"] == "limit"
    assert "max_results" in both.get_json()["detail"]


def test_table_rows_jobs_and_audit_take_the_same_paging_names(client: FlaskClient) -> None:
    rows = client.get("/api/v1/tables/main.weather.hourly/rows?max_results=3").get_json()
    assert rows["count"] == 3 and rows["next_page_token"] == rows["next_cursor"]
    token = rows["next_page_token"]
    more = client.get(f"/api/v1/tables/main.weather.hourly/rows?max_results=3&page_token={token}")
    assert more.status_code == 200 and more.get_json()["data"] != rows["data"]
    old = client.get(f"/api/v1/tables/main.weather.hourly/rows?limit=3&cursor={token}")
    assert old.get_json()["data"] == more.get_json()["data"]
    # a token whose timestamp is not one: refused, not a 500 from the engine
    forged = base64.urlsafe_b64encode(orjson.dumps([CITY, "not a time"])).decode()
    bad = client.get(f"/api/v1/tables/main.weather.hourly/rows?page_token={forged}")
    assert bad.status_code == 400 and bad.get_json()["parameter"] == "page_token"
    jobs = client.get("/api/v1/jobs?max_results=1")
    assert jobs.status_code == 200 and "next_page_token" in jobs.get_json()
    assert client.get("/api/v1/jobs?max_results=0").get_json()["parameter"] == "max_results"
    assert client.get("/api/v1/jobs?limit=0").get_json()["parameter"] == "limit"
    audit = client.get("/api/v1/audit?max_results=2").get_json()
    assert audit["count"] == 2
    assert client.get("/api/v1/audit?limit=2").get_json()["count"] == 2


def test_bad_bodies_are_the_same_problem_everywhere(client: FlaskClient) -> None:
    """Not JSON, not an object, a wrong type: one problem shape on every body endpoint."""
    for path, method in (
        ("/api/v1/sql", "POST"),
        ("/api/v1/jobs", "POST"),
        ("/api/v1/shares", "POST"),
        ("/api/2.1/unity-catalog/catalogs", "POST"),
        ("/api/2.1/unity-catalog/tags/table/main.weather.hourly", "PUT"),
    ):
        for raw in ("{not json", "[1, 2]", '"text"'):
            resp = client.open(path, method=method, data=raw, content_type="application/json")
            doc = resp.get_json()
            assert resp.status_code == 400, (path, raw)
            assert resp.mimetype == "application/problem+json"
            assert doc["type"] == "/problems/invalid-parameter" and doc["parameter"] == "body"
    # a field of the wrong type, nested: named by its path
    bad = client.patch(
        "/api/2.1/unity-catalog/permissions/table/main.weather.hourly",
        json={"changes": [{"principal": "x", "add": [5]}]},
    ).get_json()
    assert bad["parameter"] == "changes[0].add[0]" and bad["error_code"] == "INVALID_ARGUMENT"
    tag = client.put(
        "/api/2.1/unity-catalog/tags/table/main.weather.hourly", json={"tags": {"a,b": "x"}}
    ).get_json()
    assert tag["parameter"] == "tags.a,b" and "without ','" in tag["errors"][0]["message"]


class _Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    z: Annotated[float, Field(gt=0)]


class _Outer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: StrictStr
    items: list[_Inner] = []
    tags: dict[Annotated[str, Field(max_length=2)], int] = {}


def _errors(data: object, **kw: Any) -> list[dict[str, str]]:
    with pytest.raises(ValidationError) as info:
        _Outer.model_validate(data)
    return validation_errors(info.value, **kw)


def test_the_translation_of_pydantic_errors() -> None:
    assert _errors({"items": [{"z": 0}], "x": 1}) == [
        {"parameter": "name", "message": "required"},
        {"parameter": "items[0].z", "message": "Input should be greater than 0"},
        {"parameter": "x", "message": "unknown field"},
    ]
    assert _errors({"name": "n", "tags": {"abc": 1}}) == [
        {"parameter": "tags.abc", "message": "String should have at most 2 characters"}
    ]
    # a query: the caller's name for an aliased parameter, and "parameter" for unknown ones
    assert _errors({"name": 5, "q": 1}, where="query", renamed={"name": "old"}) == [
        {"parameter": "old", "message": "Input should be a valid string"},
        {"parameter": "q", "message": "unknown parameter"},
    ]
    # a nested document's errors put in place
    assert _errors({"name": "n", "zz": 1}, prefix="options.", unknown="unknown option") == [
        {"parameter": "options.zz", "message": "unknown option"}
    ]
    with pytest.raises(ValidationError) as info:
        _Outer.model_validate("not an object")
    assert validation_errors(info.value) == [
        {"parameter": "body", "message": "Input should be a valid dictionary or instance of _Outer"}
    ]


def test_a_bad_delta_sharing_body_is_answered_in_the_protocols_format(app: Flask) -> None:
    recipient = client_for(app, app.config["EDGE_RECIPIENT_TOKEN"])
    resp = recipient.post(
        "/delta-sharing/shares/s/schemas/a/tables/t/query",
        data="[1]",
        content_type="application/json",
    )
    assert resp.status_code == 400 and resp.mimetype == "application/json"
    assert resp.get_json() == {
        "errorCode": "INVALID_PARAMETER_VALUE",
        "message": "body: must be a JSON object",
    }
