"""`/v2/repository/...` (Triton's model repository extension) through the app's lifespan, in
explicit model control on the committed models: the protocol's shapes, the admin key, and a
400 naming what is not supported."""

import pytest
from fastapi.testclient import TestClient

from app.core.settings import Settings
from app.http.app import create_app
from app.protocols.repository import RepositoryIndexResponse
from tests.conftest import MODELS

ADMIN = {"X-API-Key": "admin-key"}


@pytest.fixture(scope="module")
def client():
    settings = Settings(
        model_dir=MODELS,
        model_control="explicit",
        models=["iris"],
        admin_api_keys=["admin-key"],
        poll_interval_s=0,
    )
    with TestClient(create_app(settings)) as opened:
        yield opened


def test_the_index_answers_an_empty_body_as_tritonclient_sends_it(client):
    answer = client.post("/v2/repository/index", headers=ADMIN, content=b"")
    assert answer.status_code == 200
    rows = RepositoryIndexResponse.model_validate(answer.json()).root
    assert [(row.name, row.version, row.state) for row in rows] == [
        ("catdog", None, "UNAVAILABLE"),
        ("housing", None, "UNAVAILABLE"),
        ("iris", "1", "READY"),
        ("mnist", None, "UNAVAILABLE"),
    ]
    assert "version" not in answer.json()[0]


def test_the_ready_filter_keeps_the_ready_versions(client):
    answer = client.post("/v2/repository/index", headers=ADMIN, json={"ready": True})
    assert answer.json() == [{"name": "iris", "version": "1", "state": "READY", "reason": ""}]


@pytest.mark.parametrize("path", ["/v2/repository/index", "/v2/repository/models/iris/unload"])
@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}])
def test_the_calls_need_an_admin_key_even_with_no_client_keys_set(client, path, headers):
    answer = client.post(path, headers=headers)
    assert answer.status_code == 401
    assert answer.json()["code"] == "unauthorized"
    assert client.get("/v2/models/iris/ready").status_code == 200  # iris still served


def test_the_calls_are_refused_when_no_admin_key_is_set():
    with TestClient(create_app(Settings(model_dir=MODELS, models=["iris"]))) as opened:
        assert opened.post("/v2/repository/index", headers=ADMIN).status_code == 401


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"parameters": {"config": "{}"}}, "parameters.config"),
        ({"parameters": {"file:1/saved_model.pb": "eA=="}}, "parameters.file:1/saved_model.pb"),
        ({"parameters": {"priority": 1}}, "parameters.priority"),
    ],
)
def test_a_load_parameter_is_refused_naming_it(client, body, named):
    answer = client.post("/v2/repository/models/housing/load", headers=ADMIN, json=body)
    assert answer.status_code == 400
    assert answer.json()["field"] == named
    assert named in answer.json()["error"]
    assert client.get("/v2/models/housing/ready").status_code == 404  # nothing loaded


@pytest.mark.parametrize(
    ("parameters", "named"),
    [({"unload_dependents": "yes"}, "must be true or false"), ({"force": True}, "force")],
)
def test_an_unload_parameter_other_than_unload_dependents_is_refused(client, parameters, named):
    answer = client.post(
        "/v2/repository/models/iris/unload", headers=ADMIN, json={"parameters": parameters}
    )
    assert answer.status_code == 400
    assert named in answer.json()["error"]
    assert client.get("/v2/models/iris/ready").status_code == 200


def test_a_malformed_body_is_a_400(client):
    answer = client.post("/v2/repository/models/iris/load", headers=ADMIN, content=b"{")
    assert answer.status_code == 400


def test_load_then_unload_changes_what_is_served_and_ready(client):
    load = client.post("/v2/repository/models/housing/load", headers=ADMIN)
    assert (load.status_code, load.content) == (200, b"")
    assert client.get("/v2/models/housing/ready").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    unload = client.post(
        "/v2/repository/models/housing/unload",
        headers=ADMIN,
        json={"parameters": {"unload_dependents": False}},
    )
    assert (unload.status_code, unload.content) == (200, b"")
    assert client.get("/v2/models/housing/ready").status_code == 404
    assert [m["name"] for m in client.get("/api/models").json()["models"]] == ["iris"]


def test_the_server_metadata_lists_the_extension(client):
    assert "model_repository" in client.get("/v2").json()["extensions"]
