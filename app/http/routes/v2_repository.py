"""Triton's model repository extension over REST (`/v2/repository/...`): the index, load and
unload, behind the admin keys (`app/http/middleware/security.py`). A success is 200 (load and
unload with an empty body), a failure 400 with the protocol's `{"error": ...}`, as
`tritonclient.http` reads them."""

from fastapi import APIRouter, Response

from app.http.routes.deps import ServiceDep
from app.http.routes.protocol_route import PROTOCOL_RESPONSES, ProtocolRoute
from app.http.routes.responses import ModelJSON
from app.protocols import repository as protocol
from app.protocols.repository import (
    RepositoryIndexRequest,
    RepositoryIndexResponse,
    RepositoryLoadRequest,
    RepositoryUnloadRequest,
)

router = APIRouter(
    prefix="/v2/repository",
    tags=["Open Inference Protocol v2"],
    route_class=ProtocolRoute,
    responses=PROTOCOL_RESPONSES,
)

ADMIN = " Needs an admin key (GLASSBOX_ADMIN_API_KEYS)."


@router.post(
    "/index",
    response_model=RepositoryIndexResponse,
    response_model_exclude_none=True,
    summary="Model repository index",
    description="Every model of the model folder and every version served, with its state "
    "(READY, LOADING, UNAVAILABLE) and the reason it is unavailable; a model that is not "
    'served is one row without a version. {"ready": true} keeps the ready versions.' + ADMIN,
)
async def index(service: ServiceDep, body: RepositoryIndexRequest | None = None) -> Response:
    entries = service.repository.index(ready_only=body is not None and body.ready)
    return ModelJSON(protocol.index_response(entries))


@router.post(
    "/models/{name}/load",
    summary="Load a model",
    description="Reads the model's folder now and serves every version that loads, as a poll "
    "would; with GLASSBOX_MODEL_CONTROL=explicit the model is served from then on, by every "
    "worker (docs/operations.md). 400 when no version loads, or for a parameter (config, "
    "file: overrides) this server does not support." + ADMIN,
)
async def load(
    name: str, service: ServiceDep, body: RepositoryLoadRequest | None = None
) -> Response:
    protocol.check_load_parameters(body.parameters if body else None)
    await service.repository.load(name)
    return Response(status_code=200)


@router.post(
    "/models/{name}/unload",
    summary="Unload a model",
    description="GLASSBOX_MODEL_CONTROL=explicit only (400 in poll mode): stops serving the "
    "model (404 for new requests at once), lets requests in flight finish on it, and answers "
    "once they have and its memory is collected." + ADMIN,
)
async def unload(
    name: str, service: ServiceDep, body: RepositoryUnloadRequest | None = None
) -> Response:
    protocol.check_unload_parameters(body.parameters if body else None)
    await service.repository.unload(name)
    return Response(status_code=200)
