"""LeanRoute answers exactly as FastAPI's own handler does, and skips it for what validates."""

from typing import Annotated, Literal

import fastapi.routing
import pytest
from fastapi import APIRouter, Body, Depends, FastAPI, Path, Query, Request, Response
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field

from app.http.framework_overrides.lean import LeanRoute
from app.http.routes import errors


class Point(BaseModel):
    x: float = Field(ge=0, le=10, allow_inf_nan=False)
    y: float = Field(ge=0, le=10, allow_inf_nan=False)


def make_app(route_class: type[APIRoute]) -> FastAPI:
    app = FastAPI()
    errors.install(app)
    router = APIRouter(route_class=route_class)

    @router.post("/point")
    async def point(
        request: Request,
        body: Annotated[Point, Body()],
        scale: Annotated[int, Query(ge=1)] = 1,
        unit: Annotated[Literal["cm", "mm"], Query()] = "cm",
    ) -> Response:
        return Response(f"{body.x * scale} {body.y * scale} {unit} {request.method}")

    @router.post("/required")
    async def required(body: Annotated[Point, Body()], scale: Annotated[int, Query()]) -> Response:
        return Response(f"{body.x * scale}")

    @router.post("/data")
    async def data(body: Annotated[Point, Body()]) -> Point:  # FastAPI serializes it
        return body

    def token(request: Request) -> str:
        return request.headers.get("x-token", "none")

    async def method_of(request: Request) -> str:
        return request.method

    @router.post("/points/{name}")
    async def named(
        name: Annotated[str, Path(pattern="^[a-z]+$")],
        body: Annotated[Point, Body()],
        method: Annotated[str, Depends(method_of)],
    ) -> Response:
        return Response(f"{name} {body.x} {method}")

    @router.post("/dependency")
    async def dependency(body: Annotated[Point, Body()], got: Annotated[str, Depends(token)]):
        return Response(got)

    app.include_router(router)
    return app


CASES = [
    ("/point", b'{"x": 1, "y": 2}', "application/json"),
    ("/point?scale=3&unit=mm", b'{"x": 1, "y": 2}', "application/json"),
    ("/point?scale=3&other=1", b'{"x": 1, "y": 2}', "application/json; charset=utf-8"),
    ("/point", b'{"x": "1.5", "y": 2}', "application/vnd.api+json"),
    ("/point?scale=0", b'{"x": 1, "y": 2}', "application/json"),
    ("/point?unit=km", b'{"x": 1, "y": 2}', "application/json"),
    ("/point", b'{"x": 11, "y": 2}', "application/json"),
    ("/point", b'{"x": NaN, "y": 2}', "application/json"),
    ("/point", b'{"x": 1}', "application/json"),
    ("/point", b'{"x": 1, "y": 2', "application/json"),
    ("/point", b"", "application/json"),
    ("/point", b'{"x": 1, "y": 2}', "text/plain"),
    ("/point", b'{"x": 1, "y": 2}', "text/json"),
    ("/point", b"[1, 2]", "application/json"),
    ("/required", b'{"x": 1, "y": 2}', "application/json"),
    ("/required?scale=2", b'{"x": 1, "y": 2}', "application/json"),
    ("/dependency", b'{"x": 1, "y": 2}', "application/json"),
    ("/points/abc", b'{"x": 1, "y": 2}', "application/json"),
    ("/data", b'{"x": 1, "y": 2}', "application/json"),
    ("/points/ABC", b'{"x": 1, "y": 2}', "application/json"),
    ("/points/abc", b'{"x": -1, "y": 2}', "application/json"),
]


@pytest.mark.parametrize(("path", "body", "content_type"), CASES)
def test_every_answer_is_the_one_fastapi_gives(path, body, content_type):
    answers = []
    for route_class in (APIRoute, LeanRoute):
        with TestClient(make_app(route_class)) as client:
            response = client.post(path, content=body, headers={"content-type": content_type})
        answers.append((response.status_code, response.content))
    assert answers[0] == answers[1]


def test_what_validates_never_reaches_fastapis_dependency_solver(monkeypatch):
    app = make_app(LeanRoute)  # routes made before the solver is replaced: LeanRoute's plan

    async def refuse(**kwargs):
        raise AssertionError("FastAPI's dependency solver was used")

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", refuse)
    with TestClient(app, raise_server_exceptions=True) as client:
        fast = client.post("/point?scale=2", json={"x": 1, "y": 2})
        assert (fast.status_code, fast.text) == (200, "2.0 4.0 cm POST")
        named = client.post("/points/abc", json={"x": 1, "y": 2})  # an `async def (request)`
        assert (named.status_code, named.text) == (200, "abc 1.0 POST")
        # Any other dependency is FastAPI's own, and so is a body that does not validate.
        with pytest.raises(AssertionError, match="solver"):
            client.post("/dependency", json={"x": 1, "y": 2})
        with pytest.raises(AssertionError, match="solver"):
            client.post("/point", json={"x": 99, "y": 2})
