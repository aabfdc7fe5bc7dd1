"""TensorFlow Serving's REST API: model status and metadata, and predict (row and
columnar formats, both signatures)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from app.artifact.card import SERVING_SIGNATURE, SIGNATURES, TRACE_SIGNATURE, ModelCard
from app.core.errors import ProtocolError
from app.dataplane import explain
from app.dataplane.service import InferenceService
from app.protocols.tensors import (
    FAMILIARITY_OUTPUT,
    ImageDecoder,
    as_float32,
    check_count,
    dims,
    familiarity_tensor,
    image_decoder,
    output_shape,
    refuse_large_answer,
)
from app.protocols.tfserving_bodies import (
    KServeExplainRequest,
    KServeExplainResponse,
    TFDim,
    TFMetadata,
    TFModelMetadata,
    TFModelSpec,
    TFModelStatus,
    TFPredictRequest,
    TFPredictResponse,
    TFRestModelStatus,
    TFSignatureDef,
    TFSignatureDefMap,
    TFStatus,
    TFTensorInfo,
    TFTensorShape,
    TFVersionStatus,
)
from app.runtime.model import ModelRuntime, ModelState

# KServe v1 explanations cost a few hundred model rows each: a request takes few.
EXPLAIN_MAX_INSTANCES = 16

# -- handling ----------------------------------------------------------------------------------
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


def tf_rest_model_status(name: str, runtimes: list[ModelRuntime]) -> TFRestModelStatus:
    """`tf_model_status` with KServe v1's `name` and `ready` (true when a version serves)."""
    return TFRestModelStatus(
        model_version_status=tf_model_status(runtimes).model_version_status,
        name=name,
        ready=any(runtime.ready for runtime in runtimes),
    )


def _tensor_info(shape: list[int | None], graph_name: str) -> TFTensorInfo:
    return TFTensorInfo(
        tensor_shape=TFTensorShape(dim=[TFDim(size=str(size)) for size in dims(shape)]),
        name=graph_name,
    )


def tf_model_metadata(runtime: ModelRuntime) -> TFModelMetadata:
    """Both signatures, from the card. The graph tensor names are those Keras' ExportArchive
    gives the two endpoints (the tests compare all of this with saved_model.pb)."""
    card = runtime.loaded_card
    name = card.input.name
    serving = TFSignatureDef(
        inputs={name: _tensor_info(card.input.shape, f"serving_default_{name}:0")},
        outputs={card.output.name: _tensor_info(output_shape(card), "StatefulPartitionedCall:0")},
    )
    if card.familiarity is not None:  # computed by the service, not a tensor of the graph
        serving.outputs[FAMILIARITY_OUTPUT] = _tensor_info([None], FAMILIARITY_OUTPUT)
        serving.outputs[FAMILIARITY_OUTPUT].dtype = "DT_STRING"
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
    return as_float32(value, where)


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


def _tf_row_batch(card: ModelCard, instances: list[Any], decode_image: ImageDecoder) -> np.ndarray:
    per_instance = dims(card.input.shape)[1:]
    rows = []
    for index, instance in enumerate(instances):
        where = f"instances[{index}]"
        row = _tf_tensor(_unwrap_named(card, instance, where), decode_image, where)
        if list(row.shape) != per_instance:
            raise ProtocolError(
                f"{where} has shape {list(row.shape)}; input '{card.input.name}' of model "
                f"'{card.name}' takes {per_instance} per instance (DT_FLOAT, "
                f"{dims(card.input.shape)} with the batch)."
            )
        rows.append(row)
    return np.stack(rows)


def _tf_column_batch(card: ModelCard, inputs: Any, decode_image: ImageDecoder) -> np.ndarray:
    where = f"input '{card.input.name}'"
    batch = _tf_tensor(_unwrap_named(card, inputs, "inputs"), decode_image, where)
    expected = dims(card.input.shape)
    if batch.ndim != len(expected) or list(batch.shape[1:]) != expected[1:]:
        raise ProtocolError(
            f"{where} has shape {list(batch.shape)}; model '{card.name}' takes {expected} "
            "(DT_FLOAT, the first dimension is the batch)."
        )
    return batch


