"""What the typed routes of tabular and of image models share: their query parameters and
OpenAPI texts, the type of one answer, and the comparison of two versions."""

from typing import Annotated

import numpy as np
from fastapi import Query, Response

from app.artifact.card import ModelCard
from app.dataplane import explain
from app.dataplane.schemas import ClassPrediction, ValuePrediction
from app.dataplane.service import InferenceService
from app.http.routes.responses import ModelJSON
from app.runtime.registry import Asked

FullQuery = Annotated[
    bool,
    Query(description="Return every value of every layer, however large (within the limit)."),
]
WeightsQuery = Annotated[
    bool, Query(description="Also return each Dense/Conv layer's kernel and bias.")
]
MethodQuery = Annotated[
    explain.Method,
    Query(
        description="integrated_gradients (every model); gradient_x_input, smoothgrad and "
        "grad_cam (image models). The model card's methods are listed at /api/models/{name}."
    ),
]
TargetQuery = Annotated[
    str | None,
    Query(description="The class to explain (label or index); default: the predicted class."),
]
StepsQuery = Annotated[
    int | None,
    Query(ge=1, description="Integration steps of integrated gradients (default per model)."),
]
EXPLAIN_DESCRIPTION = (
    "Which inputs made the answer: attributions for one output (default: the predicted class, "
    "or the value), by integrated gradients against a stated baseline with its completeness "
    "check, or for image models gradient x input, SmoothGrad or Grad-CAM."
)
CompareA = Annotated[
    str | None,
    Query(description="The first version: a number or a label; default: the default version."),
]
CompareB = Annotated[
    str, Query(min_length=1, description="The second version: a number or a label.")
]
COMPARE_DESCRIPTION = (
    "Runs the input (or batch) through two versions and answers both outputs, their "
    "difference, whether the class flipped, and per layer (where both versions have a layer of "
    "that name and shape) the distance between the two layer outputs."
)


def prediction_type(card: ModelCard) -> type[ClassPrediction] | type[ValuePrediction]:
    return ClassPrediction if card.output.kind == "probabilities" else ValuePrediction


async def compare_versions(
    service: InferenceService, name: str, a: str | None, b: str, rows: np.ndarray
) -> Response:
    """Both versions' answers to `rows`: `a` (default: the default version) and `b`."""
    first = service.registry.resolve(name, Asked.of_text(name, a or ""))
    second = service.registry.resolve(name, Asked.of_text(name, b))
    return ModelJSON(await service.predictor.compare(first, second, rows))
