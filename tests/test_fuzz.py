"""Schema-driven fuzzing of every API operation with schemathesis, in process (WSGI).

Every operation of ``/openapi.json`` (all of ``/api/v1`` plus Stratus's Unity Catalog
extensions) and every Unity Catalog OSS operation Stratus implements (from the vendored UC spec,
with the problem documents Stratus answers errors with added, since that spec documents only
successes) gets the documents' examples, generated requests, valid (positive) and invalid
(negative), and schemathesis's boundary ("coverage") cases. Each response must not be a 5xx and
must match the documents: status code, content type and body, with every object schema closed
(a field the document does not name fails), and every request the document rules out (negative
data: a missing parameter, a value of the wrong type or out of range, an unknown body field) must
be refused with a 4xx, so the request validation is fuzzed as well. Requests authenticate as
the metastore admin and, in a shorter second pass, as a principal who can only read
``main.weather``. Names in the fuzzed copies of the documents are steered (see :func:`steer`) so
that requests reach real objects, not only "not found". The app runs without rate limits
(STRATUS_RATE_LIMIT_ENABLED): the fuzzer sends thousands of requests a minute.

Generation is derandomized, so a CI run repeats exactly; the number of generated cases is
counted and must stay above :data:`MIN_CASES`, so a shrinking schema or a broken strategy fails
the test instead of quietly testing less. :data:`EDGE_CASES` pins inputs the generators do not
reach.
"""

from __future__ import annotations

import copy
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import yaml
from flask import Flask
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import negative_data_rejection, not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from stratus.api import create_app
from stratus.api.openapi import spec
from stratus.api.unity_catalog import PREFIX as UC
from stratus.api.unity_catalog import SECURABLES
from stratus.catalog.metastore import PRIVILEGES
from stratus.config import Settings
from stratus.context import Stratus
from tests.conftest import _load, token_for

UC_SPEC = Path(__file__).parent / "data" / "unity-catalog-oss-all.yaml"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,  # what the document rules out is refused (4xx), never served
]
MIN_CASES = 2000
# the UC OSS operations Stratus implements (src/stratus/api/unity_catalog.py, uc_credentials.py)
UC_OPERATIONS = (
    "createCatalog",
    "listCatalogs",
    "getCatalog",
    "updateCatalog",
    "deleteCatalog",
    "createSchema",
    "listSchemas",
    "getSchema",
    "updateSchema",
    "deleteSchema",
    "createTable",
    "listTables",
    "getTable",
    "deleteTable",
    "createVolume",
    "listVolumes",
    "getVolume",
    "updateVolume",
    "deleteVolume",
    "get",  # permissions
    "update",  # permissions
    "summary",  # metastore_summary
    # credential vending (src/stratus/api/uc_credentials.py)
    "generateTemporaryTableCredentials",
    "generateTemporaryPathCredentials",
    "generateTemporaryVolumeCredentials",
)
READER = "fuzz-reader"


@dataclass
class Tally:
    cases: int = 0
    statuses: dict[str, Counter[int]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    def report(self) -> str:
        return "\n\n".join(f"== {label}\n{text}" for label, text in self.failures.items())


@dataclass(frozen=True)
class Target:
    app: Flask
    stratus: Stratus
    admin: str
    reader: str


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory, sample_csv: Path) -> Iterator[Target]:
    """A fresh Stratus holding the sample data, its app, and tokens for an admin and a reader."""
    home = tmp_path_factory.mktemp("fuzz") / "home"
    # one job worker: fuzzed jobs run (and mostly fail) in the background without crowding
    # the two cores; statements are cut short rather than left running; no rate limit (the
    # fuzzer sends thousands of requests a minute, unauthenticated ones among them)
    settings = Settings(home=home, job_workers=1, sql_timeout_seconds=10, rate_limit_enabled=False)
    stratus = _load(Stratus.from_settings(settings), sample_csv)
    stratus.bootstrap()
    ms = stratus.governance.metastore
    ms.create_principal(READER)
    for kind, name, privs in (
        ("catalog", "main", ["USE CATALOG"]),
        ("schema", "main.weather", ["USE SCHEMA", "SELECT"]),
    ):
        ms.update_grants(kind, ms.securable(kind, name).id, [{"principal": READER, "add": privs}])
    app = create_app(stratus=stratus)
    yield Target(app, stratus, token_for(stratus), token_for(stratus, READER))
    stratus.close()  # stops the job workers and drains the audit queue


