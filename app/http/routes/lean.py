"""A FastAPI route whose well-formed JSON requests skip FastAPI's per-request machinery.

For a route that takes a JSON body, query parameters and the `Request`, and answers a `Response`
itself, FastAPI's handler parses the body with `json.loads`, validates the Python objects field
by field through its dependency solver, and builds telemetry and error context on every request:
about a third of an iris prediction's time on the event loop (py-spy, docs/performance.md).
`LeanRoute` validates the body bytes in one pass (pydantic-core parses and validates the JSON
together) and the query parameters as one model, then calls the endpoint. Whenever anything does
not validate, it hands the request to FastAPI's own handler, so every refusal is FastAPI's, word
for word, and the lean path only ever answers requests FastAPI would have accepted with the same
values. Routes with other parameters (dependencies, headers, forms, uploads) are FastAPI's.
"""

import contextlib
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Request, Response, params
from fastapi.routing import APIRoute
from pydantic import BaseModel, TypeAdapter, ValidationError, create_model

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class LeanRoute(APIRoute):
    def get_route_handler(self) -> Handler:
        full = super().get_route_handler()
        plan = _LeanPlan.of(self)
        if plan is None:
            return full

        async def handler(request: Request) -> Response:
            values = await plan.values(request)
            if values is None:
                return await full(request)  # FastAPI answers what does not validate
            response = await plan.call(**values)
            if not isinstance(response, Response):
                raise TypeError(f"{self.path}: a LeanRoute endpoint must answer a Response")
            return response

        return handler


class _LeanPlan:
    """What the lean path needs of a route: its body's validator, a model of its query
    parameters, and the names the endpoint takes them by."""

    def __init__(
        self,
        call: Callable[..., Any],
        request_name: str | None,
        body: tuple[str, TypeAdapter[Any]] | None,
        query: type[BaseModel] | None,
    ):
        self.call = call
        self.request_name = request_name
        self.body = body
        self.query = query
        # The arguments of a request with no query string, validated once.
        self.query_defaults: dict[str, Any] | None = None
        if query is not None:
            with contextlib.suppress(ValidationError):  # a required query parameter
                self.query_defaults = dict(query.model_validate({}).__dict__)

    @classmethod
    def of(cls, route: APIRoute) -> "_LeanPlan | None":
        dependant = route.dependant
        unsupported = (
            dependant.dependencies,
            dependant.path_params,
            dependant.header_params,
            dependant.cookie_params,
            dependant.response_param_name,
            dependant.background_tasks_param_name,
            dependant.security_scopes_param_name,
            dependant.websocket_param_name,
            dependant.http_connection_param_name,
        )
        if any(unsupported) or len(dependant.body_params) > 1 or dependant.call is None:
            return None
        if any(param.alias != param.name for param in dependant.query_params):
            return None
        body: tuple[str, TypeAdapter[Any]] | None = None
        if dependant.body_params:
            field = dependant.body_params[0]
            if type(field.field_info) is not params.Body:  # Form and File are FastAPI's
                return None
            annotated: Any = Annotated[field.field_info.annotation, field.field_info]
            body = field.name, TypeAdapter(annotated)
        query = None
        if dependant.query_params:
            query = create_model(  # type: ignore[call-overload]
                f"{route.name}_query",
                **{
                    param.name: (param.field_info.annotation, param.field_info)
                    for param in dependant.query_params
                },
            )
        return cls(dependant.call, dependant.request_param_name, body, query)

    async def values(self, request: Request) -> dict[str, Any] | None:
        """The endpoint's arguments, or None for a request FastAPI should answer."""
        values: dict[str, Any] = {}
        if self.request_name:
            values[self.request_name] = request
        try:
            if self.query is not None:
                if self.query_defaults is not None and not request.scope["query_string"]:
                    values.update(self.query_defaults)
                else:
                    values.update(self.query.model_validate(request.query_params).__dict__)
            if self.body is not None:
                if not _is_json(request.headers.get("content-type", "")):
                    return None
                name, adapter = self.body
                values[name] = adapter.validate_json(await request.body())
        except ValidationError:
            return None
        return values


def _is_json(content_type: str) -> bool:
    """As FastAPI reads a body as JSON: application/json or application/*+json."""
    kind = content_type.partition(";")[0].strip().lower()
    return kind == "application/json" or (
        kind.startswith("application/") and kind.endswith("+json")
    )
