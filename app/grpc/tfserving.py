"""TensorFlow Serving gRPC (`tensorflow.serving.PredictionService` and `ModelService`), on the
stubs `tensorflow-serving-api` ships, so a client using them and `tf.make_tensor_proto` works
unchanged.

Predict takes DT_FLOAT tensors, and for an image model DT_STRING tensors of encoded image files
(one per row), decoded as the typed endpoints decode uploads: our extension, as `{"b64": ...}`
is over REST, since TF Serving would hand the model the strings. Classify and Regress take
tf.Examples: one feature per card feature for a tabular model, or the input's name holding all
of a row's values (a float_list), or for an image model one encoded file (a bytes_list).
Metadata and status are the REST route's answers, parsed into the protos (TF Serving's REST
API prints exactly these protos as JSON).
"""

from __future__ import annotations

import math
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format, wrappers_pb2
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    input_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from app.artifact.card import SERVING_SIGNATURE, SIGNATURES, ModelCard
from app.core.errors import ProtocolError, Unimplemented
from app.dataplane.service import InferenceService
from app.grpc.calls import GuardedServicer
from app.protocols import tensors
from app.protocols import tfserving as protocol
from app.runtime.model import ModelRuntime

PROTOCOL = "tfserving"
SIGNATURE_DEF = "signature_def"


def _asked(spec: model_pb2.ModelSpec) -> tuple[int | None, str | None]:
    """The version or the version label a model spec asks for; (None, None) for the default."""
    if spec.WhichOneof("version_choice") == "version_label":
        return None, spec.version_label
    return (spec.version.value if spec.HasField("version") else None), None


def _runtime(
    service: InferenceService, spec: model_pb2.ModelSpec, split: bool = True
) -> ModelRuntime:
    """The runtime a call is answered with; with `split`, a spec naming neither version nor
    label goes through the model's canary split (metadata calls describe the default)."""
    registry = service.registry
    return (
        registry.serve(spec.name, *_asked(spec))
        if split
        else registry.get(spec.name, *_asked(spec))
    )


def _answered_spec(runtime: ModelRuntime, signature: str = "") -> model_pb2.ModelSpec:
    return model_pb2.ModelSpec(
        name=runtime.name,
        version=wrappers_pb2.Int64Value(value=runtime.version),
        signature_name=signature,
    )


def _expects(card: ModelCard) -> str:
    expected = f"DT_FLOAT with shape {tensors.dims(card.input.shape)}"
    if card.input.kind == "image":
        expected += " or DT_STRING with shape [-1] (one encoded image file per row)"
    return expected


def _as_array(proto: tensor_pb2.TensorProto, where: str) -> np.ndarray:
    try:
        array: np.ndarray = tf.make_ndarray(proto)
    except (ValueError, TypeError) as error:
        raise ProtocolError(f"{where} is not a well-formed TensorProto: {error}") from None
    return array


def _images(
    service: InferenceService, card: ModelCard, files: list[bytes], where: str
) -> np.ndarray:
    tensors.check_count(service, len(files))
    return np.stack(
        [tensors.image_file(service, card, data, f"{where}[{i}]") for i, data in enumerate(files)]
    )


def _dtype_name(proto: tensor_pb2.TensorProto) -> str:
    if proto.dtype in types_pb2.DataType.values():
        return str(types_pb2.DataType.Name(proto.dtype))
    return f"{proto.dtype} (not a DataType)"


def _predict_batch(
    service: InferenceService, card: ModelCard, proto: tensor_pb2.TensorProto
) -> np.ndarray:
    """The model's batch from the input tensor. Its shape and count are checked from the proto
    before any values are read: tf.make_ndarray fills a tensor out to its declared shape, so a
    few bytes could otherwise ask for gigabytes."""
    where = f"input '{card.input.name}'"
    dtype = _dtype_name(proto)
    shape = [dim.size for dim in proto.tensor_shape.dim]
    if dtype == "DT_STRING":
        if len(shape) not in (1, 2) or shape[1:] not in ([], [1]):
            raise ProtocolError(
                f"{where} is DT_STRING with shape {shape}; model '{card.name}' takes "
                f"{_expects(card)}."
            )
        tensors.check_count(service, shape[0])
        files = list(proto.string_val)
        if len(files) != shape[0]:
            raise ProtocolError(
                f"{where} has shape {shape} but {len(files)} values in string_val; send one "
                "image file per row."
            )
        return _images(service, card, files, where)
    if dtype != "DT_FLOAT":
        raise ProtocolError(
            f"{where} has dtype {dtype}; model '{card.name}' takes {_expects(card)}."
        )
    expected = tensors.dims(card.input.shape)
    if len(shape) != len(expected) or shape[1:] != expected[1:]:
        raise ProtocolError(
            f"{where} has shape {shape}; model '{card.name}' takes {_expects(card)} (the first "
            "dimension is the batch)."
        )
    tensors.check_count(service, shape[0])
    batch = _as_array(proto, where)
    if not np.isfinite(batch).all():
        raise ProtocolError(f"{where} holds a value that is not a finite float32 number.")
    return batch


