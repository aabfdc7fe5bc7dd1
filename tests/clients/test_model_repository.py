"""Triton's model repository extension with tritonclient at its defaults (HTTP and gRPC: only
the admin key passed, as its `headers`), against live servers started as the container starts
them: one in explicit model control with two workers, which must converge on what a load or
unload asked of one of them, and one in poll mode (the default)."""

from __future__ import annotations

import os
import signal
import sys

import grpc
import httpx
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from tests.http.protocol_cases import newest_version_dir
from tests.ops.server import Server, serve, wait_for
from tests.ops.sockets import ESTABLISHED, LISTEN, owners_in, port_of

KEY = "client-key"
ADMIN_KEY = "admin-key"
ADMIN = {"x-api-key": ADMIN_KEY}
WORKERS = 2
CONNECTIONS = 16


def linked_models(root, names):
    """A model folder of the committed models' newest versions, linked (nothing copied)."""
    for name in names:
        version_dir = newest_version_dir(name)
        (root / name).mkdir()
        (root / name / version_dir.name).symlink_to(version_dir, target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def explicit(tmp_path_factory):
    if sys.platform != "linux":
        pytest.skip("the workers' sockets are read from /proc")
    root = linked_models(tmp_path_factory.mktemp("explicit-models"), ["housing", "iris"])
    env = {
        "GLASSBOX_MODEL_DIR": str(root),
        "GLASSBOX_MODEL_CONTROL": "explicit",
        "GLASSBOX_MODELS": "iris",
        "GLASSBOX_API_KEYS": KEY,
        "GLASSBOX_ADMIN_API_KEYS": ADMIN_KEY,
        "GLASSBOX_POLL_INTERVAL_S": "0.5",
        "GLASSBOX_WORKERS": str(WORKERS),
    }
    with serve(tmp_path_factory.mktemp("explicit") / "server.log", env) as running:
        port = port_of(running)
        wait_for(lambda: len(owners_in(running, port, LISTEN)) == WORKERS, "every worker", 240)
        yield running


@pytest.fixture(scope="module")
def polling(tmp_path_factory):
    root = linked_models(tmp_path_factory.mktemp("poll-models"), ["housing", "iris"])
    env = {"GLASSBOX_MODEL_DIR": str(root), "GLASSBOX_ADMIN_API_KEYS": ADMIN_KEY}
    with serve(tmp_path_factory.mktemp("poll") / "server.log", env) as running:
        yield running


def http_client(server: Server) -> triton_http.InferenceServerClient:
    return triton_http.InferenceServerClient(url=server.base.removeprefix("http://"))


def grpc_client(server: Server) -> triton_grpc.InferenceServerClient:
    return triton_grpc.InferenceServerClient(url=server.grpc_target)


def every_worker_answers(server: Server, path: str, status: int) -> bool:
    """Whether `CONNECTIONS` connections opened together reached both workers and each got
    `status` for `path` (the kernel spreads new connections over the workers' sockets)."""
    clients = [
        httpx.Client(base_url=server.base, headers={"x-api-key": KEY}, timeout=60)
        for _ in range(CONNECTIONS)
    ]
    try:
        statuses = [client.get(path).status_code for client in clients]
        owners = owners_in(server, port_of(server), ESTABLISHED)
        return len(set(owners)) == WORKERS and statuses == [status] * CONNECTIONS
    finally:
        for client in clients:
            client.close()


def states(index: list[dict]) -> dict[str, str]:
    return {row["name"]: row["state"] for row in index}


def test_the_index_lists_every_model_with_its_state_over_both_transports(explicit):
    over_http = http_client(explicit).get_model_repository_index(headers=ADMIN)
    over_grpc = grpc_client(explicit).get_model_repository_index(headers=ADMIN, as_json=True)
    assert over_http == [
        {"name": "housing", "state": "UNAVAILABLE", "reason": "unloaded"},
        {"name": "iris", "version": "1", "state": "READY", "reason": ""},
    ]
    # protobuf's JSON leaves out empty strings (iris's reason)
    assert over_grpc == {
        "models": [
            {"name": "housing", "state": "UNAVAILABLE", "reason": "unloaded"},
            {"name": "iris", "version": "1", "state": "READY"},
        ]
    }


def test_the_repository_calls_need_an_admin_key(explicit):
    for headers in (None, {"x-api-key": KEY}):
        with pytest.raises(InferenceServerException) as refused:
            http_client(explicit).load_model("housing", headers=headers)
        assert refused.value.status() == "401"
        with pytest.raises(InferenceServerException) as refused:
            grpc_client(explicit).get_model_repository_index(headers=headers)
        assert refused.value.status() == "StatusCode.UNAUTHENTICATED"
        assert "admin key" in refused.value.message()


def test_a_load_over_http_reaches_every_worker_and_an_unload_over_grpc_too(explicit):
    assert every_worker_answers(explicit, "/v2/models/housing/ready", 404)
    http_client(explicit).load_model("housing", headers=ADMIN)
    wait_for(
        lambda: every_worker_answers(explicit, "/v2/models/housing/ready", 200),
        "every worker to serve housing",
        240,
    )
    assert every_worker_answers(explicit, "/v2/health/ready", 200)
    assert http_client(explicit).is_model_ready("housing", headers={"x-api-key": KEY})

    grpc_client(explicit).unload_model("housing", headers=ADMIN)
    wait_for(
        lambda: every_worker_answers(explicit, "/v2/models/housing/ready", 404),
        "every worker to stop serving housing",
        240,
    )
    index = http_client(explicit).get_model_repository_index(headers=ADMIN)
    assert states(index) == {"housing": "UNAVAILABLE", "iris": "READY"}


def test_a_worker_started_again_serves_what_the_others_serve(explicit):
    """A worker that dies is replaced by the supervisor; the new one reads the model control
    file at start, so it serves the model loaded before it started, not GLASSBOX_MODELS."""
    http_client(explicit).load_model("housing", headers=ADMIN)
    wait_for(
        lambda: every_worker_answers(explicit, "/v2/models/housing/ready", 200),
        "every worker to serve housing",
        240,
    )
    port = port_of(explicit)
    killed = sorted(owners_in(explicit, port, LISTEN))[0]
    os.kill(killed, signal.SIGKILL)

    def replaced() -> bool:
        owners = owners_in(explicit, port, LISTEN)
        return len(owners) == WORKERS and killed not in owners

    wait_for(replaced, "a new worker listening", 240)  # it imports TensorFlow, loads models
    assert every_worker_answers(explicit, "/v2/models/housing/ready", 200)
    grpc_client(explicit).unload_model("housing", headers=ADMIN)  # as the module found it
    wait_for(
        lambda: every_worker_answers(explicit, "/v2/models/housing/ready", 404),
        "every worker to stop serving housing",
        240,
    )


def test_a_load_with_a_configuration_is_refused_naming_it(explicit):
    with pytest.raises(InferenceServerException, match=r"parameters\.config .* not supported"):
        http_client(explicit).load_model("iris", headers=ADMIN, config="{}")
    with pytest.raises(InferenceServerException, match=r"file:1/model\.savedmodel") as refused:
        grpc_client(explicit).load_model(
            "iris", headers=ADMIN, config="{}", files={"file:1/model.savedmodel": b"x"}
        )
    assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"


def test_unknown_models_get_the_protocols_error(explicit):
    with pytest.raises(InferenceServerException, match="No model named 'nope'") as refused:
        http_client(explicit).unload_model("nope", headers=ADMIN)
    assert refused.value.status() == "400"
    with pytest.raises(InferenceServerException, match="No model named 'nope'") as refused:
        grpc_client(explicit).load_model("nope", headers=ADMIN)
    assert refused.value.status() == "StatusCode.NOT_FOUND"


def test_the_server_metadata_lists_the_extension(explicit):
    metadata = http_client(explicit).get_server_metadata(headers={"x-api-key": KEY})
    assert "model_repository" in metadata["extensions"]


def test_poll_mode_loads_at_once_and_refuses_an_unload(polling):
    for client in (http_client(polling), grpc_client(polling)):
        client.load_model("housing", headers=ADMIN)
        assert client.is_model_ready("housing")
        with pytest.raises(InferenceServerException, match="GLASSBOX_MODEL_CONTROL=explicit"):
            client.unload_model("housing", headers=ADMIN)
        assert client.is_model_ready("housing")
    index = http_client(polling).get_model_repository_index(headers=ADMIN)
    assert states(index) == {"housing": "READY", "iris": "READY"}
    over_grpc = grpc_client(polling).get_model_repository_index(headers=ADMIN, as_json=True)
    assert states(over_grpc["models"]) == {"housing": "READY", "iris": "READY"}


def test_poll_mode_refuses_the_repository_calls_without_an_admin_key(polling):
    with pytest.raises(InferenceServerException) as refused:
        grpc_client(polling).unload_model("housing")
    assert refused.value.status() == str(grpc.StatusCode.UNAUTHENTICATED)
