"""Typed prediction and layer-trace routes, built from the card of the version that answers.

Tabular models take named, range-checked fields; image models take an upload (multipart) or
JSON (base64 or the input array). Each version's routes are built from its own card, so after a
hot reload that renames, adds or re-ranges features (or relabels classes) a request is validated
against the version that serves it: the default, or the one `?version=` names. `/openapi.json`
documents each model's default version. No `from __future__ import annotations` here: the
bodies are classes made at run time, and FastAPI reads the annotations as objects.
"""

import base64
import math
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import numpy as np
from fastapi import APIRouter, Body, Depends, Query, Request, Response
from pydantic import Discriminator, Tag

from app.artifact import imaging
from app.artifact.card import ModelCard
from app.core.errors import BadInput
from app.dataplane import explain
from app.dataplane.schemas import (
    BatchPrediction,
    ClassPrediction,
    Comparison,
    Explanation,
    LayerTrace,
    ValuePrediction,
)
from app.dataplane.service import InferenceService
from app.http.framework_overrides.lean import LeanRoute
from app.http.routes import uploads
from app.http.routes.deps import LabelQuery, VersionQuery, serving_runtime, while_connected
from app.http.routes.errors import ERROR_RESPONSES
from app.http.routes.responses import ModelJSON
from app.http.schemas import ImageInput, batch_model, features_model
from app.protocols import tensors
from app.runtime.model import ModelRuntime

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
PREFIX = "/api/models/"

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
SamplesQuery = Annotated[int, Query(ge=1, description="Noisy samples of SmoothGrad.")]
ChangeQuery = Annotated[
    float | None,
    Query(
        allow_inf_nan=False,
        description="Regressor only: the counterfactual moves the value by this much, in "
        "its unit (default +0.5).",
    ),
]
FormatQuery = Annotated[
    Literal["json", "png"],
    Query(
        description="png: the attribution map over the image (red raises the output, "
        "blue lowers it)."
    ),
]
OntoQuery = Annotated[
    Literal["input", "photo"],
    Query(
        description="With format=png: over the image the model saw (input), or over the "
        "uploaded photo itself (photo)."
    ),
]


def _image_explain_options(
    method: MethodQuery = "integrated_gradients",
    target: TargetQuery = None,
    steps: StepsQuery = None,
    samples: SamplesQuery = 32,
) -> explain.ExplainOptions:
    return explain.ExplainOptions(method=method, target=target, steps=steps, samples=samples)


ImageExplainOptions = Annotated[explain.ExplainOptions, Depends(_image_explain_options)]

PNG_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"image/png": {}},
        "description": "The explanation (JSON), or with format=png the overlay image.",
    }
}
EXPLAIN_DESCRIPTION = (
    "Which inputs made the answer: attributions for one output (default: the predicted class, "
    "or the value), by integrated gradients against a stated baseline with its completeness "
    "check, or for image models gradient x input, SmoothGrad or Grad-CAM."
)

ReturnInputQuery = Annotated[
    bool, Query(description="Also return the array the model saw after preprocessing.")
]


def model_router(service: InferenceService, name: str, card: ModelCard) -> APIRouter:
    """Routes for the model served as `name` (its folder's name), shaped by `card`.

    The routes are built for the running service and use it directly: a `Depends` for it was
    solved again on every request, 30-50 µs of the 430-460 µs an iris prediction took on the
    event loop.
    """
    router = APIRouter(
        prefix=f"{PREFIX}{name}", tags=[name], responses=ERROR_RESPONSES, route_class=LeanRoute
    )
    if card.input.kind == "features":
        _add_tabular_routes(router, service, name, card)
    else:
        _add_image_routes(router, service, name, card)
    return router


def _single_or_batch(body: object) -> str:
    return "batch" if isinstance(body, dict) and "instances" in body else "single"


def _prediction_type(card: ModelCard) -> type[ClassPrediction] | type[ValuePrediction]:
    return ClassPrediction if card.output.kind == "probabilities" else ValuePrediction


