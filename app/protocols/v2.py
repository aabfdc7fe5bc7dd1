"""The Open Inference Protocol v2 (KServe, Triton): its bodies, server and model metadata, and
infer (FP32 tensors, and BYTES images for image models; layer outputs by trace key)."""

from __future__ import annotations

import math
import struct
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
    image_file,
    output_shape,
    output_shapes,
    refuse_large_answer,
)
from app.protocols.triton import class_count, classify
from app.runtime.model import ModelRuntime

# -- bodies ------------------------------------------------------------------------------------

Parameters = dict[str, str | int | float | bool]


class MetadataServerResponse(BaseModel):
    name: str
    version: str
    extensions: list[str] = Field(description="Protocol extensions supported.")


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
        description="FP32, or BYTES for an image model: image files, base64-encoded in "
        "data or as they are in the binary section."
    )
    parameters: Parameters | None = None
    data: list[Any] | None = Field(
        None,
        description="Row-major values, flat or nested as the shape; absent when the tensor "
        "is in the binary section (parameters.binary_data_size).",
    )


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
    data: list[float] | list[str] | None = Field(
        None,
        description="Row-major values, flat (FP32 numbers, or BYTES strings: a classification's "
        '"score:index:label"); absent when the output is in the binary section '
        "(parameters.binary_data_size).",
    )


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: Parameters | None = None
    outputs: list[ResponseOutput]


# -- handling ----------------------------------------------------------------------------------
# The binary tensor data extension, as Triton documents it: a JSON header, then each binary
# tensor's raw bytes in order (FP32 little-endian; BYTES as a 4-byte little-endian length before
# each element's bytes).
# And Triton's extensions its tools look for by name here (app.protocols.triton):
# perf_analyzer reads the server's statistics only when "statistics" is listed.
EXTENSIONS = ["binary_tensor_data", "classification", "model_configuration", "statistics"]


def v2_server_metadata(version: str) -> MetadataServerResponse:
    return MetadataServerResponse(name=SERVER_NAME, version=version, extensions=EXTENSIONS)


def binary_parts(request: InferenceRequest, binary: bytes) -> list[bytes | None]:
    """Each input's raw bytes from the binary section, in input order (None for an input whose
    values are in the JSON)."""
    parts: list[bytes | None] = []
    offset = 0
    for tensor in request.inputs:
        where = f"Input '{tensor.name}'"
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is None:
            if tensor.data is None:
                raise ProtocolError(f"{where} has neither data nor parameters.binary_data_size.")
            parts.append(None)
            continue
        if tensor.data is not None:
            raise ProtocolError(f"{where} has both data and binary_data_size; send one of them.")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ProtocolError(f"{where}: binary_data_size must be a number of bytes.")
        if offset + size > len(binary):
            raise ProtocolError(
                f"{where} has binary_data_size {size}, but the binary section holds only "
                f"{len(binary) - offset} more bytes."
            )
        parts.append(binary[offset : offset + size])
        offset += size
    if offset != len(binary):
        raise ProtocolError(
            f"The binary section holds {len(binary)} bytes; the inputs' binary_data_size add up "
            f"to {offset}."
        )
    return parts


def _length_prefixed(raw: bytes, where: str) -> list[bytes]:
    """The elements of a binary BYTES tensor: each a 4-byte little-endian length, then bytes."""
    items, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise ProtocolError(f"{where}: the BYTES data ends inside an element's length.")
        (size,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + size > len(raw):
            raise ProtocolError(f"{where}: a BYTES element runs past the end of the data.")
        items.append(raw[offset : offset + size])
        offset += size
    return items


def datatype(values: np.ndarray) -> str:
    """An output's datatype: a classification's strings are BYTES, the rest FP32."""
    return "BYTES" if values.dtype == object else "FP32"


def wire_bytes(values: np.ndarray) -> bytes:
    """An output in the binary layout (BYTES elements each after its 4-byte length)."""
    if values.dtype != object:
        return values.tobytes()
    return b"".join(struct.pack("<I", len(item)) + item for item in values.reshape(-1))


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


def _check_elements(count: int, tensor: RequestInput, where: str) -> None:
    if count != tensor.shape[0]:
        raise ProtocolError(
            f"{where} has {count} elements; its shape {tensor.shape} needs {tensor.shape[0]}."
        )


def _v2_images(
    service: InferenceService,
    card: ModelCard,
    tensor: RequestInput,
    where: str,
    raw: bytes | None,
) -> np.ndarray:
    one_per_row = len(tensor.shape) in (1, 2) and tensor.shape[1:] in ([], [1])
    if card.input.kind != "image" or not one_per_row:
        raise ProtocolError(
            f"{where} is BYTES with shape {tensor.shape}; model '{card.name}' expects "
            f"{_v2_expects(card)}."
        )
    check_count(service, tensor.shape[0])
    if raw is not None:  # binary elements are the image files themselves
        files = _length_prefixed(raw, where)
        _check_elements(len(files), tensor, where)
        images = [
            image_file(service, card, item, f"{where} element {i}") for i, item in enumerate(files)
        ]
        return np.stack(images)
    items = list(_flatten(tensor.data or []))
    _check_elements(len(items), tensor, where)
    if not all(isinstance(item, str) for item in items):
        raise ProtocolError(f"{where}: each BYTES element must be a base64 string.")
    decode_image = image_decoder(service, card)
    images = [decode_image(item, f"{where} element {i}") for i, item in enumerate(items)]
    return np.stack(images)


def _v2_numbers(
    service: InferenceService,
    card: ModelCard,
    tensor: RequestInput,
    where: str,
    raw: bytes | None,
) -> np.ndarray:
    expected = dims(card.input.shape)
    if len(tensor.shape) != len(expected) or tensor.shape[1:] != expected[1:]:
        raise ProtocolError(
            f"{where} has shape {tensor.shape}; model '{card.name}' expects {_v2_expects(card)}."
        )
    check_count(service, tensor.shape[0])
    if raw is not None:
        return _raw_fp32(raw, tensor.shape, where)
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


def _raw_fp32(raw: bytes, shape: list[int], where: str) -> np.ndarray:
    if len(raw) != 4 * math.prod(shape):
        raise ProtocolError(
            f"{where} has {len(raw)} bytes of binary data; FP32 with shape {shape} takes "
            f"{4 * math.prod(shape)}."
        )
    # Raw bytes are used as sent, NaN and infinity included, as Triton does: its perf_analyzer
    # sends random bytes by default, and an image's 784 random floats always hold some.
    return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)


