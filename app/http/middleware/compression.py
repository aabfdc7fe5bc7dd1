"""Compressed bodies, for `gateway.Gateway`: request bodies sent with `Content-Encoding: gzip`
or `deflate` are decoded before the body limits see them, and answers are compressed when the
client's `Accept-Encoding` asks for gzip or deflate.

A request body is decoded as it streams in, never to more than the body limit plus one byte
(`max_length`, the rest left in zlib's unconsumed tail), so a small compressed body that would
inflate to gigabytes is a 413 after at most the limit's worth of work and memory. The decoded
body then replaces the sent one, with its own Content-Length, and the body limits (size and
JSON depth) apply to it as to any other. Work past a few hundred KiB runs in a worker thread
(zlib lets go of the GIL), off the event loop.

Answers are compressed when they are at least `MIN_SIZE` bytes, say how long they are (a
streamed answer, such as server-sent events, does not), and are not compressed already (an
image, an answer with its own Content-Encoding). Level 1: on the JSON of floats these answers
carry it compressed six times as fast as zlib's default level (93 against 15 MiB/s) into a body
8% larger.
"""

from __future__ import annotations

import asyncio
import functools
import zlib

from starlette.types import Message, Receive, Scope, Send

from app.http.middleware.limits import BadBody, replay

CODINGS = ("gzip", "deflate")
MIN_SIZE = 1024  # smaller answers (most predictions) go as they are
LEVEL = 1
# Decoded (request) or compressed (answer) on the event loop up to this much; past it, in a
# worker thread.
INLINE_BYTES = 256 * 1024
_PIECE = 1024 * 1024  # the most one zlib call decodes: pieces this size, never one large buffer
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
# Content types compressed already, or streamed.
_SKIPPED_TYPES = (
    b"image/",
    b"video/",
    b"audio/",
    b"font/woff",
    b"text/event-stream",
    b"application/gzip",
    b"application/zip",
    b"application/x-gzip",
)
# An answer with either header is sent as it is: encoded already, or a range of the identity.
_KEPT_WITH = (b"content-encoding", b"content-range")
_CONTENT_LENGTH = b"content-length"


# -- requests ------------------------------------------------------------------------------------


class Inflater:
    """One request body's decoder: `feed` the compressed bytes as they come, `finish` at the
    end; `chunks` holds what came out, never more than `limit` bytes (BadBody 413 past it).
    gzip may hold several members one after another, as `cat a.gz b.gz` makes."""

    def __init__(self, coding: str, limit: int):
        self.coding = coding
        self.limit = limit
        self.size = 0
        self.chunks: list[bytes] = []
        self._wbits = _WBITS[coding]
        self._inflating: zlib._Decompress | None = None
        self._members = 0

    def feed(self, data: bytes, most: int | None = None) -> bytes | None:
        """Decodes `data`; None once all of it is decoded. With `most`, it stops after that
        many bytes have come out and answers the input left (maybe b"", with output still
        to come): feed that again."""
        stop = None if most is None else self.size + most
        while True:
            inflating = self._inflating
            if inflating is None:
                if not data:
                    return None
                if self._members and self.coding == "deflate":
                    raise self._corrupt("data after the end of the compressed stream")
                inflating = self._inflating = zlib.decompressobj(self._wbits)
            room = min(self.limit + 1 - self.size, _PIECE)
            if stop is not None:
                if self.size >= stop:
                    return data
                room = min(room, stop - self.size)
            try:
                out = inflating.decompress(data, room)
            except zlib.error as error:
                raise self._corrupt(str(error).partition(": ")[2] or str(error)) from None
            self.size += len(out)
            if self.size > self.limit:
                self.chunks.clear()
                raise BadBody(
                    413,
                    f"The request body decompresses to more than the limit of {self.limit} bytes.",
                    "payload_too_large",
                )
            if out:
                self.chunks.append(out)
            if inflating.eof:
                self._inflating, self._members = None, self._members + 1
                data = inflating.unused_data
            else:
                data = inflating.unconsumed_tail
                if not data and len(out) < room:  # all taken in, nothing held back
                    return None

    def finish(self) -> bytes:
        """The whole decoded body, once the compressed one has ended."""
        if self._inflating is not None:
            raise self._corrupt("the body ends before its compressed stream does")
        return b"".join(self.chunks)

    def _corrupt(self, reason: str) -> BadBody:
        wrapper = "gzip" if self.coding != "deflate" else "deflate (zlib, RFC 1950)"
        return BadBody(
            400, f"The request body is not valid {wrapper} data: {reason}.", "bad_request"
        )


def coding_of(value: bytes) -> str | None:
    """The coding a Content-Encoding names, None for identity; BadBody 415 for another."""
    coding = value.decode("latin-1").strip().lower()
    if coding in ("", "identity"):
        return None
    if coding not in _WBITS:
        raise BadBody(
            415,
            f"Content-Encoding '{coding[:40]}' is not supported: send the body as it is, or "
            f"compressed with {' or '.join(CODINGS)}.",
            "unsupported_media_type",
            headers={"Accept-Encoding": ", ".join(CODINGS)},
        )
    return coding


