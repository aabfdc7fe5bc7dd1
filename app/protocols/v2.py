"""The Open Inference Protocol v2 (KServe, Triton): its bodies, server and model metadata, and
infer (FP32 tensors, and BYTES images for image models; layer outputs by trace key)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, Field

from app.artifact.card import TRACE_SIGNATURE, ModelCard
from app.core.errors import ProtocolError
from app.dataplane.service import InferenceService
from app.protocols.tensors import (
    PLATFORM,
    SERVER_NAME,
    as_float32,
    check_count,
    dims,
    image_decoder,
    output_shape,
    output_shapes,
    refuse_large_answer,
)
from app.runtime.model import ModelRuntime

# -- bodies ------------------------------------------------------------------------------------

Parameters = dict[str, str | int | float | bool]


class MetadataServerResponse(BaseModel):
    name: str
    version: str
    extensions: list[str] = Field(description="Protocol extensions supported (none).")


class MetadataTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="Dimensions, -1 where they vary (the batch).")


class MetadataModelResponse(BaseModel):
    name: str
    versions: list[str] = Field(description="The versions ready to be asked for by number.")
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor] = Field(
        description="The prediction. Each layer's output can be asked for by its trace key too "
        "(see the model card's layers), though it is not listed here."
    )


class RequestInput(BaseModel):
    name: str
    shape: list[Annotated[int, Field(ge=0)]]
    datatype: str = Field(
        description="FP32, or BYTES (base64-encoded image files) for an image model."
    )
    parameters: Parameters | None = None
    data: list[Any] = Field(description="Row-major values, flat or nested as the shape.")


class RequestOutput(BaseModel):
    name: str
    parameters: Parameters | None = None


class InferenceRequest(BaseModel):
    id: str | None = Field(None, description="Echoed in the response.")
    parameters: Parameters | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = Field(
        None, description="Outputs to return; the prediction when omitted."
    )


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: Parameters | None = None
    data: list[float] = Field(description="Row-major values, flat.")


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: Parameters | None = None
    outputs: list[ResponseOutput]


# -- handling ----------------------------------------------------------------------------------
def v2_server_metadata(version: str) -> MetadataServerResponse:
    return MetadataServerResponse(name=SERVER_NAME, version=version, extensions=[])


def v2_model_metadata(runtime: ModelRuntime, versions: list[ModelRuntime]) -> MetadataModelResponse:
    card = runtime.loaded_card
    return MetadataModelResponse(
        name=card.name,
        versions=[str(other.version) for other in versions if other.ready],
        platform=PLATFORM,
        inputs=[
            MetadataTensor(name=card.input.name, datatype="FP32", shape=dims(card.input.shape))
        ],
        outputs=[
            MetadataTensor(name=card.output.name, datatype="FP32", shape=dims(output_shape(card)))
        ],
    )


def _v2_expects(card: ModelCard) -> str:
    expected = f"FP32 with shape {dims(card.input.shape)}"
    if card.input.kind == "image":
        expected += " or BYTES with shape [-1] (one base64-encoded image file per element)"
    return expected


def _flatten(values: list[Any]) -> Iterator[Any]:
    for value in values:
        if isinstance(value, list):
            yield from _flatten(value)
        else:
            yield value


def _v2_images(
    service: InferenceService, card: ModelCard, tensor: RequestInput, where: str
) -> np.ndarray:
    one_per_row = len(tensor.shape) in (1, 2) and tensor.shape[1:] in ([], [1])
    if card.input.kind != "image" or not one_per_row:
        raise ProtocolError(
            f"{where} is BYTES with shape {tensor.shape}; model '{card.name}' expects "
            f"{_v2_expects(card)}."
        )
    check_count(service, tensor.shape[0])
    items = list(_flatten(tensor.data))
    if len(items) != tensor.shape[0]:
        raise ProtocolError(
            f"{where} has {len(items)} elements; its shape {tensor.shape} needs {tensor.shape[0]}."
        )
    if not all(isinstance(item, str) for item in items):
        raise ProtocolError(f"{where}: each BYTES element must be a base64 string.")
    decode_image = image_decoder(service, card)
    images = [decode_image(item, f"{where} element {i}") for i, item in enumerate(items)]
    return np.stack(images)


def _v2_numbers(
    service: InferenceService, card: ModelCard, tensor: RequestInput, where: str
) -> np.ndarray:
    expected = dims(card.input.shape)
    if len(tensor.shape) != len(expected) or tensor.shape[1:] != expected[1:]:
        raise ProtocolError(
            f"{where} has shape {tensor.shape}; model '{card.name}' expects {_v2_expects(card)}."
        )
    check_count(service, tensor.shape[0])
    array = as_float32(tensor.data, f"{where} data")
    if array.size != math.prod(tensor.shape):
        raise ProtocolError(
            f"{where} has {array.size} values; its shape {tensor.shape} needs "
            f"{math.prod(tensor.shape)}."
        )
    if array.ndim > 1 and list(array.shape) != tensor.shape:
        raise ProtocolError(
            f"{where} data is nested as {list(array.shape)}, not as its shape {tensor.shape}."
        )
    return array.reshape(tensor.shape)


def _v2_batch(service: InferenceService, card: ModelCard, inputs: list[RequestInput]) -> np.ndarray:
    if len(inputs) != 1 or inputs[0].name != card.input.name:
        raise ProtocolError(
            f"Model '{card.name}' takes one input, '{card.input.name}' ({_v2_expects(card)}); "
            f"got {', '.join(repr(tensor.name) for tensor in inputs)}."
        )
    tensor = inputs[0]
    where = f"Input '{tensor.name}'"
    if tensor.datatype == "BYTES":
        return _v2_images(service, card, tensor, where)
    if tensor.datatype != "FP32":
        raise ProtocolError(
            f"{where} has datatype {tensor.datatype}; model '{card.name}' expects "
            f"{_v2_expects(card)}."
        )
    return _v2_numbers(service, card, tensor, where)


async def v2_infer(
    service: InferenceService, runtime: ModelRuntime, request: InferenceRequest
) -> InferenceResponse:
    """The prediction comes from serving_default (the batched path); layer outputs asked for
    by trace key from the trace signature."""
    card = runtime.loaded_card
    names = [output.name for output in request.outputs or []] or [card.output.name]
    shapes = output_shapes(card)
    unknown = [name for name in names if name not in shapes]
    if unknown:
        raise ProtocolError(
            f"Model '{card.name}' has no output '{unknown[0]}'. Outputs: '{card.output.name}', "
            f"and each layer's by trace key: {', '.join(list(shapes)[1:])}."
        )
    batch = _v2_batch(service, card, request.inputs)
    refuse_large_answer(service, card, names, len(batch))
    results: dict[str, np.ndarray] = {}
    if card.output.name in names:
        results[card.output.name] = await service.predict(runtime, batch)
    if any(name != card.output.name for name in names):
        results.update(await service.call_signature(runtime, TRACE_SIGNATURE, batch))
    return InferenceResponse(
        model_name=card.name,
        model_version=str(runtime.version),
        id=request.id,
        outputs=[
            ResponseOutput(
                name=name,
                shape=list(results[name].shape),
                datatype="FP32",
                data=results[name].reshape(-1).tolist(),
            )
            for name in names
        ],
    )
