"""The image upload of the typed routes: one multipart field, read straight from the body.

A FastAPI `UploadFile` parameter goes through Starlette's form parser, which makes a spooled
temporary file, an `UploadFile` and a form for every part, and then through the dependency
solver; for a few-kilobyte image that is about a seventh of what a whole prediction costs on
the event loop. The routes read the body instead (the gateway's body limits have already
bounded it) and take the one part they need with python-multipart, the parser Starlette itself
uses. The OpenAPI schema is the one FastAPI writes for an `UploadFile` (Swagger UI shows a file
picker), with OpenAPI 3.0's form of a file beside it for client generators
(`request_body_schema`).
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from app.core.errors import BadInput, PayloadTooLarge

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

FIELD = "file"
# python-multipart walks headers and boundary padding byte by byte in Python (about 0.5 µs a
# byte). A body up to this size is parsed in place (a small image: a thread hand-off would cost
# more than the parse, and the worst such body costs ~8 ms); a larger one on a worker thread, so
# that a crafted one cannot hold up the event loop.
INLINE_PARSE_BYTES = 16 * 1024
# An image form has a file and perhaps a few other fields. The part count and the padding after
# a boundary are checked over the whole body at C speed before parsing.
MAX_PARTS = 16
_MAX_PADDING = 16


def request_body_schema(description: str) -> dict[str, Any]:
    """`openapi_extra` for a route that takes the upload: FastAPI's schema for `UploadFile`
    (OpenAPI 3.1's `contentMediaType`) with OpenAPI 3.0's `format: binary` beside it. Client
    generators that read only the 3.0 form (openapi-python-client 0.29) made the field a string
    from the 3.1 one alone, and sent it as a text part; openapi-generator reads either."""
    field = {
        "type": "string",
        "format": "binary",
        "contentMediaType": "application/octet-stream",
        "title": "File",
    }
    schema = {
        "type": "object",
        "properties": {FIELD: {**field, "description": description}},
        "required": [FIELD],
    }
    content = {"multipart/form-data": {"schema": schema}}
    return {"requestBody": {"required": True, "content": content}}


async def read_upload(request: Request, max_bytes: int) -> bytes:
    """The bytes of the `file` field of a multipart/form-data body, the last one if repeated (as
    FastAPI took it). An empty one without a filename counts as missing, as in FastAPI: a browser
    form sends that when no file was chosen (an empty file that has a name reaches the image
    checks, which say it is empty). A field without a filename is read too (curl's
    `-F "file=<digit.png"`)."""
    media_type, options = parse_options_header(request.headers.get("content-type"))
    if media_type != b"multipart/form-data":
        raise _missing()
    boundary = options.get(b"boundary")
    if not boundary:
        raise _unparsable("the multipart/form-data Content-Type has no boundary.")
    body = await request.body()
    if len(body) <= INLINE_PARSE_BYTES:
        part = _last_part(body, boundary, FIELD.encode())
    else:
        part = await asyncio.to_thread(_last_part, body, boundary, FIELD.encode())
    if not (part.data or part.filename):
        raise _missing()
    if len(part.data) > max_bytes:
        raise PayloadTooLarge(f"The image is over the limit of {max_bytes} bytes.")
    return part.data


def _last_part(body: bytes, boundary: bytes, name: bytes) -> _LastPart:
    delimiter = b"\r\n--" + boundary
    if body.count(delimiter) > MAX_PARTS:  # each part ends at one (the last at the closing one)
        raise _unparsable(f"more than {MAX_PARTS} parts.")
    if re.search(re.escape(delimiter) + b"[ \t]{%d}" % _MAX_PADDING, body):
        raise _unparsable("a boundary is followed by too much padding.")
    part = _LastPart(name)
    try:
        MultipartParser(boundary, part.callbacks()).write(body)
    except FormParserError as error:  # a malformed body, or a boundary over 256 bytes
        raise _unparsable(f"{error}.") from None
    if not part.complete:
        raise _unparsable("the multipart body ends before its closing boundary.")
    return part


class _LastPart:
    """Keeps the data of the last part named `name` as python-multipart reports the body."""

    def __init__(self, name: bytes):
        self.name = name
        self.data = b""  # empty until the part is seen, as when it is empty
        self.filename = b""
        self.complete = False
        self._wanted = False
        self._chunks: list[bytes] = []
        self._header = b""
        self._value = b""
        self._disposition = b""
        self._filename = b""

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _begin(self) -> None:
        self._wanted = False
        self._disposition = b""
        self._filename = b""
        self._chunks.clear()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        if self._header.lower() == b"content-disposition":
            self._disposition = self._value
        self._header = self._value = b""

    def _headers_finished(self) -> None:
        # Parsed once per part, the last Content-Disposition counting, as Starlette did.
        options = parse_options_header(self._disposition)[1]
        self._wanted = options.get(b"name") == self.name
        self._filename = options.get(b"filename", b"")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._wanted:
            self._chunks.append(data[start:end])

    def _part_end(self) -> None:
        if self._wanted:
            self.data = b"".join(self._chunks)
            self.filename = self._filename

    def _end(self) -> None:
        self.complete = True


def _missing() -> RequestValidationError:
    # What FastAPI answers when an `UploadFile` field is absent, so every missing field reads
    # the same.
    where = ("body", FIELD)
    return RequestValidationError([{"type": "missing", "loc": where, "msg": "Field required"}])


def _unparsable(reason: str) -> BadInput:
    return BadInput(f"The request body could not be parsed: {reason}", field="body")
