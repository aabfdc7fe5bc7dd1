"""The typed routes of every model as one route of the app, matched per request against the
routes built from the card of the version that will answer it (see `typed` for the routes)."""

from starlette.routing import BaseRoute, Match
from starlette.types import Receive, Scope, Send

from app.artifact.card import ModelCard
from app.core.errors import GlassboxError
from app.dataplane.service import InferenceService
from app.http.paths import model_request
from app.http.routes.deps import SERVING
from app.http.routes.typed import PREFIX, model_router
from app.runtime.model import ModelRuntime
from app.runtime.registry import DEFAULT, Asked


class ModelRoutes(BaseRoute):
    """Every model's typed routes, as one route of the app.

    A request under `/api/models/<name>/` is matched against the routes built from the card of
    the version that will answer it, found once here: the one `?version=` or `?label=` names,
    else the registry's choice (`ModelRegistry.serve`: the canary split, else `stable`, else the
    newest ready). When that version cannot answer (unknown, loading, failed), the route answers
    the registry's 404 or 503 before the body is validated (the routes of the model's default
    card still match, so the request is counted and logged under its route). Routes are built on
    first use and kept per version while its card is the same object.
    """

    def __init__(self) -> None:
        # Per version: the card its routes were built from, and the routes by path (the typed
        # routes have no path parameters, so a request is matched against its own path's only).
        self._built: dict[tuple[str, int], tuple[ModelCard, dict[str, list[BaseRoute]]]] = {}

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        path = scope["path"] if scope["type"] == "http" else ""
        if not path.startswith(PREFIX):
            return Match.NONE, {}
        service = getattr(scope["app"].state, "service", None)  # None before the lifespan
        if service is None:
            return Match.NONE, {}
        name = path[len(PREFIX) :].partition("/")[0]
        request = model_request(scope)
        serving, described = _resolve(service, name, request.asked if request else DEFAULT)
        if described is None:
            return Match.NONE, {}
        partial: tuple[Match, Scope] | None = None
        for route in self._routes(service, described).get(path, ()):
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                child_scope[SERVING] = serving  # a new dict from each `matches`
                return Match.FULL, child_scope
            if match is Match.PARTIAL and partial is None:
                partial = match, child_scope
        return partial or (Match.NONE, {})

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        serving = scope.get(SERVING)
        if isinstance(serving, GlassboxError):  # the version asked for cannot answer, whatever
            raise serving  # the body says: 404 or 503 before any validation
        await scope["route"].handle(scope, receive, send)  # the inner route that matched

    def documented(self, service: InferenceService) -> list[BaseRoute]:
        """The routes of each model's default version (the newest card where none is ready)."""
        routes: list[BaseRoute] = []
        for name in service.registry.names():
            described = service.registry.described(name)
            if described is not None:
                routes.extend(
                    r for same_path in self._routes(service, described).values() for r in same_path
                )
        return routes

    def _routes(
        self, service: InferenceService, runtime: ModelRuntime
    ) -> dict[str, list[BaseRoute]]:
        """The version's routes by path, built on first use and kept while its card is the
        same object."""
        key = (runtime.name, runtime.version)
        card = runtime.loaded_card
        built = self._built.get(key)
        if built is None or built[0] is not card:
            live = {(r.name, r.version) for r in service.registry.all()}
            self._built = {k: v for k, v in self._built.items() if k in live}
            by_path: dict[str, list[BaseRoute]] = {}
            for route in model_router(service, runtime.name, card).routes:
                by_path.setdefault(getattr(route, "path", ""), []).append(route)
            built = self._built[key] = (card, by_path)
        return built[1]


def _resolve(
    service: InferenceService, name: str, asked: Asked
) -> tuple[ModelRuntime | GlassboxError, ModelRuntime | None]:
    """(what answers: the ready runtime or the registry's error; the runtime whose card
    describes the request, or None when no version of `name` has a card)."""
    try:
        runtime = service.registry.resolve(name, asked, split=True)
        return runtime, runtime
    except GlassboxError as error:
        return error, service.registry.described(name)
