"""Call the REST API's own handlers in-process, as the signed-in principal.

The Explorer has no data access or authorization code of its own: every page and every script
reads through the same Flask view functions that serve ``/api/...``, so what the UI shows and
allows is exactly what the API shows and allows to that principal. A call matches the path
against the app's URL map, runs the handler in a nested request context (same identity, same
client address and user agent), turns exceptions into the API's problem responses with the app's
own error handlers, and writes the handler's audit record (one per call, request id
``<outer id>.<n>``), as the API's after-request hook would.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson
from flask import Response, current_app, g, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.exceptions import NotFound as RouteNotFound

from stratus.api.auth import write_audit

API_PREFIXES = ("/api/",)


class ApiError(Exception):
    """An API call answered 4xx/5xx; ``problem`` is its problem document."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(problem.get("detail") or problem.get("title") or str(status))
        self.status = status
        self.problem = problem

    @property
    def message(self) -> str:
        return str(self.problem.get("detail") or self.problem.get("title") or self.status)


def call(
    method: str,
    path: str,
    *,
    query: str | bytes | dict[str, Any] | None = None,
    body: Any = None,
) -> Response:
    """The API's response to ``method path?query`` with JSON ``body``, for the current identity."""
    if (
        not path.startswith(API_PREFIXES)
        or ".." in path
        or any(ch in path for ch in "?#\\")
        or any(ord(ch) < 32 for ch in path)
    ):
        raise RouteNotFound()
    # current_app is a werkzeug LocalProxy typed as Flask: its own method is not in that type
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    adapter = app.url_map.bind_to_environ(request.environ)
    try:
        rule, args = adapter.match(path, method=method, return_rule=True)
    except (RouteNotFound, MethodNotAllowed) as exc:
        return app.make_response(app.handle_http_exception(exc))
    view = app.view_functions[rule.endpoint]
    environ = {
        "REMOTE_ADDR": request.remote_addr or "",
        "HTTP_USER_AGENT": request.headers.get("User-Agent", ""),
    }
    outer_id = g.get("request_id", "")
    n = g.get("_ui_calls", 0) + 1
    g._ui_calls = n
    if isinstance(query, bytes):
        query = query.decode("latin-1")  # already percent-encoded: passed on as it came
    kwargs: dict[str, Any] = {"method": method, "query_string": query, "environ_base": environ}
    if body is not None:
        kwargs["data"] = orjson.dumps(body)
        kwargs["content_type"] = "application/json"
    outer_audit = g.pop("audit", None)  # the page's own mark, if any, survives the call
    with app.test_request_context(quote(path, safe="/:@!$&'()*+,;=~"), **kwargs):
        # as if routed: blueprint-level error handlers and hooks see the API's blueprint
        request.url_rule, request.view_args = rule, args
        g.request_id = f"{outer_id}.{n}"
        try:
            try:
                resp = app.make_response(app.ensure_sync(view)(**args))
            except HTTPException as exc:
                resp = app.make_response(app.handle_http_exception(exc))
            except Exception as exc:
                resp = app.make_response(app.handle_user_exception(exc))
            info = g.pop("audit", None)
            if info is not None:
                write_audit(info, resp.status_code)
            g.pop("error_message", None)
        finally:
            g.request_id = outer_id
            g.pop("audit", None)
            if outer_audit is not None:
                g.audit = outer_audit
    return resp


def json_call(
    method: str,
    path: str,
    *,
    query: str | bytes | dict[str, Any] | None = None,
    body: Any = None,
) -> Any:
    """The decoded JSON of a successful call; :class:`ApiError` otherwise."""
    resp = call(method, path, query=query, body=body)
    data = resp.get_data()
    try:
        payload = orjson.loads(data) if data else {}
    except orjson.JSONDecodeError:
        payload = {"title": "Unexpected response", "detail": data[:200].decode(errors="replace")}
    if resp.status_code >= 400:
        raise ApiError(resp.status_code, payload if isinstance(payload, dict) else {})
    return payload


def get(path: str, **query: Any) -> Any:
    return json_call("GET", path, query={k: v for k, v in query.items() if v is not None})