def output_names(card: ModelCard, signature: str, output_filter: list[str]) -> list[str]:
    """The outputs a Predict answers: those named in `output_filter`, else the signature's
    own; serving_default's `familiarity` only when named."""
    if signature == SERVING_SIGNATURE:
        names = [card.output.name]
        known = names + ([FAMILIARITY_OUTPUT] if card.familiarity is not None else [])
    else:
        names = known = [layer.trace_key for layer in card.layers]
    unknown = [name for name in output_filter if name not in known]
    if unknown:
        raise ProtocolError(
            f"output tensor alias not found in signature: {unknown[0]}. Outputs of "
            f"'{signature}': {', '.join(known)}."
        )
    return list(output_filter) or names


async def signature_outputs(
    service: InferenceService,
    runtime: ModelRuntime,
    signature: str,
    batch: np.ndarray,
    names: list[str],
) -> dict[str, np.ndarray]:
    """The named outputs of a signature for a batch, `familiarity` as `familiarity_tensor`."""
    if FAMILIARITY_OUTPUT not in names:
        outputs = await service.predictor.call_signature(runtime, signature, batch)
        return {name: outputs[name] for name in names}
    values, familiar = await service.predictor.predict_familiarity(runtime, batch)
    found = {
        runtime.loaded_card.output.name: values,
        FAMILIARITY_OUTPUT: familiarity_tensor(familiar),
    }
    return {name: found[name] for name in names}


async def tf_predict(
    service: InferenceService, runtime: ModelRuntime, request: TFPredictRequest
) -> TFPredictResponse:
    card = runtime.loaded_card
    signature = request.signature_name or SERVING_SIGNATURE
    if signature not in SIGNATURES:
        raise ProtocolError(
            f"Serving signature name: '{signature}' not found in signature def; model "
            f"'{card.name}' has 'serving_default' and 'trace'."
        )
    instances = request.instances
    row_format = instances is not None
    if row_format == (request.inputs is not None):
        raise ProtocolError(
            "Send exactly one of 'instances' (row format) and 'inputs' (columnar format)."
        )
    decode_image = image_decoder(service, card)
    build: Callable[[ModelCard, Any, ImageDecoder], np.ndarray]
    if instances is not None:  # row_format: counted before any image is decoded
        check_count(service, len(instances))
        build, given = _tf_row_batch, instances
    else:
        build, given = _tf_column_batch, request.inputs
    if card.input.kind == "image":
        batch = await service.inputs.image_work(build, card, given, decode_image)
    else:
        batch = build(card, given, decode_image)
    if instances is None:  # columnar: the count is known once the batch is built
        check_count(service, len(batch))
    names = output_names(card, signature, request.output_filter or [])
    refuse_large_answer(service, card, names, len(batch))
    outputs = await signature_outputs(service, runtime, signature, batch, names)
    outputs = {
        name: np.array([row.decode() for row in values]) if name == FAMILIARITY_OUTPUT else values
        for name, values in outputs.items()
    }
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


async def kserve_explain(
    service: InferenceService, runtime: ModelRuntime, request: KServeExplainRequest
) -> KServeExplainResponse:
    """KServe v1's `:explain`: integrated gradients of each instance's predicted class (or
    value), as the typed /explain route answers them."""
    card = runtime.loaded_card
    if len(request.instances) > EXPLAIN_MAX_INSTANCES:
        raise ProtocolError(
            f"The request holds {len(request.instances)} instances; :explain takes at most "
            f"{EXPLAIN_MAX_INSTANCES}."
        )
    decode_image = image_decoder(service, card)
    if card.input.kind == "image":
        batch = await service.inputs.image_work(
            _tf_row_batch, card, request.instances, decode_image
        )
    else:
        batch = _tf_row_batch(card, request.instances, decode_image)
    options = explain.ExplainOptions()
    return KServeExplainResponse(
        explanations=await service.explainer.explain(runtime, batch, options)
    )
