"""The service's ASGI app with one more route, for `python -m bench.tracing_served` only:
`POST /bench/tracing` turns tracing on at the sampling ratio its body names (OTLP/HTTP to the
endpoint it names) or, with `{"ratio": null}`, off after exporting what is buffered. One server
process then measures every setting, so that the differences between two server processes of
the same code (which move CPU per request by 15% or more on this machine) fall on none of them.

Run as `python -m app.serve bench.tracing_switch:app`: the server, its options and the lifespan
are the service's own.
"""

from __future__ import annotations

import os
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from app.core import tracing
from app.main import app as service

SWITCH_PATH = "/bench/tracing"


def switch(ratio: float | None, endpoint: str) -> None:
    """Tracing off (buffered spans exported first), then on at `ratio` unless it is None."""
    tracing.shutdown()
    if ratio is None:
        return
    os.environ.update(
        OTEL_TRACES_SAMPLER="parentbased_traceidratio",
        OTEL_TRACES_SAMPLER_ARG=str(ratio),
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        OTEL_SERVICE_NAME="glassbox-bench",
    )
    tracing.install()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http" or scope["path"] != SWITCH_PATH:
        await service(scope, receive, send)
        return
    asked = await Request(scope, receive).json()
    switch(asked["ratio"], asked.get("endpoint", ""))
    await Response(status_code=204)(scope, receive, send)
