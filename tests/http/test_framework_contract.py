"""What app/http/framework_overrides/ relies on in uvicorn, Starlette, FastAPI and httptools is
still there: the versions it was written against, and the shape of every class, method, field
and behaviour of theirs that it overrides, calls or reads (and that ModelRoutes and app/serve.py
rely on, outside the folder).

On an upgrade the version tests fail first, naming the code to re-check; the others say what
changed. Once the code is re-checked (and its tests pass), the new version goes into
`WRITTEN_AGAINST` and, where a shape changed, the expected shape here.
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import inspect
import textwrap
import weakref
from importlib import metadata
from typing import Annotated, Any

import click
import httptools
import pytest
from fastapi import Body, Depends, Path, Query, Request, Response, params
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from packaging.utils import canonicalize_name
from pydantic import BaseModel
from starlette.routing import BaseRoute, Match, Router
from uvicorn import Config, Server
from uvicorn.config import LOGGING_CONFIG, STARTUP_FAILURE
from uvicorn.main import main, run
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from app.http.framework_overrides import WRITTEN_AGAINST
from app.http.framework_overrides.workers import parse_options
from app.serve import PROG
from tests.ops.test_install import lock_pins
from tests.ops.test_layers import APP, ROOT

FOLDER = "app/http/framework_overrides"
TRANSPORT = f"HttpProtocol ({FOLDER}/transport.py)"
LEAN = f"LeanRoute ({FOLDER}/lean.py)"
WORKERS = f"Workers ({FOLDER}/workers.py)"
MODEL_ROUTES = "ModelRoutes (app/http/routes/model_routes.py)"


def shape(function: Any) -> str:
    """The signature without its annotations: the parameters' names, kinds and defaults."""
    signature = inspect.signature(function)
    bare = [p.replace(annotation=inspect.Parameter.empty) for p in signature.parameters.values()]
    return str(signature.replace(parameters=bare, return_annotation=inspect.Signature.empty))


def source(function: Any) -> str:
    return textwrap.dedent(inspect.getsource(function))


# The fence

# The frameworks' modules that are not their public API: only the folder imports them.
INTERNALS = (
    "uvicorn.protocols",
    "uvicorn.server",
    "uvicorn.config",
    "uvicorn.supervisors",
    "fastapi.dependencies",
    "fastapi._compat",
    "httptools",
)


