"""The typed routes of one model version (predict, trace, explain, compare), built from its card.

Tabular models take named, range-checked fields (`typed_tabular`); image models take an upload
(multipart) or JSON (base64 or the input array) (`typed_images`). Each version's routes are
built from its own card, so after a hot reload that renames, adds or re-ranges features (or
relabels classes) a request is validated against the version that serves it: the default, or
the one `?version=` names (`model_routes` matches each request against them). `/openapi.json`
documents each model's default version.
"""

from fastapi import APIRouter

from app.artifact.card import ModelCard
from app.dataplane.service import InferenceService
from app.http.framework_overrides.lean import LeanRoute
from app.http.routes.errors import ERROR_RESPONSES
from app.http.routes.typed_images import add_image_routes
from app.http.routes.typed_tabular import add_tabular_routes

PREFIX = "/api/models/"


def model_router(service: InferenceService, name: str, card: ModelCard) -> APIRouter:
    """Routes for the model served as `name` (its folder's name), shaped by `card`.

    The routes are built for the running service and use it directly: a `Depends` for it was
    solved again on every request, 30-50 µs of the 430-460 µs an iris prediction took on the
    event loop.
    """
    router = APIRouter(
        prefix=f"{PREFIX}{name}", tags=[name], responses=ERROR_RESPONSES, route_class=LeanRoute
    )
    if card.input.kind == "features":
        add_tabular_routes(router, service, name, card)
    else:
        add_image_routes(router, service, name, card)
    return router
