"""What every gRPC call goes through (app.grpc.calls.CallGuard), with a stand-in for grpc's
servicer context: admission places shared with HTTP, the client's deadline, keys, and every
error mapped to its status code. No server and no clock: each case is decided by state."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from app.core.errors import (
    BadInput,
    DeadlineExceeded,
    ModelNotFound,
    ModelNotReady,
    Overloaded,
    PayloadTooLarge,
    ProtocolError,
    Unimplemented,
)
from app.core.logging import surface_var
from app.dataplane.admission import InFlightLimit
from app.grpc.calls import CallGuard
from app.runtime.registry import ModelRegistry


class Aborted(Exception):
    pass


class Context:
    def __init__(self, metadata=(), time_remaining=None):
        self.metadata = metadata
        self.remaining = time_remaining
        self.trailing = ()
        self.code = None
        self.details = None

    def invocation_metadata(self):
        return self.metadata

    def time_remaining(self):
        return self.remaining

    def set_trailing_metadata(self, trailing):
        self.trailing = trailing

    async def abort(self, code, details, trailing_metadata=()):
        self.code, self.details, self.trailing = code, details, trailing_metadata
        raise Aborted


def call(guard, context, work, **kwargs):
    async def main():
        try:
            return await guard.run("v2", "ModelInfer", context, work, **kwargs)
        except Aborted:
            return None

    return asyncio.run(main())


async def answered():
    return "answer"


def test_an_answer_passes_with_the_request_id_in_the_trailer():
    context = Context(metadata=(("x-request-id", "abc"),))
    assert call(CallGuard([], InFlightLimit(1, ModelRegistry())), context, answered) == "answer"
    assert context.trailing == (("x-request-id", "abc"),)


def test_the_work_sees_the_surface_the_payload_log_names():
    async def surface():
        return surface_var.get()

    guard = CallGuard([], InFlightLimit(1, ModelRegistry()))
    assert call(guard, Context(), surface) == "grpc/v2"

    async def main():
        inside = await guard.run("tfserving", "Predict", Context(), surface)
        return inside, surface_var.get()  # reset once the call is answered

    assert asyncio.run(main()) == ("grpc/tfserving", None)


def test_an_inference_call_takes_a_place_http_shares_and_one_over_the_limit_is_exhausted():
    limit = InFlightLimit(1, ModelRegistry())
    guard = CallGuard([], limit)
    with limit.admit("iris"):  # an HTTP request in progress
        context = Context()
        call(guard, context, answered, model="iris", infer=True)
        assert context.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "busy" in context.details
        other = Context()
        assert call(guard, other, answered, model="mnist", infer=True) == "answer"
        metadata = Context()
        assert call(guard, metadata, answered, model="iris") == "answer"  # not an inference
    assert limit.in_flight == {}  # every place given back, and no name kept


def test_the_clients_deadline_bounds_the_work():
    never = asyncio.Event

    async def waits_forever():
        await never().wait()

    context = Context(time_remaining=0.0)
    call(CallGuard([], InFlightLimit(1, ModelRegistry())), context, waits_forever)
    assert context.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "deadline" in context.details


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ProtocolError("bad tensor"), grpc.StatusCode.INVALID_ARGUMENT),
        (BadInput("bad value"), grpc.StatusCode.INVALID_ARGUMENT),
        (PayloadTooLarge("too many"), grpc.StatusCode.INVALID_ARGUMENT),
        (ModelNotFound("no such"), grpc.StatusCode.NOT_FOUND),
        (ModelNotReady("loading"), grpc.StatusCode.UNAVAILABLE),
        (Overloaded("queue full"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (DeadlineExceeded("queued too long"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (Unimplemented("not here"), grpc.StatusCode.UNIMPLEMENTED),
    ],
)
def test_each_error_has_its_status_code_and_keeps_its_message(error, code):
    async def fails():
        raise error

    context = Context()
    call(CallGuard([], InFlightLimit(1, ModelRegistry())), context, fails)
    assert (context.code, context.details) == (code, error.message)


def test_an_unexpected_failure_is_internal_without_its_detail(caplog):
    async def breaks():
        raise RuntimeError("secret detail")

    context = Context(metadata=(("x-request-id", "r-1"),))
    call(CallGuard([], InFlightLimit(1, ModelRegistry())), context, breaks)
    assert context.code == grpc.StatusCode.INTERNAL
    assert "secret" not in context.details
    assert "r-1" in context.details
    assert "secret detail" in caplog.text


def test_keys_are_checked_from_metadata_in_either_form():
    guard = CallGuard(["k1"], InFlightLimit(1, ModelRegistry()))
    for metadata in ((("x-api-key", "k1"),), (("authorization", "Bearer k1"),)):
        assert call(guard, Context(metadata=metadata), answered) == "answer"
    for metadata in ((), (("x-api-key", "k2"),), (("authorization", "k1"),)):
        context = Context(metadata=metadata)
        call(guard, context, answered)
        assert context.code == grpc.StatusCode.UNAUTHENTICATED
