"""Fixtures of the protocol tests: each model's typed-endpoint answer, asked once a session."""

import pytest

from tests.http.protocol_cases import cached_typed_case, image_model_names, model_names


@pytest.fixture(params=model_names())
def case(request, app_client):
    return cached_typed_case(app_client, request.param)


@pytest.fixture(params=image_model_names())
def image_case(request, app_client):
    return cached_typed_case(app_client, request.param)