def _v2_batch(
    service: InferenceService,
    card: ModelCard,
    inputs: list[RequestInput],
    raw_parts: list[bytes | None],
) -> np.ndarray:
    if len(inputs) != 1 or inputs[0].name != card.input.name:
        raise ProtocolError(
            f"Model '{card.name}' takes one input, '{card.input.name}' ({_v2_expects(card)}); "
            f"got {', '.join(repr(tensor.name) for tensor in inputs)}."
        )
    tensor, raw = inputs[0], raw_parts[0]
    where = f"Input '{tensor.name}'"
    if tensor.datatype == "BYTES":
        return _v2_images(service, card, tensor, where, raw)
    if tensor.datatype != "FP32":
        raise ProtocolError(
            f"{where} has datatype {tensor.datatype}; model '{card.name}' expects "
            f"{_v2_expects(card)}."
        )
    return _v2_numbers(service, card, tensor, where, raw)


def _binary_outputs(request: InferenceRequest, names: list[str]) -> set[str]:
    """The outputs to answer in the binary section: each output's own `binary_data`, else the
    request's `binary_data_output` (what tritonclient sends when it names no outputs)."""
    default = bool((request.parameters or {}).get("binary_data_output", False))
    asked = {
        output.name: (output.parameters or {}).get("binary_data")
        for output in request.outputs or []
    }
    return {name for name in names if (default if asked.get(name) is None else bool(asked[name]))}


async def v2_outputs(
    service: InferenceService,
    runtime: ModelRuntime,
    request: InferenceRequest,
    binary: bytes = b"",
) -> dict[str, np.ndarray]:
    """The outputs asked for (the prediction when none are), by name in the order asked. The
    prediction comes from serving_default (the batched path); layer outputs asked for by trace
    key from the trace signature. `binary` is the section holding the inputs that have
    parameters.binary_data_size."""
    card = runtime.loaded_card
    names = [output.name for output in request.outputs or []] or [card.output.name]
    shapes = output_shapes(card)
    unknown = [name for name in names if name not in shapes]
    if unknown:
        raise ProtocolError(
            f"Model '{card.name}' has no output '{unknown[0]}'. Outputs: '{card.output.name}', "
            f"and each layer's by trace key: {', '.join(list(shapes)[1:])}."
        )
    counts = {
        output.name: class_count(card, output.name, output.parameters)
        for output in request.outputs or []
    }
    parts = binary_parts(request, binary)
    if card.input.kind == "image":
        batch = await service.image_work(_v2_batch, service, card, request.inputs, parts)
    else:
        batch = _v2_batch(service, card, request.inputs, parts)
    refuse_large_answer(service, card, names, len(batch))
    results: dict[str, np.ndarray] = {}
    if card.output.name in names:
        results[card.output.name] = await service.predict(runtime, batch)
    if any(name != card.output.name for name in names):
        results.update(await service.call_signature(runtime, TRACE_SIGNATURE, batch))
    return {
        name: classify(card, results[name], counts[name])
        if counts.get(name)
        else np.ascontiguousarray(results[name], dtype="<f4")
        for name in names
    }


async def v2_infer(
    service: InferenceService,
    runtime: ModelRuntime,
    request: InferenceRequest,
    binary: bytes = b"",
) -> tuple[InferenceResponse, bytes | None]:
    """The answer as JSON, and its binary section (None when every output is in the JSON)."""
    results = await v2_outputs(service, runtime, request, binary)
    in_binary = _binary_outputs(request, list(results))
    section: list[bytes] = []
    outputs = []
    for name, values in results.items():
        output = ResponseOutput(name=name, shape=list(values.shape), datatype=datatype(values))
        if name in in_binary:
            section.append(wire_bytes(values))
            output.parameters = {"binary_data_size": len(section[-1])}
        elif values.dtype == object:
            output.data = [item.decode() for item in values.reshape(-1)]
        else:
            output.data = values.reshape(-1).tolist()
        outputs.append(output)
    answer = InferenceResponse(
        model_name=runtime.name, model_version=str(runtime.version), id=request.id, outputs=outputs
    )
    return answer, (b"".join(section) if in_binary else None)
