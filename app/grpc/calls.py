"""What every gRPC call gets, as HTTP requests get it from the middleware: the API key checked
from call metadata, the model's admission place, the client's deadline, one error hierarchy
mapped to status codes (never INTERNAL for bad input), metrics by protocol and method, and one
JSON log line with a request id.

It is one wrapper around each servicer method (`CallGuard.run`), not a chain of interceptors:
one pass per call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from prometheus_client import Counter, Histogram

from app.core.errors import (
    BadInput,
    ClientGone,
    DeadlineExceeded,
    GlassboxError,
    ModelLoadError,
    ModelNotFound,
    ModelNotInRepository,
    ModelNotReady,
    Overloaded,
    PayloadTooLarge,
    ProtocolError,
    RepositoryRefused,
    RolloutRefused,
    Unauthorized,
    Unimplemented,
    UnsupportedMediaType,
    clipped,
)
from app.core.keys import KeyRing, caller_of, presented_key
from app.core.logging import request_id_from, request_id_var, surface_var
from app.core.metrics import series
from app.dataplane.admission import InFlightLimit
from app.dataplane.service import InferenceService
from app.runtime.rollout import caller_var

logger = logging.getLogger("app.grpc")

# The codes Triton and TF Serving answer for the same conditions. A request over a size limit
# is INVALID_ARGUMENT, as Triton answers a batch over its maximum; RESOURCE_EXHAUSTED is kept
# for a full queue (retry later) and gRPC's own message size limit.
STATUS_CODES: dict[type[GlassboxError], grpc.StatusCode] = {
    ProtocolError: grpc.StatusCode.INVALID_ARGUMENT,
    BadInput: grpc.StatusCode.INVALID_ARGUMENT,
    UnsupportedMediaType: grpc.StatusCode.INVALID_ARGUMENT,
    PayloadTooLarge: grpc.StatusCode.INVALID_ARGUMENT,
    ModelNotFound: grpc.StatusCode.NOT_FOUND,
    ModelNotReady: grpc.StatusCode.UNAVAILABLE,
    ModelLoadError: grpc.StatusCode.UNAVAILABLE,
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    ClientGone: grpc.StatusCode.CANCELLED,
    Unauthorized: grpc.StatusCode.UNAUTHENTICATED,
    Unimplemented: grpc.StatusCode.UNIMPLEMENTED,
    RolloutRefused: grpc.StatusCode.FAILED_PRECONDITION,
    RepositoryRefused: grpc.StatusCode.FAILED_PRECONDITION,
    ModelNotInRepository: grpc.StatusCode.NOT_FOUND,
}


def status_code(error: GlassboxError) -> grpc.StatusCode:
    for kind in type(error).__mro__:
        if kind in STATUS_CODES:
            return STATUS_CODES[kind]
    return grpc.StatusCode.INTERNAL


_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
REQUESTS = Counter(
    "glassbox_grpc_requests",
    "gRPC calls answered, by protocol (v2, tfserving), method and status code.",
    ["protocol", "method", "code"],
)
LATENCY = Histogram(
    "glassbox_grpc_request_duration_seconds",
    "Time from a gRPC call's arrival to its answer, by protocol and method.",
    ["protocol", "method"],
    buckets=_BUCKETS,
)

_Response = TypeVar("_Response")


KEY_REQUIRED = (
    "A valid API key is required: call metadata 'authorization: Bearer KEY' or 'x-api-key: KEY'."
)
# Answered without a key, as /health/live and /health/ready are over HTTP: probes send none.
OPEN_METHODS = {
    "/inference.GRPCInferenceService/ServerLive",
    "/inference.GRPCInferenceService/ServerReady",
}


ADMIN_KEY_REQUIRED = (
    "An admin key (GLASSBOX_ADMIN_API_KEYS) is required: call metadata 'authorization: Bearer "
    "KEY' or 'x-api-key: KEY'; with none set, the model repository calls are refused."
)

# The model repository calls, which change what is served: an admin key, as /v2/repository.
ADMIN_METHODS = {
    f"/inference.GRPCInferenceService/{name}"
    for name in ("RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload")
}


class CallGuard:
    def __init__(
        self, api_keys: list[str], admission: InFlightLimit, admin_keys: list[str] | None = None
    ):
        self.keys = KeyRing(api_keys)
        self.admins = KeyRing(admin_keys or [])
        self.admission = admission

    def authorized(self, metadata: dict[str, Any], admin: bool = False) -> bool:
        """Whether the call's metadata presents an accepted key (always, with no keys set);
        for an `admin` call, an admin key (never, with none set), as /admin over HTTP."""
        if not self.keys and not admin:
            return True
        key = presented_key(metadata.get("x-api-key"), metadata.get("authorization"))
        return (self.admins if admin else self.keys).accepts(key)

    async def run(
        self,
        protocol: str,
        method: str,
        context: grpc.aio.ServicerContext,
        work: Callable[[], Awaitable[_Response]],
        model: str | None = None,
        infer: bool = False,
        open_call: bool = False,
        admin: bool = False,
    ) -> _Response:
        """`work()`'s answer, or the call aborted with the status its error maps to. `model`
        is the model asked for (logs); an `infer` call also takes one of its admission places,
        as a POST to a model does over HTTP; an `open_call` needs no key (liveness and
        readiness, open over HTTP too); an `admin` call needs an admin key (the model repository
        calls, as /v2/repository over HTTP)."""
        started = time.perf_counter()
        metadata = dict(context.invocation_metadata() or ())
        request_id = request_id_from(metadata.get("x-request-id", ""))
        token = request_id_var.set(request_id)
        surface = surface_var.set(f"grpc/{protocol}")
        trailer = (("x-request-id", request_id),)
        code, message = grpc.StatusCode.OK, ""
        try:
            if not open_call and not self.authorized(metadata, admin):
                raise Unauthorized(ADMIN_KEY_REQUIRED if admin else KEY_REQUIRED)
            remaining = context.time_remaining()
            if not infer or model is None:
                answer = await _within(remaining, work())
            else:
                # The caller a sticky canary split keeps on one version, as over HTTP.
                caller_var.set(
                    caller_of(
                        metadata.get("x-caller-id"),
                        metadata.get("x-api-key"),
                        metadata.get("authorization"),
                    )
                )
                with self.admission.admit(model):
                    answer = await _within(remaining, work())
            context.set_trailing_metadata(trailer)
            return answer
        except GlassboxError as error:
            code, message = status_code(error), error.message
        except TimeoutError:
            code = grpc.StatusCode.DEADLINE_EXCEEDED
            message = "The call's deadline passed before it was answered."
        except asyncio.CancelledError:  # the client went away, or gRPC ended it at its deadline
            remaining = context.time_remaining()
            passed = remaining is not None and remaining <= 0
            code = grpc.StatusCode.DEADLINE_EXCEEDED if passed else grpc.StatusCode.CANCELLED
            raise
        except Exception:
            logger.exception("gRPC call failed", extra={"method": method, "model": model})
            code = grpc.StatusCode.INTERNAL
            message = f"Internal error (request id {request_id}); the server log has the detail."
        finally:
            seconds = time.perf_counter() - started
            series(REQUESTS, protocol, method, code.name).inc()
            series(LATENCY, protocol, method).observe(seconds)
            logger.info(
                "request",
                extra={
                    "transport": "grpc",
                    "protocol": protocol,
                    "method": method,
                    "model": None if model is None else clipped(model),
                    "status": code.name,
                    "latency_ms": round(seconds * 1000, 2),
                },
            )
            request_id_var.reset(token)
            surface_var.reset(surface)
        await context.abort(code, message, trailing_metadata=trailer)
        raise AssertionError("context.abort returns only by raising")  # pragma: no cover


class _Undecodable:
    """What a request that did not parse as its method's message is handed on as."""

    def __init__(self, error: Exception):
        self.error = error


