"""Tracing through the app, exported to the SDK's in-memory exporter: a request's spans and
their parents, a client's traceparent continued, the answer's traceparent, the trace id in the
log line and the payload record; a request the sampler leaves out starts its server span and no
other; and nothing at all when tracing is off."""

from __future__ import annotations

import json
import logging

import pytest
from fastapi.testclient import TestClient
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app.core import tracing
from app.core.settings import Settings
from app.http.app import create_app
from tests.conftest import MODELS, ROOT
from tests.http.test_observability import request_lines

FLOWER = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
SAFETY_S = 30  # a bound on the payload log's writer thread, reached only when it is broken


@pytest.fixture(scope="module")
def payload_path(tmp_path_factory):
    return tmp_path_factory.mktemp("traced") / "payload.jsonl"


@pytest.fixture(scope="module")
def exporter():
    exported = InMemorySpanExporter()
    tracing.install(exported)
    yield exported
    tracing.shutdown()


@pytest.fixture(scope="module")
def client(exporter, payload_path):
    settings = Settings(
        model_dir=MODELS, models=["iris", "mnist"], poll_interval_s=0, payload_log=str(payload_path)
    )
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def spans(exporter):
    exporter.clear()
    return exporter


@pytest.fixture
def sdk_spans_started(spans, monkeypatch):
    """How many spans the SDK's tracer was asked to start (sampled or not), counted."""
    tracer = tracing._state.tracer
    started = []
    start_span = tracer.start_span

    def counted(*args, **kwargs):
        started.append(args[0] if args else kwargs["name"])
        return start_span(*args, **kwargs)

    monkeypatch.setattr(tracer, "start_span", counted)
    return started


@pytest.fixture
def nothing_sampled(spans, monkeypatch):
    """Tracing on with a sampler that keeps no new trace (OTEL_TRACES_SAMPLER_ARG=0), its
    spans exported to an exporter of its own (yielded)."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0")
    exported = InMemorySpanExporter()
    tracing.install(exported)  # in place of the module's, which is not shut down
    yield exported
    tracing.shutdown()
    monkeypatch.delenv("OTEL_TRACES_SAMPLER")
    tracing.install(spans)  # the module's sampler again: the parent's choice, else always on


@pytest.fixture
def tracing_off(spans):
    """Tracing off for the test, the module's exporter left running for the tests after it."""
    tracing.install(InMemorySpanExporter())  # shut down in place of the module's
    tracing.shutdown()
    yield
    tracing.install(spans)


def by_name(exported: InMemorySpanExporter) -> dict[str, list]:
    named: dict[str, list] = {}
    for span in exported.get_finished_spans():
        named.setdefault(span.name, []).append(span)
    return named


def test_a_prediction_is_one_server_span_with_queue_batch_and_model_call(client, spans):
    response = client.post("/api/models/iris/predict", json=FLOWER)
    assert response.status_code == 200
    named = by_name(spans)
    (server,) = named["POST /api/models/iris/predict"]
    assert server.parent is None  # no traceparent sent: the request starts the trace
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["glassbox.model"] == "iris"
    assert "admission" not in named  # admitted at once: only a refusal is a span
    request = server.context
    for name in ("queue", "batch"):
        (child,) = named[name]
        assert child.context.trace_id == request.trace_id
        assert child.parent.span_id == request.span_id, name
    (batch,) = named["batch"]
    (call,) = named["model call"]
    assert call.parent.span_id == batch.context.span_id
    assert [link.context.span_id for link in batch.links] == [request.span_id]
    assert batch.attributes["glassbox.batch.size"] == 1
    assert named["queue"][0].attributes["glassbox.batch.size"] == 1


def test_the_answer_carries_the_request_spans_traceparent(client, spans):
    response = client.post("/api/models/iris/predict", json=FLOWER)
    (server,) = by_name(spans)["POST /api/models/iris/predict"]
    context = server.context
    assert response.headers["traceparent"] == (
        f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"
    )
    assert context.trace_flags.sampled


def test_a_clients_traceparent_is_continued(client, spans):
    response = client.post(
        "/api/models/iris/predict",
        json=FLOWER,
        headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01", "tracestate": "k=v"},
    )
    (server,) = by_name(spans)["POST /api/models/iris/predict"]
    assert f"{server.context.trace_id:032x}" == CLIENT_TRACE
    assert f"{server.parent.span_id:016x}" == CLIENT_SPAN
    assert server.parent.is_remote
    assert server.context.trace_state.get("k") == "v"
    assert response.headers["traceparent"].split("-")[1] == CLIENT_TRACE


def test_an_unsampled_clients_trace_is_continued_without_child_spans(
    client, sdk_spans_started, spans
):
    response = client.post(
        "/api/models/iris/predict",
        json=FLOWER,
        headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-00"},
    )
    assert response.status_code == 200
    assert sdk_spans_started == ["POST"]
    version, trace_id, span_id, flags = response.headers["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", CLIENT_TRACE, "00")
    assert span_id != CLIENT_SPAN  # the server's own span, a child of the client's
    assert spans.get_finished_spans() == ()


