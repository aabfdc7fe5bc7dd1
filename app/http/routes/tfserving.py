"""TensorFlow Serving's REST API (`/v1/models/...`), so TF Serving clients work unchanged.

Model status, model metadata and `:predict` in the row ("instances") and columnar ("inputs")
formats, as TF Serving documents them. Our one extension: for an image model a `{"b64": ...}`
value is an encoded image file, decoded and preprocessed as the typed endpoints do (TF Serving
would hand the model a DT_STRING tensor). Errors are the service's one error body, whose "error"
is the message TF Serving clients read.
"""

from typing import Annotated

from fastapi import APIRouter, Body, Request, Response

from app.core.errors import ProtocolError
from app.dataplane.service import InferenceService
from app.http.routes.deps import ServiceDep, while_connected
from app.http.routes.protocol_route import PROTOCOL_RESPONSES, ProtocolRoute
from app.http.routes.responses import MODEL_VERSION_HEADER, ModelJSON
from app.protocols import tfserving as protocol
from app.protocols.tfserving_bodies import (
    KServeExplainRequest,
    KServeExplainResponse,
    TFModelMetadata,
    TFPredictRequest,
    TFPredictResponse,
    TFRestModelStatus,
)
from app.runtime.model import ModelRuntime
from app.runtime.registry import Asked

router = APIRouter(
    prefix="/v1/models",
    tags=["TensorFlow Serving REST"],
    route_class=ProtocolRoute,
    responses=PROTOCOL_RESPONSES,
)

PREDICT_EXAMPLES = {
    "row": {
        "summary": "Row format, unnamed (iris)",
        "value": {"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]},
    },
    "row_named": {
        "summary": "Row format, named input (iris)",
        "value": {"instances": [{"features": [5.1, 3.5, 1.4, 0.2]}]},
    },
    "columnar": {
        "summary": "Columnar format (iris)",
        "value": {"inputs": {"features": [[5.1, 3.5, 1.4, 0.2]]}},
    },
    "trace": {
        "summary": "Every layer's output (iris)",
        "value": {"signature_name": "trace", "instances": [[5.1, 3.5, 1.4, 0.2]]},
    },
    "b64": {
        "summary": "An encoded image file (image models; our extension)",
        "value": {"instances": [{"b64": "<base64 of a PNG or JPEG file>"}]},
    },
}
PredictBody = Annotated[TFPredictRequest, Body(openapi_examples=PREDICT_EXAMPLES)]
PREDICT_DESCRIPTION = (
    'TF Serving\'s Predict. Row format answers {"predictions": [...]} (one per instance), '
    'columnar {"outputs": ...}; the trace signature\'s outputs are keyed by layer. For an image '
    'model a {"b64": "..."} value is an encoded image file (PNG, JPEG, GIF, BMP, WebP), decoded '
    "and preprocessed as the typed endpoints do: our extension, since TF Serving would pass "
    "the model a DT_STRING."
)


@router.get("/{name}", response_model=TFRestModelStatus, summary="Model status")
async def model_status(name: str, service: ServiceDep) -> TFRestModelStatus:
    return protocol.tf_rest_model_status(name, service.registry.versions(name))


@router.get(
    "/{name}/versions/{version}", response_model=TFRestModelStatus, summary="Model version status"
)
async def version_status(name: str, version: str, service: ServiceDep) -> TFRestModelStatus:
    runtime = service.registry.resolve(
        name, Asked.of_text(name, version, labels=False), ready=False
    )
    return protocol.tf_rest_model_status(name, [runtime])


@router.get("/{name}/metadata", response_model=TFModelMetadata, summary="Model metadata")
async def model_metadata(name: str, service: ServiceDep) -> TFModelMetadata:
    return protocol.tf_model_metadata(service.registry.resolve(name))


@router.get(
    "/{name}/versions/{version}/metadata",
    response_model=TFModelMetadata,
    summary="Model version metadata",
)
async def version_metadata(name: str, version: str, service: ServiceDep) -> TFModelMetadata:
    runtime = service.registry.resolve(name, Asked.of_text(name, version, labels=False))
    return protocol.tf_model_metadata(runtime)


@router.post(
    "/{name}:predict",
    response_model=TFPredictResponse,
    response_model_exclude_none=True,
    summary="Predict",
    description=PREDICT_DESCRIPTION,
)
async def predict(name: str, body: PredictBody, service: ServiceDep) -> Response:
    return await _predict(service, service.registry.resolve(name, split=True), body)


async def _predict(
    service: InferenceService, runtime: ModelRuntime, body: TFPredictRequest
) -> Response:
    answer = await protocol.tf_predict(service, runtime, body)
    return ModelJSON(answer, headers={MODEL_VERSION_HEADER: str(runtime.version)})


@router.post(
    "/{name}/versions/{version}:predict",
    response_model=TFPredictResponse,
    response_model_exclude_none=True,
    summary="Predict with a model version",
    description=PREDICT_DESCRIPTION,
)
async def predict_version(
    name: str, version: str, body: PredictBody, service: ServiceDep
) -> Response:
    runtime = service.registry.resolve(name, Asked.of_text(name, version, labels=False))
    return await _predict(service, runtime, body)


@router.get(
    "/{name}/labels/{label}", response_model=TFRestModelStatus, summary="Model label status"
)
async def label_status(name: str, label: str, service: ServiceDep) -> TFRestModelStatus:
    return protocol.tf_rest_model_status(
        name, [service.registry.resolve(name, Asked(label=label), ready=False)]
    )


@router.get(
    "/{name}/labels/{label}/metadata",
    response_model=TFModelMetadata,
    summary="Model label metadata",
)
async def label_metadata(name: str, label: str, service: ServiceDep) -> TFModelMetadata:
    return protocol.tf_model_metadata(service.registry.resolve(name, Asked(label=label)))


@router.post(
    "/{name}/labels/{label}:predict",
    response_model=TFPredictResponse,
    response_model_exclude_none=True,
    summary="Predict with the version a label points at",
    description=PREDICT_DESCRIPTION,
)
async def predict_label(name: str, label: str, body: PredictBody, service: ServiceDep) -> Response:
    return await _predict(service, service.registry.resolve(name, Asked(label=label)), body)


@router.post(
    "/{name}:explain",
    response_model=KServeExplainResponse,
    response_model_exclude_none=True,
    summary="Explain (KServe v1)",
    description="KServe's v1 protocol `:explain` (the path TF Serving leaves free): integrated "
    "gradients of each instance's predicted class or value, as /api/models/{name}/explain "
    f"answers them; at most {protocol.EXPLAIN_MAX_INSTANCES} instances.",
)
async def explain(
    name: str,
    body: Annotated[
        KServeExplainRequest,
        Body(openapi_examples={"iris": {"value": {"instances": [[6.3, 3.3, 6.0, 2.5]]}}}),
    ],
    service: ServiceDep,
    request: Request,
) -> Response:
    return ModelJSON(
        await while_connected(
            request,
            protocol.kserve_explain(service, service.registry.resolve(name, split=True), body),
        )
    )


# Registered after :predict, so they catch only the other methods (e.g. :classify, :regress).
@router.post("/{name}:{method}", include_in_schema=False)
@router.post("/{name}/versions/{version}:{method}", include_in_schema=False)
@router.post("/{name}/labels/{label}:{method}", include_in_schema=False)
async def unsupported_method(name: str, method: str) -> None:
    raise ProtocolError(
        f"':{method}' is not supported; this server answers ':predict' and ':explain' "
        "(no :classify or :regress over REST)."
    )
