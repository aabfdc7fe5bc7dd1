"""KServe's Python SDK against a live server, at its defaults: `InferenceRESTClient` with its
default v1 protocol and with v2, and `InferenceGRPCClient`.

The SDK runs in a process of its own (this file, run as a script): its protobuf messages and
tritonclient's (which the app and the other tests import) both define `inference.*` in
protobuf's one default pool, so the two cannot be imported into one interpreter. The script
makes every call once, asynchronously as the SDK is, and prints what each answered as JSON;
each test checks one part of it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

FLOWERS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
SPECIES = [0, 2]  # setosa, virginica


# -- the script: the SDK's calls (imported only in its own process) ----------------------------


async def sdk_calls(base: str, grpc_target: str) -> dict[str, Any]:
    import grpc
    import httpx
    import numpy as np
    from kserve import (
        InferenceGRPCClient,
        InferenceRESTClient,
        InferInput,
        InferRequest,
        RESTConfig,
    )
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
    from kserve.protocol.rest.v2_datamodels import ModelMetadataResponse

    flowers = np.array(FLOWERS, dtype=np.float32)

    def request(binary: bool = False) -> InferRequest:
        features = InferInput("features", list(flowers.shape), "FP32")
        features.set_data_from_numpy(flowers, binary_data=binary)
        return InferRequest(model_name="iris", infer_inputs=[features])

    def answer(response) -> dict[str, Any]:
        return {
            "model_name": response.model_name,
            "outputs": [
                {"name": output.name, "data": output.as_numpy().tolist()}
                for output in response.outputs
            ],
        }

    async def outcome(call) -> dict[str, Any]:
        try:
            return {"value": await call}
        except Exception as error:  # what the SDK raised, for the test to check
            return {"raised": type(error).__name__, "message": str(error)}

    found: dict[str, Any] = {}
    async with InferenceRESTClient() as v1:
        found["v1_live"] = await outcome(v1.is_server_live(base))
        found["v1_ready"] = await outcome(v1.is_server_ready(base))
        found["v1_model_ready"] = await outcome(v1.is_model_ready(base, "iris"))
        found["v1_unknown_model_ready"] = await outcome(v1.is_model_ready(base, "nope"))
        found["v1_predict"] = await outcome(
            v1.infer(base, {"instances": FLOWERS}, model_name="iris")
        )
        found["v1_explain"] = await outcome(v1.explain(base, "iris", {"instances": FLOWERS[:1]}))
    async with InferenceRESTClient(RESTConfig(protocol="v2")) as v2:
        found["v2_live"] = await outcome(v2.is_server_live(base))
        found["v2_ready"] = await outcome(v2.is_server_ready(base))
        found["v2_model_ready"] = await outcome(v2.is_model_ready(base, "iris"))
        found["v2_unknown_model_ready"] = await outcome(v2.is_model_ready(base, "nope"))
        found["v2_infer_json"] = answer(await v2.infer(base, request(), model_name="iris"))
        found["v2_infer_binary"] = answer(await v2.infer(base, request(True), model_name="iris"))
    # The REST client has no metadata call: the answer as the SDK's own response model reads it.
    async with httpx.AsyncClient() as plain:
        metadata = (await plain.get(f"{base}/v2/models/iris")).json()
    found["v2_metadata"] = ModelMetadataResponse.model_validate(metadata).model_dump()
    async with InferenceGRPCClient(grpc_target) as client:
        found["grpc_live"] = await client.is_server_live()
        found["grpc_ready"] = await client.is_server_ready()
        found["grpc_model_ready"] = await client.is_model_ready("iris")
        found["grpc_infer"] = answer(await client.infer(request()))
    # Nor the gRPC client: the SDK's own stub and messages.
    async with grpc.aio.insecure_channel(grpc_target) as channel:
        stub = GRPCInferenceServiceStub(channel)
        described = await stub.ModelMetadata(pb.ModelMetadataRequest(name="iris"), timeout=30)
        found["grpc_metadata"] = {
            "name": described.name,
            "inputs": [[t.name, t.datatype, list(t.shape)] for t in described.inputs],
        }
        try:
            await stub.ModelReady(pb.ModelReadyRequest(name="nope"), timeout=30)
            found["grpc_unknown_model_ready"] = "OK"
        except grpc.aio.AioRpcError as error:
            found["grpc_unknown_model_ready"] = error.code().name
    return found


# -- the tests ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sdk(live) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(Path(__file__)), live.base, live.grpc_target],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def assert_probabilities(rows) -> None:
    assert len(rows) == len(FLOWERS)
    for row, species in zip(rows, SPECIES, strict=True):
        assert len(row) == 3
        assert sum(row) == pytest.approx(1.0, abs=1e-4)
        assert max(range(3), key=row.__getitem__) == species


def assert_iris_answer(answer: dict[str, Any]) -> None:
    assert answer["model_name"] == "iris"
    (output,) = answer["outputs"]
    assert output["name"] == "probabilities"
    assert_probabilities(output["data"])


def test_v1_liveness_is_the_json_at_the_root(sdk):
    assert sdk["v1_live"] == {"value": True}


def test_v1_has_no_server_readiness_in_the_sdk(sdk):
    """The SDK raises before sending anything; v1 clients ask a model's readiness instead."""
    assert sdk["v1_ready"]["raised"] == "UnsupportedProtocol"


def test_v1_model_readiness(sdk):
    assert sdk["v1_model_ready"] == {"value": True}
    unknown = sdk["v1_unknown_model_ready"]
    assert unknown["raised"] == "HTTPStatusError"
    assert "nope" in unknown["message"]
    assert "404" in unknown["message"]


def test_v1_predict(sdk):
    assert_probabilities(sdk["v1_predict"]["value"]["predictions"])


def test_v1_explain(sdk):
    (explanation,) = sdk["v1_explain"]["value"]["explanations"]
    assert explanation["model"] == "iris"
    assert explanation["target"] == "setosa"


def test_v2_rest_health_and_model_readiness(sdk):
    assert sdk["v2_live"] == {"value": True}
    assert sdk["v2_ready"] == {"value": True}
    assert sdk["v2_model_ready"] == {"value": True}
    assert sdk["v2_unknown_model_ready"] == {"value": False}


def test_v2_rest_infer_as_json_and_binary(sdk):
    assert_iris_answer(sdk["v2_infer_json"])
    assert_iris_answer(sdk["v2_infer_binary"])


def test_v2_rest_metadata_reads_as_the_sdks_model(sdk):
    metadata = sdk["v2_metadata"]
    assert metadata["name"] == "iris"
    assert [(t["name"], t["datatype"], t["shape"]) for t in metadata["inputs"]] == [
        ("features", "FP32", [-1, 4])
    ]


def test_grpc_client_health_readiness_and_infer(sdk):
    assert (sdk["grpc_live"], sdk["grpc_ready"], sdk["grpc_model_ready"]) == (True, True, True)
    assert_iris_answer(sdk["grpc_infer"])


def test_grpc_metadata_and_unknown_model(sdk):
    assert sdk["grpc_metadata"] == {"name": "iris", "inputs": [["features", "FP32", [-1, 4]]]}
    assert sdk["grpc_unknown_model_ready"] == "NOT_FOUND"


if __name__ == "__main__":
    print(json.dumps(asyncio.run(sdk_calls(sys.argv[1], sys.argv[2]))))
