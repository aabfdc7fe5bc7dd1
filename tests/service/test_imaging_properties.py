"""Property-based tests of image decoding, preprocessing and the tabular feature bodies.

Whatever is uploaded, `decode` + `preprocess` either give a finite float32 array of exactly the
card's input shape with values 0-255, or raise one of the service's 4xx errors; never anything
else (which would be a 500). Hypothesis draws sizes (1x1, 10000x1, 1x10000 among them), modes,
palettes, transparency, alpha and EXIF orientations; the runs are derandomized and bounded so the
suite stays fast and the same on every machine.
"""

import io
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw
from pydantic import ValidationError

from app.artifact import imaging
from app.artifact.card import ModelCard
from app.core.errors import BadInput, PayloadTooLarge, UnsupportedMediaType
from app.http.schemas import features_model
from tests.http.protocol_cases import model_names, newest_card

# Bounded and deterministic: the same examples on every run, no example database on disk.
BOUNDED = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MAX_BYTES = 10 * 1024 * 1024
MAX_PIXELS = 40_000_000
# What a hostile upload may raise: each is a 4xx answer. Anything else would be a 500.
CLIENT_ERRORS = (BadInput, PayloadTooLarge, UnsupportedMediaType)


CARDS = {name: newest_card(name) for name in model_names()}
IMAGE_SPECS = {
    name: (card.input.image, card.input.shape[1:])
    for name, card in CARDS.items()
    if card.input.kind == "image"
}
TABULAR_CARDS = {name: card for name, card in CARDS.items() if card.input.kind == "features"}

# Which supported formats can hold each mode (as Pillow writes them).
MODE_FORMATS = {
    "1": ("PNG", "BMP"),
    "L": ("PNG", "JPEG", "BMP", "GIF", "WEBP"),
    "LA": ("PNG", "WEBP"),
    "P": ("PNG", "GIF", "BMP"),
    "RGB": ("PNG", "JPEG", "BMP", "GIF", "WEBP"),
    "RGBA": ("PNG", "WEBP"),
    "CMYK": ("JPEG",),
    "I;16": ("PNG",),
}
EXIF_FORMATS = ("PNG", "JPEG", "WEBP")
ORIENTATION = 0x0112

sizes = st.one_of(
    st.sampled_from([(1, 1), (10000, 1), (1, 10000), (2, 3000), (640, 480)]),
    st.tuples(st.integers(1, 80), st.integers(1, 80)),
)


