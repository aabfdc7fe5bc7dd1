"""The Open Inference Protocol v2's bodies: server and model metadata, and infer's request and
response, as the REST routes validate and answer them (the gRPC servicer builds the same
request)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field

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
