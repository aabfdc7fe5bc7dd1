"""Request body limits: size (413) and JSON nesting depth (422).

The size is checked from Content-Length before reading, and again while the body streams in.
A JSON body is read whole (it is within the size limit by then) and its nesting measured before
any parser sees it, since a deeply nested document can exhaust the parser's recursion.
"""

from __future__ import annotations

import numpy as np
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.http.routes.errors import error_response


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
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
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
            await app(scope, _replay(body, receive), send)
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

        try:
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


def _replay(body: bytes, receive: Receive) -> Receive:
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
