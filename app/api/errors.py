"""One JSON error body for every failure, whatever raised it."""

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.errors import GlassboxError
from app.schemas import ErrorResponse

logger = logging.getLogger(__name__)

ERROR_RESPONSES = {
    status: {"model": ErrorResponse} for status in (401, 404, 413, 415, 422, 503, 504)
}


def error_response(
    status: int, message: str, code: str, field: str | None = None, headers=None, details=None
) -> JSONResponse:
    body = ErrorResponse(error=message, code=code, field=field, details=details)
    return JSONResponse(
        body.model_dump(exclude_none=True), status_code=status, headers=headers or None
    )


# Request parts and the tags of the one-or-batch body union, which name no field.
_LOCATION_NOISE = {"body", "query", "path", "single", "batch"}


def _field_name(location: tuple) -> str:
    parts = [str(part) for part in location if part not in _LOCATION_NOISE]
    return ".".join(parts) or str(location[-1])


def _message(error: dict) -> str:
    text = error["msg"].removeprefix("Value error, ")
    field = _field_name(tuple(error["loc"]))
    return text if text.startswith(field) else f"{field}: {text}"


async def on_glassbox_error(request: Request, error: GlassboxError) -> JSONResponse:
    return error_response(error.status_code, error.message, error.code, error.field, error.headers)


async def on_validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    problems = error.errors()
    details = [
        {"field": _field_name(tuple(p["loc"])), "message": _message(p), "type": p["type"]}
        for p in problems
    ]
    return error_response(
        422,
        "; ".join(detail["message"] for detail in details),
        "invalid_input",
        details[0]["field"] if details else None,
        details=details,
    )


async def on_http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    codes = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}
    return error_response(
        error.status_code,
        str(error.detail),
        codes.get(error.status_code, "http_error"),
        headers=getattr(error, "headers", None),
    )


async def on_unexpected_error(request: Request, error: Exception) -> JSONResponse:
    logger.exception("unhandled error", extra={"route": request.url.path})
    return error_response(500, "Internal error; it has been logged.", "internal_error")


def install(app: FastAPI) -> None:
    app.add_exception_handler(GlassboxError, on_glassbox_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected_error)