def test_the_request_log_line_carries_the_trace_id(client, spans, capsys, caplog):
    capsys.readouterr()
    with caplog.at_level(logging.INFO, logger="app"):
        response = client.post("/api/models/iris/predict", json=FLOWER)
    (line,) = request_lines(capsys.readouterr().err)
    assert line["trace_id"] == response.headers["traceparent"].split("-")[1]


def test_the_payload_record_carries_the_trace_id(client, spans, payload_path):
    response = client.post(
        "/api/models/iris/predict", json=FLOWER, headers={"X-Request-ID": "traced-payload"}
    )
    assert client.app.state.service.predictor.payload_log.flush(SAFETY_S)
    records = [json.loads(line) for line in payload_path.read_text().splitlines()]
    (record,) = [record for record in records if record["request_id"] == "traced-payload"]
    trace_id = response.headers["traceparent"].split("-")[1]
    assert record["trace_id"] == trace_id
    named = by_name(spans)
    (server,) = named["POST /api/models/iris/predict"]
    (write,) = named["payload log write"]
    assert write.parent.span_id == server.context.span_id


def test_an_image_upload_has_a_preprocessing_span(client, spans):
    image = (ROOT / "app" / "examples" / "mnist.png").read_bytes()
    response = client.post(
        "/api/models/mnist/predict", files={"file": ("digit.png", image, "image/png")}
    )
    assert response.status_code == 200
    named = by_name(spans)
    (server,) = named["POST /api/models/mnist/predict"]
    (preprocessing,) = named["image preprocessing"]
    assert preprocessing.parent.span_id == server.context.span_id


def test_an_explanation_has_its_span(client, spans):
    response = client.post("/api/models/iris/explain", json=FLOWER)
    assert response.status_code == 200
    named = by_name(spans)
    (server,) = named["POST /api/models/iris/explain"]
    (explanation,) = named["explanation"]
    assert explanation.parent.span_id == server.context.span_id
    assert explanation.attributes["glassbox.rows"] == 1


def test_a_refused_request_is_an_admission_span_in_error(client, spans):
    admission = client.app.state.service.admission
    admission.in_flight["iris"] = admission.limit  # every place taken
    try:
        response = client.post("/api/models/iris/predict", json=FLOWER)
    finally:
        del admission.in_flight["iris"]
    assert response.status_code == 503
    (refused,) = by_name(spans)["admission"]
    assert not refused.status.is_ok
    assert refused.attributes["glassbox.in_flight_limit"] == admission.limit


def test_probes_are_not_traced(client, spans):
    assert client.get("/health/ready").status_code == 200
    assert spans.get_finished_spans() == ()


def test_with_tracing_off_nothing_is_traced_or_answered(spans, tracing_off, capsys, caplog):
    settings = Settings(model_dir=MODELS, models=["iris"], poll_interval_s=0)
    with TestClient(create_app(settings)) as untraced:
        capsys.readouterr()
        with caplog.at_level(logging.INFO, logger="app"):
            response = untraced.post(
                "/api/models/iris/predict",
                json=FLOWER,
                headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"},
            )
        (line,) = request_lines(capsys.readouterr().err)
    assert response.status_code == 200
    assert "traceparent" not in response.headers
    assert "trace_id" not in line
    assert spans.get_finished_spans() == ()


def test_a_request_the_sampler_leaves_out_starts_only_its_server_span(
    client, nothing_sampled, sdk_spans_started, capsys, caplog
):
    capsys.readouterr()
    with caplog.at_level(logging.INFO, logger="app"):
        response = client.post("/api/models/iris/predict", json=FLOWER)
    assert response.status_code == 200
    assert sdk_spans_started == ["POST"]  # no admission, queue, batch or model call asked for
    _, trace_id, span_id, flags = response.headers["traceparent"].split("-")
    assert not int(flags, 16) & 0x01  # W3C: not sampled, still propagated (0x02: a random id)
    assert int(trace_id, 16)  # a trace of its own, not the invalid all-zero id
    assert int(span_id, 16)
    (line,) = request_lines(capsys.readouterr().err)
    assert line["trace_id"] == trace_id
    assert client.app.state.service.predictor.payload_log.flush(SAFETY_S)
    assert nothing_sampled.get_finished_spans() == ()  # the payload log's write made none either


def test_with_tracing_off_a_request_touches_no_opentelemetry_context(tracing_off, monkeypatch):
    def touched(*args, **kwargs):
        raise AssertionError("OpenTelemetry's context was used with tracing off")

    settings = Settings(model_dir=MODELS, models=["iris"], poll_interval_s=0)
    with TestClient(create_app(settings)) as untraced, monkeypatch.context() as patched:
        patched.setattr(trace, "get_current_span", touched)
        patched.setattr(otel_context, "attach", touched)
        patched.setattr(otel_context, "get_current", touched)
        response = untraced.post("/api/models/iris/predict", json=FLOWER)
    assert response.status_code == 200
