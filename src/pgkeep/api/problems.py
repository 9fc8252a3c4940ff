"""Every error as RFC 9457 problem details (``application/problem+json``).

This is the one place exceptions become HTTP responses. What a response may
carry is decided here: never a stack trace, SQL, a password or a path
outside the storage. Unexpected exceptions are logged with the request id
and answered with a bare 500 that names only that id.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from pgkeep.errors import ConfigError, PgkeepError

log = logging.getLogger("pgkeep.api")

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:pgkeep:problem:"
DETAIL_MAX = 2000

# PostgreSQL and pg_dump messages can quote the statement that failed; cut there.
_SQL_TAIL = re.compile(r"(?:Command was:|^\s*(?:LINE \d+|QUERY|STATEMENT|CONTEXT):)", re.MULTILINE)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(HTTPException):
    """An HTTP error raised by the API layer itself (authentication, authorization).

    A subclass of FastAPI's HTTPException so that, even in a host app without
    pgkeep's handlers, it still answers with its status.
    """

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        title: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status_code=status, detail=detail, headers=headers)
        self.code = code
        self.title = title or HTTPStatus(status).phrase


@dataclass
class Problem:
    status: int
    code: str
    title: str
    detail: str
    extra: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {
            "type": TYPE_PREFIX + self.code,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
            **self.extra,
        }

    def error_json(self) -> dict[str, Any]:
        """The short form kept in audit entries and restore jobs."""
        return {"status": self.status, "code": self.code, "message": self.detail}

    def response(self, request_id: str | None = None) -> Response:
        body = self.body()
        if request_id:
            body["requestId"] = request_id
        return JSONResponse(body, status_code=self.status, headers=self.headers, media_type=PROBLEM_MEDIA_TYPE)


def public_detail(message: str) -> str:
    """A message fit for a client: no quoted SQL, bounded length."""
    cut = _SQL_TAIL.search(message)
    if cut:
        message = message[: cut.start()].rstrip(" \n:;")
    return message[:DETAIL_MAX]


def _field_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        location = loc[0] if loc else "request"
        name = ".".join(loc[1:]) if len(loc) > 1 else location
        # ``input`` is deliberately left out: it may be large, or a secret sent by mistake.
        out.append({"location": location, "field": name, "message": str(err.get("msg", "invalid"))})
    return out


def problem_for(exc: BaseException, *, request_id: str | None = None) -> Problem:
    """Map any exception to the problem it is answered with."""
    if isinstance(exc, RequestValidationError):
        errors = _field_errors(exc)
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "invalid request"
        return Problem(422, "validation_error", "Invalid request", public_detail(detail), {"errors": errors})
    if isinstance(exc, ApiError):
        return Problem(exc.status_code, exc.code, exc.title, str(exc.detail), headers=dict(exc.headers or {}))
    if isinstance(exc, StarletteHTTPException) and exc.status_code == 400:
        # FastAPI's only 400: a body it cannot decode (not UTF-8, not JSON). Like any invalid body: 422.
        errors = [{"location": "body", "field": "body", "message": "the body is not valid JSON"}]
        return Problem(
            422, "validation_error", "Invalid request", "body: the body is not valid JSON", {"errors": errors}
        )
    if isinstance(exc, StarletteHTTPException):
        status = exc.status_code
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(status).phrase
        if status == 404 and detail == "Not Found":
            detail = "no such resource"
        code = _HTTP_CODES.get(status, f"http_{status}")
        return Problem(status, code, HTTPStatus(status).phrase, detail, headers=dict(exc.headers or {}))
    if isinstance(exc, PgkeepError):
        extra: dict[str, Any] = {}
        if exc.backup_id and exc.http_status != 404:
            extra["backupId"] = exc.backup_id
        if isinstance(exc, ConfigError) and exc.http_status >= 500:
            # Configuration messages name settings, paths and binaries of the server.
            log.error("configuration error (request %s): %s", request_id, exc)
            return Problem(
                exc.http_status,
                exc.code,
                exc.title,
                "the server is not configured correctly; see its log",
            )
        if exc.hint:
            extra["hint"] = public_detail(exc.hint)
        return Problem(exc.http_status, exc.code, exc.title, public_detail(exc.message), extra)
    log.error("internal error (request %s)", request_id, exc_info=exc)
    return Problem(500, "internal_error", "Internal Server Error", "internal error; the server logged it")


def problem_response(request: Request, exc: BaseException) -> Response:
    from pgkeep.api.state import request_id_of  # state builds on this module

    # Outside the admin routes (an unknown route, a wrong method) no route gave it one yet.
    request_id = getattr(request.state, "request_id", None) or request_id_of(request)
    response = problem_for(exc, request_id=request_id).response(request_id)
    response.headers.setdefault("X-Request-ID", request_id)
    return response


def install_problem_handlers(app: FastAPI) -> None:
    """Answer unknown routes (404), wrong methods (405), validation and other errors as problems.

    The admin router converts its own errors; a host app mounting it needs
    this only for its own routes, if it wants the same shape.
    """

    async def handle(request: Request, exc: Exception) -> Response:
        return problem_response(request, exc)

    app.add_exception_handler(StarletteHTTPException, handle)
    app.add_exception_handler(RequestValidationError, handle)
    app.add_exception_handler(PgkeepError, handle)
    app.add_exception_handler(Exception, handle)


# The JSON schema of a problem, for the OpenAPI document (inline: it must work in a host app too).
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Problem",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "hint": {"type": "string"},
        "backupId": {"type": "string"},
        "requestId": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["location", "field", "message"],
                "properties": {
                    "location": {"type": "string"},
                    "field": {"type": "string"},
                    "message": {"type": "string"},
                },
            },
        },
    },
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the given error statuses."""
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": PROBLEM_SCHEMA}},
        }
        for status in statuses
    }