def _float_tensor(values: np.ndarray) -> tensor_pb2.TensorProto:
    """An output as TF Serving answers one: DT_FLOAT with its values in float_val (which
    tf.make_ndarray reads as it reads tensor_content, and grpcurl prints as numbers)."""
    proto = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in values.shape]
        ),
    )
    proto.float_val.extend(values.reshape(-1).tolist())
    return proto


def _feature_values(feature: example_pb2.Feature, where: str) -> list[float]:
    kind = feature.WhichOneof("kind")
    if kind not in ("float_list", "int64_list"):
        raise ProtocolError(f"{where} must be a float_list or int64_list; it is {kind}.")
    return list(getattr(feature, kind).value)


def _example_row(
    service: InferenceService, card: ModelCard, features: dict[str, example_pb2.Feature], where: str
) -> np.ndarray:
    per_row = tensors.dims(card.input.shape)[1:]
    named = [feature.name for feature in card.input.features or []]
    if set(features) == {card.input.name}:
        feature = features[card.input.name]
        if feature.WhichOneof("kind") == "bytes_list" and card.input.kind == "image":
            files = list(feature.bytes_list.value)
            if len(files) != 1:
                raise ProtocolError(
                    f"{where} holds {len(files)} image files; send one per example."
                )
            return tensors.image_file(service, card, files[0], where)
        values = _feature_values(feature, f"{where} feature '{card.input.name}'")
        if len(values) != math.prod(per_row):
            raise ProtocolError(
                f"{where} feature '{card.input.name}' has {len(values)} values; model "
                f"'{card.name}' takes {math.prod(per_row)} per example."
            )
        row = np.asarray(values, dtype=np.float32).reshape(per_row)
    elif named and set(features) == set(named):
        row = np.empty(len(named), dtype=np.float32)
        for index, name in enumerate(named):
            values = _feature_values(features[name], f"{where} feature '{name}'")
            if len(values) != 1:
                raise ProtocolError(f"{where} feature '{name}' has {len(values)} values; one.")
            row[index] = values[0]
    else:
        takes = f"'{card.input.name}'" + (f", or each of {', '.join(named)}" if named else "")
        raise ProtocolError(
            f"{where} has the features {sorted(features)}; model '{card.name}' takes {takes}."
        )
    if not np.isfinite(row).all():
        raise ProtocolError(f"{where} holds a value that is not a finite float32 number.")
    return row


def _example_batch(
    service: InferenceService, card: ModelCard, given: input_pb2.Input
) -> np.ndarray:
    kind = given.WhichOneof("kind")
    if kind is None:
        raise ProtocolError("The request's input holds no examples.")
    listed = getattr(given, kind)
    context = dict(listed.context.features.feature) if kind == "example_list_with_context" else {}
    examples = list(listed.examples)
    tensors.check_count(service, len(examples))
    rows = [
        _example_row(
            service, card, {**context, **example.features.feature}, f"input.examples[{index}]"
        )
        for index, example in enumerate(examples)
    ]
    return np.stack(rows)


