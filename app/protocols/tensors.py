"""What both wire protocols share: the float32 batch a model takes, checked against its card;
encoded images decoded as the typed endpoints decode them; the count and answer-size limits.

Both protocols carry raw tensors, so numbers are used as sent (no range checks, unlike the typed
endpoints). An image model also takes encoded image files (TF Serving `{"b64": ...}` values, v2
BYTES elements in base64), decoded and preprocessed exactly as the typed endpoints do. Nothing
in app/protocols knows HTTP: the routes in app/http/routes translate HTTP to these calls.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from app.artifact.card import ModelCard
from app.core.errors import (
    BadInput,
    PayloadTooLarge,
    ProtocolError,
    UnsupportedMediaType,
)
from app.dataplane.schemas import InputFamiliarity
from app.dataplane.service import InferenceService

# The extra output both protocols return when a request names it (and only then): each row's
# familiarity (app/dataplane/familiarity.py), from the same model call as the prediction.
FAMILIARITY_OUTPUT = "familiarity"
SERVER_NAME = "glassbox"
SERVER_VERSION = "0.1.0"
# Open Inference's name for the framework; Triton uses the same for a TensorFlow SavedModel.
PLATFORM = "tensorflow_savedmodel"

# A decoder for one encoded image: (base64 text, where it came from) -> the model's input for it.
ImageDecoder = Callable[[str, str], np.ndarray]


def describe_invalid(problems: Sequence[Mapping[str, Any]]) -> str:
    """A request body that failed its schema (pydantic's errors), in one bad-request message:
    where each problem is and what it is."""
    described = []
    for problem in problems:
        if problem["type"] == "json_invalid":
            described.append(f"the body is not valid JSON ({problem['ctx']['error']})")
            continue
        where = ".".join(str(part) for part in problem["loc"] if part != "body")
        described.append(f"{where}: {problem['msg']}" if where else problem["msg"])
    return "Bad request: " + "; ".join(described) + "."


def dims(shape: list[int | None]) -> list[int]:
    return [-1 if size is None else size for size in shape]


def output_shape(card: ModelCard) -> list[int | None]:
    """The serving_default output is the last layer's output."""
    return card.layers[-1].output_shape


def output_shapes(card: ModelCard) -> dict[str, list[int | None]]:
    """Every output a request may ask for: the prediction, each layer by its trace key, and
    (a card with familiarity) `familiarity`."""
    return {
        card.output.name: output_shape(card),
        **{layer.trace_key: layer.output_shape for layer in card.layers},
        **({FAMILIARITY_OUTPUT: [None]} if card.familiarity is not None else {}),
    }


def familiarity_tensor(answers: Sequence[InputFamiliarity | None]) -> np.ndarray:
    """The `familiarity` output: one JSON object per row (as the typed answers' `familiarity`),
    UTF-8 bytes, in a 1-D object array (BYTES in v2, DT_STRING in TF Serving)."""
    return np.array(
        [
            b"null" if one is None else one.model_dump_json(exclude_none=True).encode()
            for one in answers
        ],
        dtype=object,
    )


def as_float32(value: Any, where: str) -> np.ndarray:
    """Numbers (nested lists of them, or one) as float32; anything else is a bad request."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        raise ProtocolError(
            f"{where} is not a regular array: nested lists must all have the same length."
        ) from None
    if array.dtype.kind not in "iuf":
        raise ProtocolError(f"{where} must hold only numbers (float32).")
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise ProtocolError(f"{where} holds a value that is not a finite float32 number.")
    return array


def _require_image_model(card: ModelCard, where: str) -> None:
    if card.input.kind != "image":
        raise ProtocolError(
            f"{where} is an encoded image, but model '{card.name}' takes numbers: input "
            f"'{card.input.name}' is float32 with shape {dims(card.input.shape)}."
        )


def _as_protocol_error(error: BadInput | UnsupportedMediaType, where: str) -> ProtocolError:
    message = error.message
    return ProtocolError(message if message.startswith(where) else f"{where}: {message}")


def image_decoder(service: InferenceService, card: ModelCard) -> ImageDecoder:
    """Decodes one base64 image file into the model's input, as the typed endpoints do."""

    def decode(encoded: str, where: str) -> np.ndarray:
        _require_image_model(card, where)
        try:
            image: np.ndarray = service.inputs.base64_image_array(card, encoded, where)[0]
            return image
        except (BadInput, UnsupportedMediaType) as error:
            raise _as_protocol_error(error, where) from None

    return decode


def image_file(service: InferenceService, card: ModelCard, data: bytes, where: str) -> np.ndarray:
    """One image file's bytes as the model's input, as the typed endpoints decode an upload."""
    _require_image_model(card, where)
    try:
        image: np.ndarray = service.inputs.image_array(card, data)[0]
        return image
    except (BadInput, UnsupportedMediaType) as error:
        raise _as_protocol_error(error, where) from None


def check_count(service: InferenceService, count: int) -> None:
    """Checked before images are decoded where the count is known up front."""
    if count < 1:
        raise ProtocolError("The request holds no instances.")
    if count > service.settings.max_instances:
        raise PayloadTooLarge(
            f"The request holds {count} instances; the limit is {service.settings.max_instances}."
        )


def refuse_large_answer(
    service: InferenceService, card: ModelCard, names: list[str], rows: int
) -> None:
    """Refuse before computing an answer over the trace limit (conv feature maps are large)."""
    shapes = output_shapes(card)
    total = rows * sum(math.prod(dims(shapes[name])[1:]) for name in names)
    limit = service.settings.trace_max_values
    if total > limit:
        raise PayloadTooLarge(
            f"The answer would hold {total} values; the limit is {limit}. "
            "Send fewer instances or ask for fewer outputs."
        )
