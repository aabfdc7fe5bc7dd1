"""Code that depends on uvicorn's, Starlette's and FastAPI's internals, not just their public API.

Each module here subclasses or replaces a part of a framework that the framework does not offer
for changing (private methods, internal classes, the shape of internal data), for a measured
reason. An upgrade can break them without an error at import, so
`tests/http/test_framework_contract.py` pins the versions in `WRITTEN_AGAINST` (the same as
requirements.lock) and checks the shape of everything they rely on; its failures name the code to
re-check.

- `transport.py`, `HttpProtocol`: uvicorn's `HttpToolsProtocol`
  (`uvicorn.protocols.http.httptools_impl`) subclassed. It overrides `connection_made`,
  `data_received` (uvicorn's own, with a request parsed again by a new httptools parser),
  `eof_received`, `shutdown`, `on_response_complete` and the parser's callbacks; reads the
  request cycle's keep-alive and response-complete flags; calls uvicorn's private
  `_should_upgrade`, `_unset_keepalive_if_required` and `_unsupported_upgrade_warning`; and keeps
  per-server state on uvicorn's `ServerState`. Why: one write per answer (2,804 `sendto` calls
  for 2,631 requests, against 5,544 for 2,687; two workers' iris rate 1.054 of the previous
  commit's: docs/performance.md, "One write per answer"); an `Upgrade: h2c` offer declined
  rather than the request's body lost (uvicorn issue 2722); connections bounded by a head
  deadline, a cap and a drain (docs/operations.md, "Deadlines and caps").
- `lean.py`, `LeanRoute`: FastAPI's `APIRoute.get_route_handler`, reading the route's `Dependant`
  (`fastapi.dependencies.models`) and its fields to validate a JSON body in one
  pydantic-core pass and skip FastAPI's dependency solver. Why: FastAPI's handler was 32% of an
  iris prediction's time on the event loop (py-spy, docs/performance.md); with FastAPI's own
  handler instead (on Granian), Glassbox answered 0.51x-0.96x of the hand-made path's req/s
  (bench/server_matrix.py; docs/performance.md, "Which HTTP server"). `ProtocolRoute` and
  `V2Route` (app/http/routes/) build on it through `get_route_handler`, FastAPI's documented way
  to customize a route.
- `workers.py`, `Workers`: uvicorn's worker supervisor replaced for `--workers N` on Linux. It
  turns what uvicorn's `main` command parsed into a `Config` as uvicorn's `run` does
  (`app_dir`, `LOGGING_CONFIG`), exits with `STARTUP_FAILURE`, and runs `Server.run(sockets=)`
  in each worker after `Config.configure_logging()`. Why: a SO_REUSEPORT socket per worker;
  uvicorn's shared socket split 16 connections 1/15, 12/4 and 5/11 between two workers
  (docs/operations.md, "Scaling").

Relied on outside this folder, and checked by the same test:
- app/http/routes/model_routes.py, `ModelRoutes`: a Starlette `BaseRoute` (`matches`, `handle`,
  `Match`) that hands a request on to `scope["route"]`, the inner route FastAPI's
  `APIRoute.matches` puts in the scope (routes/errors.py and observability.py read it too).
- app/serve.py: uvicorn's `main` command (`make_context`, `main`) and the SIGTERM uvicorn's
  `Server` raises again after its drain, which app/serve.py turns into exit status 0.
"""

from typing import NamedTuple


class Pin(NamedTuple):
    version: str
    recheck: str  # what depends on the package: to read again against a new version


WRITTEN_AGAINST = {
    "fastapi": Pin(
        "0.165.0",
        "lean.py (LeanRoute: APIRoute.get_route_handler, Dependant, ModelField, params.Body) and "
        "app/http/routes/model_routes.py (APIRoute.matches puts the route in the scope)",
    ),
    "starlette": Pin(
        "1.10.0", "app/http/routes/model_routes.py (ModelRoutes: BaseRoute, Match, Router)"
    ),
    "uvicorn": Pin(
        "0.54.0",
        "transport.py (HttpProtocol: HttpToolsProtocol, ServerState), workers.py (Workers: "
        "main's options as Config, Server.run) and app/serve.py (main, the re-raised SIGTERM)",
    ),
    "httptools": Pin(
        "0.9.0", "transport.py (HttpProtocol.data_received: the parser and HttpParserUpgrade)"
    ),
}
