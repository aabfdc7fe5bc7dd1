"""TensorFlow Serving gRPC (`tensorflow.serving.PredictionService` and `ModelService`), on the
stubs `tensorflow-serving-api` ships, so a client using them and `tf.make_tensor_proto` works
unchanged.

Predict answers either signature, Classify and Regress the prediction; their protos are read
into the model's batch and its outputs written back in `tfserving_codec`. Metadata and status
are the REST route's answers, parsed into the protos (TF Serving's REST API prints exactly these
protos as JSON).
"""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format, wrappers_pb2
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from app.artifact.card import SERVING_SIGNATURE, SIGNATURES, ModelCard
from app.core.errors import ProtocolError, Unimplemented
from app.dataplane.service import InferenceService
from app.grpc import tfserving_codec as codec
from app.grpc.calls import GuardedServicer
from app.protocols import tensors
from app.protocols import tfserving as protocol
from app.runtime.model import ModelRuntime
from app.runtime.registry import DEFAULT, Asked

PROTOCOL = "tfserving"
SIGNATURE_DEF = "signature_def"


def _asked(spec: model_pb2.ModelSpec) -> Asked:
    """The version or the version label a model spec asks for (neither: the default)."""
    if spec.WhichOneof("version_choice") == "version_label":
        return Asked(label=spec.version_label)
    return Asked(version=spec.version.value) if spec.HasField("version") else DEFAULT


def _runtime(
    service: InferenceService, spec: model_pb2.ModelSpec, split: bool = True
) -> ModelRuntime:
    """The runtime a call is answered with; with `split`, a spec naming neither version nor
    label goes through the model's canary split (metadata calls describe the default)."""
    return service.registry.resolve(spec.name, _asked(spec), split=split)


def _answered_spec(runtime: ModelRuntime, signature: str = "") -> model_pb2.ModelSpec:
    return model_pb2.ModelSpec(
        name=runtime.name,
        version=wrappers_pb2.Int64Value(value=runtime.version),
        signature_name=signature,
    )


def _predict_batch(
    service: InferenceService, card: ModelCard, proto: tensor_pb2.TensorProto
) -> np.ndarray:
    """The model's batch from Predict's input tensor: image files or numbers, by its dtype."""
    where = f"input '{card.input.name}'"
    dtype = codec.dtype_name(proto)
    if dtype == "DT_STRING":
        return codec.image_batch(service, card, proto, where)
    if dtype != "DT_FLOAT":
        raise ProtocolError(
            f"{where} has dtype {dtype}; model '{card.name}' takes {codec.expects(card)}."
        )
    return codec.float_batch(service, card, proto, where)


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
                    f"input, '{card.input.name}' ({codec.expects(card)})."
                )
            given = request.inputs[card.input.name]
            if card.input.kind == "image":
                batch = await self.service.inputs.image_work(
                    _predict_batch, self.service, card, given
                )
            else:
                batch = _predict_batch(self.service, card, given)
            names = protocol.output_names(card, signature, list(request.output_filter))
            tensors.refuse_large_answer(self.service, card, names, len(batch))
            outputs = await protocol.signature_outputs(
                self.service, runtime, signature, batch, names
            )
            response = predict_pb2.PredictResponse(model_spec=_answered_spec(runtime, signature))
            for name in names:
                values = outputs[name]
                tensor = (
                    codec.string_tensor(values)
                    if values.dtype == object
                    else codec.float_tensor(values)
                )
                response.outputs[name].CopyFrom(tensor)
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
            batch = codec.example_batch(self.service, card, request.input)
            probabilities = await self.service.predictor.predict(runtime, batch)
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
            batch = codec.example_batch(self.service, card, request.input)
            values = await self.service.predictor.predict(runtime, batch)
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
            asked = _asked(spec)
            registry = self.service.registry
            if asked == DEFAULT:
                runtimes = registry.versions(spec.name)
            else:
                runtimes = [registry.resolve(spec.name, asked, ready=False)]
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
