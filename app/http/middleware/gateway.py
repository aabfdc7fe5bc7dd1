"""Every HTTP request's way in and out, as one pure ASGI middleware.

In order: the request id, API keys (401), the whole body read within its deadline and size
(408, 413: before a model's place is taken, so a slow sender holds none), the caller (for a
sticky canary split), the model's in-flight limit (503 with Retry-After) and the surface the
payload log names, a compressed body decoded (400, 413, 415) and the JSON depth limit (422);
on the way out the answer compressed where Accept-Encoding asks, the request id and security
headers on the answer, then the request's metrics and its log line. CORS, when configured, sits
between the outer part (so its answers get ids, headers, metrics and logs) and the key check (so
a preflight needs no key).
One middleware instead of five: each wrapped `send` again and read the headers again, and
together they cost a tenth of an iris prediction's time on the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import Overloaded
from app.core.keys import caller_of
from app.core.logging import request_id_from, request_id_var, surface_var
from app.dataplane.admission import InFlightLimit
from app.http import observability
from app.http.middleware import compression
from app.http.middleware.limits import BadBody, BodyLimits
from app.http.middleware.security import KeyCheck, with_security_headers
from app.http.paths import model_request
from app.http.routes.errors import error_response
from app.runtime.rollout import caller_var


def _text(headers: dict[bytes, bytes], name: bytes) -> str | None:
    value = headers.get(name)
    return None if value is None else value.decode("latin-1")


def _headless(send: Send) -> Send:
    """`send` with every body left out, its headers (Content-Length too) kept."""

    async def headless(message: Message) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            message = {**message, "body": b""}
        await send(message)

    return headless


class Gateway:
    def __init__(
        self,
        app: ASGIApp,
        keys: KeyCheck,
        admission: InFlightLimit,
        limits: BodyLimits,
        cors: Callable[[ASGIApp], ASGIApp] | None = None,
    ) -> None:
        self.app = app
        self.keys = keys
        self.admission = admission
        self.limits = limits
        self.inner: ASGIApp = cors(self._guarded) if cors is not None else self._guarded

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if method == "HEAD":
            # Answered as GET, without its body (RFC 9110 9.3.2): the routes declare GET only.
            # Not compressed: its Content-Length says the identity's.
            kept = [(k, v) for k, v in scope["headers"] if k != b"accept-encoding"]
            scope = {**scope, "method": "GET", "headers": kept}
            send = _headless(send)
        started = time.perf_counter()
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"")
        request_id = request_id_from(given.decode("latin-1"))
        token = request_id_var.set(request_id)
        status = 500  # what the client gets if the app raises before answering
        id_header = (b"x-request-id", request_id.encode("latin-1"))

        async def answer(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                kept = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                kept.append(id_header)
                message["headers"] = with_security_headers(kept)
            await send(message)

        try:
            await self.inner(scope, receive, answer)
        except BaseException:
            # The id stays set: the 500 handler outside this middleware logs with it.
            scope["method"] = method  # counted and logged as sent
            observability.record_request(scope, status, started)
            raise
        scope["method"] = method
        observability.record_request(scope, status, started)
        request_id_var.reset(token)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"])
        method, path = scope["method"], scope["path"]
        refusal = self.keys.refusal(method, path, headers)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        if b"content-length" in headers or b"transfer-encoding" in headers:
            try:
                receive = await self.limits.read(receive, headers)
            except BadBody as refused:
                await refused.answer(scope, receive, send)
                return
        target = model_request(scope) if method == "POST" else None
        if target is None:
            await self._body(scope, receive, send, headers)
            return
        model = target.model
        caller_token = caller_var.set(
            caller_of(
                _text(headers, b"x-caller-id"),
                _text(headers, b"x-api-key"),
                _text(headers, b"authorization"),
            )
        )
        try:
            self.admission.acquire(model, target.asked)
        except Overloaded as overloaded:
            response = error_response(
                503, overloaded.message, overloaded.code, headers=overloaded.headers
            )
            await response(scope, receive, send)
            caller_var.reset(caller_token)
            return
        surface = surface_var.set(target.surface)
        try:
            await self._body(scope, receive, send, headers)
        finally:
            self.admission.release(model)
            caller_var.reset(caller_token)
            surface_var.reset(surface)

    async def _body(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes]
    ) -> None:
        """The body limits and the app, with the body decoded and the answer compressed
        where the headers say so (two dict lookups when they do not)."""
        accept = headers.get(b"accept-encoding")
        if accept is not None:
            coding = compression.accepted(accept)
            if coding is not None:
                send = compression.compressing(send, coding)
        sent_coding = headers.get(b"content-encoding")
        if sent_coding is not None:
            try:
                coding = compression.coding_of(sent_coding)
                if coding is not None:
                    receive = await compression.decoded(
                        scope, receive, coding, self.limits.max_bytes
                    )
                    headers = dict(scope["headers"])
            except BadBody as refused:
                await refused.answer(scope, receive, send)
                return
        await self.limits.run(self.app, scope, receive, send, headers)
