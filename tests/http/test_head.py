"""HEAD on a GET route is answered as GET would be, without the body (RFC 9110 9.3.2)."""

import pytest

from tests.metrics import sample

PATHS = ["/", "/health/ready", "/api/models", "/api/models/iris", "/v2/models/iris", "/metrics"]


@pytest.mark.parametrize("path", PATHS)
def test_head_answers_with_gets_status_and_headers_and_no_body(app_client, path):
    got = app_client.get(path, headers={"accept-encoding": "identity"})  # HEAD's is identity
    head = app_client.head(path, headers={"accept-encoding": "gzip"})
    assert head.status_code == got.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    if path != "/metrics":  # its own counters move between the two
        assert head.headers["content-length"] == got.headers["content-length"]


def test_head_is_counted_as_head(app_client):
    labels = {"method": "HEAD", "route": "/api/models"}
    before = sample(app_client, "glassbox_http_requests_total", **labels)
    app_client.head("/api/models")
    assert sample(app_client, "glassbox_http_requests_total", **labels) == before + 1


def test_head_on_a_post_route_is_405_as_get_is(app_client):
    assert app_client.head("/api/models/iris/predict").status_code == 405
