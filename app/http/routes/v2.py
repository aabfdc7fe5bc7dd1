"""Open Inference Protocol v2 (the KServe v2 REST API), so Triton/KServe clients work unchanged.

Health, server and model metadata, and inference with JSON tensors. Our extensions: an image
model also takes a BYTES input, one base64-encoded image file per element, decoded and
preprocessed as the typed endpoints do; and each layer's output can be asked for by its trace key
(the trace signature). Health answers are 200 for true and 400 for false, as the protocol says,
with the JSON body KServe's own server sends (`{"live": true}`, `{"ready": false}`), which
KServe's SDK parses. The binary tensor data extension works both ways: a body of a JSON header
(`Inference-Header-Content-Length` bytes) and then the binary tensors, and an answer in the same
shape when any output asks for binary data (tritonclient's defaults).
"""

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response
from pydantic import BaseModel
from starlette.types import Message

from app.core.errors import ProtocolError
from app.http.middleware.limits import json_depth
from app.http.routes.deps import ServiceDep
from app.http.routes.protocol_route import PROTOCOL_RESPONSES, ProtocolRoute
from app.http.routes.responses import ModelJSON
from app.protocols import triton
from app.protocols import v2 as protocol
from app.protocols.v2_bodies import (
    InferenceRequest,
    InferenceResponse,
    MetadataModelResponse,
    MetadataServerResponse,
)
from app.runtime.registry import Asked

# The length of the JSON header of a body in the binary tensor data extension (and of an answer).
BINARY_HEADER = "inference-header-content-length"
# Where the route leaves the binary section of such a body for the infer handler.
BINARY_SECTION = "glassbox.binary_section"


def _split_binary_body(request: Request, body: bytes) -> Request:
    """The request with the JSON header as its body, the binary section in its scope."""
    text = request.headers[BINARY_HEADER]
    if not (text.isascii() and text.isdigit()) or int(text) > len(body):
        raise ProtocolError(
            f"Inference-Header-Content-Length is {text!r}; it must be the byte length of the "
            f"JSON header, at most the body's {len(body)} bytes."
        )
    header, section = body[: int(text)], body[int(text) :]
    limit = request.app.state.service.settings.max_json_depth
    if json_depth(header, limit) > limit:
        raise ProtocolError(f"The JSON header is nested deeper than {limit} levels.")

    async def receive() -> Message:
        return {"type": "http.request", "body": header, "more_body": False}

    return Request({**request.scope, BINARY_SECTION: section}, receive)


