"""TensorFlow Serving's REST bodies (predict, model status and metadata) and KServe v1's explain
bodies, as the routes declare them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from app.artifact.card import SERVING_SIGNATURE
from app.dataplane.schemas import Explanation


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


class TFRestModelStatus(TFModelStatus):
    """The REST answer: TF Serving's status and beside it KServe v1's model readiness, which
    TF Serving clients ignore (KServe's SDK reads `ready` from the same path)."""

    name: str = Field(description="The model's name (KServe v1).")
    ready: bool = Field(description="Whether a version listed here serves (KServe v1).")


class TFDim(BaseModel):
    size: str = Field(
        description="The size as TF Serving prints an int64: a string; '-1' where it varies."
    )
    name: str = ""


class TFTensorShape(BaseModel):
    dim: list[TFDim]
    unknown_rank: bool = False


class TFTensorInfo(BaseModel):
    dtype: Literal["DT_FLOAT", "DT_STRING"] = "DT_FLOAT"
    tensor_shape: TFTensorShape
    name: str = Field(
        description="The tensor's name in the SavedModel's graph ('familiarity': computed by "
        "the service, not in the graph)."
    )


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
    output_filter: list[str] | None = Field(
        None,
        description="The outputs to answer, as gRPC PredictRequest's output_filter (default: "
        "the signature's own). serving_default also answers 'familiarity' when named here: "
        "each row's familiarity as a JSON string.",
    )


class TFPredictResponse(BaseModel):
    """Row format answers `predictions` (one entry per instance), columnar format `outputs`.
    One output comes bare; several (the trace signature) keyed by output name."""

    predictions: list[Any] | None = None
    outputs: Any = None


class KServeExplainRequest(BaseModel):
    """KServe's v1 explain request: the row format's instances."""

    instances: list[Any] = Field(min_length=1, description="One value per instance, as :predict.")


class KServeExplainResponse(BaseModel):
    explanations: list[Explanation] = Field(
        description="Integrated gradients for each instance, in order."
    )
