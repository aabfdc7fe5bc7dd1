"""TensorFlow Serving REST and Open Inference Protocol v2: their tensors in, their answers out.

Decodes a request's tensors into the float32 batch a model takes, checks dtype and shape against
the model card, runs the signature through the service, and builds each protocol's answer. The
routes in `app.http.routes.tfserving` and `app.http.routes.v2` only translate HTTP to these
calls; nothing here knows HTTP.

Both protocols carry raw tensors, so numbers are used as sent (no range checks, unlike the typed
endpoints). An image model also takes encoded image files (TF Serving `{"b64": ...}` values, v2
BYTES elements in base64), decoded and preprocessed exactly as the typed endpoints do.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from app.artifact.card import SERVING_SIGNATURE, SIGNATURES, TRACE_SIGNATURE, ModelCard
from app.core.errors import (
    BadInput,
    ModelNotFound,
    PayloadTooLarge,
    ProtocolError,
    UnsupportedMediaType,
)
from app.dataplane.service import InferenceService
from app.runtime.model import ModelRuntime, ModelState

SERVER_NAME = "glassbox"
# Open Inference's name for the framework; Triton uses the same for a TensorFlow SavedModel.
PLATFORM = "tensorflow_savedmodel"

# A decoder for one encoded image: (base64 text, where it came from) -> the model's input for it.
ImageDecoder = Callable[[str, str], np.ndarray]


# -- TensorFlow Serving REST: bodies -----------------------------------------------------------


class TFStatus(BaseModel):
    error_code: str = Field(description="'OK', or the canonical error code of a failed load.")
    error_message: str = ""


class TFVersionStatus(BaseModel):
    version: str
    state: Literal["UNKNOWN", "START", "LOADING", "AVAILABLE", "UNLOADING", "END"]
    status: TFStatus


class TFModelStatus(BaseModel):
    """The state of each version, as TF Serving's GetModelStatus prints it."""

    model_version_status: list[TFVersionStatus]


class TFDim(BaseModel):
    size: str = Field(
        description="The size as TF Serving prints an int64: a string; '-1' where it varies."
    )
    name: str = ""


class TFTensorShape(BaseModel):
    dim: list[TFDim]
    unknown_rank: bool = False


class TFTensorInfo(BaseModel):
    dtype: Literal["DT_FLOAT"] = "DT_FLOAT"
    tensor_shape: TFTensorShape
    name: str = Field(description="The tensor's name in the SavedModel's graph.")


class TFSignatureDef(BaseModel):
    inputs: dict[str, TFTensorInfo]
    outputs: dict[str, TFTensorInfo]
    method_name: str = "tensorflow/serving/predict"


class TFSignatureDefMap(BaseModel):
    signature_def: dict[str, TFSignatureDef]


class TFMetadata(BaseModel):
    signature_def: TFSignatureDefMap


class TFModelSpec(BaseModel):
    name: str
    signature_name: str = ""
    version: str


class TFModelMetadata(BaseModel):
    """A model version's signatures, as TF Serving's GetModelMetadata prints them."""

    model_spec: TFModelSpec
    metadata: TFMetadata


class TFPredictRequest(BaseModel):
    """A TF Serving predict request: exactly one of `instances` (row format) and `inputs`
    (columnar format). Models here have one input, so a value may be given bare or keyed by
    the input's name."""

    signature_name: str = Field(
        SERVING_SIGNATURE,
        description="'serving_default' (the prediction) or 'trace' (every layer's output).",
    )
    instances: list[Any] | None = Field(
        None, description='Row format: one value, or {"<input>": value}, per instance.'
    )
    inputs: Any = Field(
        None, description='Columnar format: the whole batch, bare or as {"<input>": batch}.'
    )


class TFPredictResponse(BaseModel):
    """Row format answers `predictions` (one entry per instance), columnar format `outputs`.
    One output comes bare; several (the trace signature) keyed by output name."""

    predictions: list[Any] | None = None
    outputs: Any = None


# -- Open Inference Protocol v2: bodies -------------------------------------------------------

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


# -- shared ------------------------------------------------------------------------------------


