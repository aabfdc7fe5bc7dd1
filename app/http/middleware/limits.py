"""Request body limits: size (413) and JSON nesting depth (422).

The size is checked from Content-Length before reading, and again while the body streams in.
A JSON body is read whole (it is within the size limit by then) and its nesting measured before
any parser sees it, since a deeply nested document can exhaust the parser's recursion.

A refused request leaves what was made of its body (the text, the parser's error with its
input) in reference cycles through the error's traceback, and `settle_heap`
(app.runtime.model) collects the young generation only every 50,000 allocations, a few hundred
refused requests: 16 MiB bodies left about 48 MiB each behind until then (and a 16 KB gzip body
decodes to 16 MiB). So a request with a body of `COLLECT_AFTER_BYTES` or more that is answered
with an error has its young garbage collected as it ends; smaller or successful requests pay
nothing.
"""

from __future__ import annotations

import gc

import numpy as np
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.http.routes.errors import error_response

COLLECT_AFTER_BYTES = 64 * 1024


class BodyLimits:
    """413 over `max_bytes` (declared or streamed), 422 for JSON nested deeper than
    `max_json_depth`; run by `gateway.Gateway` around the app."""

    def __init__(self, max_bytes: int, max_json_depth: int):
        self.max_bytes = max_bytes
        self.max_json_depth = max_json_depth

    async def run(
        self, app: ASGIApp, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes]
    ) -> None:
        declared = headers.get(b"content-length")
        length = int(declared) if declared is not None and declared.isdigit() else None
        if length is not None and length > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        if b"json" in headers.get(b"content-type", b""):
            body, complete = await self._read(receive)
            if not complete:
                await self._too_large(scope, receive, send)
                return
            if json_depth(body, self.max_json_depth) > self.max_json_depth:
                response = error_response(
                    422,
                    f"The JSON body is nested deeper than {self.max_json_depth} levels.",
                    "invalid_input",
                )
                await response(scope, receive, send)
                return
            if len(body) < COLLECT_AFTER_BYTES:
                await app(scope, replay(body, receive), send)
            else:
                await _collecting_if_refused(app, scope, replay(body, receive), send)
            return

        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        large = (
            length >= COLLECT_AFTER_BYTES
            if length is not None
            else b"transfer-encoding" in headers  # sent in chunks: its length is not known
        )
        try:
            if large:
                await _collecting_if_refused(app, scope, counting_receive, send)
            else:
                await app(scope, counting_receive, send)
        except _BodyTooLarge:
            await self._too_large(scope, receive, send)

    async def _read(self, receive: Receive) -> tuple[bytes, bool]:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks), True
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return b"", False
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), True

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413,
            f"The request body is over the limit of {self.max_bytes} bytes.",
            "payload_too_large",
        )
        await response(scope, receive, send)


async def _collecting_if_refused(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """The app, then the young generation collected unless it answered with success."""
    status = 0

    async def recording(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        await send(message)

    try:
        await app(scope, receive, recording)
    finally:
        if not 200 <= status < 400:
            gc.collect(0)


def replay(body: bytes, receive: Receive) -> Receive:
    """The body already read, then the real channel (which reports a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class _BodyTooLarge(Exception):
    pass


def json_depth(body: bytes, limit: int | None = None) -> int:
    """Deepest bracket nesting, counting brackets inside strings too (so never less).

    With `limit`, a body with no more opening brackets than it is answered at C speed: it
    cannot nest deeper (most request bodies).
    """
    if limit is not None:
        opening = body.count(b"[") + body.count(b"{")
        if opening <= limit:
            return opening
    data = np.frombuffer(body, dtype=np.uint8)
    steps = np.zeros(len(data), dtype=np.int32)
    steps[(data == ord("[")) | (data == ord("{"))] = 1
    steps[(data == ord("]")) | (data == ord("}"))] = -1
    return int(np.cumsum(steps).max(initial=0))