def uc_spec_with_errors() -> dict[str, Any]:
    """The UC OSS spec with the problem documents Stratus answers errors with (the spec itself
    documents only successes)."""
    doc = yaml.safe_load(UC_SPEC.read_text())
    text, number = {"type": "string"}, {"type": "integer"}
    doc["components"]["schemas"]["StratusProblem"] = {  # Problem of /openapi.json, in 3.0
        "type": "object",
        "required": ["type", "title", "status", "detail", "error_code", "message"],
        "properties": {
            **dict.fromkeys(
                ("type", "title", "detail", "parameter", "error_code", "message"), text
            ),
            "status": number,
            "instance": {"type": "string", "nullable": True},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["parameter", "message"],
                    "properties": {
                        "parameter": text,
                        "message": text,
                        "line": number,
                        "column": number,
                    },
                },
            },
        },
    }
    problem = {
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/StratusProblem"}}
        }
    }
    for item in doc["paths"].values():
        for method, op in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                for code in ("400", "401", "403", "404", "409", "413", "414", "429", "431"):
                    op["responses"].setdefault(code, {"description": "Error", **problem})
    _lenient(doc)
    return doc


def _lenient(doc: dict[str, Any]) -> None:
    """Where Stratus takes more than the UC spec's schemas allow, on purpose, so that every
    client's way of writing a request works (in place): an optional body field may be null
    (clients serializing unset fields send null: it means absent); a permissions change may
    leave out add or remove (the official client sends only what it changes); and lists cap
    max_results above 1000 at 1000, as the parameter's own description says, instead of
    refusing it."""
    schemas = doc["components"]["schemas"]
    for name in (*BODIES, "PermissionsChange", "UpdatePermissions", "ColumnInfo"):
        body = schemas.get(name)
        if body is None or "properties" not in body:
            continue
        for prop, schema in body["properties"].items():
            if prop not in body.get("required", ()) and "$ref" not in schema:
                schema["nullable"] = True
    schemas["PermissionsChange"]["required"] = ["principal"]
    for item in doc["paths"].values():
        for op in item.values():
            for param in op.get("parameters", []) if isinstance(op, dict) else []:
                if param.get("name") == "max_results":
                    param["schema"].pop("maximum", None)


# ---- steering: generated names that sometimes hit real objects --------------------------------
# Random names almost never name anything, so every read would stop at "not found". These
# patterns (only in the copies of the documents fuzzed here) make a name one of the sample
# data's securables, one of the "fz" objects earlier requests may have created, or any valid
# name; statements are sometimes real SQL over the sample data.
def _esc(text: str) -> str:
    return re.sub(r"([.*+?()\[\]{}|^$\\])", r"\\\1", text)


def _one_of(*known: str, other: str) -> str:
    return "^(?:" + "|".join(_esc(k) for k in known) + f"|{other})$"


