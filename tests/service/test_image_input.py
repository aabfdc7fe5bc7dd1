"""Where an upload is decoded: small plain images on the event loop, anything else on a worker
thread, with the same model input either way."""

import asyncio
import contextlib
import gc
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from app.artifact.card import ModelCard
from app.core.errors import BadInput, PayloadTooLarge
from app.core.settings import Settings
from app.dataplane.service import InferenceService
from tests.conftest import MODELS, ROOT

EXAMPLES = ROOT / "app" / "examples"


def digit(size: tuple[int, int]) -> Image.Image:
    image = Image.new("L", size, 255)
    image.paste(0, (size[0] // 3, size[1] // 4, size[0] // 2, 3 * size[1] // 4))  # a stroke
    return image


def encoded(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def png(size: tuple[int, int]) -> bytes:
    return encoded(digit(size), "PNG")


def with_chunk(png_data: bytes, kind: bytes, payload: bytes) -> bytes:
    """The PNG with one more chunk right after IHDR (8-byte signature + 25-byte IHDR)."""
    chunk = struct.pack(">I", len(payload)) + kind + payload
    chunk += struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    return png_data[:33] + chunk + png_data[33:]


def image_input(settings: Settings, model: str, data: bytes) -> np.ndarray:
    card = ModelCard.read(sorted((MODELS / model).iterdir())[-1])
    return asyncio.run(InferenceService(settings).inputs.image_input(card, data))


@pytest.mark.parametrize(("model", "example"), [("mnist", "mnist.png"), ("catdog", "catdog.jpg")])
def test_a_small_image_is_decoded_in_place_as_a_thread_would(model, example, threads_used):
    data = (EXAMPLES / example).read_bytes()
    in_place = image_input(Settings(), model, data)
    assert threads_used == []
    on_thread = image_input(Settings(inline_decode_pixels=0), model, data)
    assert threads_used == ["image_array"]
    np.testing.assert_array_equal(in_place, on_thread)


def test_an_image_over_the_inline_limit_goes_to_a_thread(threads_used):
    image_input(Settings(inline_decode_pixels=256 * 256), "mnist", png((257, 256)))
    assert threads_used == ["_model_input"]


def test_a_large_file_goes_to_a_thread_before_its_header_is_read(threads_used):
    data = encoded(Image.effect_noise((256, 256), 120).convert("L"), "PNG", compress_level=0)
    assert len(data) > 64 * 1024
    image_input(Settings(), "catdog", data)
    assert threads_used == ["image_array"]


@pytest.mark.parametrize("kind", [b"zTXt", b"iTXt", b"iCCP", b"eXIf", b"tEXt"])
def test_a_png_with_metadata_goes_to_a_thread(kind, threads_used):
    # Up to 1 MB for Pillow to inflate while it reads the header, from a 1 KB chunk.
    inflated = zlib.compress(bytes(1 << 20), 9)
    payload = b"key\x00\x00" + (b"\x00\x00\x00" if kind == b"iTXt" else b"") + inflated
    data = with_chunk(png((64, 64)), kind, payload)
    with contextlib.suppress(BadInput):  # Pillow may refuse the chunk, but off the loop
        image_input(Settings(), "mnist", data)
    assert threads_used == ["image_array"]


def test_a_png_of_many_chunks_goes_to_a_thread(threads_used):
    data = png((64, 64))
    for _ in range(500):
        data = with_chunk(data, b"tEXt", b"key\x00value")
    image_input(Settings(), "mnist", data)
    assert threads_used == ["image_array"]


def test_a_png_of_many_plain_chunks_goes_to_a_thread(threads_used):
    data = png((64, 64))
    for _ in range(40):
        data = with_chunk(data, b"pHYs", struct.pack(">IIB", 2835, 2835, 1))
    image_input(Settings(), "mnist", data)
    assert threads_used == ["image_array"]


def test_a_progressive_jpeg_is_decoded_on_a_thread(threads_used):
    # Each of its scans passes over the whole image.
    photo = encoded(digit((64, 64)).convert("RGB"), "JPEG", progressive=True)
    image_input(Settings(), "catdog", photo)
    assert threads_used == ["image_array"]


def test_a_jpeg_with_exif_is_decoded_on_a_thread(threads_used):
    # Pillow parses EXIF in Python, and exif_transpose rewrites it: a crafted block under
    # 64 KiB took ~400 ms, which must not happen on the event loop.
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotated
    photo = encoded(digit((64, 64)).convert("RGB"), "JPEG", exif=exif.tobytes())
    image_input(Settings(), "catdog", photo)
    assert threads_used == ["image_array"]


def test_a_jpeg_of_many_markers_goes_to_a_thread(threads_used):
    photo = encoded(digit((64, 64)).convert("RGB"), "JPEG")
    comment = b"\xff\xfe\x00\x05abc"
    image_input(Settings(), "catdog", photo[:2] + comment * 200 + photo[2:])
    assert threads_used == ["image_array"]


@pytest.mark.parametrize("format", ["GIF", "BMP", "WEBP"])
def test_other_formats_are_decoded_on_a_thread(format, threads_used):
    image_input(Settings(), "catdog", encoded(digit((64, 64)).convert("RGB"), format))
    assert threads_used == ["image_array"]


def test_a_bomb_is_refused_from_its_header_before_any_thread(threads_used):
    with pytest.raises(PayloadTooLarge):
        image_input(Settings(max_image_pixels=100 * 100), "mnist", png((101, 100)))
    assert threads_used == []


def test_loading_models_freezes_the_heap():
    settings = Settings(model_dir=MODELS, models=["iris"], poll_interval_s=0)
    gc.unfreeze()
    try:
        asyncio.run(InferenceService(settings).catalog.reload())
        # Everything alive after the load is left out of later collections (the p99).
        assert gc.get_freeze_count() > 100_000
        assert gc.get_threshold()[0] == 50_000
    finally:
        gc.unfreeze()
        gc.set_threshold(700, 10, 10)


def test_malformed_exif_is_a_bad_input_not_a_crash():
    # Its ImageUIDList tag is stored as SHORTs: Pillow's EXIF writer raised TypeError (a 500).
    data = (ROOT / "tests" / "fixtures" / "exif_uid_as_shorts.jpg").read_bytes()
    with pytest.raises(BadInput, match="EXIF"):
        image_input(Settings(), "catdog", data)