async def decoded(scope: Scope, receive: Receive, coding: str, limit: int) -> Receive:
    """Reads and decodes the whole body; a `receive` that replays it. The scope's headers
    lose Content-Encoding and say the decoded length. BadBody when it cannot be used."""
    inflater = Inflater(coding, limit)
    received = 0
    more = True
    while more:  # the sent body is within the limit: BodyLimits.read has taken it
        message = await receive()
        if message["type"] != "http.request":  # the client left: what came is all there is
            break
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        received += len(chunk)
        rest = inflater.feed(chunk, INLINE_BYTES)
        if rest is not None:
            await asyncio.to_thread(inflater.feed, rest)
    body = inflater.finish() if received else b""
    scope["headers"] = [
        (name, value)
        for name, value in scope["headers"]
        if name not in (b"content-encoding", _CONTENT_LENGTH, b"transfer-encoding")
    ]
    scope["headers"].append((_CONTENT_LENGTH, str(len(body)).encode("latin-1")))
    return replay(body, receive)


# -- answers -------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def accepted(accept_encoding: bytes) -> str | None:
    """gzip or deflate, whichever the Accept-Encoding header weighs more (gzip on a tie), or
    None when it accepts neither."""
    weights: dict[str, float] = {}
    for part in accept_encoding.decode("latin-1").lower().split(","):
        coding, _, parameters = part.partition(";")
        weight = 1.0
        name, _, value = parameters.strip().partition("=")
        if name.strip() == "q":
            try:
                weight = float(value)
            except ValueError:
                weight = 0.0
        weights[coding.strip()] = weight
    anything = weights.get("*", 0.0)
    gzip = weights.get("gzip", weights.get("x-gzip", anything))
    deflate = weights.get("deflate", anything)
    if max(gzip, deflate) <= 0:
        return None
    return "gzip" if gzip >= deflate else "deflate"


def compressing(send: Send, coding: str) -> Send:
    """`send` compressing the answer with `coding` where that is worth it."""
    return _Compressing(send, coding)


def _compressible(message: Message) -> bool:
    if message["status"] in (204, 206, 304) or message["status"] < 200:
        return False
    length = 0
    for name, value in message.get("headers", ()):
        if name == _CONTENT_LENGTH:
            length = int(value) if value.isdigit() else 0
        elif name in _KEPT_WITH or (name == b"content-type" and value.startswith(_SKIPPED_TYPES)):
            return False
    return length >= MIN_SIZE


def _deflate(compressor: zlib._Compress, data: bytes, last: bool) -> bytes:
    out = compressor.compress(data)
    return out + compressor.flush() if last else out


class _Compressing:
    """The answer's start is held until its first body part shows whether it all comes at
    once: then it is compressed with its new Content-Length; else (a file in parts) the parts
    are compressed as they come and the length is left out."""

    __slots__ = ("coding", "compressor", "passing", "send", "start")

    def __init__(self, send: Send, coding: str):
        self.send = send
        self.coding = coding
        self.passing = False  # sent as it is
        self.start: Message | None = None
        self.compressor: zlib._Compress | None = None

    async def __call__(self, message: Message) -> None:
        if self.passing:
            await self.send(message)
            return
        kind = message["type"]
        if kind == "http.response.start":
            if _compressible(message):
                self.start = message
            else:
                self.passing = True
                await self.send(message)
            return
        start = self.start
        if start is None or kind != "http.response.body":  # not an answer this understands
            self.passing = True
            if start is not None:
                await self.send(start)
            await self.send(message)
            return
        body = message.get("body", b"")
        more = message.get("more_body", False)
        compressor = self.compressor
        if compressor is None:
            compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, _WBITS[self.coding])
            self.compressor = compressor
            if len(body) > INLINE_BYTES:
                out = await asyncio.to_thread(_deflate, compressor, body, not more)
            else:
                out = _deflate(compressor, body, not more)
            start["headers"] = self._headers(start["headers"], None if more else len(out))
            await self.send(start)
        elif len(body) > INLINE_BYTES:
            out = await asyncio.to_thread(_deflate, compressor, body, not more)
        else:
            out = _deflate(compressor, body, not more)
        await self.send({"type": "http.response.body", "body": out, "more_body": more})

    def _headers(
        self, headers: list[tuple[bytes, bytes]], length: int | None
    ) -> list[tuple[bytes, bytes]]:
        kept: list[tuple[bytes, bytes]] = []
        vary = b"Accept-Encoding"
        for name, value in headers:
            if name == _CONTENT_LENGTH:
                continue
            if name == b"vary":
                vary = value + b", " + vary
            elif name == b"etag" and not value.startswith(b"W/"):
                kept.append((name, b"W/" + value))  # no longer the same bytes as the identity
            else:
                kept.append((name, value))
        kept.append((b"content-encoding", self.coding.encode("latin-1")))
        kept.append((b"vary", vary))
        if length is not None:
            kept.append((_CONTENT_LENGTH, str(length).encode("latin-1")))
        return kept
