"""Pictures of an explanation, drawn from the same attribution map the JSON answer carries:
the map as a red/blue PNG overlay on the uploaded photo or on the image the model saw."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from app.artifact.card import ModelCard
from app.core.settings import Settings

PHOTO_OVERLAY_MAX_SIDE = 1024  # an overlay on the uploaded photo is drawn at most this large


def photo_overlay_png(
    card: ModelCard, data: bytes, attribution_map: np.ndarray, settings: Settings
) -> bytes:
    """The map over the uploaded photo itself (resized down to at most 1024 px a side), for a
    model whose preprocessing only resizes, so the map's pixels are the photo's."""
    from app.artifact import imaging

    photo = imaging.load(
        imaging.open_image(
            data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels
        )
    )
    photo.thumbnail((PHOTO_OVERLAY_MAX_SIDE, PHOTO_OVERLAY_MAX_SIDE))
    return _overlay_png(photo.convert("RGB"), attribution_map)


def input_overlay_png(
    card: ModelCard, model_input: np.ndarray, attribution_map: np.ndarray
) -> bytes:
    """The map over the image the model saw, enlarged (nearest) to about 280 px a side."""
    from PIL import Image

    low, high = card.input.image_spec.value_range
    pixels = np.clip((model_input - low) / (high - low) * 255, 0, 255).astype(np.uint8)
    base = Image.fromarray(pixels, "L" if pixels.ndim == 2 else "RGB").convert("RGB")
    scale = max(1, 280 // max(base.size))
    base = base.resize((base.width * scale, base.height * scale), Image.Resampling.NEAREST)
    return _overlay_png(base, attribution_map)


def _overlay_png(base: Any, attribution_map: np.ndarray) -> bytes:
    """The attribution map over `base` (an RGB PIL image): red where it raised the output,
    blue where it lowered it."""
    from PIL import Image

    # Scaled to the 99th percentile, not the peak: integrated gradients put a few pixels far
    # above the rest, and the map would fade to nothing around them.
    magnitude = np.abs(attribution_map)
    peak = float(np.percentile(magnitude, 99)) or float(magnitude.max()) or 1.0
    signed = np.clip(attribution_map / peak, -1, 1).astype(np.float32)
    resized = np.asarray(
        Image.fromarray(signed, "F").resize(base.size, Image.Resampling.BILINEAR), np.float32
    )
    heat = np.zeros((*resized.shape, 3), np.float32)
    heat[..., 0] = np.clip(resized, 0, 1) * 255
    heat[..., 2] = np.clip(-resized, 0, 1) * 255
    alpha = (np.abs(resized) * 0.7)[..., np.newaxis]
    blended = np.asarray(base, np.float32) * (1 - alpha) + heat * alpha
    out = Image.fromarray(blended.astype(np.uint8), "RGB")
    buffer = io.BytesIO()
    out.save(buffer, format="PNG")
    return buffer.getvalue()
