"""The real server exporting its traces over OTLP/HTTP, configured by the standard variables
only, to a receiver this test runs on a loopback port: one HTTP call and one gRPC call, each
with a client's traceparent, and the spans received checked (the client's trace continued, the
request's spans its children)."""

from __future__ import annotations

import grpc
import httpx
import numpy as np
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from bench.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.ops.server import serve

HTTP_TRACE, HTTP_PARENT = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"
GRPC_TRACE, GRPC_PARENT = "6e0c63257de34c92bf9efcd03927272e", "53995c3f42cd8ad8"
FLOWER = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
EXPORT_WAIT_S = 60  # a bound on the export thread's next batch, reached only when it is broken


@pytest.fixture(scope="module")
def receiver():
    with OtlpReceiver() as running:
        yield running


@pytest.fixture(scope="module")
def server(receiver, tmp_path_factory):
    env = {
        "GLASSBOX_MODELS": "iris",
        "GLASSBOX_POLL_INTERVAL_S": "0",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_SERVICE_NAME": "glassbox-live-test",
        "OTEL_BSP_SCHEDULE_DELAY": "50",  # ms: the export thread sends soon after each span
    }
    with serve(tmp_path_factory.mktemp("traced") / "server.log", env) as running:
        yield running


def in_trace(spans: list[ReceivedSpan], trace_id: str) -> dict[str, ReceivedSpan]:
    return {span.name: span for span in spans if span.trace_id == trace_id}


def exported(
    receiver: OtlpReceiver, traceparent: str, server_span: str, client_span: str
) -> dict[str, ReceivedSpan]:
    """The spans of the answer's trace by name, once its server span and their children have
    arrived: the server span the one the answer's `traceparent` names, a child of the
    client's span, and the parent of queue and batch."""
    _, trace_id, span_id, _ = traceparent.split("-")
    wanted = {server_span, "queue", "batch", "model call"}
    spans = receiver.wait_for(lambda spans: wanted <= set(in_trace(spans, trace_id)), EXPORT_WAIT_S)
    found = in_trace(spans, trace_id)
    server = found[server_span]
    assert (server.span_id, server.parent_span_id) == (span_id, client_span)
    for name in ("queue", "batch"):
        assert found[name].parent_span_id == server.span_id, name
    assert found["model call"].parent_span_id == found["batch"].span_id
    return found


def test_an_http_call_continues_the_clients_trace_and_exports_its_children(server, receiver):
    response = httpx.post(
        f"{server.base}/api/models/iris/predict",
        json=FLOWER,
        headers={"traceparent": f"00-{HTTP_TRACE}-{HTTP_PARENT}-01"},
        timeout=60,
    )
    assert response.status_code == 200
    traceparent = response.headers["traceparent"]
    assert traceparent.split("-")[1] == HTTP_TRACE
    found = exported(receiver, traceparent, "POST /api/models/iris/predict", HTTP_PARENT)
    request = found["POST /api/models/iris/predict"]
    assert request.service == "glassbox-live-test"
    assert (HTTP_TRACE, request.span_id) in found["batch"].links


def test_a_grpc_call_continues_the_clients_trace_and_exports_its_children(server, receiver):
    request = service_pb2.ModelInferRequest(
        model_name="iris",
        inputs=[
            service_pb2.ModelInferRequest.InferInputTensor(
                name="features", datatype="FP32", shape=[1, 4]
            )
        ],
        raw_input_contents=[np.array([list(FLOWER.values())], np.float32).tobytes()],
    )
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        _, answered = stub.ModelInfer.with_call(
            request,
            metadata=(("traceparent", f"00-{GRPC_TRACE}-{GRPC_PARENT}-01"),),
            timeout=60,
        )
    traceparent = dict(answered.trailing_metadata())["traceparent"]
    assert traceparent.split("-")[1] == GRPC_TRACE
    found = exported(receiver, traceparent, "v2/ModelInfer", GRPC_PARENT)
    assert found["v2/ModelInfer"].attributes["rpc.system"] == "grpc"
