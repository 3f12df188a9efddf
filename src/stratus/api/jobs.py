"""Processing jobs: thin HTTP over :class:`stratus.jobs.service.JobService`.

``POST /api/v1/jobs`` (202 + Location; optional ``Idempotency-Key``), ``GET /api/v1/jobs``
(the caller's jobs, newest first, paged: ``max_results``, ``page_token`` -> ``next_page_token``),
``GET /api/v1/jobs/{id}``, ``DELETE /api/v1/jobs/{id}``
(cancel). Registering the blueprint starts the app's worker pool.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request
from flask.sansio.blueprints import BlueprintSetupState
from pydantic import Field

from stratus.api.auth import audit, current_identity
from stratus.api.encoding import json_response
from stratus.api.params import (
    PAGING_ALIASES,
    CsvList,
    PageToken,
    QueryModel,
    json_body,
    parse_body,
    parse_query,
)
from stratus.api.problems import Problem
from stratus.api.state import EXTENSION, platform
from stratus.jobs.models import STATES
from stratus.jobs.store import JobRecord
from stratus.jobs.validation import (
    JobInputError,
    JobSubmissionBody,
    check_idempotency_key,
    parse_submission,
)

bp = Blueprint("jobs", __name__, url_prefix="/api/v1/jobs")
MAX_LIMIT = 500


class JobListParams(QueryModel):
    LISTS = frozenset({"state"})
    ALIASES = PAGING_ALIASES

    max_results: int = Field(
        default=50, ge=1, le=MAX_LIMIT, description="Page size (alias: limit)."
    )
    page_token: PageToken = None
    state: CsvList = Field(
        default_factory=list,
        description="Only jobs in these states (comma-separated or repeated).",
        json_schema_extra={"items": {"type": "string", "enum": list(STATES)}},
    )


@bp.record_once
def _start_workers(state: BlueprintSetupState) -> None:
    # the app's Stratus is in place before blueprints are registered
    state.app.extensions[EXTENSION].jobs.start()


def _problem(exc: JobInputError) -> Problem:
    return Problem(
        exc.status,
        exc.title,
        f"{exc.parameter}: {exc.message}",
        type_=exc.type,
        parameter=exc.parameter,
        errors=exc.errors,
    )


def _view(job: JobRecord) -> dict[str, Any]:
    doc = job.to_json()
    doc["links"] = {
        "self": f"/api/v1/jobs/{job.id}",
        "output": f"/api/v1/tables/{job.output_table}/rows",
    }
    return doc


def _audit_params(body: object, key: str | None) -> dict[str, Any]:
    params = dict(body) if isinstance(body, dict) else {"body": str(body)[:200]}
    if key is not None:
        params["idempotency"] = key  # not a secret: kept readable in the audit log
    return params


@bp.post("")
def submit() -> Response:
    key = request.headers.get("Idempotency-Key")
    audit("submitJob", "table", None, _audit_params({}, key))
    body = json_body()
    output = body.get("output")
    target = output if isinstance(output, str) else None
    audit("submitJob", "table", target, _audit_params(body, key))
    raw = parse_body(JobSubmissionBody, body)
    try:
        submission = parse_submission(raw)
        audit("submitJob", "table", submission.output, _audit_params(body, key))
        key = check_idempotency_key(key)
        job, created = platform().jobs.submit(current_identity(), submission, key)
    except JobInputError as exc:
        raise _problem(exc) from None
    resp = json_response(_view(job), status=202)
    resp.headers["Location"] = f"/api/v1/jobs/{job.id}"
    if not created:
        resp.headers["Idempotent-Replayed"] = "true"
    return resp


@bp.get("")
def list_jobs() -> Response:
    audit("listJobs", None, None)
    p = parse_query(JobListParams)
    try:
        jobs, token = platform().jobs.list(
            current_identity(), limit=p.max_results, page_token=p.page_token, states=p.state
        )
    except JobInputError as exc:
        raise _problem(exc) from None
    return json_response(
        {"count": len(jobs), "data": [_view(j) for j in jobs], "next_page_token": token}
    )


@bp.get("/<job_id>")
def get_job(job_id: str) -> Response:
    audit("getJob", None, None, {"job_id": job_id})
    return json_response(_view(platform().jobs.get(current_identity(), job_id)))


@bp.delete("/<job_id>")
def cancel_job(job_id: str) -> Response:
    jobs = platform().jobs
    who = current_identity()
    audit("cancelJob", None, None, {"job_id": job_id})
    job = jobs.get(who, job_id)  # 404 before anything else for someone else's job
    audit("cancelJob", "table", job.output_table, {"job_id": job_id})
    try:
        job = jobs.cancel(who, job_id)
    except JobInputError as exc:
        raise _problem(exc) from None
    # cancelled now (was queued), or asked to stop at its next step (running)
    return json_response(_view(job), status=200 if job.finished else 202)
