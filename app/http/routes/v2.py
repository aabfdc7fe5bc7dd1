"""Open Inference Protocol v2 (the KServe v2 REST API), so Triton/KServe clients work unchanged.

Health, server and model metadata, and inference with JSON tensors. Our extensions: an image
model also takes a BYTES input, one base64-encoded image file per element, decoded and
preprocessed as the typed endpoints do; and each layer's output can be asked for by its trace key
(the trace signature). Health answers carry no body: 200 means true, 400 false, as the protocol
says. The binary tensor data extension is not supported.
"""

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response

from app.core.errors import ProtocolError
from app.http.routes.deps import ServiceDep
from app.http.routes.protocol_route import PROTOCOL_RESPONSES, ProtocolRoute
from app.http.routes.responses import ModelJSON
from app.protocols import tensors
from app.protocols import v2 as protocol
from app.protocols.v2 import (
    InferenceRequest,
    InferenceResponse,
    MetadataModelResponse,
    MetadataServerResponse,
)

# Set by clients that send tensors in the binary extension (tritonclient's binary_data=True).
BINARY_HEADER = "inference-header-content-length"


class V2Route(ProtocolRoute):
    """Refuses a binary-extension body up front, with what to do instead."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def v2_handler(request: Request) -> Response:
            if BINARY_HEADER in request.headers:
                raise ProtocolError(
                    "The binary tensor data extension is not supported; send the tensors as "
                    "JSON (tritonclient: set_data_from_numpy(..., binary_data=False))."
                )
            return await handler(request)

        return v2_handler


router = APIRouter(
    prefix="/v2",
    tags=["Open Inference Protocol v2"],
    route_class=V2Route,
    responses=PROTOCOL_RESPONSES,
)

HEALTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "True (empty body)."},
    400: {"description": "False (empty body)."},
}


def _health(answer: bool) -> Response:
    return Response(status_code=200 if answer else 400)


INFER_EXAMPLES = {
    "features": {
        "summary": "Two rows of numbers (iris)",
        "value": {
            "id": "42",
            "inputs": [
                {
                    "name": "features",
                    "shape": [2, 4],
                    "datatype": "FP32",
                    "data": [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3],
                }
            ],
        },
    },
    "layers": {
        "summary": "The prediction and two layers' outputs (iris)",
        "value": {
            "inputs": [
                {
                    "name": "features",
                    "shape": [1, 4],
                    "datatype": "FP32",
                    "data": [[5.1, 3.5, 1.4, 0.2]],
                }
            ],
            "outputs": [{"name": "probabilities"}, {"name": "00_normalize"}, {"name": "02_relu"}],
        },
    },
    "image": {
        "summary": "An encoded image file (image models; our extension)",
        "value": {
            "inputs": [
                {
                    "name": "image",
                    "shape": [1],
                    "datatype": "BYTES",
                    "data": ["<base64 of a PNG or JPEG file>"],
                }
            ]
        },
    },
}
InferBody = Annotated[InferenceRequest, Body(openapi_examples=INFER_EXAMPLES)]
INFER_DESCRIPTION = (
    "Inference with JSON tensors: FP32 data flat or nested as the shape says, or for an image "
    "model BYTES, one base64-encoded image file per element (our extension). Returns the "
    "prediction, or the outputs asked for: the prediction and any layer's output by its trace "
    "key (e.g. 01_dense), which runs the trace signature."
)


@router.get("", response_model=MetadataServerResponse, summary="Server metadata")
async def server_metadata(request: Request) -> MetadataServerResponse:
    return protocol.v2_server_metadata(request.app.version)


@router.get("/health/live", response_class=Response, responses=HEALTH_RESPONSES)
async def server_live() -> Response:
    return _health(True)


@router.get("/health/ready", response_class=Response, responses=HEALTH_RESPONSES)
async def server_ready(service: ServiceDep) -> Response:
    return _health(not service.missing())


@router.get("/models/{name}", response_model=MetadataModelResponse, summary="Model metadata")
async def model_metadata(name: str, service: ServiceDep) -> MetadataModelResponse:
    return protocol.v2_model_metadata(service.registry.get(name), service.registry.versions(name))


@router.get(
    "/models/{name}/versions/{version}",
    response_model=MetadataModelResponse,
    summary="Model version metadata",
)
async def version_metadata(name: str, version: str, service: ServiceDep) -> MetadataModelResponse:
    runtime = service.registry.get(name, tensors.parse_version(name, version))
    return protocol.v2_model_metadata(runtime, service.registry.versions(name))


@router.get("/models/{name}/ready", response_class=Response, responses=HEALTH_RESPONSES)
async def model_ready(name: str, service: ServiceDep) -> Response:
    return _health(service.registry.find(name).ready)


@router.get(
    "/models/{name}/versions/{version}/ready",
    response_class=Response,
    responses=HEALTH_RESPONSES,
)
async def version_ready(name: str, version: str, service: ServiceDep) -> Response:
    return _health(service.registry.find(name, tensors.parse_version(name, version)).ready)


@router.post(
    "/models/{name}/infer",
    response_model=InferenceResponse,
    response_model_exclude_none=True,
    summary="Inference",
    description=INFER_DESCRIPTION,
)
async def infer(name: str, body: InferBody, service: ServiceDep) -> Response:
    return ModelJSON(await protocol.v2_infer(service, service.registry.get(name), body))


@router.post(
    "/models/{name}/versions/{version}/infer",
    response_model=InferenceResponse,
    response_model_exclude_none=True,
    summary="Inference with a model version",
    description=INFER_DESCRIPTION,
)
async def infer_version(name: str, version: str, body: InferBody, service: ServiceDep) -> Response:
    runtime = service.registry.get(name, tensors.parse_version(name, version))
    return ModelJSON(await protocol.v2_infer(service, runtime, body))