class PredictionServicer(GuardedServicer, prediction_service_pb2_grpc.PredictionServiceServicer):  # type: ignore[misc]
    protocol = PROTOCOL

    async def Predict(
        self, request: predict_pb2.PredictRequest, context: grpc.aio.ServicerContext
    ) -> predict_pb2.PredictResponse:
        async def answer() -> predict_pb2.PredictResponse:
            runtime = _runtime(self.service, request.model_spec)
            card = runtime.loaded_card
            signature = request.model_spec.signature_name or SERVING_SIGNATURE
            if signature not in SIGNATURES:
                raise ProtocolError(
                    f"Serving signature name: '{signature}' not found in signature def; model "
                    f"'{card.name}' has 'serving_default' and 'trace'."
                )
            if set(request.inputs) != {card.input.name}:
                raise ProtocolError(
                    f"The inputs are {sorted(request.inputs)}; model '{card.name}' has one "
                    f"input, '{card.input.name}' ({_expects(card)})."
                )
            given = request.inputs[card.input.name]
            if card.input.kind == "image":
                batch = await self.service.image_work(_predict_batch, self.service, card, given)
            else:
                batch = _predict_batch(self.service, card, given)
            if signature == SERVING_SIGNATURE:
                names = [card.output.name]
            else:
                names = [layer.trace_key for layer in card.layers]
            unknown = [name for name in request.output_filter if name not in names]
            if unknown:
                raise ProtocolError(
                    f"output tensor alias not found in signature: {unknown[0]}. Outputs of "
                    f"'{signature}': {', '.join(names)}."
                )
            names = list(request.output_filter) or names
            tensors.refuse_large_answer(self.service, card, names, len(batch))
            outputs = await self.service.call_signature(runtime, signature, batch)
            response = predict_pb2.PredictResponse(model_spec=_answered_spec(runtime, signature))
            for name in names:
                response.outputs[name].CopyFrom(_float_tensor(outputs[name]))
            return response

        return await self.guard.run(
            PROTOCOL, "Predict", context, answer, model=request.model_spec.name, infer=True
        )

    async def GetModelMetadata(
        self,
        request: get_model_metadata_pb2.GetModelMetadataRequest,
        context: grpc.aio.ServicerContext,
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        async def answer() -> get_model_metadata_pb2.GetModelMetadataResponse:
            fields = list(request.metadata_field)
            if not fields:
                raise ProtocolError("GetModelMetadataRequest must name a metadata_field.")
            unsupported = [field for field in fields if field != SIGNATURE_DEF]
            if unsupported:
                raise ProtocolError(
                    f"Metadata field {unsupported[0]} is not supported; only '{SIGNATURE_DEF}'."
                )
            runtime = _runtime(self.service, request.model_spec, split=False)
            signatures = protocol.tf_model_metadata(runtime).metadata.signature_def
            signature_map = json_format.ParseDict(
                signatures.model_dump(), get_model_metadata_pb2.SignatureDefMap()
            )
            response = get_model_metadata_pb2.GetModelMetadataResponse(
                model_spec=_answered_spec(runtime)
            )
            response.metadata[SIGNATURE_DEF].Pack(signature_map)
            return response

        return await self.guard.run(
            PROTOCOL, "GetModelMetadata", context, answer, model=request.model_spec.name
        )

    async def Classify(
        self, request: classification_pb2.ClassificationRequest, context: grpc.aio.ServicerContext
    ) -> classification_pb2.ClassificationResponse:
        async def answer() -> classification_pb2.ClassificationResponse:
            runtime = _runtime(self.service, request.model_spec)
            card = runtime.loaded_card
            if card.task != "classification" or not card.output.labels:
                raise Unimplemented(
                    f"Classify needs a classifier; model '{card.name}' is a {card.task} model: "
                    "use Regress or Predict."
                )
            batch = _example_batch(self.service, card, request.input)
            probabilities = await self.service.predict(runtime, batch)
            classes = classification_pb2.Class
            return classification_pb2.ClassificationResponse(
                model_spec=_answered_spec(runtime, SERVING_SIGNATURE),
                result=classification_pb2.ClassificationResult(
                    classifications=[
                        classification_pb2.Classifications(
                            classes=[
                                classes(label=label, score=float(score))
                                for label, score in zip(card.output.labels, row, strict=True)
                            ]
                        )
                        for row in probabilities
                    ]
                ),
            )

        return await self.guard.run(
            PROTOCOL, "Classify", context, answer, model=request.model_spec.name, infer=True
        )

    async def Regress(
        self, request: regression_pb2.RegressionRequest, context: grpc.aio.ServicerContext
    ) -> regression_pb2.RegressionResponse:
        async def answer() -> regression_pb2.RegressionResponse:
            runtime = _runtime(self.service, request.model_spec)
            card = runtime.loaded_card
            if card.task != "regression":
                raise Unimplemented(
                    f"Regress needs a regressor; model '{card.name}' is a {card.task} model: "
                    "use Classify or Predict."
                )
            batch = _example_batch(self.service, card, request.input)
            values = await self.service.predict(runtime, batch)
            return regression_pb2.RegressionResponse(
                model_spec=_answered_spec(runtime, SERVING_SIGNATURE),
                result=regression_pb2.RegressionResult(
                    regressions=[
                        regression_pb2.Regression(value=float(row.reshape(-1)[0])) for row in values
                    ]
                ),
            )

        return await self.guard.run(
            PROTOCOL, "Regress", context, answer, model=request.model_spec.name, infer=True
        )

    async def MultiInference(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        message = "MultiInference is not supported; send Classify, Regress or Predict calls."
        return await self.refuse("MultiInference", message, context)


class ModelServicer(GuardedServicer, model_service_pb2_grpc.ModelServiceServicer):  # type: ignore[misc]
    protocol = PROTOCOL

    async def GetModelStatus(
        self, request: get_model_status_pb2.GetModelStatusRequest, context: grpc.aio.ServicerContext
    ) -> get_model_status_pb2.GetModelStatusResponse:
        async def answer() -> get_model_status_pb2.GetModelStatusResponse:
            spec = request.model_spec
            version, label = _asked(spec)
            registry = self.service.registry
            if version is None and label is None:
                runtimes = registry.versions(spec.name)
            else:
                runtimes = [registry.find(spec.name, version, label)]
            status = protocol.tf_model_status(runtimes)
            return json_format.ParseDict(
                status.model_dump(), get_model_status_pb2.GetModelStatusResponse()
            )

        return await self.guard.run(
            PROTOCOL, "GetModelStatus", context, answer, model=request.model_spec.name
        )

    async def HandleReloadConfigRequest(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> Any:
        async def answer() -> Any:
            raise Unimplemented(
                "HandleReloadConfigRequest is not supported: models are reloaded from the model "
                "folder (watched, or POST /admin/reload over HTTP)."
            )

        return await self.guard.run(PROTOCOL, "HandleReloadConfigRequest", context, answer)
