"""Where an upload is decoded: small images on the event loop, large ones on a worker thread,
with the same model input either way."""

import asyncio
import gc
import io

import numpy as np
import pytest
from PIL import Image

from app import service as service_module
from app.card import ModelCard
from app.errors import PayloadTooLarge
from app.service import InferenceService
from app.settings import Settings
from tests.conftest import MODELS, ROOT

EXAMPLES = ROOT / "app" / "examples"


def png(size: tuple[int, int]) -> bytes:
    image = Image.new("L", size, 255)
    image.paste(0, (size[0] // 3, size[1] // 4, size[0] // 2, 3 * size[1] // 4))  # a stroke
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def threads_used(monkeypatch) -> list[str]:
    """Names of the functions `InferenceService` hands to a worker thread."""
    used = []
    real = asyncio.to_thread

    async def recording_to_thread(function, *args):
        used.append(function.__name__)
        return await real(function, *args)

    monkeypatch.setattr(service_module.asyncio, "to_thread", recording_to_thread)
    return used


def image_input(settings: Settings, model: str, data: bytes) -> np.ndarray:
    card = ModelCard.read(sorted((MODELS / model).iterdir())[-1])
    return asyncio.run(InferenceService(settings).image_input(card, data))


@pytest.mark.parametrize("model, example", [("mnist", "mnist.png"), ("catdog", "catdog.jpg")])
def test_a_small_image_is_decoded_in_place_as_a_thread_would(model, example, threads_used):
    data = (EXAMPLES / example).read_bytes()
    in_place = image_input(Settings(), model, data)
    assert threads_used == []
    on_thread = image_input(Settings(inline_decode_pixels=0), model, data)
    assert threads_used == ["_model_input"]
    np.testing.assert_array_equal(in_place, on_thread)


def test_an_image_over_the_inline_limit_goes_to_a_thread(threads_used):
    image_input(Settings(inline_decode_pixels=256 * 256), "mnist", png((257, 256)))
    assert threads_used == ["_model_input"]


def test_a_bomb_is_refused_from_its_header_before_any_thread(threads_used):
    with pytest.raises(PayloadTooLarge):
        image_input(Settings(max_image_pixels=100 * 100), "mnist", png((101, 100)))
    assert threads_used == []


def test_loading_models_freezes_the_heap():
    settings = Settings(model_dir=MODELS, models=["iris"], poll_interval_s=0)
    gc.unfreeze()
    try:
        asyncio.run(InferenceService(settings).reload())
        # Everything alive after the load is left out of later collections (the p99).
        assert gc.get_freeze_count() > 100_000
        assert gc.get_threshold()[0] == 50_000
    finally:
        gc.unfreeze()
        gc.set_threshold(700, 10, 10)
