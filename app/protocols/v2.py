"""The Open Inference Protocol v2 (KServe, Triton), its calls: server and model metadata, and
infer (FP32 tensors, and BYTES images for image models; layer outputs by trace key), with the
answer as JSON and, where asked, the binary section. The bodies are in `v2_bodies`, the decoding
of an input in `v2_inputs`, the binary extension in `v2_binary`."""

from __future__ import annotations

import numpy as np

from app.artifact.card import TRACE_SIGNATURE, ModelCard
from app.core.errors import ProtocolError
from app.dataplane.service import InferenceService
from app.protocols import v2_inputs
from app.protocols.tensors import (
    FAMILIARITY_OUTPUT,
    PLATFORM,
    SERVER_NAME,
    dims,
    familiarity_tensor,
    output_shape,
    output_shapes,
    refuse_large_answer,
)
from app.protocols.triton import class_count, classify
from app.protocols.v2_binary import binary_outputs, binary_parts, wire_bytes
from app.protocols.v2_bodies import (
    InferenceRequest,
    InferenceResponse,
    MetadataModelResponse,
    MetadataServerResponse,
    MetadataTensor,
    RequestInput,
    ResponseOutput,
)
from app.runtime.model import ModelRuntime

# The binary tensor data extension (app.protocols.v2_binary), and Triton's extensions its tools
# look for by name here (app.protocols.triton): perf_analyzer reads the server's statistics only
# when "statistics" is listed; the model repository calls are `app.protocols.repository`.
EXTENSIONS = [
    "binary_tensor_data",
    "classification",
    "model_configuration",
    "model_repository",
    "statistics",
]


def v2_server_metadata(version: str) -> MetadataServerResponse:
    return MetadataServerResponse(name=SERVER_NAME, version=version, extensions=EXTENSIONS)


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
            MetadataTensor(name=card.output.name, datatype="FP32", shape=dims(output_shape(card))),
            *(
                [MetadataTensor(name=FAMILIARITY_OUTPUT, datatype="BYTES", shape=[-1])]
                if card.familiarity is not None
                else []
            ),
        ],
    )


def _v2_batch(
    service: InferenceService,
    card: ModelCard,
    inputs: list[RequestInput],
    raw_parts: list[bytes | None],
) -> np.ndarray:
    if len(inputs) != 1 or inputs[0].name != card.input.name:
        raise ProtocolError(
            f"Model '{card.name}' takes one input, '{card.input.name}' "
            f"({v2_inputs.expects(card)}); got {', '.join(repr(tensor.name) for tensor in inputs)}."
        )
    tensor, raw = inputs[0], raw_parts[0]
    where = f"Input '{tensor.name}'"
    if tensor.datatype == "BYTES":
        return v2_inputs.images(service, card, tensor, where, raw)
    if tensor.datatype != "FP32":
        raise ProtocolError(
            f"{where} has datatype {tensor.datatype}; model '{card.name}' expects "
            f"{v2_inputs.expects(card)}."
        )
    return v2_inputs.numbers(service, card, tensor, where, raw)


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
        batch = await service.inputs.image_work(_v2_batch, service, card, request.inputs, parts)
    else:
        batch = _v2_batch(service, card, request.inputs, parts)
    refuse_large_answer(service, card, names, len(batch))
    results: dict[str, np.ndarray] = {}
    if FAMILIARITY_OUTPUT in names:
        outputs, familiar = await service.predictor.predict_familiarity(runtime, batch)
        results[card.output.name] = outputs
        results[FAMILIARITY_OUTPUT] = familiarity_tensor(familiar)
    elif card.output.name in names:
        results[card.output.name] = await service.predictor.predict(runtime, batch)
    if any(name not in (card.output.name, FAMILIARITY_OUTPUT) for name in names):
        results.update(await service.predictor.call_signature(runtime, TRACE_SIGNATURE, batch))
    return {
        name: classify(card, results[name], counts[name])
        if counts.get(name)
        else results[name]
        if name == FAMILIARITY_OUTPUT
        else np.ascontiguousarray(results[name], dtype="<f4")
        for name in names
    }


def datatype(values: np.ndarray) -> str:
    """An output's datatype: a classification's strings are BYTES, the rest FP32."""
    return "BYTES" if values.dtype == object else "FP32"


async def v2_infer(
    service: InferenceService,
    runtime: ModelRuntime,
    request: InferenceRequest,
    binary: bytes = b"",
) -> tuple[InferenceResponse, bytes | None]:
    """The answer as JSON, and its binary section (None when every output is in the JSON)."""
    results = await v2_outputs(service, runtime, request, binary)
    in_binary = binary_outputs(request, list(results))
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
