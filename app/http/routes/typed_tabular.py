"""The typed routes of a tabular model: predict, trace, explain and compare, with bodies of
named, range-checked fields built from the card (`app.http.schemas`). No `from __future__ import
annotations`: the bodies are classes made at run time, and FastAPI reads the annotations as
objects."""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Request, Response
from pydantic import Discriminator, Tag

from app.artifact.card import ModelCard
from app.dataplane import explain
from app.dataplane.schemas import BatchPrediction, Comparison, Explanation, LayerTrace
from app.dataplane.service import InferenceService
from app.http.routes.deps import LabelQuery, VersionQuery, serving_runtime, while_connected
from app.http.routes.responses import ModelJSON
from app.http.routes.typed_common import (
    COMPARE_DESCRIPTION,
    EXPLAIN_DESCRIPTION,
    CompareA,
    CompareB,
    FullQuery,
    MethodQuery,
    StepsQuery,
    TargetQuery,
    WeightsQuery,
    compare_versions,
    prediction_type,
)
from app.http.schemas import batch_model, features_model

ChangeQuery = Annotated[
    float | None,
    Query(
        allow_inf_nan=False,
        description="Regressor only: the counterfactual moves the value by this much, in "
        "its unit (default +0.5).",
    ),
]


def _single_or_batch(body: object) -> str:
    return "batch" if isinstance(body, dict) and "instances" in body else "single"


def add_tabular_routes(
    router: APIRouter, service: InferenceService, name: str, card: ModelCard
) -> None:
    max_instances = service.settings.max_instances
    # Classes made from the card at run time: mypy cannot know their fields, so to it their
    # instances (the request bodies) are Any; FastAPI reads these annotations as the classes.
    Features: Any = features_model(card)
    Batch: Any = batch_model(card, Features, max_instances)
    assert card.input.features is not None  # a features input lists them
    example = {spec.name: spec.mean for spec in card.input.features}
    examples = {
        "one": {"summary": "One instance (training means)", "value": example},
        "batch": {"summary": "A batch", "value": {"instances": [example, example]}},
    }
    Answer = prediction_type(card)

    @router.post(
        "/predict",
        response_model_exclude_none=True,
        response_model=Answer | BatchPrediction,
        summary=f"Predict with {name}",
        description=f"{card.description} Send one instance, or several as "
        f'{{"instances": [...]}} (at most {max_instances}). Each field is refused with 422 '
        "outside its allowed range (see the schema's minimum and maximum).",
    )
    async def predict(
        request: Request,
        body: Annotated[
            Annotated[Features, Tag("single")] | Annotated[Batch, Tag("batch")],
            Discriminator(_single_or_batch),
            Body(openapi_examples=examples),
        ],
        version: VersionQuery = None,
        label: LabelQuery = None,
    ) -> Response:
        runtime = serving_runtime(request)
        instances = body.instances if isinstance(body, Batch) else [body]
        rows = service.inputs.feature_rows(
            runtime.loaded_card, [item.model_dump() for item in instances]
        )
        predictions = await service.predictor.predictions(runtime, rows)
        if isinstance(body, Batch):
            return ModelJSON(
                BatchPrediction(model=name, version=runtime.version, predictions=predictions)
            )
        return ModelJSON(predictions[0])

    @router.post(
        "/trace",
        response_model_exclude_none=True,
        response_model=LayerTrace,
        summary=f"Layer trace of {name}",
        description="The output of every layer for one instance, in order, and the prediction.",
    )
    async def trace(
        request: Request,
        body: Annotated[Features, Body(openapi_examples={"one": examples["one"]})],
        version: VersionQuery = None,
        label: LabelQuery = None,
        full: FullQuery = False,
        weights: WeightsQuery = False,
    ) -> Response:
        runtime = serving_runtime(request)
        rows = service.inputs.feature_rows(runtime.loaded_card, [body.model_dump()])
        return ModelJSON(await service.predictor.trace(runtime, rows, full=full, weights=weights))

    @router.post(
        "/explain",
        response_model_exclude_none=True,
        response_model=Explanation,
        summary=f"Explain {name}'s answer",
        description=f"{EXPLAIN_DESCRIPTION} One attribution per feature, in the output's "
        "units, largest first, and a counterfactual: the smallest change of one feature "
        "within its accepted range that changes the class (or moves the value by `change`).",
    )
    async def explain_features(
        request: Request,
        body: Annotated[Features, Body(openapi_examples={"one": examples["one"]})],
        version: VersionQuery = None,
        label: LabelQuery = None,
        method: Annotated[Literal["integrated_gradients"], MethodQuery] = "integrated_gradients",
        target: TargetQuery = None,
        steps: StepsQuery = None,
        change: ChangeQuery = None,
    ) -> Response:
        runtime = serving_runtime(request)
        rows = service.inputs.feature_rows(runtime.loaded_card, [body.model_dump()])
        options = explain.ExplainOptions(method=method, target=target, steps=steps, change=change)
        return ModelJSON(
            (await while_connected(request, service.explainer.explain(runtime, rows, options)))[0]
        )

    @router.post(
        "/compare",
        response_model=Comparison,
        summary=f"Compare two versions of {name}",
        description=COMPARE_DESCRIPTION,
    )
    async def compare(
        request: Request,
        body: Annotated[
            Annotated[Features, Tag("single")] | Annotated[Batch, Tag("batch")],
            Discriminator(_single_or_batch),
            Body(openapi_examples=examples),
        ],
        b: CompareB,
        a: CompareA = None,
    ) -> Response:
        card = serving_runtime(request).loaded_card
        instances = body.instances if isinstance(body, Batch) else [body]
        rows = service.inputs.feature_rows(card, [item.model_dump() for item in instances])
        return await compare_versions(service, name, a, b, rows)
