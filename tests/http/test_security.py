"""API keys, admin reload, CORS, security headers, the JSON nesting limit and what a refused
large body leaves behind."""

import gc
import re
import shutil

import pytest
from fastapi.testclient import TestClient

from app.core.settings import Settings
from app.http.app import create_app
from app.http.middleware import limits
from tests.conftest import MODELS

FLOWER = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


@pytest.fixture(scope="module")
def iris_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    shutil.copytree(MODELS / "iris", root / "iris")
    return root


@pytest.fixture(scope="module")
def keyed(iris_root):
    settings = Settings(
        model_dir=iris_root,
        api_keys=["client-key-1", "client-key-2"],
        admin_api_keys=["admin-key"],
        cors_origins=["https://app.example"],
        poll_interval_s=0,
    )
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture(scope="module")
def open_client(iris_root):
    with TestClient(create_app(Settings(model_dir=iris_root, poll_interval_s=0))) as client:
        yield client


def test_probes_answer_without_a_key(keyed):
    assert keyed.get("/health/live").status_code == 200
    assert keyed.get("/health/ready").status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}],
)
def test_missing_or_wrong_key_is_401_without_hints(keyed, headers):
    response = keyed.post("/api/models/iris/predict", json=FLOWER, headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("ApiKey")
    assert "client-key" not in response.text
    assert "admin" not in response.text
    assert keyed.get("/openapi.json", headers=headers).status_code == 401


@pytest.mark.parametrize(
    "headers", [{"X-API-Key": "client-key-2"}, {"Authorization": "Bearer client-key-1"}]
)
def test_a_valid_key_in_either_header_is_accepted(keyed, headers):
    response = keyed.post("/api/models/iris/predict", json=FLOWER, headers=headers)
    assert response.status_code == 200


def test_admin_needs_an_admin_key(keyed):
    assert keyed.post("/admin/reload", headers={"X-API-Key": "client-key-1"}).status_code == 401
    response = keyed.post("/admin/reload", headers={"X-API-Key": "admin-key"})
    assert response.status_code == 200
    assert response.json() == {"loaded": [], "failed": [], "removed": []}


def test_admin_is_refused_when_no_admin_key_is_configured(open_client):
    assert open_client.post("/admin/reload").status_code == 401


def test_admin_reload_serves_a_new_version_at_once(open_client, iris_root):
    from tests.service.test_reload import copy_version

    copy_version(iris_root, 7)
    try:
        # the endpoint is open only with a key; call the service the endpoint calls
        service = open_client.app.state.service
        report = open_client.portal.call(service.catalog.reload)
        assert report.loaded == ["iris/7"]
        response = open_client.post("/api/models/iris/predict", json=FLOWER)
        assert response.json()["version"] == 7
    finally:
        shutil.rmtree(iris_root / "iris" / "7")
        open_client.portal.call(open_client.app.state.service.catalog.reload)


def test_cors_allows_only_listed_origins(keyed, open_client):
    preflight = {
        "Origin": "https://app.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-api-key",
    }
    allowed = keyed.options("/api/models/iris/predict", headers=preflight)
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    other = keyed.options(
        "/api/models/iris/predict", headers={**preflight, "Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in other.headers
    response = open_client.get("/health/live", headers={"Origin": "https://app.example"})
    assert "access-control-allow-origin" not in response.headers  # off by default


def test_security_headers_on_every_response(open_client):
    for response in (open_client.get("/health/live"), open_client.get("/nope")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert "default-src 'self'" in response.headers["content-security-policy"]


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/docs/oauth2-redirect"])
def test_docs_pages_load_their_scripts_from_the_service_alone(open_client, path):
    response = open_client.get(path)
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    assert policy.startswith("default-src 'self'; script-src 'self'")
    assert "http" not in policy
    assert "unsafe-inline' " not in policy.split("style-src")[0]
    sources = re.findall(r'(?:src|href)="([^"]+)"', response.text)
    assert sources or path == "/docs/oauth2-redirect"  # that page is one inline script
    assert all(source.startswith("/docs-assets/") for source in sources), sources
    for source in sources:
        assert open_client.get(source).status_code == 200, source


def test_deeply_nested_json_is_refused_before_parsing(open_client):
    body = "[" * 100_000 + "]" * 100_000
    response = open_client.post(
        "/api/models/iris/predict", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert "nested deeper" in response.json()["error"]


def test_unexpected_errors_hide_internals(open_client, monkeypatch):
    service = open_client.app.state.service

    def explode(*args, **kwargs):
        raise RuntimeError("secret internal detail /srv/models")

    monkeypatch.setattr(service.inputs, "feature_rows", explode)
    client = TestClient(open_client.app, raise_server_exceptions=False)
    response = client.post("/api/models/iris/predict", json=FLOWER)
    assert response.status_code == 500
    assert "secret" not in response.text
    assert response.json()["code"] == "internal_error"


@pytest.fixture
def collections(monkeypatch) -> list[int]:
    """The generations `gc.collect` was asked to collect."""
    asked: list[int] = []
    real = gc.collect

    def recording(generation: int = 2) -> int:
        asked.append(generation)
        return real(generation)

    monkeypatch.setattr(gc, "collect", recording)
    return asked


@pytest.mark.parametrize("content_type", ["application/json", "application/octet-stream"])
def test_a_refused_large_body_is_collected_at_once(open_client, collections, content_type):
    """Its body's remains sit in reference cycles, which the raised gc thresholds
    (app.runtime.model.settle_heap) would leave for hundreds of requests."""
    large = b" " * limits.COLLECT_AFTER_BYTES
    headers = {"content-type": content_type}
    refused = open_client.post("/v1/models/iris:predict", content=large, headers=headers)
    assert refused.status_code == 400
    assert collections == [0]


def test_small_or_answered_bodies_are_not_collected(open_client, collections):
    small = open_client.post("/v1/models/iris:predict", content=b"nonsense")
    assert small.status_code == 400
    flower = b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}'
    padded = flower + b" " * limits.COLLECT_AFTER_BYTES
    answered = open_client.post(
        "/v1/models/iris:predict", content=padded, headers={"content-type": "application/json"}
    )
    assert answered.status_code == 200
    assert collections == []
