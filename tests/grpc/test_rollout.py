"""Version labels and the sticky canary split over gRPC: TF Serving's `version_label`, a label
as the v2 version string, `x-caller-id` call metadata."""

from __future__ import annotations

import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from tests.grpc.conftest import ADMIN_KEY, METADATA
from tests.grpc.test_kserve_v2 import fp32
from tests.rollout_models import FLOWERS

ADMIN = {"x-api-key": ADMIN_KEY}


@pytest.fixture
def two_versions(http, model_dir, iris_v2):
    """iris 1 (committed) and 2 (perturbed) labelled stable and canary, undone afterwards."""
    second = model_dir / "iris" / "2"
    second.symlink_to(iris_v2, target_is_directory=True)
    try:
        assert http.post("/admin/reload", headers=ADMIN).status_code == 200
        plan = {"labels": {"stable": 1, "canary": 2}}
        response = http.put("/admin/models/iris/rollout", json=plan, headers=ADMIN)
        assert response.status_code == 200, response.text
        yield
    finally:
        http.put("/admin/models/iris/rollout", json={}, headers=ADMIN)
        (model_dir / "iris" / "rollout.json").unlink(missing_ok=True)
        second.unlink()
        assert http.post("/admin/reload", headers=ADMIN).status_code == 200


def tf_predict(predictions, metadata=METADATA, **spec):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "iris"
    for key, value in spec.items():
        setattr(request.model_spec, key, value)
    request.inputs["features"].CopyFrom(tf.make_tensor_proto(FLOWERS[:2]))
    return predictions.Predict(request, metadata=metadata).model_spec.version.value


def test_tf_serving_version_label_and_the_default(two_versions, predictions):
    assert tf_predict(predictions, version_label="canary") == 2
    assert tf_predict(predictions, version_label="stable") == 1
    assert tf_predict(predictions) == 1  # `stable` is the default


def test_a_label_is_a_v2_version_string(two_versions, triton_client):
    tensor = fp32("features", FLOWERS[:2])
    answer = triton_client.infer("iris", [tensor], model_version="canary", headers=dict(METADATA))
    assert answer.get_response().model_version == "2"
    answer = triton_client.infer("iris", [tensor], headers=dict(METADATA))
    assert answer.get_response().model_version == "1"


def test_grpc_callers_stay_on_their_version_of_a_split(two_versions, http, predictions):
    plan = {"weights": {"1": 50, "2": 50}}
    assert http.put("/admin/models/iris/rollout", json=plan, headers=ADMIN).status_code == 200
    seen = {}
    for caller in (f"svc-{n}" for n in range(16)):
        metadata = (*METADATA, ("x-caller-id", caller))
        seen[caller] = {tf_predict(predictions, metadata=metadata) for _ in range(3)}
    assert all(len(versions) == 1 for versions in seen.values())
    assert {next(iter(v)) for v in seen.values()} == {1, 2}
