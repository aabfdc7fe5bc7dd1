"""Rollouts over HTTP: the admin route, labels on every surface, the sticky split, compare."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from app.core.settings import Settings
from app.http.app import create_app
from tests.rollout_models import FLOWERS, IRIS, add_version

ADMIN = {"X-API-Key": "admin-key"}
FLOWER = dict(
    zip(
        ["sepal_length", "sepal_width", "petal_length", "petal_width"],
        FLOWERS[2].tolist(),
        strict=True,
    )
)


@pytest.fixture
def client(tmp_path, iris_v2):
    add_version(tmp_path, IRIS, 1)
    add_version(tmp_path, iris_v2, 2)
    settings = Settings(
        model_dir=tmp_path,
        poll_interval_s=0,
        admin_api_keys=["admin-key"],
        shadow_timeout_s=120,  # every copy compared, however long a busy machine takes
    )
    with TestClient(create_app(settings)) as client:
        yield client


def set_rollout(client, body, status=200):
    response = client.put("/admin/models/iris/rollout", json=body, headers=ADMIN)
    assert response.status_code == status, response.text
    return response.json()


def predict(client, query="", headers=None):
    response = client.post(f"/api/models/iris/predict{query}", json=FLOWER, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["version"]


def test_the_admin_route_sets_labels_and_refuses_versions_that_are_not_ready(client):
    assert set_rollout(client, {"labels": {"stable": 1, "canary": 2}})["default_version"] == 1
    refused = set_rollout(client, {"labels": {"stable": 3}}, status=409)
    assert refused["code"] == "rollout_refused"
    assert "3 (absent)" in refused["error"]
    assert client.get("/api/models/iris/rollout").json()["labels"] == {"stable": 1, "canary": 2}
    assert predict(client) == 1
    bad = client.put("/admin/models/iris/rollout", json={"labels": {"12": 1}}, headers=ADMIN)
    assert bad.status_code == 422
    assert client.put("/admin/models/iris/rollout", json={}).status_code == 401
    assert set_rollout(client, {})["labels"] == {}
    assert predict(client) == 2


def test_labels_are_addressable_on_every_http_surface(client):
    set_rollout(client, {"labels": {"stable": 1, "canary": 2}})
    assert predict(client, "?label=canary") == 2
    assert predict(client, "?label=stable") == 1
    unknown = client.post("/api/models/iris/predict?label=beta", json=FLOWER)
    assert unknown.status_code == 404
    assert "no version label 'beta'" in unknown.json()["error"]
    both = client.post("/api/models/iris/predict?label=canary&version=1", json=FLOWER)
    assert both.status_code == 422
    assert "not both" in both.json()["error"]

    tf_body = {"instances": [FLOWERS[2].tolist()]}
    tf = client.post("/v1/models/iris/labels/canary:predict", json=tf_body)
    assert tf.status_code == 200, tf.text
    assert tf.headers["x-model-version"] == "2"
    assert client.post("/v1/models/iris:predict", json=tf_body).headers["x-model-version"] == "1"
    status = client.get("/v1/models/iris/labels/canary").json()
    assert status["model_version_status"][0]["version"] == "2"
    assert client.get("/v1/models/iris/labels/beta").status_code == 404

    v2_body = {
        "inputs": [
            {"name": "features", "datatype": "FP32", "shape": [1, 4], "data": FLOWERS[2].tolist()}
        ]
    }
    v2 = client.post("/v2/models/iris/versions/canary/infer", json=v2_body)
    assert v2.status_code == 200, v2.text
    assert v2.json()["model_version"] == "2"
    assert client.post("/v2/models/iris/infer", json=v2_body).json()["model_version"] == "1"


def test_the_split_keeps_each_caller_on_one_version_and_says_which_served(client):
    set_rollout(client, {"weights": {"1": 50, "2": 50}})
    seen = {
        caller: {predict(client, headers={"X-Caller-ID": caller}) for _ in range(3)}
        for caller in (f"user-{n}" for n in range(24))
    }
    assert all(len(versions) == 1 for versions in seen.values())
    assert {next(iter(v)) for v in seen.values()} == {1, 2}


def test_compare_answers_both_versions_with_labels_or_numbers(client):
    set_rollout(client, {"labels": {"canary": 2}})
    response = client.post(
        "/api/models/iris/compare?a=1&b=canary",
        json={"instances": [dict(zip(FLOWER, row.tolist(), strict=True)) for row in FLOWERS]},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["a"], body["b"], len(body["rows"])) == (1, 2, len(FLOWERS))
    assert any(row["class_changed"] for row in body["rows"])
    assert body["layers"][0]["layer"] == "normalize"
    missing = client.post("/api/models/iris/compare", json=FLOWER)
    assert missing.status_code == 422  # b is required
    unknown = client.post("/api/models/iris/compare?b=7", json=FLOWER)
    assert unknown.status_code == 404


def test_label_and_weight_changes_under_load_lose_no_request(client):
    stop = threading.Event()
    plans = [
        {"labels": {"stable": 1}},
        {"weights": {"1": 90, "2": 10}},
        {"labels": {"stable": 2}, "weights": {"1": 10, "2": 90}},
        {},
    ]

    def flip():
        changes = 0
        while not stop.is_set() or changes < 8:
            set_rollout(client, plans[changes % len(plans)])
            changes += 1
        return changes

    def caller(index):
        answers = []
        for _ in range(40):
            response = client.post(
                "/api/models/iris/predict", json=FLOWER, headers={"X-Caller-ID": f"c{index}"}
            )
            answers.append((response.status_code, response.json().get("version")))
        return answers

    with ThreadPoolExecutor(5) as pool:
        flipper = pool.submit(flip)
        callers = [pool.submit(caller, index) for index in range(4)]
        answers = [answer for future in callers for answer in future.result()]
        stop.set()
        assert flipper.result() >= 8
    assert len(answers) == 160
    assert {status for status, _ in answers} == {200}
    assert {version for _, version in answers} <= {1, 2}


def test_shadow_disagreement_is_exported_as_metrics_and_summarised(client):
    instances = [dict(zip(FLOWER, row.tolist(), strict=True)) for row in FLOWERS]
    compare = client.post("/api/models/iris/compare?a=1&b=2", json={"instances": instances})
    flips = sum(row["class_changed"] for row in compare.json()["rows"])
    assert flips > 0
    before = shadow_metrics(client)
    set_rollout(client, {"labels": {"stable": 1}, "shadow": {"version": 2, "fraction": 1.0}})
    for done, body in enumerate(instances, start=1):
        assert client.post("/api/models/iris/predict", json=body).json()["version"] == 1
        # Each copy compared before the next request: one offered while too many are still
        # computing (a busy machine) would be dropped, not compared.
        wait_for(lambda done=done: rollout(client)["shadow"]["compared_rows"] == done)
    shadow = rollout(client)["shadow"]
    assert (shadow["compared_with"], shadow["class_changes"]) == (1, flips)
    after = shadow_metrics(client)
    assert after["compared_rows"] - before["compared_rows"] == len(FLOWERS)
    assert after["class_changes"] - before["class_changes"] == flips
    assert after["abs_difference"] - before["abs_difference"] == pytest.approx(
        shadow["mean_abs_difference"] * len(FLOWERS)
    )


def shadow_metrics(client) -> dict[str, float]:
    """This process's shadow counters for iris version 2 (0 before the first)."""
    found = dict.fromkeys(["compared_rows", "class_changes", "abs_difference"], 0.0)
    for line in client.get("/metrics").text.splitlines():
        for name in found:
            if line.startswith(f'glassbox_shadow_{name}_total{{model="iris",version="2"}}'):
                found[name] = float(line.split()[-1])
    return found


def rollout(client):
    return client.get("/api/models/iris/rollout").json()


def wait_for(condition, bound_s: float = 120):  # a safety bound, not a timing
    deadline = time.monotonic() + bound_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition never held in {bound_s} s")
        time.sleep(0.01)
