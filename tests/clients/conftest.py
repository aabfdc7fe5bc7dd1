"""One live server for the third-party client tests, started as the container starts it
(deploy/serve.sh) on the committed models, with no API keys: each client is called exactly as
its documentation shows, at its defaults."""

from __future__ import annotations

import pytest

from tests.ops.server import Server, serve


@pytest.fixture(scope="session")
def live(tmp_path_factory) -> Server:
    with serve(tmp_path_factory.mktemp("clients") / "server.log", {}) as running:
        yield running