def pixels(rng: np.random.Generator, size: tuple[int, int], channels: int, content: str):
    """uint8 pixels, (height, width, channels): noise, one flat colour, or a stroke on paper."""
    width, height = size
    if content == "noise":
        return rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    paper = rng.integers(0, 256, channels, dtype=np.uint8)
    array = np.broadcast_to(paper, (height, width, channels)).copy()
    if content == "stroke":
        array[height // 4 : max(height // 4 + 1, 3 * height // 4), width // 2] = 255 - paper
    return array


@st.composite
def images(draw, modes=tuple(MODE_FORMATS)) -> Image.Image:
    """A PIL image of a drawn mode and size, with palette, transparency and alpha drawn too."""
    mode = draw(st.sampled_from(modes))
    size = draw(sizes)
    content = draw(st.sampled_from(["noise", "flat", "stroke"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if mode in ("RGB", "CMYK"):
        image = Image.fromarray(pixels(rng, size, 3, content), "RGB").convert(mode)
    elif mode == "RGBA":
        rgb = pixels(rng, size, 3, content)
        alpha = draw(st.sampled_from(["opaque", "clear", "random"]))
        a = {"opaque": 255, "clear": 0}.get(alpha)
        alpha_channel = (
            rng.integers(0, 256, (*rgb.shape[:2], 1), dtype=np.uint8)
            if a is None
            else np.full((*rgb.shape[:2], 1), a, np.uint8)
        )
        image = Image.fromarray(np.concatenate([rgb, alpha_channel], axis=2), "RGBA")
    elif mode in ("L", "1", "LA"):
        gray = Image.fromarray(pixels(rng, size, 1, content)[..., 0], "L")
        if mode == "LA":
            gray.putalpha(Image.fromarray(rng.integers(0, 256, gray.size[::-1], dtype=np.uint8)))
        image = gray.convert(mode)
    elif mode == "I;16":
        deep = rng.integers(0, 65536, size[::-1], dtype=np.uint16)
        if content != "noise":
            deep[:] = rng.integers(0, 65536)
        image = Image.fromarray(deep)
    else:  # P
        colours = draw(st.integers(1, 256))
        indices = rng.integers(0, colours, size[::-1], dtype=np.uint8)
        image = Image.fromarray(indices, "L").convert("P")
        image.putpalette(rng.integers(0, 256, 3 * colours, dtype=np.uint8).tobytes())
        transparency = draw(st.sampled_from(["none", "index", "alpha per colour"]))
        if transparency == "index":
            image.info["transparency"] = int(rng.integers(0, colours))
        elif transparency == "alpha per colour":
            image.info["transparency"] = rng.integers(0, 256, colours, dtype=np.uint8).tobytes()
    return image


def encode(image: Image.Image, fmt: str, orientation: int | None) -> bytes:
    buffer = io.BytesIO()
    options = {}
    if orientation is not None and fmt in EXIF_FORMATS:
        exif = Image.Exif()
        exif[ORIENTATION] = orientation
        options["exif"] = exif.tobytes()
    if fmt == "GIF" and isinstance(image.info.get("transparency"), bytes):
        image.info.pop("transparency")  # GIF has one transparent index, not alpha per colour
    if "transparency" in image.info and fmt in ("PNG", "GIF"):
        options["transparency"] = image.info["transparency"]
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@st.composite
def encoded_images(draw) -> tuple[bytes, Image.Image, str, int | None]:
    image = draw(images())
    fmt = draw(st.sampled_from(MODE_FORMATS[image.mode]))
    assume(not (fmt == "WEBP" and max(image.size) > 16383))  # WebP's own limit
    orientation = draw(st.none() | st.integers(1, 8))
    return encode(image, fmt, orientation), image, fmt, orientation


def assert_model_input(array: np.ndarray, shape: list[int]) -> None:
    assert isinstance(array, np.ndarray)
    assert array.dtype == np.float32
    assert list(array.shape) == shape
    assert np.isfinite(array).all()
    assert array.min() >= 0.0
    assert array.max() <= 255.0


def preprocess_or_refuse(image: Image.Image, name: str) -> np.ndarray | None:
    spec, shape = IMAGE_SPECS[name]
    try:
        array = imaging.preprocess(image, spec)
    except BadInput as error:
        refusal = error
    else:
        assert_model_input(array, shape)
        return array
    # Only the digit reader may refuse a decodable image: there is no ink to read.
    assert spec.preprocessing == "mnist"
    assert "No digit" in refusal.message
    return None


# -- decode + preprocess of well-formed files --------------------------------------------------


@BOUNDED
@given(encoded_images())
def test_every_well_formed_image_decodes_and_becomes_the_cards_input(sample):
    data, original, fmt, orientation = sample
    image = imaging.decode(data, max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS)
    width, height = original.size
    turned = orientation in (5, 6, 7, 8) and fmt in EXIF_FORMATS
    assert image.size == ((height, width) if turned else (width, height))
    for name in IMAGE_SPECS:
        preprocess_or_refuse(image, name)


@BOUNDED
@given(encoded_images(), st.integers(1, 200_000))
def test_an_image_over_the_pixel_limit_is_refused_with_413(sample, max_pixels):
    data, original, _, _ = sample
    width, height = original.size
    if width * height <= max_pixels:
        assert imaging.decode(data, max_bytes=MAX_BYTES, max_pixels=max_pixels).size
    else:
        with pytest.raises(PayloadTooLarge):
            imaging.decode(data, max_bytes=MAX_BYTES, max_pixels=max_pixels)


@settings(BOUNDED, max_examples=40)
@given(st.integers(0, 2**32 - 1), st.sampled_from(["I", "F", "I;16", "La", "RGBa", "PA"]), sizes)
@example(0, "F", (1, 1))
def test_modes_no_upload_gives_are_still_handled(seed, mode, size):
    """32-bit integer and float images, with extreme values, NaN and infinity for F."""
    rng = np.random.default_rng(seed)
    shape = size[::-1]
    if mode == "I":
        image = Image.fromarray(rng.integers(-(2**31), 2**31 - 1, shape, dtype=np.int32), "I")
    elif mode == "F":
        values = rng.choice(
            np.array([np.nan, np.inf, -np.inf, -1e30, -1.0, 0.0, 0.5, 128.0, 255.0, 1e30]), shape
        ).astype(np.float32)
        image = Image.fromarray(values, "F")
    elif mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65536, shape, dtype=np.uint16))
    else:
        image = Image.fromarray(rng.integers(0, 256, (*shape, 4), dtype=np.uint8), "RGBA").convert(
            mode
        )
    for name in IMAGE_SPECS:
        preprocess_or_refuse(image, name)


def test_16_bit_grayscale_is_scaled_to_8_bits_not_clipped():
    """A 16-bit PNG is 0-65535 whatever its values: a dark one stays dark."""
    for level, expected in ((200, 0), (257 * 10, 10), (65535, 255)):
        image = Image.fromarray(np.full((4, 4), level, dtype=np.uint16))
        assert np.asarray(imaging.flatten_alpha(image)).max() == expected


# -- hostile bytes ---------------------------------------------------------------------------


@st.composite
def damaged_files(draw) -> bytes:
    """A well-formed file truncated, with bytes overwritten, or random bytes behind magic."""
    how = draw(st.sampled_from(["truncate", "overwrite", "magic"]))
    if how == "magic":
        magic = draw(
            st.sampled_from(
                [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM", b"RIFF\0\0\0\0WEBP"]
            )
        )
        return magic + draw(st.binary(max_size=600))
    data = bytearray(draw(encoded_images())[0])
    if how == "truncate":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    for _ in range(draw(st.integers(1, 12))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


@settings(BOUNDED, max_examples=100)
@given(damaged_files())
@example(b"")
@example(b"hello, world")
@example(b"<svg xmlns='http://www.w3.org/2000/svg'/>")
@example(b"BM" + b"\0" * 12 + b"\x28\0\0\0" + b"\x10\0\0\0" * 2 + b"\1\0\xf4\0" + b"\0" * 24)
def test_damaged_files_are_refused_with_a_client_error_never_anything_else(data):
    try:
        image = imaging.decode(data, max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS)
    except CLIENT_ERRORS:
        return
    for name in IMAGE_SPECS:
        preprocess_or_refuse(image, name)


def test_an_image_over_the_byte_limit_is_refused_before_it_is_read():
    with pytest.raises(PayloadTooLarge):
        imaging.decode(b"\x89PNG" + b"\0" * 100, max_bytes=50, max_pixels=MAX_PIXELS)


# -- the digit reader ------------------------------------------------------------------------


def centre_of_mass(array: np.ndarray) -> tuple[float, float]:
    ys, xs = np.indices(array.shape)
    total = array.sum()
    return float((ys * array).sum() / total), float((xs * array).sum() / total)


@st.composite
def strokes(draw):
    """A symmetric stroke (a straight line, a disc or a ring) somewhere on a page of any size."""
    width, height = draw(st.integers(28, 500)), draw(st.integers(28, 500))
    # The stroke's box: at least a fifth of the page, away from its border (the paper).
    box_w = draw(st.integers(max(4, width // 5), width - 4))
    box_h = draw(st.integers(max(4, height // 5), height - 4))
    return {
        "page": (width, height),
        "shape": draw(st.sampled_from(["line", "disc", "ring"])),
        "box": (box_w, box_h),
        "pen": max(1, min(box_w, box_h, max(width, height) // 40)),
        "at": (draw(st.integers(2, width - box_w - 2)), draw(st.integers(2, height - box_h - 2))),
        "dark_on_light": draw(st.booleans()),
    }


def draw_stroke(page, shape, box, pen, at, dark_on_light) -> Image.Image:
    """The stroke drawn inside its box, the box laid on the page at `at`."""
    paper, ink = (235, 20) if dark_on_light else (10, 240)
    patch = Image.new("L", box, paper)
    draw = ImageDraw.Draw(patch)
    inner = (pen // 2, pen // 2, box[0] - 1 - pen // 2, box[1] - 1 - pen // 2)
    if shape == "line":
        draw.line([inner[:2], inner[2:]], fill=ink, width=pen)
    elif shape == "disc":
        draw.ellipse((0, 0, box[0] - 1, box[1] - 1), fill=ink)
    else:
        draw.ellipse((0, 0, box[0] - 1, box[1] - 1), outline=ink, width=pen)
    canvas = Image.new("L", page, paper)
    canvas.paste(patch, at)
    return canvas


@BOUNDED
@given(strokes())
def test_a_drawn_stroke_is_fitted_to_20_pixels_and_centred_by_centre_of_mass(stroke):
    digit = imaging.mnist_digit(draw_stroke(**stroke))
    assert_model_input(digit, [28, 28])
    rows = np.flatnonzero((digit > 64).any(axis=1))
    cols = np.flatnonzero((digit > 64).any(axis=0))
    assert rows.size
    assert cols.size
    # The longer side of the ink fills the 20-pixel box (give or take the resampling's blur).
    assert 17 <= max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 <= 22
    centre_y, centre_x = centre_of_mass(digit)
    assert abs(centre_y - 13.5) <= 1.0
    assert abs(centre_x - 13.5) <= 1.0


@BOUNDED
@given(strokes())
def test_a_grayscale_page_gives_the_digit_its_rgb_copy_gives(stroke):
    """Grayscale pages skip the colour conversions; the digit must not change by a bit."""
    page = draw_stroke(**stroke)
    np.testing.assert_array_equal(
        imaging.mnist_digit(page), imaging.mnist_digit(page.convert("RGB"))
    )


@BOUNDED
@given(strokes(), st.integers(-40, 40), st.integers(-40, 40))
def test_moving_a_stroke_on_the_page_does_not_change_the_digit(stroke, dx, dy):
    (width, height), (box_w, box_h), (left, top) = stroke["page"], stroke["box"], stroke["at"]
    moved = (left + dx, top + dy)
    assume(2 <= moved[0] <= width - box_w - 2 and 2 <= moved[1] <= height - box_h - 2)
    here = imaging.mnist_digit(draw_stroke(**stroke))
    there = imaging.mnist_digit(draw_stroke(**{**stroke, "at": moved}))
    np.testing.assert_array_equal(here, there)


@BOUNDED
@given(st.integers(100, 1500), st.integers(1, 3), st.booleans())
def test_a_thin_pen_line_on_a_large_page_is_still_found(side, pen, dark_on_light):
    """Under 0.5% of the pixels are ink here; the digit reader must not call the page blank."""
    box = (side // 6, 3 * side // 5)
    page = draw_stroke((side, side), "line", box, pen, (side // 3, side // 5), dark_on_light)
    digit = imaging.mnist_digit(page)
    assert_model_input(digit, [28, 28])
    assert digit.sum() > 0


@pytest.mark.parametrize("shape", ["line", "disc", "ring"])
def test_a_large_photo_gives_the_digit_its_quarter_size_copy_gives(shape):
    """Pages over 2048 pixels are box-reduced before the float work; the digit is the same."""
    small = {"page": (900, 700), "shape": shape, "box": (300, 500), "pen": 30, "at": (200, 100)}
    large = {
        "page": (3600, 2800),
        "shape": shape,
        "box": (1200, 2000),
        "pen": 120,
        "at": (800, 400),
    }
    here = imaging.mnist_digit(draw_stroke(**small, dark_on_light=True))
    there = imaging.mnist_digit(draw_stroke(**large, dark_on_light=True))
    assert np.abs(here - there).mean() < 2.0


@BOUNDED
@given(st.integers(1, 600), st.integers(1, 600), st.integers(0, 255), st.integers(0, 39))
def test_a_page_without_contrast_is_no_digit(width, height, paper, speck):
    """A blank page, or one whose marks stand out by less than the minimum contrast."""
    page = Image.new("L", (width, height), paper)
    ImageDraw.Draw(page).line([(0, 0), (width, height)], fill=min(255, paper + speck), width=2)
    with pytest.raises(BadInput, match="No digit"):
        imaging.mnist_digit(page)


# -- the tabular request bodies --------------------------------------------------------------


def inside(spec) -> st.SearchStrategy[float]:
    return st.floats(spec.allowed_min, spec.allowed_max, allow_nan=False, allow_infinity=False)


def outside(spec) -> st.SearchStrategy[float]:
    return st.one_of(
        st.floats(max_value=spec.allowed_min, exclude_max=True, allow_infinity=False),
        st.floats(min_value=spec.allowed_max, exclude_min=True, allow_infinity=False),
        st.sampled_from([math.nan, math.inf, -math.inf]),
    )


@st.composite
def valid_rows(draw, card: ModelCard) -> dict[str, float]:
    return {spec.name: draw(inside(spec)) for spec in card.input.features}


@pytest.mark.parametrize("name", sorted(TABULAR_CARDS))
def test_every_value_inside_the_allowed_range_validates(name):
    card = TABULAR_CARDS[name]
    features = features_model(card)
    bounds = [
        {spec.name: getattr(spec, end) for spec in card.input.features}
        for end in ("allowed_min", "allowed_max")
    ]

    @BOUNDED
    @given(valid_rows(card))
    @example(bounds[0])
    @example(bounds[1])
    def check(row):
        assert features.model_validate(row).model_dump() == row
        assert features.model_validate_json(json.dumps(row)).model_dump() == row

    check()


@pytest.mark.parametrize("name", sorted(TABULAR_CARDS))
def test_any_value_outside_the_range_nan_or_infinity_is_refused_naming_the_field(name):
    card = TABULAR_CARDS[name]
    features = features_model(card)

    @BOUNDED
    @given(valid_rows(card), st.data())
    def check(row, data):
        spec = data.draw(st.sampled_from(card.input.features))
        bad = {**row, spec.name: data.draw(outside(spec))}
        with pytest.raises(ValidationError) as python_error:
            features.model_validate(bad)
        with pytest.raises(ValidationError) as json_error:
            features.model_validate_json(json.dumps(bad))  # NaN and Infinity as JS tokens
        for error in (python_error.value, json_error.value):
            assert [problem["loc"] for problem in error.errors()] == [(spec.name,)]

    check()


@BOUNDED
@given(
    values=st.lists(st.integers(0, 255), min_size=1, max_size=5000),
    q=st.sampled_from([0.0, 0.5, 0.995, 1.0]),
)
def test_partial_sort_quantile_is_numpys_percentile(values, q):
    pixels = np.array(values, dtype=np.float32)
    assert imaging._quantile(pixels, q) == pytest.approx(np.percentile(pixels, q * 100), abs=1e-3)
