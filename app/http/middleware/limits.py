"""Request body limits: time (408), size (413) and JSON nesting depth (422).

`BodyLimits.read` takes the whole body before anything else happens to the request, in
particular before the request takes one of its model's places (`gateway.Gateway`): a client
sending its body slowly would otherwise hold a place, and 256 of them refused every other
caller of the model with 503. The body must come within `timeout_s` of the request head
(408, and the connection closed: the rest of a late body cannot be told from a next request),
and its size is checked from Content-Length before reading and again as it streams in (413).
A JSON body (within the size limit by then) has its nesting measured before any parser sees
it, since a deeply nested document can exhaust the parser's recursion.

A refused request leaves what was made of its body (the text, the parser's error with its
input) in reference cycles through the error's traceback, and `settle_heap`
(app.runtime.model) collects the young generation only every 50,000 allocations, a few hundred
refused requests: 16 MiB bodies left about 48 MiB each behind until then (and a 16 KB gzip body
decodes to 16 MiB). So a request with a body of `COLLECT_AFTER_BYTES` or more that is answered
with an error has its young garbage collected as it ends; smaller or successful requests pay
nothing.
"""

from __future__ import annotations

import asyncio
import gc
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.http.routes.errors import error_response

COLLECT_AFTER_BYTES = 64 * 1024


class BadBody(Exception):
    """A request body that cannot be used: its answer's status, message and code."""

    def __init__(self, status: int, message: str, code: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers

    async def answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(self.status, self.message, self.code, headers=self.headers)
        await response(scope, receive, send)


def too_large(limit: int) -> BadBody:
    message = f"The request body is over the limit of {limit} bytes."
    return BadBody(413, message, "payload_too_large")


@dataclass(eq=False)
class Deadline:
    task: asyncio.Task[Any]
    at: float
    done: bool = False
    passed: bool = False  # it came first: its task was cancelled


class Deadlines:
    """Deadlines of one length for the tasks that start one, as `asyncio.timeout` would set
    them, but with one timer for all: they end in the order they begin. A timeout of its own
    for each body read cost about 5 us a request (its timer, and the heap of cancelled ones)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._pending: deque[Deadline] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> Deadline:
        """A deadline `seconds` from now for the current task, which is cancelled when it
        passes before the deadline is `done` (`passed` then says why)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # an app served again on another loop (tests' clients)
            self._loop, self._timer = loop, None
            self._pending.clear()
        pending = self._pending
        while pending and pending[0].done:  # most end within milliseconds
            pending.popleft()
        deadline = Deadline(asyncio.current_task(), loop.time() + self.seconds)  # type: ignore[arg-type]
        pending.append(deadline)
        if self._timer is None:
            self._timer = loop.call_at(deadline.at, self._expire)
        return deadline

    def _expire(self) -> None:
        loop = asyncio.get_running_loop()
        pending = self._pending
        now = loop.time()
        while pending and (pending[0].done or pending[0].at <= now):
            deadline = pending.popleft()
            if not deadline.done:
                deadline.passed = True
                deadline.task.cancel()
        self._timer = loop.call_at(pending[0].at, self._expire) if pending else None


class BodyLimits:
    """The body read within `timeout_s` and `max_bytes` (`read`), then 422 for JSON nested
    deeper than `max_json_depth` (`run`); run by `gateway.Gateway` around the app."""

    def __init__(self, max_bytes: int, max_json_depth: int, timeout_s: float = 5.0):
        self.max_bytes = max_bytes
        self.max_json_depth = max_json_depth
        self.timeout_s = timeout_s
        self._deadlines = Deadlines(timeout_s)

    async def read(self, receive: Receive, headers: dict[bytes, bytes]) -> Receive:
        """The whole body, read now; a `receive` that replays it. BadBody (408, 413) when it
        is late or too large."""
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            raise too_large(self.max_bytes)
        chunks: list[bytes] = []
        size = 0
        deadline = self._deadlines.start()
        try:
            while True:
                message = await receive()
                if message["type"] != "http.request":  # the client left; it says so again
                    return replay(b"".join(chunks), receive)
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_bytes:
                    raise too_large(self.max_bytes)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return replay(b"".join(chunks), receive)
        except asyncio.CancelledError:
            if not deadline.passed:
                raise
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
            raise BadBody(
                408,
                f"The request body did not arrive within {self.timeout_s:g} s.",
                "request_timeout",
                headers={"Connection": "close"},
            ) from None
        finally:
            deadline.done = True

    async def run(
        self, app: ASGIApp, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes]
    ) -> None:
        """The app, once a JSON body's depth is known to be within the limit; `receive`
        replays a body `read` took (or has none)."""
        if b"json" in headers.get(b"content-type", b""):
            message = await receive()
            body = message.get("body", b"")
            receive = replay(body, receive)
            if json_depth(body, self.max_json_depth) > self.max_json_depth:
                response = error_response(
                    422,
                    f"The JSON body is nested deeper than {self.max_json_depth} levels.",
                    "invalid_input",
                )
                await response(scope, receive, send)
                return
        else:
            body = b""
        declared = headers.get(b"content-length")
        large = len(body) >= COLLECT_AFTER_BYTES or (
            declared is not None and declared.isdigit() and int(declared) >= COLLECT_AFTER_BYTES
        )
        if large or b"transfer-encoding" in headers:
            await _collecting_if_refused(app, scope, receive, send)
        else:
            await app(scope, receive, send)


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