class V2Route(ProtocolRoute):
    """Splits a body in the binary tensor data extension into its JSON header, which FastAPI
    validates as usual, and its binary section."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def v2_handler(request: Request) -> Response:
            if BINARY_HEADER in request.headers:
                request = _split_binary_body(request, await request.body())
            return await handler(request)

        return v2_handler


def _answer(answer: tuple[InferenceResponse, bytes | None]) -> Response:
    """The answer as JSON, or as a JSON header and the binary section."""
    response, section = answer
    if section is None:
        return ModelJSON(response)
    header = response.__pydantic_serializer__.to_json(response, exclude_none=True)
    return Response(
        header + section,
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(len(header))},
    )


router = APIRouter(
    prefix="/v2",
    tags=["Open Inference Protocol v2"],
    route_class=V2Route,
    responses=PROTOCOL_RESPONSES,
)


class LiveResponse(BaseModel):
    live: bool


class ReadyResponse(BaseModel):
    ready: bool


HEALTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "True."},
    400: {"description": "False."},
}


def _health(answer: BaseModel, value: bool) -> Response:
    return ModelJSON(answer, status_code=200 if value else 400)


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
    "key (e.g. 01_dense), which runs the trace signature. The binary tensor data extension "
    "works too: with Inference-Header-Content-Length, the body is that many bytes of JSON and "
    "then each input with parameters.binary_data_size in order (FP32 little-endian; BYTES as a "
    "4-byte little-endian length before each image file). Outputs with parameters.binary_data "
    "(or all, with the request's binary_data_output) come back the same way."
)


# Inference first: FastAPI matches a router's routes in order, and these carry the traffic.
@router.post(
    "/models/{name}/infer",
    response_model=InferenceResponse,
    response_model_exclude_none=True,
    summary="Inference",
    description=INFER_DESCRIPTION,
)
async def infer(name: str, body: InferBody, service: ServiceDep, request: Request) -> Response:
    section = request.scope.get(BINARY_SECTION, b"")
    return _answer(
        await protocol.v2_infer(service, service.registry.resolve(name, split=True), body, section)
    )


@router.post(
    "/models/{name}/versions/{version}/infer",
    response_model=InferenceResponse,
    response_model_exclude_none=True,
    summary="Inference with a model version",
    description=INFER_DESCRIPTION,
)
async def infer_version(
    name: str, version: str, body: InferBody, service: ServiceDep, request: Request
) -> Response:
    runtime = service.registry.resolve(name, Asked.of_text(name, version))
    section = request.scope.get(BINARY_SECTION, b"")
    return _answer(await protocol.v2_infer(service, runtime, body, section))


@router.get("", response_model=MetadataServerResponse, summary="Server metadata")
async def server_metadata(request: Request) -> MetadataServerResponse:
    return protocol.v2_server_metadata(request.app.version)


@router.get("/health/live", response_model=LiveResponse, responses=HEALTH_RESPONSES)
async def server_live() -> Response:
    return _health(LiveResponse(live=True), True)


@router.get("/health/ready", response_model=ReadyResponse, responses=HEALTH_RESPONSES)
async def server_ready(service: ServiceDep) -> Response:
    ready = not service.catalog.missing()
    return _health(ReadyResponse(ready=ready), ready)


# Before /models/{name}, which would take "stats" for a model's name.
@router.get(
    "/models/stats",
    response_model=triton.ModelStatisticsResponse,
    summary="Statistics of every model (Triton's statistics extension)",
)
async def all_statistics(service: ServiceDep) -> Response:
    return ModelJSON(triton.model_statistics(service.registry.all()))


@router.get(
    "/models/{name}/stats",
    response_model=triton.ModelStatisticsResponse,
    summary="Statistics of a model's versions",
    description="Per ready version: rows and model calls counted, and the cumulative time "
    "requests spent queued, assembling their batch, in the model and getting their rows back, "
    "in nanoseconds, as Triton's statistics extension reports them (this worker's).",
)
async def statistics(name: str, service: ServiceDep) -> Response:
    return ModelJSON(triton.model_statistics(service.registry.versions(name)))


@router.get(
    "/models/{name}/versions/{version}/stats",
    response_model=triton.ModelStatisticsResponse,
    summary="Statistics of a model version",
)
async def version_statistics(name: str, version: str, service: ServiceDep) -> Response:
    runtime = service.registry.resolve(name, Asked.of_text(name, version))
    return ModelJSON(triton.model_statistics([runtime]))


@router.get(
    "/models/{name}/config",
    response_model=triton.ModelConfig,
    summary="Model configuration (Triton's shape)",
    description="The default version's tensors, batching and queue as Triton's model "
    "configuration states them; what Triton's perf_analyzer reads before it starts.",
)
async def model_config(name: str, service: ServiceDep) -> Response:
    return ModelJSON(triton.model_config(service.registry.resolve(name), service.settings))


@router.get(
    "/models/{name}/versions/{version}/config",
    response_model=triton.ModelConfig,
    summary="Model version configuration (Triton's shape)",
)
async def version_config(name: str, version: str, service: ServiceDep) -> Response:
    runtime = service.registry.resolve(name, Asked.of_text(name, version))
    return ModelJSON(triton.model_config(runtime, service.settings))


@router.get("/models/{name}", response_model=MetadataModelResponse, summary="Model metadata")
async def model_metadata(name: str, service: ServiceDep) -> MetadataModelResponse:
    return protocol.v2_model_metadata(
        service.registry.resolve(name), service.registry.versions(name)
    )


@router.get(
    "/models/{name}/versions/{version}",
    response_model=MetadataModelResponse,
    summary="Model version metadata",
)
async def version_metadata(name: str, version: str, service: ServiceDep) -> MetadataModelResponse:
    runtime = service.registry.resolve(name, Asked.of_text(name, version))
    return protocol.v2_model_metadata(runtime, service.registry.versions(name))


@router.get("/models/{name}/ready", response_model=ReadyResponse, responses=HEALTH_RESPONSES)
async def model_ready(name: str, service: ServiceDep) -> Response:
    ready = service.registry.resolve(name, ready=False).ready
    return _health(ReadyResponse(ready=ready), ready)


@router.get(
    "/models/{name}/versions/{version}/ready",
    response_model=ReadyResponse,
    responses=HEALTH_RESPONSES,
)
async def version_ready(name: str, version: str, service: ServiceDep) -> Response:
    ready = service.registry.resolve(name, Asked.of_text(name, version), ready=False).ready
    return _health(ReadyResponse(ready=ready), ready)