LEAF = "[A-Za-z0-9_][A-Za-z0-9_-]{0,12}"
NAME = _one_of("fz", other=LEAF)
CATALOG = _one_of("main", "system", "fz", other=LEAF)
SCHEMA = _one_of("weather", "access", "fz", other=LEAF)
TABLE = _one_of("hourly", "cities", "fz", other=LEAF)
SCHEMA_FULL = _one_of("main.weather", "system.access", "fz.fz", other=f"{LEAF}\\.{LEAF}")
TABLES = ("main.weather.hourly", "main.weather.cities", "main.weather.fz", "system.access.audit")
TABLE_FULL = _one_of(*TABLES, "fz.fz.fz", other=f"{LEAF}\\.{LEAF}\\.{LEAF}")
ANY_FULL = _one_of("main", "fz", "main.weather", "fz.fz", *TABLES, "fz.fz.fz", other="[^/]{1,30}")
PRINCIPAL = _one_of("admin", READER, "account users", other=LEAF)
STATEMENTS = (
    "SELECT city_id, avg(temp) AS t FROM main.weather.hourly GROUP BY city_id",
    "SELECT * FROM main.weather.cities",
    "SELECT * FROM system.access.audit LIMIT 5",
    "SHOW TABLES IN main.weather",
    "DESCRIBE TABLE main.weather.hourly",
    "CREATE TABLE main.weather.fz AS SELECT city_id, date, temp FROM main.weather.hourly LIMIT 9",
    "INSERT INTO main.weather.fz SELECT city_id, date, temp FROM main.weather.hourly LIMIT 3",
    "SELECT :x AS x",
    "DROP TABLE main.weather.fz",
    # results JSON and CSV cannot hold as they are
    "SELECT 1 AS a, 2 AS a",
    "SELECT CAST('infinity' AS TIMESTAMP) AS t, map(array(1), array(2)) AS m, X'00ff' AS b",
)
STATEMENT = _one_of(*STATEMENTS, other="[\\s\\S]*\\S[\\s\\S]*")
# parameters by name (path-dependent for full names), and request body fields
PARAMS: dict[str, str] = {
    "catalog_name": CATALOG,
    "schema_name": SCHEMA,
    "table_name": TABLE,
    "column": _one_of("temp", "city_id", "date", other=LEAF),
    "principal": PRINCIPAL,
}
FULL_NAMES = (  # (path regex, pattern of its {full_name} or {name})
    (r"^/catalogs/", CATALOG),
    (r"^/schemas/", SCHEMA_FULL),
    (r"^/(tables|volumes)/|/tables/\{full_name\}|/lineage/", TABLE_FULL),
    (r"/(permissions|tags)/", ANY_FULL),
)
FIELDS: dict[str, str] = {
    "name": NAME,
    "catalog_name": CATALOG,
    "schema_name": SCHEMA,
    "new_name": NAME,
    "principal": PRINCIPAL,
    "recipient": NAME,
    "table": TABLE_FULL,
    "statement": STATEMENT,
}
BODIES = (
    "CreateCatalog",
    "UpdateCatalog",
    "CreateSchema",
    "UpdateSchema",
    "CreateTable",
    "CreateVolumeRequestContent",
    "UpdateVolumeRequestContent",
    "PermissionsChange",
    "SqlRequest",
    "CreateShare",
    "AddShareTable",
    "GrantShare",
    "CreateRecipient",
)


def _steer_param(path: str, param: dict[str, Any]) -> None:
    name, schema = param.get("name"), param.get("schema")
    if not isinstance(schema, dict) or schema.get("type") != "string":
        return
    pattern = PARAMS.get(name)
    if param.get("in") == "path":
        if name in ("share", "recipient", "name") and not path.startswith(("/catalogs", "/vol")):
            pattern = NAME
        for where, full in FULL_NAMES:
            if name in ("full_name", "name") and re.search(where, path):
                pattern = full
    if pattern:
        param["schema"] = {"type": "string", "pattern": pattern}


def _strict(schema: Any) -> None:
    """Close every object schema that lists its properties (in place): a response field the
    document does not name fails, and generated bodies hold only fields Stratus knows (it
    rejects the others, so bodies with them would never get past validation)."""
    if isinstance(schema, list):
        for item in schema:
            _strict(item)
    if not isinstance(schema, dict):
        return
    if "properties" in schema:
        schema.setdefault("additionalProperties", False)
    for value in schema.values():
        _strict(value)


