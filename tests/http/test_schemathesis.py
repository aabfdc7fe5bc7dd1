"""The service against its own OpenAPI schema: schemathesis sends generated requests, valid and
invalid, to every documented operation and checks each answer.

Checks: no 5xx; every status code is one the operation documents; every body, headers and content
type match what is documented for that status. A bounded number of cases per operation (with a
fixed seed, derandomized, so every run sends the same requests), the explicit examples, no
coverage or stateful phase: the suite stays fast on two cores.

The typed routes are added in the app's lifespan (they are built from the model cards), so the
schema is read from a started app. `from_asgi` starts the lifespan itself and keeps it for the
process; the fixture ends it after this module.
"""

import pytest
import schemathesis
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.config import SchemathesisConfig
from schemathesis.python import asgi

from app.core.settings import Settings
from app.http.app import create_app
from tests.conftest import MODELS

CASES_PER_OPERATION = 20
CONFIG = {
    "seed": 2026,
    "suppress-health-check": ["all"],
    "generation": {
        "max-examples": CASES_PER_OPERATION,
        "deterministic": True,
        "database": "none",
        "mode": "all",  # schema-valid requests and invalid ones
    },
    "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@pytest.fixture(scope="module")
def api_schema():
    app = create_app(Settings(model_dir=MODELS))
    config = SchemathesisConfig.from_dict(CONFIG)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    yield schema
    asgi.shutdown_lifespans()  # the lifespan from_asgi started: unload the models


# Admin operations change what is served (a reload re-reads every model, a repository unload
# drops one) and have their own tests (tests/http/test_repository.py); the page, static files
# and /metrics are not in the schema.
schema = schemathesis.pytest.from_fixture("api_schema").exclude(
    path_regex="^/(admin|v2/repository)/"
)


@schema.parametrize()
def test_every_operation_answers_as_documented(case):
    case.call_and_validate(checks=CHECKS)


def test_a_trace_has_every_field_its_schema_requires(app_client):
    """Every layer of an iris trace carries every field LayerOutput's schema requires."""
    spec = app_client.get("/openapi.json").json()["components"]["schemas"]["LayerOutput"]
    flower = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    layers = app_client.post("/api/models/iris/trace", json=flower).json()["layers"]
    assert all(set(spec["required"]) <= set(layer) for layer in layers)
