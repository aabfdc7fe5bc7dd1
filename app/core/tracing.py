"""OpenTelemetry tracing: the one module the layers call to make spans (docs/operations.md,
"Traces").

Off unless the standard variables configure an exporter (`configured`): an OTLP endpoint
(`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) or an
`OTEL_TRACES_EXPORTER` other than `none`, and `OTEL_SDK_DISABLED` not `true`. Off, no span is
built: every function here checks one module global and returns None (or a shared empty
context manager). On, the SDK reads the rest of the standard variables itself: the sampler
(`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`), the resource (`OTEL_SERVICE_NAME`,
`OTEL_RESOURCE_ATTRIBUTES`), the batch processor (`OTEL_BSP_*`) and the exporter's endpoint,
headers, timeout and compression (`OTEL_EXPORTER_OTLP_*`).

The provider is this module's own, not OpenTelemetry's global one: nothing else in the process
(FastAPI's hooks, a library) starts spans into the service's traces, and tests can install
an in-memory exporter and take it away again. Each process sets it up in the app's lifespan,
so each worker of `python -m app.serve --workers N` has its own export thread.

Requests continue the W3C `traceparent` and `tracestate` they arrive with (HTTP headers, gRPC
call metadata) and answer with their own `traceparent`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import Token
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

DEFAULT_SERVICE_NAME = "glassbox"
# The span attributes of the service's own (beside OpenTelemetry's semantic conventions).
MODEL, VERSION, REQUEST_ID = "glassbox.model", "glassbox.version", "glassbox.request_id"
BATCH_SIZE, BATCH_REQUESTS = "glassbox.batch.size", "glassbox.batch.requests"

_W3C = TraceContextTextMapPropagator()
_NO_SPAN: AbstractContextManager[None] = nullcontext()
_EMPTY = otel_context.Context()  # a parent of no span: a new trace


@dataclass
class _State:
    provider: TracerProvider | None = None
    tracer: trace.Tracer | None = None


_state = _State()


# -- setting up ------------------------------------------------------------------------------


def configured(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the standard variables ask for traces (the module docstring says which)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return exporters != "none"
    endpoints = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    return any(environ.get(name) for name in endpoints)


def _otlp_exporter(environ: Mapping[str, str]) -> SpanExporter:
    """The OTLP exporter the protocol variable names; http/protobuf is the specification's
    default. Both read their endpoint, headers and timeout from the environment."""
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpExporter,
        )

        return HttpExporter()
    raise ValueError(
        f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported: use grpc or http/protobuf."
    )


def exporters_from(environ: Mapping[str, str] = os.environ) -> list[SpanExporter]:
    """The exporters OTEL_TRACES_EXPORTER lists (otlp, console; otlp when unset)."""
    names = [
        name.strip().lower()
        for name in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")
        if name.strip()
    ]
    made: list[SpanExporter] = []
    for name in names:
        if name == "otlp":
            made.append(_otlp_exporter(environ))
        elif name == "console":
            made.append(ConsoleSpanExporter())
        elif name != "none":
            raise ValueError(
                f"OTEL_TRACES_EXPORTER={name!r} is not supported: use otlp or console."
            )
    return made


def _resource() -> Resource:
    resource = Resource.create()  # OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    return resource


def install(exporter: SpanExporter | None = None) -> None:
    """Turn tracing on: with `exporter` exported span by span (tests), else with the exporters
    the environment configures, each behind a batch processor (its own thread)."""
    provider = TracerProvider(resource=_resource())  # the sampler: OTEL_TRACES_SAMPLER
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        for made in exporters_from():
            provider.add_span_processor(BatchSpanProcessor(made))
    _state.provider = provider
    _state.tracer = provider.get_tracer("glassbox")


def start_from_environment() -> bool:
    """`install()` when the environment configures tracing and nothing is installed yet (the
    lifespan's call); whether it did, so that its caller shuts down only what it started."""
    if _state.tracer is not None or not configured():
        return False
    install()
    return True


def shutdown() -> None:
    """Export what is still buffered and turn tracing off."""
    provider = _state.provider
    _state.provider = _state.tracer = None
    if provider is not None:
        provider.shutdown()  # each processor flushes first


def enabled() -> bool:
    return _state.tracer is not None


# -- requests: continued, answered with their traceparent ------------------------------------


@dataclass
class Served:
    """A request's server span, current for the request's task until `end`."""

    span: Span
    token: Token[otel_context.Context]

    def traceparent(self) -> str:
        """The W3C `traceparent` of the request's span, for the answer."""
        found = self.span.get_span_context()
        return f"00-{found.trace_id:032x}-{found.span_id:016x}-{int(found.trace_flags):02x}"

    def end(self, error: bool = False) -> None:
        if error:
            self.span.set_status(Status(StatusCode.ERROR))
        self.span.end()
        otel_context.detach(self.token)


def serve(name: str, carrier: Mapping[str, str], attributes: dict[str, Any]) -> Served | None:
    """A server span for a request whose `traceparent` and `tracestate` (in `carrier`, by
    their lower-case names) it continues, or starts a trace; None when tracing is off."""
    tracer = _state.tracer
    if tracer is None:
        return None
    parent = _W3C.extract(carrier) if carrier else _EMPTY
    span = tracer.start_span(name, context=parent, kind=SpanKind.SERVER, attributes=attributes)
    return Served(span, otel_context.attach(trace.set_span_in_context(span, parent)))


# -- spans inside a request --------------------------------------------------------------------


def span(
    name: str, attributes: Callable[[], dict[str, Any]] | None = None
) -> AbstractContextManager[Any]:
    """A child span of the current one for the block (an error raised in it is recorded),
    with the attributes `attributes()` makes; or a shared empty context manager, with nothing
    made, when tracing is off or the current span is not recorded (a request the sampler left
    out: its children would be left out too, at a cost)."""
    tracer = _state.tracer
    if tracer is None or not trace.get_current_span().is_recording():
        return _NO_SPAN
    made = None if attributes is None else attributes()
    return tracer.start_as_current_span(name, attributes=made)


def current() -> SpanContext | None:
    """The current span's context, to parent or link work done elsewhere later; None when
    tracing is off or no span is current."""
    if _state.tracer is None:
        return None
    found = trace.get_current_span().get_span_context()
    return found if found.is_valid else None


def current_trace_id() -> str | None:
    """The current trace's id in hex (as in `traceparent`), for log lines; None when off."""
    return trace_id_of(current())


def trace_id_of(found: SpanContext | None) -> str | None:
    return None if found is None else f"{found.trace_id:032x}"


def start(
    name: str,
    parent: SpanContext | None = None,
    links: Sequence[SpanContext] = (),
    attributes: dict[str, Any] | None = None,
    root: bool = False,
    start_ns: int | None = None,
) -> Span | None:
    """A span ended by its caller (`span.end()`), for work that is not one block of the
    current task: a child of `parent` (else of the current span; else, or with `root`, a new
    trace) linked to `links`, started now or at `start_ns` (`time.time_ns()`); None when
    tracing is off or the parent is not sampled."""
    tracer = _state.tracer
    if tracer is None:
        return None
    within: otel_context.Context | None = None  # the current context
    if parent is not None:
        if not parent.trace_flags.sampled:
            return None
        within = trace.set_span_in_context(trace.NonRecordingSpan(parent))
    elif root:
        within = _EMPTY
    elif not trace.get_current_span().is_recording():
        return None
    return tracer.start_span(
        name,
        context=within,
        links=[Link(context) for context in links],
        attributes=attributes,
        start_time=start_ns,
    )


def end(started: Span | None, error: BaseException | None = None) -> None:
    """`started` ended, with `error` recorded as its failure; nothing for None."""
    if started is None:
        return
    if error is not None:
        started.record_exception(error)
        started.set_status(Status(StatusCode.ERROR, type(error).__name__))
    started.end()


@contextmanager
def ended(started: Span | None) -> Iterator[None]:
    """`started` ended after the block, an error raised in it recorded; nothing for None."""
    try:
        yield
    except BaseException as error:
        end(started, error)
        raise
    end(started)
