"""One live server for the gRPC tests, started as the container starts it (deploy/serve.sh),
with API keys on and its models linked from the committed ones into a folder the tests can add
versions to; and the real clients: tritonclient.grpc, tensorflow-serving-api's stubs,
grpc_health."""

from __future__ import annotations

import grpc
import httpx
import pytest
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2_grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from tests.http.protocol_cases import (
    cached_typed_case,
    image_model_names,
    model_names,
    newest_version_dir,
)
from tests.ops.server import serve

KEY = "grpc-test-key"
ADMIN_KEY = "grpc-admin-key"
METADATA = (("x-api-key", KEY),)
MAX_BODY_BYTES = 4 * 1024 * 1024
MODELS = model_names()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("grpc-models")
    for name in MODELS:
        version_dir = newest_version_dir(name)
        (root / name).mkdir()
        (root / name / version_dir.name).symlink_to(version_dir, target_is_directory=True)
    return root


@pytest.fixture(scope="session")
def server(tmp_path_factory, model_dir):
    env = {
        "GLASSBOX_MODEL_DIR": str(model_dir),
        "GLASSBOX_API_KEYS": KEY,
        "GLASSBOX_ADMIN_API_KEYS": ADMIN_KEY,
        "GLASSBOX_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
        "GLASSBOX_POLL_INTERVAL_S": "0",  # the reload test reloads when it is ready
    }
    with serve(tmp_path_factory.mktemp("grpc") / "server.log", env) as running:
        yield running


@pytest.fixture(scope="session")
def http(server):
    with httpx.Client(base_url=server.base, headers={"x-api-key": KEY}, timeout=60) as client:
        yield client


@pytest.fixture(scope="session")
def channel(server):
    with grpc.insecure_channel(server.grpc_target) as opened:
        yield opened


@pytest.fixture(scope="session")
def triton_client(server):
    client = triton.InferenceServerClient(url=server.grpc_target)
    yield client
    client.close()


@pytest.fixture(scope="session")
def predictions(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="session")
def model_service(channel):
    return model_service_pb2_grpc.ModelServiceStub(channel)


@pytest.fixture(scope="session")
def health(channel):
    return health_pb2_grpc.HealthStub(channel)


@pytest.fixture(params=MODELS)
def case(request, http):
    return cached_typed_case(http, request.param)


@pytest.fixture(params=[name for name in MODELS if name not in image_model_names()])
def tabular_case(request, http):
    return cached_typed_case(http, request.param)


@pytest.fixture(params=image_model_names())
def image_case(request, http):
    return cached_typed_case(http, request.param)


def assert_status(call, code: grpc.StatusCode, *words: str) -> grpc.RpcError:
    """`call()` fails with `code`, and its message holds each of `words`."""
    with pytest.raises(grpc.RpcError) as failed:
        call()
    assert failed.value.code() == code, failed.value.details()
    for word in words:
        assert word in failed.value.details(), failed.value.details()
    return failed.value
