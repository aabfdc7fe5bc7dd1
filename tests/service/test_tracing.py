"""Tracing below the HTTP app, to the SDK's in-memory exporter: a batch of several requests is
one span linked to each, a shadow copy is a linked trace of its own, a gRPC call continues its
metadata's traceparent; and what 'configured' means."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app.core import tracing
from app.core.settings import BatchPolicy
from app.dataplane.admission import InFlightLimit
from app.dataplane.shadow import Shadow
from app.grpc.calls import CallGuard
from app.runtime.batching import Batcher
from app.runtime.registry import ModelRegistry
from tests.grpc.test_call_guard import Context, answered, call

CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"


@pytest.fixture
def spans():
    exported = InMemorySpanExporter()
    tracing.install(exported)
    yield exported
    tracing.shutdown()


@contextmanager
def request(name: str) -> Iterator[None]:
    """A request's server span, current for the block, as the transports make it."""
    served = tracing.serve(name, {}, {})
    yield
    served.end()


def named(exported: InMemorySpanExporter, name: str) -> list:
    return [span for span in exported.get_finished_spans() if span.name == name]


def test_a_batch_of_several_requests_is_one_span_linked_to_each(spans):
    async def main():
        with ThreadPoolExecutor(1) as pool:
            batcher = Batcher(lambda batch: batch * 2, pool, BatchPolicy(max_batch_size=16))

            async def one(index: int) -> None:
                with request(f"request {index}"):
                    await batcher.submit(np.full((2, 3), index, np.float32))

            await asyncio.gather(*(one(index) for index in range(3)))
            await batcher.close()

    asyncio.run(main())
    requests = {span.context.span_id: span for span in spans.get_finished_spans()}
    requests = {key: span for key, span in requests.items() if span.name.startswith("request")}
    (batch,) = named(spans, "batch")
    assert batch.attributes["glassbox.batch.size"] == 6
    assert batch.attributes["glassbox.batch.requests"] == 3
    assert {link.context.span_id for link in batch.links} == set(requests)
    assert batch.parent.span_id in requests
    queued = named(spans, "queue")
    assert {span.parent.span_id for span in queued} == set(requests)
    assert all(span.attributes["glassbox.batch.size"] == 6 for span in queued)
    (model_call,) = named(spans, "model call")
    assert model_call.parent.span_id == batch.context.span_id


def never_made() -> dict:
    raise AssertionError("attributes made for a span that is not recorded")


def test_an_unsampled_request_makes_no_child_span_nor_its_attributes(spans):
    async def main():
        unsampled = {"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-00"}
        served = tracing.serve("request", unsampled, {})
        with ThreadPoolExecutor(1) as pool:
            batcher = Batcher(lambda batch: batch, pool, BatchPolicy())
            with tracing.span("child", never_made):
                await batcher.submit(np.zeros((1, 3), np.float32))
            assert tracing.start("later") is None
            assert tracing.current().trace_id == int(CLIENT_TRACE, 16)  # for logs and links
            await batcher.close()
        served.end()
        return served

    served = asyncio.run(main())
    assert f"{served.span.get_span_context().trace_id:032x}" == CLIENT_TRACE  # the id lives on
    assert spans.get_finished_spans() == ()


def test_with_tracing_off_no_attributes_are_made(spans):
    tracing.shutdown()
    with tracing.span("child", never_made):
        pass
    assert tracing.start("later") is None
    assert tracing.current() is None


def test_an_untraced_batch_makes_no_span(spans):
    async def main():
        with ThreadPoolExecutor(1) as pool:
            batcher = Batcher(lambda batch: batch, pool, BatchPolicy())
            await batcher.submit(np.zeros((1, 3), np.float32))  # no request span is current
            await batcher.close()

    asyncio.run(main())
    assert spans.get_finished_spans() == ()


def test_a_shadow_copy_is_a_trace_of_its_own_linked_to_the_request(spans):
    candidate = SimpleNamespace(
        name="iris",
        version=2,
        predict=lambda batch: batch,
        loaded_card=SimpleNamespace(output=SimpleNamespace(kind="probabilities")),
    )

    async def main():
        shadow = Shadow(max_in_flight=4, timeout_s=30)
        with request("request"):
            rows = np.eye(3, dtype=np.float32)
            shadow.offer(candidate, 1.0, rows, rows)
        await shadow.idle()
        shadow.close()

    asyncio.run(main())
    (copied,) = named(spans, "request")
    (copy,) = named(spans, "shadow copy")
    assert copy.parent is None
    assert copy.context.trace_id != copied.context.trace_id
    assert [link.context.span_id for link in copy.links] == [copied.context.span_id]
    assert copy.attributes["glassbox.version"] == 2


def test_a_grpc_call_continues_its_metadatas_traceparent_and_answers_its_own(spans):
    context = Context(metadata=(("traceparent", f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"),))
    assert call(CallGuard([], InFlightLimit(1, ModelRegistry())), context, answered) == "answer"
    (server,) = named(spans, "v2/ModelInfer")
    assert f"{server.context.trace_id:032x}" == CLIENT_TRACE
    assert f"{server.parent.span_id:016x}" == CLIENT_SPAN
    assert server.attributes["rpc.grpc.status_code"] == 0
    trailer = dict(context.trailing)
    assert trailer["traceparent"].split("-")[1:3] == [
        CLIENT_TRACE,
        f"{server.context.span_id:016x}",
    ]


def test_a_refused_grpc_call_is_a_span_in_error_only_for_a_server_fault(spans):
    guard = CallGuard(["key"], InFlightLimit(1, ModelRegistry()))
    call(guard, Context(), answered)  # no key: UNAUTHENTICATED, the client's fault
    (refused,) = named(spans, "v2/ModelInfer")
    assert refused.attributes["rpc.grpc.status_code"] == 16
    assert refused.status.is_unset


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "glassbox", "OTEL_TRACES_SAMPLER": "always_on"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
    ],
)
def test_tracing_is_on_only_when_an_exporter_is_configured(environ, on):
    assert tracing.configured(environ) is on


def test_the_protocol_variable_picks_the_otlp_exporter():
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http

    (http,) = tracing.exporters_from({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})
    (grpc,) = tracing.exporters_from({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    assert isinstance(http, Http)
    assert isinstance(grpc, Grpc)
    with pytest.raises(ValueError, match="http/json"):
        tracing.exporters_from({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
