"""A request's input as the model's float32 batch: feature rows, image files (decoded off the
event loop, a bounded number at once), base64 images and pixel arrays, each checked against the
model's card."""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, TypeVarTuple

import numpy as np

from app.artifact import imaging
from app.artifact.card import FeatureSpec, ModelCard
from app.core import tracing
from app.core.errors import BadInput, PayloadTooLarge
from app.core.settings import Settings

if TYPE_CHECKING:
    from PIL import Image

PREPROCESSING = "image preprocessing"  # the span's name
_Args = TypeVarTuple("_Args")
_T = TypeVar("_T")


def out_of_range(spec: FeatureSpec, value: float) -> str:
    """The one refusal of a feature value outside the card's accepted range, for the typed
    endpoints and the batch files alike."""
    return (
        f"{spec.name} must be between {spec.allowed_min} and {spec.allowed_max} {spec.unit} "
        f"(got {value})"
    )


def range_refusals(card: ModelCard, rows: np.ndarray) -> dict[int, str]:
    """The rows of `rows` (float64, features in the card's order, NaN where a value is missing
    or not a number, which the caller names) that the card's accepted ranges refuse, by index:
    each value outside its range named as `out_of_range` says it. Vectorized: a clean batch
    costs two comparisons per value and no Python per row."""
    specs = card.input.features or []
    low = np.array([spec.allowed_min for spec in specs])
    high = np.array([spec.allowed_max for spec in specs])
    with np.errstate(invalid="ignore"):
        outside = ~((rows >= low) & (rows <= high)) & np.isfinite(rows)
    return {
        row: "; ".join(
            out_of_range(specs[column], float(rows[row, column]))
            for column in np.flatnonzero(outside[row]).tolist()
        )
        for row in np.flatnonzero(outside.any(axis=1)).tolist()
    }


class Inputs:
    def __init__(self, settings: Settings):
        self.settings = settings
        # A large image takes ~100 MB while it decodes: bound how many decode at once.
        self._decode_slots = asyncio.Semaphore(settings.max_concurrent_decodes)

    @staticmethod
    def feature_rows(card: ModelCard, rows: list[dict[str, float]]) -> np.ndarray:
        names = [feature.name for feature in card.input.features or []]
        return np.array([[row[name] for name in names] for row in rows], dtype=np.float32)

    def image_array(self, card: ModelCard, data: bytes) -> np.ndarray:
        return self._model_input(card, self._open_image(data))

    async def image_input(self, card: ModelCard, data: bytes) -> np.ndarray:
        """`image_array`, on a worker thread unless the image is small and plain (an `image
        preprocessing` span when tracing is on).

        Decoding and resizing a large image is CPU work that must not hold up the event loop
        (Pillow releases the GIL while it decodes). A small plain one (see
        `imaging.cheap_to_open`, with at most `inline_decode_pixels`) takes about a millisecond
        or less, less than handing it to a thread and back, which is why it is done in place."""
        with tracing.span(PREPROCESSING, lambda: {"glassbox.image_bytes": len(data)}):
            return await self._image_input(card, data)

    async def _image_input(self, card: ModelCard, data: bytes) -> np.ndarray:
        limit = self.settings.inline_decode_pixels
        if not (limit and imaging.cheap_to_open(data)):
            async with self._decode_slots:
                return await asyncio.to_thread(self.image_array, card, data)
        image = self._open_image(data)
        if image.width * image.height <= limit:
            return self._model_input(card, image)
        async with self._decode_slots:
            return await asyncio.to_thread(self._model_input, card, image)

    def _open_image(self, data: bytes) -> Image.Image:
        return imaging.open_image(
            data,
            max_bytes=self.settings.max_image_bytes,
            max_pixels=self.settings.max_image_pixels,
        )

    @staticmethod
    def _model_input(card: ModelCard, image: Image.Image) -> np.ndarray:
        return imaging.preprocess(imaging.load(image), card.input.image_spec)[np.newaxis]

    async def image_work(self, function: Callable[[*_Args], _T], *args: *_Args) -> _T:
        """`function(*args)`, heavy work on images (building an image model's batch from a wire
        protocol's request, up to GLASSBOX_MAX_INSTANCES files; drawing an explanation's
        overlay), on a worker thread in one of the decode slots: on the event loop it would
        hold up every other request and probe meanwhile."""
        async with self._decode_slots:
            return await asyncio.to_thread(function, *args)

    async def base64_image_input(self, card: ModelCard, encoded: str) -> np.ndarray:
        with tracing.span(PREPROCESSING):
            async with self._decode_slots:
                return await asyncio.to_thread(self.base64_image_array, card, encoded)

    def base64_image_array(
        self, card: ModelCard, encoded: str, where: str = "image_base64"
    ) -> np.ndarray:
        """`image_array` of a base64 image file; `where` names it in errors. Whitespace is
        ignored (`base64` on the command line wraps its output)."""
        limit = self.settings.max_image_bytes
        if len(encoded) > limit * 4 // 3 + 4:
            raise PayloadTooLarge(f"{where}: the image is over the limit of {limit} bytes.")
        try:
            data = base64.b64decode("".join(encoded.split()), validate=True)
        except (binascii.Error, ValueError):
            raise BadInput(f"{where} is not valid base64.", field="image_base64") from None
        return self.image_array(card, data)

    @staticmethod
    def pixel_array(card: ModelCard, pixels: Any) -> np.ndarray:
        expected = card.input.shape[1:]
        try:
            array = np.asarray(pixels, dtype=np.float32)
        except (ValueError, TypeError):
            raise BadInput(
                f"pixels must be a numeric array of shape {expected}.", field="pixels"
            ) from None
        if list(array.shape) != expected:
            raise BadInput(
                f"pixels has shape {list(array.shape)}; '{card.name}' takes {expected}.",
                field="pixels",
            )
        low, high = card.input.image_spec.value_range
        if not np.isfinite(array).all() or array.min() < low or array.max() > high:
            raise BadInput(f"pixels must be finite values from {low} to {high}.", field="pixels")
        return array[np.newaxis]
