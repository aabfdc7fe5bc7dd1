"""Image decoding and the preprocessing that turns a photo into a model input.

Training uses `resize_rgb` too, so a served photo is resized exactly as the training photos were.
Nothing here imports TensorFlow or FastAPI.
"""

from __future__ import annotations

import io
import struct
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from app.artifact.card import ImageSpec
from app.core.errors import BadInput, PayloadTooLarge, UnsupportedMediaType

SUPPORTED_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")
_INTERPOLATION = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}
# MNIST digits were scaled to fit a 20x20 box, then centred by centre of mass in 28x28.
_MNIST_BOX = 20
_MNIST_SIZE = 28
# Below this contrast between ink and paper (0-255) there is no digit to read.
_MIN_INK_CONTRAST = 40.0
# A thin stroke on a large canvas counts as ink when at least this many pixels show it.
_MIN_INK_PIXELS = 20
# The digit reader works on at most about twice this many pixels per side.
_MNIST_WORK_SIZE = 1024


# In-place decoding (see `cheap_to_open`): a small, plain PNG or baseline
# JPEG with few pixels decodes in about a millisecond. Anything else may be built to be slow to
# read even when small, in the parts Pillow parses in Python or inflates: text and ICC chunks,
# EXIF (parsed, and rewritten by exif_transpose), thousands of markers, RLE bitmaps, GIF blocks.
INLINE_MAX_BYTES = 64 * 1024
_MAX_INLINE_SEGMENTS = 32  # a plain file has about ten chunks or markers
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PLAIN_PNG_CHUNKS = {
    b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"sBIT", b"pHYs",
    b"bKGD",
}  # fmt: skip
# JFIF header, quantization and Huffman tables, baseline or extended sequential frame (not
# progressive: each of its scans passes over the whole image), restart interval, comment.
_PLAIN_JPEG_MARKERS = {0xE0, 0xDB, 0xC4, 0xC0, 0xC1, 0xDD, 0xFE}
_JPEG_START_OF_SCAN = 0xDA


def cheap_to_open(data: bytes) -> bool:
    """Whether `open_image(data)` and, when its header shows few pixels, `load` are cheap
    enough for the event loop: a small PNG or JPEG made only of the plain parts above (checked
    from its bytes)."""
    if len(data) > INLINE_MAX_BYTES:
        return False
    if data.startswith(_PNG_SIGNATURE):
        return _plain_png(data)
    if data.startswith(b"\xff\xd8"):
        return _plain_jpeg(data)
    return False


def _plain_png(data: bytes) -> bool:
    position, chunks = len(_PNG_SIGNATURE), 0
    while position + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        chunks += 1
        if kind not in _PLAIN_PNG_CHUNKS or chunks > _MAX_INLINE_SEGMENTS:
            return False
        position += 12 + length  # length, type, data, CRC
    return True


def _plain_jpeg(data: bytes) -> bool:
    """Markers up to the first scan (all that Pillow reads when it opens a JPEG)."""
    position = 2
    for _ in range(_MAX_INLINE_SEGMENTS):
        if position + 4 > len(data) or data[position] != 0xFF:
            return False
        marker = data[position + 1]
        if marker == _JPEG_START_OF_SCAN:
            return True
        if marker not in _PLAIN_JPEG_MARKERS:
            return False
        (length,) = struct.unpack_from(">H", data, position + 2)
        position += 2 + length
    return False


def decode(data: bytes, *, max_bytes: int, max_pixels: int) -> Image.Image:
    """Decode an uploaded image (first frame of an animation), EXIF orientation applied."""
    return load(open_image(data, max_bytes=max_bytes, max_pixels=max_pixels))


def open_image(data: bytes, *, max_bytes: int, max_pixels: int) -> Image.Image:
    """Read and check an image's header; no pixel is decoded yet (`load` does that).

    The pixel count is checked from the header, so a small file that claims a huge canvas (a
    decompression bomb) is refused cheaply, and the caller knows the cost of `load` up front.
    """
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"The image is {len(data)} bytes; the limit is {max_bytes} bytes.")
    if not data:
        raise BadInput("The image is empty.", field="image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        # Pillow's own bomb check, from the header: a canvas over its limit (and so ours).
        raise PayloadTooLarge(
            "The image claims more pixels than can be decoded safely; "
            f"the limit is {min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)} pixels."
        ) from None
    except UnidentifiedImageError:
        raise UnsupportedMediaType(
            f"The file is not an image in a supported format ({', '.join(SUPPORTED_FORMATS)})."
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as error:
        # A format knew the file by its first bytes, then found its header broken (a BMP with
        # no such compression, a PNG text chunk that unpacks past Pillow's limit, ...).
        raise BadInput(
            f"The image could not be decoded (corrupt header): {error}", field="image"
        ) from None
    width, height = image.size
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"The image is {width}x{height} = {width * height} pixels; "
            f"the limit is {max_pixels} pixels."
        )
    if width < 1 or height < 1:
        raise BadInput("The image has no pixels.", field="image")
    return image


def load(image: Image.Image) -> Image.Image:
    """Decode the pixels of an image from `open_image`, EXIF orientation applied."""
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise BadInput(
            f"The {image.format} image could not be decoded (truncated or corrupt): {error}",
            field="image",
        ) from None
    try:
        return ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, EOFError, TypeError, struct.error) as error:
        # Pillow rewrites the EXIF block when it applies the orientation, and raises on tags
        # stored with the wrong type (e.g. TypeError for an ImageUIDList of SHORTs).
        raise BadInput(
            f"The {image.format} image's EXIF metadata is malformed: {error}", field="image"
        ) from None