def _add_tabular_routes(
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
    Answer = _prediction_type(card)

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
        rows = service.feature_rows(runtime.loaded_card, [item.model_dump() for item in instances])
        predictions = await service.predictions(runtime, rows)
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
        rows = service.feature_rows(runtime.loaded_card, [body.model_dump()])
        return ModelJSON(await service.trace(runtime, rows, full=full, weights=weights))

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
        rows = service.feature_rows(runtime.loaded_card, [body.model_dump()])
        options = explain.ExplainOptions(method=method, target=target, steps=steps, change=change)
        return ModelJSON(
            (await while_connected(request, service.explain(runtime, rows, options)))[0]
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
        rows = service.feature_rows(card, [item.model_dump() for item in instances])
        return await _compare(service, name, a, b, rows)


CompareA = Annotated[
    str | None,
    Query(description="The first version: a number or a label; default: the default version."),
]
CompareB = Annotated[str, Query(description="The second version: a number or a label.")]
COMPARE_DESCRIPTION = (
    "Runs the input (or batch) through two versions and answers both outputs, their "
    "difference, whether the class flipped, and per layer (where both versions have a layer of "
    "that name and shape) the distance between the two layer outputs."
)


async def _compare(
    service: InferenceService, name: str, a: str | None, b: str, rows: np.ndarray
) -> Response:
    first = service.registry.get(name, *tensors.version_or_label(a)) if a else None
    second = service.registry.get(name, *tensors.version_or_label(b))
    first = first or service.registry.get(name)
    return ModelJSON(await service.compare(first, second, rows))


def _json_examples(card: ModelCard) -> dict[str, Any]:
    """Swagger UI examples: a committed example image, and for small inputs the array itself."""
    path = next(iter(sorted(EXAMPLES_DIR.glob(f"{card.name}.*"))), None)
    if path is None:
        return {}
    data = path.read_bytes()
    examples = {
        "image": {
            "summary": f"A base64 {path.suffix[1:].upper()} image",
            "value": {"image_base64": base64.b64encode(data).decode()},
        }
    }
    if math.prod(cast(list[int], card.input.shape[1:])) <= 1024:  # only the batch's is None
        image = imaging.decode(data, max_bytes=len(data), max_pixels=10**8)
        pixels = np.round(imaging.preprocess(image, card.input.image_spec)).tolist()
        examples["pixels"] = {"summary": "The input array itself", "value": {"pixels": pixels}}
    return examples


def _add_image_routes(
    router: APIRouter, service: InferenceService, name: str, card: ModelCard
) -> None:
    spec = card.input.image_spec
    size = f"{spec.height}x{spec.width}"
    how = (
        "Photos and scans of a dark digit on light paper work: the image is made grayscale, a "
        "light background is inverted, the ink is cropped, fitted to 20x20 and centred by centre "
        "of mass in 28x28, as MNIST was made."
        if spec.preprocessing == "mnist"
        else f"Any size and mode; EXIF orientation is applied, the photo is converted to RGB and "
        f"resized to {size} ({spec.interpolation}, aspect not kept), as in training."
    )
    Answer = _prediction_type(card)
    json_examples = _json_examples(card)
    upload_body = uploads.request_body_schema("A PNG, JPEG, GIF (first frame), BMP or WebP image.")

    async def upload_input(request: Request, runtime: ModelRuntime) -> np.ndarray:
        data = await uploads.read_upload(request, service.settings.max_image_bytes)
        return await service.image_input(runtime.loaded_card, data)

    async def answer(runtime: ModelRuntime, batch: np.ndarray, return_input: bool) -> Response:
        prediction = (await service.predictions(runtime, batch))[0]
        if return_input:
            assert isinstance(prediction, ClassPrediction)  # image models classify
            prediction.model_input = batch[0].tolist()
        return ModelJSON(prediction)

    async def from_json(body: ImageInput, runtime_card: ModelCard) -> np.ndarray:
        if (body.image_base64 is None) == (body.pixels is None):
            raise BadInput("Send exactly one of image_base64 and pixels.", field="image_base64")
        if body.image_base64 is not None:
            return await service.base64_image_input(runtime_card, body.image_base64)
        return service.pixel_array(runtime_card, body.pixels)

    @router.post(
        "/predict",
        response_model_exclude_none=True,
        response_model=Answer,
        summary=f"Predict with {name} from an uploaded image",
        description=f"{card.description} {how}",
        openapi_extra=upload_body,
    )
    async def predict_upload(
        request: Request,
        version: VersionQuery = None,
        label: LabelQuery = None,
        return_input: ReturnInputQuery = False,
    ) -> Response:
        runtime = serving_runtime(request)
        batch = await upload_input(request, runtime)
        return await answer(runtime, batch, return_input)

    @router.post(
        "/predict/json",
        response_model_exclude_none=True,
        response_model=Answer,
        summary=f"Predict with {name} from JSON (base64 image or input array)",
        description=f"{card.description} {how} An input array is used as it is.",
    )
    async def predict_json(
        request: Request,
        body: Annotated[ImageInput, Body(openapi_examples=json_examples)],
        version: VersionQuery = None,
        label: LabelQuery = None,
        return_input: ReturnInputQuery = False,
    ) -> Response:
        runtime = serving_runtime(request)
        batch = await from_json(body, runtime.loaded_card)
        return await answer(runtime, batch, return_input)

    trace_description = (
        "The output of every layer for one image, in order, and the prediction. Outputs larger "
        "than the inline limit (convolution feature maps) come as summary statistics and a "
        "slice unless full=true."
    )

    @router.post(
        "/trace",
        response_model_exclude_none=True,
        response_model=LayerTrace,
        summary=f"Layer trace of {name} for an uploaded image",
        description=trace_description,
        openapi_extra=upload_body,
    )
    async def trace_upload(
        request: Request,
        version: VersionQuery = None,
        label: LabelQuery = None,
        full: FullQuery = False,
        weights: WeightsQuery = False,
    ) -> Response:
        runtime = serving_runtime(request)
        batch = await upload_input(request, runtime)
        return ModelJSON(await service.trace(runtime, batch, full=full, weights=weights))

    @router.post(
        "/trace/json",
        response_model_exclude_none=True,
        response_model=LayerTrace,
        summary=f"Layer trace of {name} from JSON (base64 image or input array)",
        description=trace_description,
    )
    async def trace_json(
        request: Request,
        body: Annotated[ImageInput, Body(openapi_examples=json_examples)],
        version: VersionQuery = None,
        label: LabelQuery = None,
        full: FullQuery = False,
        weights: WeightsQuery = False,
    ) -> Response:
        runtime = serving_runtime(request)
        batch = await from_json(body, runtime.loaded_card)
        return ModelJSON(await service.trace(runtime, batch, full=full, weights=weights))

    async def explained(
        request: Request,
        runtime: ModelRuntime,
        batch: np.ndarray,
        options: explain.ExplainOptions,
        format: str,
        photo: bytes | None = None,
    ) -> Response:
        (answer,) = await while_connected(request, service.explain(runtime, batch, options))
        if format == "json":
            return ModelJSON(answer)
        card, attribution_map = runtime.loaded_card, np.asarray(answer.attribution_map)
        if photo is None:
            png = await service.image_work(
                explain.input_overlay_png, card, batch[0], attribution_map
            )
        else:
            png = await service.image_work(
                explain.photo_overlay_png, card, photo, attribution_map, service.settings
            )
        return Response(png, media_type="image/png")

    @router.post(
        "/explain",
        response_model_exclude_none=True,
        response_model=Explanation,
        summary=f"Explain {name}'s answer for an uploaded image",
        responses=PNG_RESPONSE,
        description=f"{EXPLAIN_DESCRIPTION} The attribution map has the model's input size; "
        "format=png draws it over the image the model saw, or with onto=photo over the upload.",
        openapi_extra=upload_body,
    )
    async def explain_upload(
        request: Request,
        options: ImageExplainOptions,
        version: VersionQuery = None,
        label: LabelQuery = None,
        format: FormatQuery = "json",
        onto: OntoQuery = "input",
    ) -> Response:
        runtime = serving_runtime(request)
        if onto == "photo" and runtime.loaded_card.input.image_spec.preprocessing != "resize":
            raise BadInput(
                f"onto=photo needs a model that only resizes the photo; '{name}' crops and "
                "centres it, so its map would not line up with the upload. Use onto=input.",
                field="onto",
            )
        data = await uploads.read_upload(request, service.settings.max_image_bytes)
        batch = await service.image_input(runtime.loaded_card, data)
        photo = data if format == "png" and onto == "photo" else None
        return await explained(request, runtime, batch, options, format, photo)

    @router.post(
        "/explain/json",
        response_model_exclude_none=True,
        response_model=Explanation,
        summary=f"Explain {name}'s answer from JSON (base64 image or input array)",
        responses=PNG_RESPONSE,
        description=f"{EXPLAIN_DESCRIPTION} format=png draws the map over the image the model saw.",
    )
    async def explain_json(
        request: Request,
        body: Annotated[ImageInput, Body(openapi_examples=json_examples)],
        options: ImageExplainOptions,
        version: VersionQuery = None,
        label: LabelQuery = None,
        format: FormatQuery = "json",
    ) -> Response:
        runtime = serving_runtime(request)
        batch = await from_json(body, runtime.loaded_card)
        return await explained(request, runtime, batch, options, format)

    @router.post(
        "/compare",
        response_model=Comparison,
        summary=f"Compare two versions of {name}",
        description=f"{COMPARE_DESCRIPTION} The image as JSON (base64 or the input array).",
    )
    async def compare_json(
        request: Request,
        body: Annotated[ImageInput, Body(openapi_examples=json_examples)],
        b: CompareB,
        a: CompareA = None,
    ) -> Response:
        batch = await from_json(body, serving_runtime(request).loaded_card)
        return await _compare(service, name, a, b, batch)