def steer(doc: dict[str, Any], *, names: bool = True) -> dict[str, Any]:
    """A copy of ``doc`` with closed object schemas and the names and statements steered as
    described above; UC bodies as Stratus takes them (columns with a type and no negative
    numbers, no views, no schema storage roots: anything else is a 400). Without ``names``,
    names keep the documents' own schemas: negative cases are generated from that copy, since
    a name outside a steering pattern is not invalid."""
    doc = copy.deepcopy(doc)
    _strict(doc["components"]["schemas"])
    schemas = doc["components"]["schemas"]
    if "ColumnInfo" in schemas:  # the UC spec: what Stratus supports of it
        column = copy.deepcopy(schemas["ColumnInfo"])  # columns of new tables
        column["required"] = ["name", "type_name"]
        props = column["properties"]
        if names:
            props["name"] = {"type": "string", "pattern": f"^{LEAF}$"}
        props["type_name"] = {"type": "string", "enum": ["INT", "LONG", "DOUBLE", "STRING", "DATE"]}
        for prop in ("type_text", "type_json", "type_interval_type"):  # derived for these types
            del props[prop]
        for prop in ("position", "type_precision", "type_scale", "partition_index"):
            props[prop]["minimum"] = 0
        schemas["NewColumn"] = column
        schemas["CreateTable"]["properties"]["columns"]["items"] = {
            "$ref": "#/components/schemas/NewColumn"
        }
        schemas["TableType"]["enum"] = ["MANAGED", "EXTERNAL"]  # no views
        schemas["SecurableType"]["enum"] = list(SECURABLES)
        schemas["Privilege"]["enum"] = [p for p in schemas["Privilege"]["enum"] if p in PRIVILEGES]
        for body, prop in (
            ("CreateSchema", "storage_root"),
            ("CreateTable", "view_definition"),
            ("CreateTable", "view_dependencies"),
        ):
            del schemas[body]["properties"][prop]
    if not names:
        return doc
    for path, item in doc["paths"].items():
        for param in item.get("parameters", []):
            _steer_param(path, param)
        for op in item.values():
            if isinstance(op, dict):
                for param in op.get("parameters", []):
                    _steer_param(path, param)
    for name in BODIES:
        props = doc["components"]["schemas"].get(name, {}).get("properties", {})
        for field_name, pattern in FIELDS.items():
            if props.get(field_name, {}).get("type") in ("string", ["string", "null"]):
                props[field_name] = {**props[field_name], "pattern": pattern}
                props[field_name].pop("minLength", None)
    return doc