def imports_of(path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_only_the_folder_imports_the_frameworks_internals():
    outside = {
        str(path.relative_to(ROOT)): sorted(
            name for name in imports_of(path) if name.startswith(INTERNALS)
        )
        for path in sorted(APP.rglob("*.py"))
        if not path.is_relative_to(ROOT / FOLDER)
    }
    assert {path: names for path, names in outside.items() if names} == {}, (
        f"code that depends on framework internals belongs in {FOLDER}/, with its checks here"
    )


# The versions


@pytest.mark.parametrize("package", sorted(WRITTEN_AGAINST))
def test_the_installed_version_is_the_one_the_overrides_were_written_against(package):
    pin = WRITTEN_AGAINST[package]
    installed = metadata.version(package)
    assert installed == pin.version, (
        f"{package} {installed} is installed; the code that depends on its internals was "
        f"written against {pin.version}. Re-check, in {FOLDER}/ where no other path is given: "
        f"{pin.recheck}; then set {package}'s version in WRITTEN_AGAINST ({FOLDER}/__init__.py)."
    )


@pytest.mark.parametrize("package", sorted(WRITTEN_AGAINST))
def test_the_lock_pins_the_versions_the_overrides_were_written_against(package):
    locked = {
        canonicalize_name(pin.name): str(pin.specifier).removeprefix("==") for pin in lock_pins()
    }
    pin = WRITTEN_AGAINST[package]
    assert locked[package] == pin.version, (
        f"requirements.lock pins {package} {locked[package]}, WRITTEN_AGAINST "
        f"({FOLDER}/__init__.py) {pin.version}: re-check {pin.recheck} against the lock's "
        f"version, then make the two agree."
    )


# transport.py: uvicorn's HttpToolsProtocol, ServerState; httptools' parser

# The methods of uvicorn's protocol that HttpProtocol overrides or calls.
PROTOCOL_METHODS = {
    "__init__": "(self, config, server_state, app_state, _loop=None)",
    "connection_made": "(self, transport)",
    "data_received": "(self, data)",
    "eof_received": "(self)",
    "shutdown": "(self)",
    "on_message_begin": "(self)",
    "on_headers_complete": "(self)",
    "on_body": "(self, body)",
    "on_message_complete": "(self)",
    "on_response_complete": "(self)",
    "_unset_keepalive_if_required": "(self)",
    "send_400_response": "(self, msg)",
    "_should_upgrade": "(self)",
    "handle_websocket_upgrade": "(self)",
    "_unsupported_upgrade_warning": "(self)",
}


@pytest.mark.parametrize("name", PROTOCOL_METHODS)
def test_the_protocol_methods_transport_overrides_or_calls_keep_their_signatures(name):
    method = getattr(HttpToolsProtocol, name, None)
    assert method is not None, f"uvicorn's HttpToolsProtocol has no {name}: re-check {TRANSPORT}"
    assert shape(method) == PROTOCOL_METHODS[name], (
        f"uvicorn's HttpToolsProtocol.{name} is now {shape(method)}: re-check {TRANSPORT}"
    )


# The methods HttpProtocol replaces without calling uvicorn's, as uvicorn wrote them: a change
# there is one to carry over (data_received is uvicorn's with a parser fed again; shutdown
# drains rather than closing an idle connection at once).
REPLACED = {
    "data_received": """\
def data_received(self, data: bytes) -> None:
    self._unset_keepalive_if_required()

    try:
        self.parser.feed_data(data)
    except httptools.HttpParserError:
        msg = "Invalid HTTP request received."
        self.logger.warning(msg)
        self.send_400_response(msg)
        return
    except httptools.HttpParserUpgrade:
        if self._should_upgrade():
            self.handle_websocket_upgrade()
        else:
            self._unsupported_upgrade_warning()
""",
    "shutdown": '''\
def shutdown(self) -> None:
    """
    Called by the server to commence a graceful shutdown.
    """
    if self.cycle is None or self.cycle.response_complete:
        self.transport.close()
    else:
        self.cycle.keep_alive = False
''',
}


@pytest.mark.parametrize("name", REPLACED)
def test_the_methods_transport_replaces_are_uvicorns_as_they_were_replaced(name):
    assert source(getattr(HttpToolsProtocol, name)) == REPLACED[name], (
        f"uvicorn's HttpToolsProtocol.{name} changed: {TRANSPORT} replaces it and must take "
        f"the change over"
    )


def test_the_parser_transport_makes_again_is_made_as_uvicorn_makes_it():
    # HttpProtocol.data_received makes a new parser for a request parsed again.
    made = source(HttpToolsProtocol.__init__)
    for line in (
        "self.parser = httptools.HttpRequestParser(self)",
        "self.parser.set_dangerous_leniencies(lenient_data_after_close=True)",
    ):
        assert line in made, (
            f"uvicorn no longer makes its parser with `{line}`: re-check {TRANSPORT}"
        )


async def ok(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


class Sink(asyncio.Transport):
    """A transport that takes every write and closes when asked."""

    def __init__(self) -> None:
        super().__init__()
        self.closing = False

    def write(self, data) -> None:
        pass

    def close(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name, default=None):
        return default


def test_what_transport_reads_of_uvicorns_protocol_is_still_there():
    async def connection() -> HttpToolsProtocol:
        loop = asyncio.get_running_loop()
        config = Config(app=ok, lifespan="off", log_config=None)
        config.load()
        protocol = HttpToolsProtocol(config, ServerState(), {}, loop)
        protocol.connection_made(Sink())
        protocol.data_received(b"GET /a HTTP/1.1\r\nHost: x\r\nX-Name: Value\r\n\r\n")
        for _ in range(10):
            await asyncio.sleep(0)
        return protocol

    protocol = asyncio.run(connection())
    missing = [
        name
        for name in ("loop", "logger", "server_state", "transport", "parser", "url", "headers")
        if not hasattr(protocol, name)
    ]
    assert missing == [], f"uvicorn's protocol has no {missing}: re-check {TRANSPORT}"
    assert protocol.connections is protocol.server_state.connections, TRANSPORT
    assert protocol in protocol.connections, f"connection_made no longer adds it: {TRANSPORT}"
    assert (protocol.url, protocol.headers) == (  # read by _head_without_offer
        b"/a",
        [(b"host", b"x"), (b"x-name", b"Value")],
    ), f"uvicorn keeps the head otherwise: re-check {TRANSPORT}"
    cycle = protocol.cycle
    assert (cycle.response_complete, cycle.keep_alive) == (True, True), TRANSPORT


def test_server_state_can_key_the_transports_weak_maps():
    state = ServerState()
    assert isinstance(state.connections, set), TRANSPORT
    assert weakref.ref(state)() is state, f"ServerState cannot be weakly referenced: {TRANSPORT}"
    assert type(state).__hash__ is object.__hash__, f"ServerState hashes by value: {TRANSPORT}"


class Callbacks:
    """What the parser calls back, ignored."""


def test_httptools_stops_at_an_upgrade_offer_and_says_where():
    head = b"POST /p HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
    parser = httptools.HttpRequestParser(Callbacks())
    parser.set_dangerous_leniencies(lenient_data_after_close=True)
    with pytest.raises(httptools.HttpParserUpgrade) as upgrade:
        parser.feed_data(head + b"body")
    assert upgrade.value.args[0] == len(head), f"the offset of the rest moved: {TRANSPORT}"
    assert parser.should_upgrade(), TRANSPORT
    assert (parser.get_method(), parser.get_http_version()) == (b"POST", "1.1"), TRANSPORT
    with pytest.raises(httptools.HttpParserError):
        httptools.HttpRequestParser(Callbacks()).feed_data(b"NOT HTTP\r\n\r\n")


# lean.py: FastAPI's APIRoute, Dependant and ModelField

# Every field of FastAPI's Dependant: LeanRoute reads the parameters, the dependencies and the
# special parameters' names, and takes a route only when it has no parameter of a kind it does
# not read (`_plain`); a new field may be such a kind.
DEPENDANT_FIELDS = [
    "path_params",
    "query_params",
    "header_params",
    "cookie_params",
    "body_params",
    "dependencies",
    "name",
    "call",
    "request_param_name",
    "websocket_param_name",
    "http_connection_param_name",
    "response_param_name",
    "background_tasks_param_name",
    "security_scopes_param_name",
    "own_oauth_scopes",
    "parent_oauth_scopes",
    "use_cache",
    "path",
    "scope",
    "concurrency",
]


def test_fastapis_dependant_has_the_fields_lean_route_knows():
    fields = [field.name for field in dataclasses.fields(Dependant)]
    assert fields == DEPENDANT_FIELDS, (
        f"FastAPI's Dependant changed: re-check which routes {LEAN} may take (`_plain`, "
        f"`_LeanPlan.of`)"
    )


def test_the_route_handler_lean_route_overrides_keeps_its_signature():
    assert shape(APIRoute.get_route_handler) == "(self)", LEAN


class Point(BaseModel):
    x: float


async def method_of(request: Request) -> str:
    return request.method


async def endpoint(
    request: Request,
    name: Annotated[str, Path()],
    body: Annotated[Point, Body()],
    method: Annotated[str, Depends(method_of)],
    scale: Annotated[int, Query()] = 1,
) -> Response:
    return Response()


def test_a_routes_dependant_says_what_lean_route_reads_of_it():
    route = APIRoute("/points/{name}", endpoint, methods=["POST"])
    dependant = route.dependant
    assert (route.path, route.name, dependant.call) == ("/points/{name}", "endpoint", endpoint)
    assert dependant.request_param_name == "request", LEAN
    [body] = dependant.body_params
    assert (body.name, body.alias, body.field_info.annotation) == ("body", "body", Point), LEAN
    assert type(body.field_info) is params.Body, f"{LEAN} takes a body of this type alone"
    for fields, name, annotation in (
        (dependant.path_params, "name", str),
        (dependant.query_params, "scale", int),
    ):
        [field] = fields
        assert (field.name, field.alias, field.field_info.annotation) == (name, name, annotation)
    [dependency] = dependant.dependencies
    assert (dependency.name, dependency.call) == ("method", method_of), LEAN
    assert dependency.request_param_name == "request", LEAN


# ModelRoutes (app/http/routes/model_routes.py): Starlette's routing, FastAPI's scope["route"]


def test_starlettes_route_interface_is_what_model_routes_implements():
    assert shape(BaseRoute.matches) == "(self, scope)", MODEL_ROUTES
    assert shape(BaseRoute.handle) == "(self, scope, receive, send)", MODEL_ROUTES
    assert {match.name for match in Match} == {"NONE", "PARTIAL", "FULL"}, MODEL_ROUTES


def test_fastapis_route_puts_itself_in_the_scope_it_matches():
    route = APIRoute("/points/{name}", endpoint, methods=["POST"])
    scope = {"type": "http", "path": "/points/a", "method": "POST", "root_path": ""}
    match, child_scope = route.matches(scope)
    assert match is Match.FULL
    assert child_scope.get("route") is route, (
        f"FastAPI no longer puts the route in the scope: {MODEL_ROUTES} hands the request to "
        f"scope['route'] (routes/errors.py and observability.py read it too)"
    )


class Recorded(BaseRoute):
    """A route that matches as it is told and records the scope it handles."""

    def __init__(self, match: Match) -> None:
        self.match = match
        self.handled: list[dict[str, Any]] = []

    def matches(self, scope):
        return self.match, {"matched": self.match.name} if self.match is not Match.NONE else {}

    async def handle(self, scope, receive, send):
        self.handled.append(scope)


@pytest.mark.parametrize("match", [Match.FULL, Match.PARTIAL])
def test_starlettes_router_hands_a_route_the_scope_it_matched(match):
    route = Recorded(match)
    scope = {"type": "http", "path": "/", "method": "GET", "headers": [], "root_path": ""}
    asyncio.run(Router(routes=[Recorded(Match.NONE), route])(scope, None, None))
    assert [handled["matched"] for handled in route.handled] == [match.name], (
        f"Starlette's Router no longer hands a {match.name} match its child scope: "
        f"re-check {MODEL_ROUTES}"
    )


# workers.py and app/serve.py: uvicorn's command line, Config and Server


def test_what_uvicorns_command_line_parses_is_configs_keywords():
    options = parse_options(["app.main:app"], PROG)
    assert options is not None
    keywords = set(inspect.signature(Config.__init__).parameters)
    assert set(options) - {"app_dir"} <= keywords, (
        f"uvicorn's options are no longer Config's keywords: {WORKERS} builds Config(**options)"
    )
    read = {"workers", "reload", "uds", "fd", "port", "app_dir", "log_config"}
    assert read <= set(options), f"{WORKERS} (and `balanced`) read {sorted(read)}"
    assert options["log_config"] is None, f"{WORKERS} puts LOGGING_CONFIG in its place"


def test_uvicorns_run_does_what_workers_does_before_config():
    assert inspect.signature(run).parameters["log_config"].default is LOGGING_CONFIG, WORKERS
    assert "sys.path.insert(0, app_dir)" in source(run), WORKERS


def test_the_config_and_server_methods_workers_calls_keep_their_signatures():
    assert shape(Config.configure_logging) == "(self)", WORKERS
    assert shape(Server.run) == "(self, sockets=None)", WORKERS
    assert STARTUP_FAILURE == 3, f"{WORKERS} documents exit status 3"


def test_uvicorns_command_is_a_click_command_serve_can_parse_and_run():
    assert isinstance(main, click.Command), "app/serve.py and workers.py call it as one"
    # app/serve.py turns the SIGTERM uvicorn's server raises again after a drain into status 0.
    assert "signal.raise_signal(captured_signal)" in source(Server.capture_signals), (
        "uvicorn's Server no longer raises the signal again: re-check app/serve.py's exit status"
    )
