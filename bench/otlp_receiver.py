"""A small OTLP/HTTP trace receiver on a loopback port: what a collector would get from the
service, for `python -m bench.tracing` (where it stands in for the collector) and the live
tracing test (which checks the spans it received).

It answers `POST /v1/traces` (binary protobuf, gzip or not) with an empty
`ExportTraceServiceResponse`, as the OpenTelemetry Collector does, and keeps each span as a
`ReceivedSpan` unless told to only count them (the benchmark, which runs it on the machine it
measures).
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

TRACES_PATH = "/v1/traces"


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    trace_id: str  # hex, as in traceparent
    span_id: str
    parent_span_id: str  # "" for a root
    kind: int
    service: str
    attributes: dict[str, Any] = field(default_factory=dict)
    links: tuple[tuple[str, str], ...] = ()  # (trace id, span id) of each linked span


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    return None if kind is None else getattr(any_value, kind)


def spans_of(request: ExportTraceServiceRequest) -> list[ReceivedSpan]:
    found = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                found.append(
                    ReceivedSpan(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        kind=span.kind,
                        service=str(resource.get("service.name", "")),
                        attributes={a.key: _value(a.value) for a in span.attributes},
                        links=tuple(
                            (link.trace_id.hex(), link.span_id.hex()) for link in span.links
                        ),
                    )
                )
    return found


class OtlpReceiver:
    """`with OtlpReceiver() as receiver:` listens on `receiver.endpoint` (for
    OTEL_EXPORTER_OTLP_ENDPOINT) until the block ends."""

    def __init__(self, keep: bool = True):
        self.keep = keep
        self.spans: list[ReceivedSpan] = []
        self.received = 0  # spans, kept or not
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != TRACES_PATH:
                    self.send_error(404)
                    return
                receiver._add(ExportTraceServiceRequest.FromString(body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # one line per export would bury the test's or benchmark's output

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def _add(self, request: ExportTraceServiceRequest) -> None:
        # Only counted when not kept: the benchmark's receiver shares the machine it measures.
        spans = spans_of(request) if self.keep else []
        count = sum(
            len(scope_spans.spans)
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
        )
        with self._changed:
            self.received += count
            self.spans.extend(spans)
            self._changed.notify_all()

    def wait_for(
        self, condition: Callable[[list[ReceivedSpan]], bool], timeout_s: float
    ) -> list[ReceivedSpan]:
        """The spans received once `condition(spans)` holds; AssertionError after
        `timeout_s` (a bound on an export that should come, not a measure of its speed)."""
        with self._changed:
            if not self._changed.wait_for(lambda: condition(self.spans), timeout_s):
                names = sorted({span.name for span in self.spans})
                raise AssertionError(f"waited {timeout_s} s for spans; received {names}")
            return list(self.spans)
