"""Typed request and response bodies of the service's own endpoints.

Tabular request bodies are built from each model card (`features_model`), so a retrained model
with other features or labels, or a new tabular model, needs no new code.
"""

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from app.artifact.card import FeatureSpec, ModelCard
from app.dataplane.inputs import out_of_range
from app.dataplane.schemas import ModelSummary


class ErrorResponse(BaseModel):
    """The one error body of every endpoint (TF Serving and Open Inference clients read
    `error`, the message)."""

    error: str = Field(description="What went wrong, in words.")
    code: str = Field(description="Machine-readable kind, e.g. invalid_input, model_not_found.")
    field: str | None = Field(None, description="The input at fault, where there is one.")
    details: list[dict[str, Any]] | None = Field(
        None, description="Every validation problem, where there were several."
    )


class ModelList(BaseModel):
    models: list[ModelSummary]


class Liveness(BaseModel):
    status: Literal["alive"] = "alive"


class Readiness(BaseModel):
    ready: bool
    models: list[ModelSummary]
    missing: list[str] = Field(description="name/version of each model that does not serve.")


class ImageInput(BaseModel):
    """One image as JSON: an encoded image in base64, or the model's input array itself."""

    model_config = ConfigDict(extra="forbid")

    image_base64: str | None = Field(
        None, description="A PNG, JPEG, GIF, BMP or WebP file, base64-encoded."
    )
    pixels: list[Any] | None = Field(
        None,
        description="The model input as nested lists of 0-255 values, shaped as the card's "
        "input shape without the batch dimension; used as it is, with no preprocessing.",
    )


def _range_check(spec: FeatureSpec) -> Callable[[float], float]:
    def check(value: float) -> float:
        if not spec.allowed_min <= value <= spec.allowed_max:
            raise ValueError(out_of_range(spec, value))
        return value

    return check


def features_model(card: ModelCard) -> type[BaseModel]:
    """The request body of a tabular model: one float field per card feature, range-checked."""
    fields: dict[str, Any] = {}  # field name: (annotation, FieldInfo), as create_model takes
    for spec in card.input.features or []:
        annotation = Annotated[float, AfterValidator(_range_check(spec))]
        fields[spec.name] = (
            annotation,
            Field(
                description=f"{spec.description}, in {spec.unit}. Seen in training: "
                f"{spec.observed_min} to {spec.observed_max}.",
                allow_inf_nan=False,
                strict=True,  # a number, not "5.1" or true
                examples=[spec.mean],
                json_schema_extra={"minimum": spec.allowed_min, "maximum": spec.allowed_max},
            ),
        )
    return create_model(
        f"{card.name.capitalize()}Features",
        __config__=ConfigDict(extra="forbid"),
        __doc__=f"One instance for '{card.name}': {card.description}",
        **fields,
    )


def batch_model(card: ModelCard, features: type[BaseModel], max_instances: int) -> type[BaseModel]:
    return create_model(
        f"{card.name.capitalize()}Batch",
        __config__=ConfigDict(extra="forbid"),
        __doc__=f"Several instances for '{card.name}', answered in order.",
        # `features` is a class made at run time, which mypy cannot use as a type argument.
        instances=(list[features], Field(min_length=1, max_length=max_instances)),  # type: ignore[valid-type]
    )
