"""A FastAPI route whose well-formed JSON requests skip FastAPI's per-request machinery.

For a route that takes a JSON body, path and query parameters, the `Request` and dependencies
that need only the request, and answers a `Response` itself, FastAPI's handler parses the body
with `json.loads`, validates the Python objects field by field through its dependency solver,
and builds telemetry and error context on every request: about a third of an iris prediction's
time on the event loop (py-spy, docs/performance.md). `LeanRoute` validates the body bytes in
one pass (pydantic-core parses and validates the JSON together) and the parameters as one model
per location, then calls the endpoint. Whenever anything does not validate, it hands the
request to FastAPI's own handler, so every refusal is FastAPI's, word for word, and the lean
path only ever answers requests FastAPI would have accepted with the same values. Routes with
other parameters (headers, cookies, forms, uploads, deeper dependencies), and those that return
data for FastAPI to serialize, are FastAPI's.
"""

import contextlib
import inspect
import typing
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Request, Response, params
from fastapi.dependencies.models import Dependant
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


class _Parameters:
    """The parameters of one location (path or query) as one model, and its defaults."""

    def __init__(self, name: str, fields: list[Any]):
        self.model: type[BaseModel] = create_model(  # type: ignore[call-overload]
            name, **{f.name: (f.field_info.annotation, f.field_info) for f in fields}
        )
        self.defaults: dict[str, Any] | None = None  # the values of an empty location
        with contextlib.suppress(ValidationError):  # a required parameter
            self.defaults = dict(self.model.model_validate({}).__dict__)

    def values(self, given: Any) -> dict[str, Any]:
        if not given and self.defaults is not None:
            return self.defaults
        return dict(self.model.model_validate(given).__dict__)


class _LeanPlan:
    """What the lean path needs of a route: its body's validator, its parameters' models, its
    request-only dependencies, and the names the endpoint takes them by."""

    def __init__(
        self,
        call: Callable[..., Any],
        request_name: str | None,
        body: tuple[str, TypeAdapter[Any]] | None,
        path: _Parameters | None,
        query: _Parameters | None,
        dependencies: list[tuple[str, Callable[[Request], Any]]],
    ):
        self.call = call
        self.request_name = request_name
        self.body = body
        self.path = path
        self.query = query
        self.dependencies = dependencies

    @classmethod
    def of(cls, route: APIRoute) -> "_LeanPlan | None":
        dependant = route.dependant
        if not _plain(dependant) or len(dependant.body_params) > 1 or dependant.call is None:
            return None
        if not _answers_response(dependant.call):
            return None  # FastAPI validates and serializes what the endpoint returns
        fields = [*dependant.path_params, *dependant.query_params]
        if any(field.alias != field.name for field in fields):
            return None
        dependencies = []
        for dependency in dependant.dependencies:
            takes_more = (
                not _plain(dependency)
                or dependency.dependencies
                or dependency.body_params
                or dependency.path_params
                or dependency.query_params
            )
            request_only = None if takes_more else _request_only(dependency)
            if dependency.name is None or request_only is None:
                return None  # only an `async def get(request)` is called here
            dependencies.append((dependency.name, request_only))
        body: tuple[str, TypeAdapter[Any]] | None = None
        if dependant.body_params:
            field = dependant.body_params[0]
            if type(field.field_info) is not params.Body:  # Form and File are FastAPI's
                return None
            annotated: Any = Annotated[field.field_info.annotation, field.field_info]
            body = field.name, TypeAdapter(annotated)
        path = (
            _Parameters(f"{route.name}_path", dependant.path_params)
            if dependant.path_params
            else None
        )
        query = (
            _Parameters(f"{route.name}_query", dependant.query_params)
            if dependant.query_params
            else None
        )
        return cls(dependant.call, dependant.request_param_name, body, path, query, dependencies)

    async def values(self, request: Request) -> dict[str, Any] | None:
        """The endpoint's arguments, or None for a request FastAPI should answer."""
        values: dict[str, Any] = {}
        if self.request_name:
            values[self.request_name] = request
        try:
            if self.path is not None:
                values.update(self.path.values(request.path_params))
            if self.query is not None:
                given = request.query_params if request.scope["query_string"] else {}
                values.update(self.query.values(given))
            if self.body is not None:
                if not is_json(request.headers.get("content-type", "")):
                    return None
                name, adapter = self.body
                values[name] = adapter.validate_json(await request.body())
        except ValidationError:
            return None
        for name, dependency in self.dependencies:
            values[name] = await dependency(request)
        return values


def _plain(dependant: Dependant) -> bool:
    """Whether a dependant takes nothing the lean path does not read."""
    return not (
        dependant.header_params
        or dependant.cookie_params
        or dependant.response_param_name
        or dependant.background_tasks_param_name
        or dependant.security_scopes_param_name
        or dependant.websocket_param_name
        or dependant.http_connection_param_name
    )


def _answers_response(call: Callable[..., Any]) -> bool:
    """Whether the endpoint is annotated to return a `Response` it makes itself."""
    try:
        answer = typing.get_type_hints(call).get("return")
    except (NameError, TypeError):
        return False
    return isinstance(answer, type) and issubclass(answer, Response)


def _request_only(dependency: Dependant) -> Callable[[Request], Any] | None:
    """`dependency`'s function, when it is an `async def` that takes the request alone."""
    call = dependency.call
    if call is None or dependency.request_param_name is None:
        return None
    if not inspect.iscoroutinefunction(call) or len(inspect.signature(call).parameters) != 1:
        return None
    name = dependency.request_param_name

    async def with_request(request: Request) -> Any:
        return await call(**{name: request})

    return with_request


def is_json(content_type: str) -> bool:
    """As FastAPI reads a body as JSON: application/json or application/*+json."""
    kind = content_type.partition(";")[0].strip().lower()
    return kind == "application/json" or (
        kind.startswith("application/") and kind.endswith("+json")
    )