def fuzz(
    schema: Any,
    token: str,
    tally: Tally,
    *,
    max_examples: int,
    modes: tuple[GenerationMode, ...] = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE),
    coverage: bool = False,
    examples: bool = True,
) -> None:
    """Send every operation of ``schema`` its examples, ``max_examples`` generated cases per
    mode and, with ``coverage``, schemathesis's boundary cases (each parameter missing, empty,
    at its limits, of the wrong type...); record each failing run's first failure."""
    # schemathesis's in-process (WSGI) transport sends requests' default Accept-Encoding (gzip)
    # but does not decode what comes back; compression has its own tests (test_weather_http.py)
    headers = {"Authorization": f"Bearer {token}", "Accept-Encoding": "identity"}
    config = settings(
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    for result in schema.get_all_operations():
        op = result.ok()
        statuses = tally.statuses.setdefault(op.label, Counter())

        def send(case: schemathesis.Case) -> None:
            tally.cases += 1
            response = case.call_and_validate(headers=headers, checks=CHECKS)
            statuses[response.status_code] += 1  # noqa: B023 - used before the loop moves on

        strategies = [
            (f"{op.label} [example]", s, 1)
            for s in (op.get_strategies_from_examples() if examples else [])
        ]
        strategies += [
            (f"{op.label} [{mode.value}]", op.as_strategy(generation_mode=mode), max_examples)
            for mode in modes
        ]
        for label, strategy, n in strategies:
            try:
                # a fresh function each time: hypothesis keeps settings on the function
                given(case=strategy)(settings(config, max_examples=n)(lambda case: send(case)))()
            except Unsatisfiable:
                pass  # nothing to negate: an operation without parameters or body
            except FailureGroup as exc:
                tally.failures[label] = str(exc)
        if coverage:
            cases = schema.iter_coverage_cases(
                op,
                generation_modes=list(modes),
                generation_config=schema.config.generation_for(operation=op),
            )
            for case in cases:
                try:
                    send(case)
                except FailureGroup as exc:
                    tally.failures.setdefault(f"{op.label} [coverage]", str(exc))


def test_every_route_is_documented_or_fuzzed(target: Target) -> None:
    """A route added to /api/v1 (or to the UC API) without a description fails here."""
    doc = spec()
    uc = {
        (op["operationId"])
        for item in uc_spec_with_errors()["paths"].values()
        for op in item.values()
        if isinstance(op, dict) and "operationId" in op
    }
    assert set(UC_OPERATIONS) <= uc
    documented = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    uc_paths = {
        (m.upper(), UC + p)
        for p, item in uc_spec_with_errors()["paths"].items()
        for m, op in item.items()
        if isinstance(op, dict) and op.get("operationId") in UC_OPERATIONS
    }
    missing = []
    for rule in target.app.url_map.iter_rules():
        if not rule.rule.startswith(("/api/v1", UC)):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            if (method, path) not in documented | uc_paths:
                missing.append(f"{method} {path}")
    assert not missing, missing


def test_the_harness_reports_what_breaks_the_documents(target: Target) -> None:
    """The checks fail on a body missing a required field, on an undocumented status and on
    a request the document rules out that the handler serves anyway."""
    doc = spec()
    doc["components"]["schemas"]["Version"]["required"].append("build")
    del doc["paths"]["/api/v1/jobs/{job_id}"]["get"]["responses"]["404"]
    # claim that depth is at most 1: the handler serves 2 to 10, which is what must be caught
    lineage = doc["paths"]["/api/v1/lineage/tables/{full_name}"]["get"]
    depth = next(p for p in lineage["parameters"] if p["name"] == "depth")
    depth["schema"] = {"type": "integer", "minimum": 1, "maximum": 1}
    lineage["parameters"] = [p for p in lineage["parameters"] if p["in"] == "path" or p is depth]
    for p in lineage["parameters"]:
        if p["in"] == "path":
            p["schema"] = {"type": "string", "enum": ["main.weather.hourly"]}
    schema = schemathesis.openapi.from_dict(doc).include(
        operation_id=["getVersion", "getJob", "getTableLineage"]
    )
    schema.app = target.app
    tally = Tally()
    fuzz(schema, target.admin, tally, max_examples=3, modes=(GenerationMode.POSITIVE,))
    fuzz(
        schema.include(operation_id=["getTableLineage"]),
        target.admin,
        tally,
        max_examples=30,
        modes=(GenerationMode.NEGATIVE,),
    )
    assert set(tally.statuses) == {
        "GET /version",
        "GET /api/v1/jobs/{job_id}",
        "GET /api/v1/lineage/tables/{full_name}",
    }
    version, job = (
        tally.failures["GET /version [positive]"],
        tally.failures["GET /api/v1/jobs/{job_id} [positive]"],
    )
    assert "'build' is a required property" in version or '"build" is a required' in version
    assert "Undocumented" in job and "404" in job
    served = tally.failures["GET /api/v1/lineage/tables/{full_name} [negative]"]
    assert "Schema-violating request accepted" in served or "ST201" in served, served


# Requests the generators do not make (found by hand around the fuzzing), each answered with
# the status given and documented like any other answer:
# (caller, method, path, query, JSON body or raw text, status, expected "data" or None)
DEEP = "[" * 100_000  # nested deeper than Python's json module can recurse
EDGE = "main.weather.edge"  # b: binary, tagged PII below; d: decimal
EDGE_CASES: list[tuple[str, str, str, dict[str, str], Any, int, Any]] = [
    ("admin", "POST", "/api/v1/sql", {}, DEEP, 400, None),
    ("admin", "POST", "/api/v1/jobs", {}, DEEP, 400, None),
    ("admin", "POST", "/api/v1/shares", {}, DEEP, 400, None),
    ("admin", "POST", f"{UC}/catalogs", {}, DEEP, 400, None),
    ("admin", "GET", "/api/v1/audit", {"until": "9999-12-31"}, None, 200, None),  # no next day
    ("admin", "GET", "/api/v1/audit", {"since": "9999-12-31T23:59-05:00"}, None, 400, None),
    (
        "admin",
        "POST",
        "/api/v1/sql",
        {},
        {"statement": f"SELECT {'(' * 5000}1{')' * 5000}"},
        400,
        None,
    ),
    (
        "admin",
        "POST",
        "/api/v1/sql",
        {},
        {"statement": "CREATE TABLE main.weather.`a.b` (x INT)"},
        400,
        None,
    ),
    (
        "admin",
        "POST",
        "/api/v1/sql",
        {},
        {"statement": "SELECT 1 AS a, 2 AS a"},
        200,
        [{"a": 1, "a_2": 2}],
    ),
    (
        "admin",
        "POST",
        "/api/v1/sql",
        {},
        {"statement": "SELECT TIMESTAMP '9999-12-31 23:00' + INTERVAL 1 DAY AS t"},
        200,
        [{"t": "10000-01-01 23:00:00.000000Z"}],
    ),
    ("admin", "POST", "/api/v1/sql", {"format": "csv"}, {"statement": STATEMENTS[-1]}, 200, None),
    ("admin", "GET", f"/api/v1/tables/{EDGE}/rows", {}, None, 200, [{"b": "AP8=", "d": "1.5"}]),
    ("reader", "GET", f"/api/v1/tables/{EDGE}/rows", {}, None, 200, [{"b": "***", "d": "1.5"}]),
    ("admin", "POST", "/api/v1/shares/edge/tables", {}, {"table": EDGE, "pii": "mask"}, 201, None),
]


def test_edge_cases_answer_as_documented(target: Target) -> None:
    tokens = {"admin": target.admin, "reader": target.reader}
    admin = target.app.test_client()
    admin.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {target.admin}"
    for method, path, body in (
        ("POST", "/api/v1/sql", {"statement": f"CREATE TABLE {EDGE} AS SELECT X'00ff' b, 1.5 d"}),
        ("PUT", f"{UC}/tags/table/{EDGE}", {"tags": {"pii": "email"}, "column": "b"}),
        (
            "PATCH",
            f"{UC}/permissions/table/{EDGE}",
            {"changes": [{"principal": READER, "add": ["SELECT"]}]},
        ),
        ("POST", "/api/v1/shares", {"name": "edge"}),
    ):
        assert admin.open(path, method=method, json=body).status_code < 300, path
    served = target.app.test_client().get("/openapi.json").get_json()
    documents = (
        (schemathesis.openapi.from_dict(served), ""),
        (schemathesis.openapi.from_dict(uc_spec_with_errors()), UC),
    )
    for who, method, path, query, body, status, data in EDGE_CASES:
        raw = body if isinstance(body, str) else None
        response = target.app.test_client().open(
            path,
            method=method,
            query_string=query,
            data=raw,
            json=body if raw is None and body is not None else None,
            headers={"Authorization": f"Bearer {tokens[who]}", "Content-Type": "application/json"},
        )
        assert response.status_code == status, (path, query, response.get_data()[:300])
        if data is not None:
            assert response.get_json()["data"] == data
        # the same checks as for generated cases, against the document of the operation
        schema, prefix = next((d, p) for d, p in documents if path.startswith(p or "/api/v1"))
        relative = path.removeprefix(prefix)
        op = schema.find_operation_by_path(method, relative)
        template = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(op.path))
        params = re.fullmatch(template, relative).groupdict()  # type: ignore[union-attr]
        op.Case(path_parameters=params, query=query).validate_response(response, checks=CHECKS)


