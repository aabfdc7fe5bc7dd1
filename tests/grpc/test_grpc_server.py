"""The gRPC server as an operator sees it: the standard health service following readiness,
reflection for grpcurl, metrics and logs per protocol, hot reload, the compose healthcheck."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest
import yaml
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from tritonclient.grpc import service_pb2

from tests.grpc.conftest import ADMIN_KEY, METADATA, MODELS, assert_status
from tests.http.protocol_cases import newest_version_dir
from tests.ops.server import ROOT, wait_for

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
PROTOCOL_SERVICES = [
    "inference.GRPCInferenceService",
    "tensorflow.serving.PredictionService",
    "tensorflow.serving.ModelService",
]


def status(health, service: str, metadata=METADATA) -> int:
    request = health_pb2.HealthCheckRequest(service=service)
    return health.Check(request, timeout=10, metadata=metadata).status


def test_health_is_serving_overall_and_per_protocol_without_a_key(health):
    for service in ["", *PROTOCOL_SERVICES]:
        assert status(health, service, metadata=()) == SERVING, service


def test_a_models_health_needs_a_key_as_its_http_readiness_does(health):
    for service in MODELS:
        assert status(health, service) == SERVING, service
        assert_status(
            lambda service=service: status(health, service, metadata=()),
            grpc.StatusCode.UNAUTHENTICATED,
            "API key",
        )
        watched = health.Watch(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert_status(lambda watched=watched: next(watched), grpc.StatusCode.UNAUTHENTICATED)
    assert_status(lambda: status(health, "nope"), grpc.StatusCode.NOT_FOUND)


def test_reflection_lists_and_describes_every_service(channel):
    database = ProtoReflectionDescriptorDatabase(channel)
    services = set(database.get_services())
    assert {*PROTOCOL_SERVICES, "grpc.health.v1.Health"} <= services
    described = database.FindFileContainingSymbol("inference.GRPCInferenceService")
    assert "ModelInfer" in [
        method.name for service in described.service for method in service.method
    ]


def test_metrics_count_grpc_calls_by_protocol_method_and_code(http, channel, case):
    stub = channel.unary_unary(
        "/inference.GRPCInferenceService/ModelReady",
        request_serializer=lambda message: message.SerializeToString(),
        response_deserializer=service_pb2.ModelReadyResponse.FromString,
    )

    def counts() -> dict[str, float]:
        text = http.get("/metrics").text
        found = {}
        for code in ("OK", "NOT_FOUND"):
            line = re.search(
                rf'glassbox_grpc_requests_total\{{code="{code}",method="ModelReady",'
                rf'protocol="v2"\}} ([0-9.e+]+)',
                text,
            )
            found[code] = float(line.group(1)) if line else 0.0
        return found

    before = counts()
    stub(service_pb2.ModelReadyRequest(name=case.card.name), metadata=METADATA)
    for _ in range(2):
        with pytest.raises(grpc.RpcError):
            stub(service_pb2.ModelReadyRequest(name="nope"), metadata=METADATA)
    after = counts()
    assert after["OK"] - before["OK"] == 1
    assert after["NOT_FOUND"] - before["NOT_FOUND"] == 2


def test_each_call_is_logged_as_json_with_its_request_id(server, channel, case):
    stub = channel.unary_unary(
        "/inference.GRPCInferenceService/ModelReady",
        request_serializer=lambda message: message.SerializeToString(),
        response_deserializer=service_pb2.ModelReadyResponse.FromString,
    )
    request_id = f"log-check-{time.time_ns()}"
    stub(
        service_pb2.ModelReadyRequest(name=case.card.name),
        metadata=(*METADATA, ("x-request-id", request_id)),
    )
    wait_for(lambda: request_id in server.output(), "the log line")
    line = next(line for line in server.output().splitlines() if request_id in line)
    assert '"transport":"grpc"' in line
    assert '"method":"ModelReady"' in line
    assert f'"model":"{case.card.name}"' in line
    assert '"status":"OK"' in line


def test_a_new_version_and_a_new_model_serve_over_grpc_after_a_reload(
    http, triton_client, health, model_dir
):
    name = MODELS[0]
    source = newest_version_dir(name)
    extra_version = model_dir / name / "999"
    copy = model_dir / f"{name}_copy"
    headers = {"x-api-key": ADMIN_KEY}
    extra_version.symlink_to(source, target_is_directory=True)
    copy.mkdir()
    (copy / "1").symlink_to(source, target_is_directory=True)
    try:
        assert http.post("/admin/reload", headers=headers).status_code == 200
        metadata = triton_client.get_model_metadata(name, headers=dict(METADATA), as_json=True)
        assert "999" in metadata["versions"]
        assert status(health, f"{name}_copy") == SERVING
    finally:
        extra_version.unlink()
        (copy / "1").unlink()
        copy.rmdir()
    assert http.post("/admin/reload", headers=headers).status_code == 200
    metadata = triton_client.get_model_metadata(name, headers=dict(METADATA), as_json=True)
    assert "999" not in metadata["versions"]
    assert status(health, f"{name}_copy") == NOT_SERVING
    assert status(health, "") == SERVING


def test_the_compose_healthcheck_passes_against_a_live_server(server):
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    command = compose["services"]["api"]["healthcheck"]["test"]
    assert command[:3] == ["CMD", "python", "-c"]
    http_port = server.base.rsplit(":", 1)[1]
    grpc_port = server.grpc_target.rsplit(":", 1)[1]
    script = command[3].replace(":8000/", f":{http_port}/").replace(":8001'", f":{grpc_port}'")
    assert script != command[3]
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr


def test_http_and_grpc_give_one_answer_for_one_input(http, triton_client, case):
    """The typed route, v2 over REST and v2 over gRPC, side by side on one server."""
    import tritonclient.grpc as triton

    tensor = triton.InferInput(case.card.input.name, list(case.batch.shape), "FP32")
    tensor.set_data_from_numpy(case.batch)
    over_grpc = triton_client.infer(case.card.name, [tensor], headers=dict(METADATA))
    body = {
        "inputs": [
            {
                "name": case.card.input.name,
                "shape": list(case.batch.shape),
                "datatype": "FP32",
                "data": case.batch.reshape(-1).tolist(),
            }
        ]
    }
    over_rest = http.post(f"/v2/models/{case.card.name}/infer", json=body).json()
    np.testing.assert_array_equal(
        over_grpc.as_numpy(case.card.output.name).reshape(-1),
        np.asarray(over_rest["outputs"][0]["data"], np.float32),
    )