def parse_version(name: str, text: str) -> int:
    """A version from a URL path; anything but a number names no version (404)."""
    if not (text.isascii() and text.isdigit()):
        raise ModelNotFound(f"Model '{name}' has no version '{text}'; versions are numbers.")
    return int(text)


def _dims(shape: list[int | None]) -> list[int]:
    return [-1 if size is None else size for size in shape]


def _output_shape(card: ModelCard) -> list[int | None]:
    """The serving_default output is the last layer's output."""
    return card.layers[-1].output_shape


def _output_shapes(card: ModelCard) -> dict[str, list[int | None]]:
    """Every output a request may ask for: the prediction, then each layer by its trace key."""
    return {
        card.output.name: _output_shape(card),
        **{layer.trace_key: layer.output_shape for layer in card.layers},
    }


def _as_float32(value: Any, where: str) -> np.ndarray:
    """Numbers (nested lists of them, or one) as float32; anything else is a bad request."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        raise ProtocolError(
            f"{where} is not a regular array: nested lists must all have the same length."
        ) from None
    if array.dtype.kind not in "iuf":
        raise ProtocolError(f"{where} must hold only numbers (float32).")
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise ProtocolError(f"{where} holds a value that is not a finite float32 number.")
    return array


def _image_decoder(service: InferenceService, card: ModelCard) -> ImageDecoder:
    """Decodes one base64 image file into the model's input, as the typed endpoints do."""

    def decode(encoded: str, where: str) -> np.ndarray:
        if card.input.kind != "image":
            raise ProtocolError(
                f"{where} is an encoded image, but model '{card.name}' takes numbers: input "
                f"'{card.input.name}' is float32 with shape {_dims(card.input.shape)}."
            )
        limit = service.settings.max_image_bytes
        if len(encoded) > limit * 4 // 3 + 4:
            raise PayloadTooLarge(f"{where}: the image is over the limit of {limit} bytes.")
        try:
            # Whitespace is dropped first: `base64` on the command line wraps its output.
            data = base64.b64decode("".join(encoded.split()), validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError(f"{where} is not valid base64.") from None
        try:
            return service.image_array(card, data)[0]
        except (BadInput, UnsupportedMediaType) as error:
            raise ProtocolError(f"{where}: {error.message}") from None

    return decode


def _check_count(service: InferenceService, count: int) -> None:
    """Checked before images are decoded where the count is known up front."""
    if count < 1:
        raise ProtocolError("The request holds no instances.")
    if count > service.settings.max_instances:
        raise PayloadTooLarge(
            f"The request holds {count} instances; the limit is {service.settings.max_instances}."
        )


def _refuse_large_answer(
    service: InferenceService, card: ModelCard, names: list[str], rows: int
) -> None:
    """Refuse before computing an answer over the trace limit (conv feature maps are large)."""
    shapes = _output_shapes(card)
    total = rows * sum(math.prod(_dims(shapes[name])[1:]) for name in names)
    limit = service.settings.trace_max_values
    if total > limit:
        raise PayloadTooLarge(
            f"The answer would hold {total} values; the limit is {limit}. "
            "Send fewer instances or ask for fewer outputs."
        )


# -- TensorFlow Serving REST -------------------------------------------------------------------

_TF_STATES = {
    ModelState.LOADING: "LOADING",
    ModelState.READY: "AVAILABLE",
    ModelState.FAILED: "END",
}


def tf_model_status(runtimes: list[ModelRuntime]) -> TFModelStatus:
    statuses = []
    for runtime in runtimes:
        failed = runtime.state is ModelState.FAILED
        statuses.append(
            TFVersionStatus(
                version=str(runtime.version),
                state=_TF_STATES.get(runtime.state, "UNKNOWN"),
                status=TFStatus(
                    error_code="UNKNOWN" if failed else "OK",
                    error_message=(runtime.reason or "failed to load") if failed else "",
                ),
            )
        )
    return TFModelStatus(model_version_status=statuses)


def _tensor_info(shape: list[int | None], graph_name: str) -> TFTensorInfo:
    return TFTensorInfo(
        tensor_shape=TFTensorShape(dim=[TFDim(size=str(size)) for size in _dims(shape)]),
        name=graph_name,
    )


def tf_model_metadata(runtime: ModelRuntime) -> TFModelMetadata:
    """Both signatures, from the card. The graph tensor names are those Keras' ExportArchive
    gives the two endpoints (the tests compare all of this with saved_model.pb)."""
    card = runtime.card
    name = card.input.name
    serving = TFSignatureDef(
        inputs={name: _tensor_info(card.input.shape, f"serving_default_{name}:0")},
        outputs={card.output.name: _tensor_info(_output_shape(card), "StatefulPartitionedCall:0")},
    )
    # A signature's outputs are numbered in the order of their sorted keys.
    layers = sorted(card.layers, key=lambda layer: layer.trace_key)
    trace = TFSignatureDef(
        inputs={name: _tensor_info(card.input.shape, f"trace_{name}:0")},
        outputs={
            layer.trace_key: _tensor_info(layer.output_shape, f"StatefulPartitionedCall_1:{i}")
            for i, layer in enumerate(layers)
        },
    )
    return TFModelMetadata(
        model_spec=TFModelSpec(name=card.name, version=str(runtime.version)),
        metadata=TFMetadata(
            signature_def=TFSignatureDefMap(
                signature_def={SERVING_SIGNATURE: serving, TRACE_SIGNATURE: trace}
            )
        ),
    )


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and value.keys() == {"b64"}


def _first_leaf(value: Any) -> Any:
    while isinstance(value, list) and value:
        value = value[0]
    return value


def _tf_tensor(value: Any, decode_image: ImageDecoder, where: str) -> np.ndarray:
    """One TF Serving JSON value: numbers, {"b64": ...} or (nested) lists of either."""
    if _is_b64(value):
        if not isinstance(value["b64"], str):
            raise ProtocolError(f'{where}: the value of "b64" must be a string.')
        return decode_image(value["b64"], where)
    if isinstance(value, list) and _is_b64(_first_leaf(value)):
        parts = [_tf_tensor(item, decode_image, f"{where}[{i}]") for i, item in enumerate(value)]
        if len({part.shape for part in parts}) > 1:
            raise ProtocolError(f"{where} mixes values of different shapes.")
        return np.stack(parts)
    return _as_float32(value, where)


def _unwrap_named(card: ModelCard, value: Any, where: str) -> Any:
    """A value keyed by the input's name, or the bare value (the model has one input)."""
    if not isinstance(value, dict) or _is_b64(value):
        return value
    if value.keys() != {card.input.name}:
        raise ProtocolError(
            f"{where} names the input(s) {sorted(value)}; model '{card.name}' has one input, "
            f"'{card.input.name}'."
        )
    return value[card.input.name]


def _tf_row_batch(card: ModelCard, instances: list[Any], decode_image: ImageDecoder):
    per_instance = _dims(card.input.shape)[1:]
    rows = []
    for index, instance in enumerate(instances):
        where = f"instances[{index}]"
        row = _tf_tensor(_unwrap_named(card, instance, where), decode_image, where)
        if list(row.shape) != per_instance:
            raise ProtocolError(
                f"{where} has shape {list(row.shape)}; input '{card.input.name}' of model "
                f"'{card.name}' takes {per_instance} per instance (DT_FLOAT, "
                f"{_dims(card.input.shape)} with the batch)."
            )
        rows.append(row)
    return np.stack(rows)


def _tf_column_batch(card: ModelCard, inputs: Any, decode_image: ImageDecoder) -> np.ndarray:
    where = f"input '{card.input.name}'"
    batch = _tf_tensor(_unwrap_named(card, inputs, "inputs"), decode_image, where)
    expected = _dims(card.input.shape)
    if batch.ndim != len(expected) or list(batch.shape[1:]) != expected[1:]:
        raise ProtocolError(
            f"{where} has shape {list(batch.shape)}; model '{card.name}' takes {expected} "
            "(DT_FLOAT, the first dimension is the batch)."
        )
    return batch


async def tf_predict(
    service: InferenceService, runtime: ModelRuntime, request: TFPredictRequest
) -> TFPredictResponse:
    card = runtime.card
    signature = request.signature_name or SERVING_SIGNATURE
    if signature not in SIGNATURES:
        raise ProtocolError(
            f"Serving signature name: '{signature}' not found in signature def; model "
            f"'{card.name}' has 'serving_default' and 'trace'."
        )
    row_format = request.instances is not None
    if row_format == (request.inputs is not None):
        raise ProtocolError(
            "Send exactly one of 'instances' (row format) and 'inputs' (columnar format)."
        )
    decode_image = _image_decoder(service, card)
    if row_format:
        _check_count(service, len(request.instances))
        batch = _tf_row_batch(card, request.instances, decode_image)
    else:
        batch = _tf_column_batch(card, request.inputs, decode_image)
        _check_count(service, len(batch))
    if signature == SERVING_SIGNATURE:
        names = [card.output.name]
    else:
        names = [layer.trace_key for layer in card.layers]
    _refuse_large_answer(service, card, names, len(batch))
    outputs = await service.call_signature(runtime, signature, batch)
    if len(outputs) == 1:  # TF Serving leaves a lone output unnamed
        (values,) = outputs.values()
        if row_format:
            return TFPredictResponse(predictions=values.tolist())
        return TFPredictResponse(outputs=values.tolist())
    if row_format:
        return TFPredictResponse(
            predictions=[
                {name: values[row].tolist() for name, values in outputs.items()}
                for row in range(len(batch))
            ]
        )
    return TFPredictResponse(outputs={name: values.tolist() for name, values in outputs.items()})


# -- Open Inference Protocol v2 ----------------------------------------------------------------


def v2_server_metadata(version: str) -> MetadataServerResponse:
    return MetadataServerResponse(name=SERVER_NAME, version=version, extensions=[])


def v2_model_metadata(runtime: ModelRuntime, versions: list[ModelRuntime]) -> MetadataModelResponse:
    card = runtime.card
    return MetadataModelResponse(
        name=card.name,
        versions=[str(other.version) for other in versions if other.ready],
        platform=PLATFORM,
        inputs=[
            MetadataTensor(name=card.input.name, datatype="FP32", shape=_dims(card.input.shape))
        ],
        outputs=[
            MetadataTensor(name=card.output.name, datatype="FP32", shape=_dims(_output_shape(card)))
        ],
    )


def _v2_expects(card: ModelCard) -> str:
    expected = f"FP32 with shape {_dims(card.input.shape)}"
    if card.input.kind == "image":
        expected += " or BYTES with shape [-1] (one base64-encoded image file per element)"
    return expected


def _flatten(values: list[Any]):
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
    _check_count(service, tensor.shape[0])
    items = list(_flatten(tensor.data))
    if len(items) != tensor.shape[0]:
        raise ProtocolError(
            f"{where} has {len(items)} elements; its shape {tensor.shape} needs {tensor.shape[0]}."
        )
    if not all(isinstance(item, str) for item in items):
        raise ProtocolError(f"{where}: each BYTES element must be a base64 string.")
    decode_image = _image_decoder(service, card)
    images = [decode_image(item, f"{where} element {i}") for i, item in enumerate(items)]
    return np.stack(images)


def _v2_numbers(
    service: InferenceService, card: ModelCard, tensor: RequestInput, where: str
) -> np.ndarray:
    expected = _dims(card.input.shape)
    if len(tensor.shape) != len(expected) or tensor.shape[1:] != expected[1:]:
        raise ProtocolError(
            f"{where} has shape {tensor.shape}; model '{card.name}' expects {_v2_expects(card)}."
        )
    _check_count(service, tensor.shape[0])
    array = _as_float32(tensor.data, f"{where} data")
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


def _v2_batch(service: InferenceService, card: ModelCard, inputs: list[RequestInput]):
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
    card = runtime.card
    names = [output.name for output in request.outputs or []] or [card.output.name]
    shapes = _output_shapes(card)
    unknown = [name for name in names if name not in shapes]
    if unknown:
        raise ProtocolError(
            f"Model '{card.name}' has no output '{unknown[0]}'. Outputs: '{card.output.name}', "
            f"and each layer's by trace key: {', '.join(list(shapes)[1:])}."
        )
    batch = _v2_batch(service, card, request.inputs)
    _refuse_large_answer(service, card, names, len(batch))
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
