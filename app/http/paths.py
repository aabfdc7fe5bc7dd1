"""What a request's path and query say about the model it is for: /api/models/{name}/...,
/v1/models/{name}[...] and /v2/models/{name}[/versions/{version}]/..., and `?version=`
(admission counts per model; the typed routes pick the version's card; logs and metrics label
by model and version)."""

import re
from dataclasses import dataclass
from urllib.parse import parse_qs

from pydantic import TypeAdapter, ValidationError
from starlette.types import Scope

from app.runtime.registry import DEFAULT, Asked

MODEL_PATH = re.compile(
    # /v2/models/stats is every model's statistics (Triton's extension), not a model's path.
    r"^/(?P<api>api|v1|v2)/models/(?P<model>(?!stats$)[^/:]+)"
    r"(?:/versions/(?P<version>\d+)|/(?:labels|versions)/(?P<label>[^/:]+))?"
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


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """What a request to a model's path is for: the model, the surface of its API (as the
    payload log names it) and the version it names."""

    model: str
    surface: str
    asked: Asked


_MATCHED = "glassbox.model_request"  # the scope's key: the path is matched once per request


def model_request(scope: Scope) -> ModelRequest | None:
    """The model a request's path is for, None for any other path; matched once, on the first
    call (the gateway's for a POST, the request log's, the typed routes'), and kept in the
    scope, which every layer of the request shares."""
    if _MATCHED in scope:
        cached: ModelRequest | None = scope[_MATCHED]
        return cached
    match = MODEL_PATH.match(scope.get("path", ""))
    made = None
    if match is not None:
        made = ModelRequest(match["model"], SURFACES[match["api"]], _asked_of(scope, match))
    scope[_MATCHED] = made
    return made


def _asked_of(scope: Scope, model_path: re.Match[str]) -> Asked:
    """The version a request to a model's path names: in the path (`/versions/2`, TF Serving's
    `/labels/canary`, v2's `/versions/canary`), else `?version=` and `?label=` (both: the
    registry refuses it)."""
    if model_path["version"] is not None:
        return Asked(version=int(model_path["version"]))
    if model_path["label"] is not None:
        return Asked(label=model_path["label"])
    version, label = asked_version(scope), asked_label(scope)
    return DEFAULT if version is None and label is None else Asked(version, label)
