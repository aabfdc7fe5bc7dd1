"""Hostile and odd uploads, each with the answer the service documents for it.

The files are in tests/fixtures/nasty/ (made by make_nasty.py there). Each is posted to every
image model's upload route and, base64-encoded, to its JSON route; the answer is the same on
both and is the one in NASTY below, which is the service's documented behaviour:

    file                     what it is                                  status and code
    truncated.png            a PNG cut in half                           422 invalid_input
    truncated.jpg            a JPEG cut in half                          422 invalid_input
    bad_header.bmp           a BMP header naming no such compression     422 invalid_input
    png_body_jpeg_magic.jpg  JPEG magic bytes before a PNG's body        415 unsupported_media_type
    sof_65500x65500.jpg      a small JPEG whose header says 65500x65500  413 payload_too_large
    text.png                 a text file named .png                      415 unsupported_media_type
    bomb_30000x30000.png     110 KB that unpack to 30000x30000 pixels    413 payload_too_large
    bomb_7000x7000.png       6 KB, 49 Mpx: over the 40 Mpx setting       413 payload_too_large
    text_chunk_bomb.png      8x8 PNG, a text chunk that unpacks to 8 MB  422 invalid_input
    empty.png                zero bytes                                  422 invalid_input
    drawing.svg              a vector drawing                            415 unsupported_media_type
    document.pdf             a one-page PDF                              415 unsupported_media_type
    animated.gif             frames 7, 1, blank: the first is used       200
    gray16.png               16-bit grayscale, scaled to 8 bits          200
    cmyk.jpg                 a CMYK JPEG                                 200
    rotated_exif6.jpg        stored turned; EXIF orientation 6 undoes it 200
    seven.png                the plain PNG the others are compared to    200

The bombs are refused from the header, before any pixel is decoded. The valid images all show
the same handwritten 7: the digit model reads a 7 from each, and every model sees (nearly) the
same input array as for seven.png.
"""

import base64
from pathlib import Path

import numpy as np
import pytest
from PIL import ImageFile

from app.dataplane.schemas import ClassPrediction
from app.http.schemas import ErrorResponse

NASTY_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "nasty"
IMAGE_MODELS = ("mnist", "catdog")

# file -> (status, error code or None, a phrase of the message or None)
NASTY = {
    "truncated.png": (422, "invalid_input", "could not be decoded"),
    "truncated.jpg": (422, "invalid_input", "could not be decoded"),
    "bad_header.bmp": (422, "invalid_input", "corrupt header"),
    "png_body_jpeg_magic.jpg": (415, "unsupported_media_type", "supported format"),
    "sof_65500x65500.jpg": (413, "payload_too_large", "pixels"),
    "text.png": (415, "unsupported_media_type", "supported format"),
    "bomb_30000x30000.png": (413, "payload_too_large", "pixels"),
    "bomb_7000x7000.png": (413, "payload_too_large", "7000x7000"),
    "text_chunk_bomb.png": (422, "invalid_input", "corrupt header"),
    "empty.png": (422, "invalid_input", "empty"),
    "drawing.svg": (415, "unsupported_media_type", "supported format"),
    "document.pdf": (415, "unsupported_media_type", "supported format"),
    "animated.gif": (200, None, None),
    "gray16.png": (200, None, None),
    "cmyk.jpg": (200, None, None),
    "rotated_exif6.jpg": (200, None, None),
    "seven.png": (200, None, None),
}
MEDIA_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".gif": "image/gif"}
MEDIA_TYPES |= {".bmp": "image/bmp", ".svg": "image/svg+xml", ".pdf": "application/pdf"}
# Mean absolute difference (0-255) from seven.png's model input that a valid variant may show:
# JPEG's losses and the CMYK round trip, no more. A wrong frame or orientation is far above it.
SAME_INPUT = 8.0


def post_upload(client, model: str, name: str):
    data = (NASTY_DIR / name).read_bytes()
    media_type = MEDIA_TYPES[Path(name).suffix]
    return client.post(
        f"/api/models/{model}/predict?return_input=true",
        files={"file": (name, data, media_type)},
    )


def post_json(client, model: str, name: str):
    encoded = base64.b64encode((NASTY_DIR / name).read_bytes()).decode()
    return client.post(
        f"/api/models/{model}/predict/json?return_input=true", json={"image_base64": encoded}
    )


POSTS = {"upload": post_upload, "json": post_json}


def test_the_table_covers_every_file_in_the_corpus():
    assert sorted(NASTY) == sorted(p.name for p in NASTY_DIR.iterdir() if p.suffix != ".py")


@pytest.mark.parametrize("route", sorted(POSTS))
@pytest.mark.parametrize("model", IMAGE_MODELS)
@pytest.mark.parametrize("name", sorted(NASTY))
def test_each_file_gets_its_documented_answer(app_client, name, model, route):
    status, code, phrase = NASTY[name]
    response = POSTS[route](app_client, model, name)
    assert response.status_code == status, response.text
    if status != 200:
        body = ErrorResponse.model_validate(response.json())
        assert body.code == code
        assert phrase in body.error
        assert "Traceback" not in body.error
        return
    prediction = ClassPrediction.model_validate(response.json())
    if model == "mnist":
        assert prediction.label == "7", f"{name} read as {prediction.label}"


@pytest.mark.parametrize("model", IMAGE_MODELS)
@pytest.mark.parametrize("name", ["animated.gif", "gray16.png", "cmyk.jpg", "rotated_exif6.jpg"])
def test_valid_variants_give_the_model_the_same_input_as_the_plain_png(app_client, name, model):
    """The first GIF frame, 16 bits scaled (not clipped), CMYK converted, EXIF applied."""
    plain = np.array(post_upload(app_client, model, "seven.png").json()["model_input"])
    variant = np.array(post_upload(app_client, model, name).json()["model_input"])
    assert variant.shape == plain.shape
    assert np.abs(variant - plain).mean() < SAME_INPUT


@pytest.mark.parametrize("model", IMAGE_MODELS)
@pytest.mark.parametrize(
    "name", ["bomb_30000x30000.png", "bomb_7000x7000.png", "sof_65500x65500.jpg"]
)
def test_a_bomb_is_refused_from_its_header_before_any_pixel_is_decoded(
    app_client, monkeypatch, model, name
):

    def no_decoding(image):
        raise AssertionError(f"{name}: pixels decoded")  # not a decode error: it would be a 500

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    assert post_upload(app_client, model, name).status_code == 413


# -- bodies that do not parse at all -----------------------------------------------------------

UNPARSABLE = {
    "JSON that is not UTF-8": (b'{"sepal_length": 5.1\xff}', "application/json", "utf-8"),
    "JSON cut short": (b'{"sepal_length": 5.1', "application/json", "not valid JSON"),
    "multipart without a boundary": (b"--x\r\n", "multipart/form-data", "boundary"),
}


@pytest.mark.parametrize("case", sorted(UNPARSABLE))
def test_a_body_that_does_not_parse_is_422_naming_the_body(app_client, case):
    content, media_type, phrase = UNPARSABLE[case]
    model = "mnist" if media_type.startswith("multipart") else "iris"
    response = app_client.post(
        f"/api/models/{model}/predict", content=content, headers={"content-type": media_type}
    )
    assert response.status_code == 422, response.text
    body = ErrorResponse.model_validate(response.json())
    assert (body.code, body.field) == ("invalid_input", "body")
    assert phrase in body.error
