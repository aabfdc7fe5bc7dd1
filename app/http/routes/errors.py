"""One JSON error body for every failure, whatever raised it."""

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core.errors import GlassboxError
from app.core.logging import request_id_var
from app.http.routes.responses import CONTENT_SECURITY_POLICY, SECURITY_HEADERS
from app.http.schemas import ErrorResponse

logger = logging.getLogger(__name__)

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (401, 404, 413, 415, 422, 503, 504)
}


def error_response(
    status: int,
    message: str,
    code: str,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
    details: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    body = ErrorResponse(error=message, code=code, field=field, details=details)
    return JSONResponse(
        body.model_dump(exclude_none=True), status_code=status, headers=headers or None
    )


# Request parts and the tags of the one-or-batch body union, which name no field.
_LOCATION_NOISE = {"body", "query", "path", "single", "batch"}


def _field_name(location: tuple[int | str, ...], kind: str = "") -> str:
    if kind == "json_invalid":  # located by character offset, which names no field
        return "body"
    parts = [str(part) for part in location if part not in _LOCATION_NOISE]
    return ".".join(parts) or str(location[-1])


def _message(error: dict[str, Any]) -> str:
    if error["type"] == "json_invalid":
        reason = error.get("ctx", {}).get("error", "")
        return f"The body is not valid JSON: {reason} (at character {error['loc'][-1]})."
    text = error["msg"].removeprefix("Value error, ")
    field = _field_name(tuple(error["loc"]))
    return text if text.startswith(field) else f"{field}: {text}"


async def on_glassbox_error(request: Request, error: GlassboxError) -> JSONResponse:
    return error_response(error.status_code, error.message, error.code, error.field, error.headers)


async def on_validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    problems = error.errors()
    details = [
        {
            "field": _field_name(tuple(p["loc"]), p["type"]),
            "message": _message(p),
            "type": p["type"],
        }
        for p in problems
    ]
    return error_response(
        422,
        "; ".join(detail["message"] for detail in details),
        "invalid_input",
        details[0]["field"] if details else None,
        details=details,
    )


def _documents(request: Request, status: int) -> bool:
    """Whether the matched route documents `status` in its OpenAPI responses."""
    responses = getattr(request.scope.get("route"), "responses", None) or {}
    return status in responses or str(status) in responses


async def on_http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    if error.status_code == 400 and not _documents(request, 400):
        # FastAPI and Starlette answer a body they cannot parse at all (JSON that is not UTF-8,
        # a multipart form without its boundary) with 400. A route that documents no 400 answers
        # it as the bad input it is, as it does JSON that does not parse.
        reason = error.__cause__ or error.detail
        return error_response(
            422, f"The request body could not be parsed: {reason}", "invalid_input", "body"
        )
    codes = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}
    detail = error.detail
    if error.status_code == 400 and error.__cause__ is not None:
        detail = f"The request body could not be parsed: {error.__cause__}"
    return error_response(
        error.status_code,
        str(detail),
        codes.get(error.status_code, "http_error"),
        headers=getattr(error, "headers", None),
    )


async def on_unexpected_error(request: Request, error: Exception) -> JSONResponse:
    logger.exception("unhandled error", extra={"route": request.url.path})
    # Starlette answers from outside every middleware, so neither the security headers nor the
    # request id (which the client needs to find this log line) would be added.
    headers = {name.decode(): value.decode() for name, value in SECURITY_HEADERS}
    headers["content-security-policy"] = CONTENT_SECURITY_POLICY.decode()
    if request_id := request_id_var.get():
        headers["x-request-id"] = request_id
    return error_response(
        500, "Internal error; it has been logged.", "internal_error", headers=headers
    )


def install(app: FastAPI) -> None:
    # The decorator form: add_exception_handler is typed for handlers of any Exception only.
    app.exception_handler(GlassboxError)(on_glassbox_error)
    app.exception_handler(RequestValidationError)(on_validation_error)
    app.exception_handler(StarletteHTTPException)(on_http_error)
    app.exception_handler(Exception)(on_unexpected_error)