class DecodeGuard(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """A unary request that is not a valid message of its method's type is INVALID_ARGUMENT,
    counted and logged through the guard like any other refusal, where grpcio would answer a
    bare UNKNOWN outside it. Each method's handler is wrapped once, on its first call."""

    def __init__(self, guard: CallGuard):
        self.guard = guard
        self._handlers: dict[str, Any] = {}

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        method: str = details.method
        if method in self._handlers:
            return self._handlers[method]
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler  # unknown methods (not kept: their names are the client's), streams
        self._handlers[method] = wrapped = self._lenient(method, handler)
        return wrapped

    def _lenient(self, method: str, handler: Any) -> Any:
        service, _, name = method.strip("/").rpartition("/")
        protocol = {"inference": "v2", "tensorflow": "tfserving"}.get(
            service.partition(".")[0], "health"
        )
        parse, behaviour = handler.request_deserializer, handler.unary_unary

        def deserialize(data: bytes) -> Any:
            try:
                return parse(data)
            except Exception as error:  # protobuf's DecodeError, or bad UTF-8 in a string
                return _Undecodable(error)

        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if not isinstance(request, _Undecodable):
                return await behaviour(request, context)

            async def refuse() -> Any:
                raise ProtocolError(
                    f"The request is not a valid {service}/{name} request message "
                    f"({request.error})."
                )

            # The key first: a caller without one learns nothing of what the server parses.
            open_call = method in OPEN_METHODS or protocol == "health"
            admin = method in ADMIN_METHODS
            return await self.guard.run(
                protocol, name, context, refuse, open_call=open_call, admin=admin
            )

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=deserialize,
            response_serializer=handler.response_serializer,
        )


class GuardedServicer:
    """A protocol's servicer: its calls run through the guard, on the shared service."""

    protocol = ""

    def __init__(self, service: InferenceService, guard: CallGuard):
        self.service = service
        self.guard = guard

    async def refuse(self, method: str, message: str, context: grpc.aio.ServicerContext) -> Any:
        """UNIMPLEMENTED, saying what to use instead (the generated stubs' default says only
        'Method not implemented!')."""

        async def answer() -> Any:
            raise Unimplemented(message)

        return await self.guard.run(self.protocol, method, context, answer)


async def _within(seconds: float | None, work: Awaitable[_Response]) -> _Response:
    """The client's deadline, when it set one, bounds the work."""
    if seconds is None:
        return await work
    async with asyncio.timeout(max(seconds, 0.0)):
        return await work
