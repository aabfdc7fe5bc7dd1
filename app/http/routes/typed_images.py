"""The typed routes of an image model: predict, trace and explain from an upload (multipart,
read by `uploads`) or from JSON (a base64 image or the input array), and compare from JSON; with
Swagger UI examples from the committed example images."""

import base64
import math
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import numpy as np
from fastapi import APIRouter, Body, Depends, Query, Request, Response

from app.artifact import imaging
from app.artifact.card import ModelCard
from app.core.errors import BadInput
from app.dataplane import explain
from app.dataplane.schemas import ClassPrediction, Comparison, Explanation, LayerTrace
from app.dataplane.service import InferenceService
from app.http.routes import uploads
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
from app.http.schemas import ImageInput
from app.runtime.model import ModelRuntime

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"

SamplesQuery = Annotated[int, Query(ge=1, description="Noisy samples of SmoothGrad.")]
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
ReturnInputQuery = Annotated[
    bool, Query(description="Also return the array the model saw after preprocessing.")
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


def add_image_routes(
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
    Answer = prediction_type(card)
    json_examples = _json_examples(card)
    upload_body = uploads.request_body_schema("A PNG, JPEG, GIF (first frame), BMP or WebP image.")

    async def upload_input(request: Request, runtime: ModelRuntime) -> np.ndarray:
        data = await uploads.read_upload(request, service.settings.max_image_bytes)
        return await service.inputs.image_input(runtime.loaded_card, data)

    async def answer(runtime: ModelRuntime, batch: np.ndarray, return_input: bool) -> Response:
        prediction = (await service.predictor.predictions(runtime, batch))[0]
        if return_input:
            assert isinstance(prediction, ClassPrediction)  # image models classify
            prediction.model_input = batch[0].tolist()
        return ModelJSON(prediction)

    async def from_json(body: ImageInput, runtime_card: ModelCard) -> np.ndarray:
        if (body.image_base64 is None) == (body.pixels is None):
            raise BadInput("Send exactly one of image_base64 and pixels.", field="image_base64")
        if body.image_base64 is not None:
            return await service.inputs.base64_image_input(runtime_card, body.image_base64)
        return service.inputs.pixel_array(runtime_card, body.pixels)

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
        return ModelJSON(await service.predictor.trace(runtime, batch, full=full, weights=weights))

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
        return ModelJSON(await service.predictor.trace(runtime, batch, full=full, weights=weights))

    async def explained(
        request: Request,
        runtime: ModelRuntime,
        batch: np.ndarray,
        options: explain.ExplainOptions,
        format: str,
        photo: bytes | None = None,
    ) -> Response:
        (answer,) = await while_connected(
            request, service.explainer.explain(runtime, batch, options)
        )
        if format == "json":
            return ModelJSON(answer)
        card, attribution_map = runtime.loaded_card, np.asarray(answer.attribution_map)
        if photo is None:
            png = await service.inputs.image_work(
                explain.input_overlay_png, card, batch[0], attribution_map
            )
        else:
            png = await service.inputs.image_work(
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
        batch = await service.inputs.image_input(runtime.loaded_card, data)
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
        return await compare_versions(service, name, a, b, batch)