def test_fuzz_every_operation(target: Target) -> None:
    started = time.monotonic()
    tally = Tally()
    served = target.app.test_client().get("/openapi.json").get_json()
    api = schemathesis.openapi.from_dict(steer(served))
    uc = schemathesis.openapi.from_dict(steer(uc_spec_with_errors())).include(
        operation_id=list(UC_OPERATIONS)
    )
    # negative cases from the copies whose names are not steered (see steer)
    api_negative = schemathesis.openapi.from_dict(steer(served, names=False))
    uc_negative = schemathesis.openapi.from_dict(steer(uc_spec_with_errors(), names=False)).include(
        operation_id=list(UC_OPERATIONS)
    )
    api.app = uc.app = api_negative.app = uc_negative.app = target.app
    positive, negative = (GenerationMode.POSITIVE,), (GenerationMode.NEGATIVE,)
    for schema, other in ((api, api_negative), (uc, uc_negative)):
        fuzz(schema, target.admin, tally, max_examples=20, modes=positive, coverage=True)
        fuzz(other, target.admin, tally, max_examples=20, modes=negative, coverage=True)
    # a principal who can only read main.weather: refusals must be documented too
    fuzz(api, target.reader, tally, max_examples=8, modes=(GenerationMode.POSITIVE,))
    fuzz(uc, target.reader, tally, max_examples=8, modes=(GenerationMode.POSITIVE,))
    took = time.monotonic() - started
    print(f"fuzzed {len(tally.statuses)} operations with {tally.cases} cases in {took:.0f} s")
    for label, counts in sorted(tally.statuses.items()):
        print(f"  {label}: {dict(sorted(counts.items()))}")
    assert not tally.failures, tally.report()
    documented = sum(len(item) for item in served["paths"].values())
    assert len(tally.statuses) == documented + len(UC_OPERATIONS)  # every operation ran
    assert tally.cases >= MIN_CASES
