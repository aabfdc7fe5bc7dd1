"""Glassbox with FastAPI's own route handler on every route: `LeanRoute` (and the protocol
routes built on it) fall through to `APIRoute`'s, so no hand-made piece of the HTTP path is
left when it runs on a server other than `python -m app.serve`. bench/server_matrix.py serves it
on Granian to measure what the lean path is worth; the service itself never imports it."""

from fastapi.routing import APIRoute

from app.http.framework_overrides.lean import LeanRoute

LeanRoute.get_route_handler = APIRoute.get_route_handler  # type: ignore[method-assign]

from app.main import app  # noqa: E402  (the routes must be built after the line above)

__all__ = ["app"]