def flatten_alpha(image: Image.Image) -> Image.Image:
    """RGB with any transparency composited on white, as the image looks on a page."""
    if image.mode in ("La", "RGBa"):  # premultiplied alpha, which Pillow cannot composite
        image = image.convert("LA" if image.mode == "La" else "RGBA")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode.startswith("I;16"):
        # 16-bit grayscale (PNG): scale 0-65535 to 0-255 rather than clip.
        values = np.asarray(image, dtype=np.float64) * (255.0 / 65535.0)
        return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8)).convert("RGB")
    if image.mode == "I":
        # 32-bit grayscale of unknown depth: taken as 16 bits when any value is over 255.
        values = np.asarray(image, dtype=np.float64)
        scale = 255.0 / (65535.0 if values.max() > 255 else 255.0)
        return Image.fromarray(np.clip(values * scale, 0, 255).astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


def resize_rgb(image: Image.Image, spec: ImageSpec) -> np.ndarray:
    """The photo as the model's float32 (height, width, 3) input, values 0-255."""
    rgb = flatten_alpha(image)
    resized = rgb.resize((spec.width, spec.height), _INTERPOLATION[spec.interpolation])
    return np.asarray(resized, dtype=np.float32)


def mnist_digit(image: Image.Image) -> np.ndarray:
    """A digit photo or drawing as MNIST shows digits: (28, 28) float32, light ink on black.

    Grayscale; a light background (judged from the border) is inverted; the paper level is
    subtracted and the ink stretched to 0-255; the ink's bounding box is scaled to fit 20x20
    keeping its aspect ratio and centred by centre of mass in 28x28.
    """
    # A grayscale image is already what the conversion below makes of it (L to RGB to L is
    # exact), and MNIST-like uploads mostly are one.
    gray_image = image if image.mode == "L" else flatten_alpha(image).convert("L")
    # A large photo is box-reduced first by a whole factor (cheap, and the digit ends up 20
    # pixels tall anyway), so the float arrays below take megabytes, not a gigabyte.
    factor = max(gray_image.size) // _MNIST_WORK_SIZE
    if factor > 1:
        gray_image = gray_image.reduce(factor)
    gray = np.asarray(gray_image, dtype=np.float32)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if _quantile(border, 0.5) > 127:
        gray = 255.0 - gray
        border = 255.0 - border
    paper = _quantile(border, 0.5)
    ink_level = _ink_level(gray, paper)
    if ink_level - paper < _MIN_INK_CONTRAST:
        raise BadInput(
            "No digit found: the image has no ink that stands out from the background.",
            field="image",
        )
    ink = np.clip((gray - paper) / (ink_level - paper), 0.0, 1.0) * 255.0
    inked = ink > 64
    rows = np.flatnonzero(inked.any(axis=1))
    cols = np.flatnonzero(inked.any(axis=0))
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]

    height, width = crop.shape
    scale = _MNIST_BOX / max(height, width)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    fitted = np.asarray(
        Image.fromarray(crop.astype(np.uint8)).resize(new_size, Image.Resampling.LANCZOS)
    )

    canvas = np.zeros((_MNIST_SIZE, _MNIST_SIZE), dtype=np.float32)
    # The centre of mass from integer sums of the 8-bit pixels: exact, and a few calls fewer.
    row_mass = fitted.sum(axis=1, dtype=np.int64)
    col_mass = fitted.sum(axis=0, dtype=np.int64)
    total = int(row_mass.sum())
    if total > 0:
        centre_y = int(row_mass @ np.arange(row_mass.size)) / total
        centre_x = int(col_mass @ np.arange(col_mass.size)) / total
    else:
        centre_y, centre_x = (fitted.shape[0] - 1) / 2, (fitted.shape[1] - 1) / 2
    top = round(_MNIST_SIZE / 2 - 0.5 - centre_y)
    left = round(_MNIST_SIZE / 2 - 0.5 - centre_x)
    top = min(max(top, 0), _MNIST_SIZE - fitted.shape[0])
    left = min(max(left, 0), _MNIST_SIZE - fitted.shape[1])
    canvas[top : top + fitted.shape[0], left : left + fitted.shape[1]] = fitted
    return canvas


def _ink_level(gray: np.ndarray, paper: float) -> float:
    """How bright the ink is: the 99.5th percentile, so that a few specks are not taken for ink.

    A thin stroke on a large canvas covers less than 0.5% of the pixels; then the level of the
    _MIN_INK_PIXELS-th brightest pixel is taken instead, so a pen line is still found.
    """
    if gray.size <= 200:
        return float(gray.max())
    level = _quantile(gray.reshape(-1), 0.995)
    if level - paper >= _MIN_INK_CONTRAST:
        return level
    flat = gray.reshape(-1)
    rank = flat.size - min(_MIN_INK_PIXELS, flat.size)
    return float(np.partition(flat, rank)[rank])


def _quantile(values: np.ndarray, q: float) -> float:
    """`np.percentile(values, 100 * q)` (linear interpolation) of a 1-D array, from a partial
    sort: a tenth of the cost on a small image, where numpy's generic path dominates."""
    position = q * (values.size - 1)
    low = int(position)
    high = min(low + 1, values.size - 1)
    ordered = np.partition(values, (low, high))
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def preprocess(image: Image.Image, spec: ImageSpec) -> np.ndarray:
    """The model input for one decoded image, as the card's preprocessing says."""
    if spec.preprocessing == "mnist":
        return mnist_digit(image)
    return resize_rgb(image, spec)
