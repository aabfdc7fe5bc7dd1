"""What a request's path and query say about the model it is for: /api/models/{name}/...,
/v1/models/{name}[...] and /v2/models/{name}[/versions/{version}]/..., and `?version=`
(admission counts per model; the typed routes pick the version's card; logs and metrics label
by model and version)."""

import re
from urllib.parse import parse_qs

from pydantic import TypeAdapter, ValidationError
from starlette.types import Scope

MODEL_PATH = re.compile(
    # /v2/models/stats is every model's statistics (Triton's extension), not a model's path.
    r"^/(?P<api>api|v1|v2)/models/(?P<model>(?!stats$)[^/:]+)(?:/versions/(?P<version>\d+))?"
)
# The surface of each path's API (`api` above), as the payload log names it.
SURFACES = {"api": "http/typed", "v1": "http/tfserving", "v2": "http/v2"}
# The routes' own reading of `?version=` (pydantic's, lax: "1.0" and " 1" are 1), so the version
# picked before validation is the one the validated query names.
_VERSION = TypeAdapter(int)


def asked_version(scope: Scope) -> int | None:
    """The version number `?version=` asks for (its last value, as the routes read it); None
    when absent or not a version number, which the routes answer with 422."""
    query: bytes = scope.get("query_string", b"")
    if b"version=" not in query:
        return None
    values = parse_qs(query.decode("latin-1")).get("version")
    if not values:
        return None
    try:
        version = _VERSION.validate_python(values[-1])
    except ValidationError:
        return None
    return version if version >= 1 else None


def asked_label(scope: Scope) -> str | None:
    """The version label `?label=` asks for (its last value), None when absent."""
    query: bytes = scope.get("query_string", b"")
    if b"label=" not in query:
        return None
    values = parse_qs(query.decode("latin-1")).get("label")
    return values[-1] if values else None
