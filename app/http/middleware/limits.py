"""ASGI middleware for request limits: body size (413), JSON nesting depth (422), and
requests in progress per model (503).

The size is checked from Content-Length before reading, and again while the body streams in.
A JSON body is read whole (it is within the size limit by then) and its nesting measured before
any parser sees it, since a deeply nested document can exhaust the parser's recursion.
"""

from __future__ import annotations

import numpy as np
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import Overloaded
from app.dataplane.admission import InFlightLimit
from app.http.paths import MODEL_PATH
from app.http.routes.errors import error_response


class RequestLimits:
    def __init__(self, app: ASGIApp, max_bytes: int, max_json_depth: int):
        self.app = app
        self.max_bytes = max_bytes
        self.max_json_depth = max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        is_json = b"json" in headers.get(b"content-type", b"")
        if is_json:
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
            await self.app(scope, _replay(body, receive), send)
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
            await self.app(scope, counting_receive, send)
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


class Admission:
    """The service's InFlightLimit applied to every POST to a model's route; a refusal is the
    usual error body, 503 with Retry-After."""

    def __init__(self, app: ASGIApp, limit: InFlightLimit):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = MODEL_PATH.match(scope["path"]) if scope["type"] == "http" else None
        if match is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        model = match["model"]
        try:
            self.limit.acquire(model)
        except Overloaded as refusal:
            response = error_response(503, refusal.message, refusal.code, headers=refusal.headers)
            await response(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.limit.release(model)


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
