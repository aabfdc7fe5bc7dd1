"""The route class of both wire protocols (TF Serving REST, Open Inference v2): a JSON body
whatever its Content-Type, and a malformed body answered 400, as both protocols specify."""

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError

from app.core.errors import ProtocolError
from app.http.framework_overrides.lean import LeanRoute, is_json
from app.http.routes.errors import ERROR_RESPONSES
from app.http.schemas import ErrorResponse
from app.protocols.tensors import describe_invalid

PROTOCOL_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse},
    **ERROR_RESPONSES,
}


class ProtocolRoute(LeanRoute):
    """A route of a wire protocol (TF Serving, Open Inference): the body is JSON whatever its
    Content-Type says or if it has none, and a malformed body is a 400, as both protocols
    specify (not 422).

    TF Serving's documented examples use `curl -d`, which labels JSON as a form, and FastAPI
    would not read such a body, or one without a Content-Type, as JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def protocol_handler(request: Request) -> Response:
            if not is_json(request.headers.get("content-type", "")):
                headers = [(k, v) for k, v in request.scope["headers"] if k != b"content-type"]
                scope = {
                    **request.scope,
                    "headers": [*headers, (b"content-type", b"application/json")],
                }
                request = Request(scope, request.receive)
            try:
                return await handler(request)
            except RequestValidationError as error:
                raise ProtocolError(describe_invalid(error.errors())) from None

        return protocol_handler
