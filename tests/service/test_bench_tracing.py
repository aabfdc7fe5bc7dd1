"""The tracing benchmark: which server gets which OTEL_* variables, the rounds' order, the
median round, and the receiver that stands in for a collector."""

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from bench.otlp_receiver import TRACES_PATH, OtlpReceiver
from bench.tracing import Row, environment, has_tracing, in_turn, summary

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # every git repository knows it


def test_only_the_traced_servers_get_an_endpoint_and_their_sampler(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://from-the-shell:4318")
    for name in ("before", "off"):
        assert not any(key.startswith("OTEL_") for key in environment(name, "http://r:1"))
    ten = environment("10%", "http://r:1")
    assert ten["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://r:1"
    assert (ten["OTEL_TRACES_SAMPLER"], ten["OTEL_TRACES_SAMPLER_ARG"]) == (
        "parentbased_traceidratio",
        "0.1",
    )
    assert environment("0%", "http://r:1")["OTEL_TRACES_SAMPLER_ARG"] == "0.0"
    assert environment("100%", "http://r:1")["OTEL_TRACES_SAMPLER"] == "parentbased_always_on"


def test_a_before_with_tracing_is_told_apart():
    assert has_tracing("HEAD")
    assert not has_tracing(EMPTY_TREE)


def test_each_round_starts_one_server_further_on():
    rows = [Row(name, server=None) for name in ("before", "off", "0%")]
    orders = [[row.name for row in in_turn(rows, index)] for index in range(4)]
    assert orders == [
        ["before", "off", "0%"],
        ["off", "0%", "before"],
        ["0%", "before", "off"],
        ["before", "off", "0%"],
    ]


def test_a_row_is_its_median_round():
    rounds = [
        {"rps": 900.0, "cpu_ms": 0.5, "p50_ms": 9.0, "p99_ms": 30.0, "errors": 0},
        {"rps": 1000.0, "cpu_ms": 0.7, "p50_ms": 8.0, "p99_ms": 20.0, "errors": 1},
        {"rps": 1200.0, "cpu_ms": 0.6, "p50_ms": 7.0, "p99_ms": 10.0, "errors": 0},
    ]
    row = summary(Row("off", server=None, rounds=rounds))
    assert (row["rps"], row["rps_min"], row["rps_max"]) == (1000.0, 900.0, 1200.0)
    assert (row["p50_ms"], row["p99_ms"], row["errors"]) == (8.0, 20.0, 1)
    assert (row["cpu_ms"], row["cpu_ms_min"], row["cpu_ms_max"]) == (0.6, 0.5, 0.7)


def test_the_receiver_takes_the_sdks_export_and_answers_as_a_collector():
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    with OtlpReceiver() as receiver:
        provider = TracerProvider()
        provider.add_span_processor(
            SimpleSpanProcessor(OTLPSpanExporter(endpoint=receiver.endpoint + TRACES_PATH))
        )
        tracer = provider.get_tracer("test")
        with (
            tracer.start_as_current_span("parent") as parent,
            tracer.start_as_current_span("child"),
        ):
            pass
        provider.shutdown()
        spans = receiver.wait_for(lambda spans: len(spans) == 2, timeout_s=30)
        answer = httpx.post(
            receiver.endpoint + TRACES_PATH, content=ExportTraceServiceRequest().SerializeToString()
        )
    by_name = {span.name: span for span in spans}
    assert by_name["child"].parent_span_id == f"{parent.get_span_context().span_id:016x}"
    assert by_name["parent"].parent_span_id == ""
    assert answer.status_code == 200
    assert ExportTraceServiceResponse.FromString(answer.content) == ExportTraceServiceResponse()
