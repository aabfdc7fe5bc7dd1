"""Metrics, request logs and log format: what an operator sees of the running service.

- Prometheus metrics (`prometheus-client`), served at `/metrics` by `router`: every series of
  the process, among them the data plane's (`app.dataplane.metrics`: model calls, queues,
  refusals, shadows) and gRPC's. HTTP request metrics come from `record_request` (called by
  `middleware.gateway.Gateway`); model states are read from the registry at scrape time.
- One structured JSON log line per request (request id, method, route, model, version, status,
  latency), the request id taken from `X-Request-ID` or made up, and echoed back.
- Log lines in JSON: `app.core.logging.configure_logging()`, with the request id set here.

With several uvicorn workers in one container, set `PROMETHEUS_MULTIPROC_DIR` (deploy/serve.sh
does) so that a scrape, answered by whichever worker gets it, sums every worker's counters.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.types import Scope

from app.core.logging import log_fields
from app.core.metrics import series
from app.http.paths import model_request

if TYPE_CHECKING:
    from app.dataplane.service import InferenceService

logger = logging.getLogger(__name__)

# -- metrics ---------------------------------------------------------------------------------

UNMATCHED_ROUTE = "<unmatched>"
# Seconds. A full trace of an image model returns up to GLASSBOX_TRACE_MAX_VALUES numbers as
# JSON, so the request buckets reach far past the model calls'.
_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

REQUESTS = Counter(
    "glassbox_http_requests",
    "HTTP requests answered, by route template and status.",
    ["method", "route", "status"],
)
REQUEST_LATENCY = Histogram(
    "glassbox_http_request_duration_seconds",
    "Time from a request's arrival to the end of its response, by route template.",
    ["method", "route"],
    buckets=_REQUEST_BUCKETS,
)


class ModelCollector:
    """Each model version's load state and each model's default version, read at scrape time.

    Read from the service rather than kept in gauges, so a scrape can never disagree with
    /health/ready.
    """

    STATES = ("loading", "ready", "failed")

    def __init__(self, service: InferenceService | None) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "glassbox_model_state",
            "1 for the state a model version is in (loading, ready, failed), 0 for the others.",
            labels=["model", "version", "state"],
        )
        default = GaugeMetricFamily(
            "glassbox_model_default_version",
            "The version a request without a version gets (without a canary split): the "
            "`stable` label's, else the newest ready one.",
            labels=["model"],
        )
        if self.service is not None:
            for runtime in self.service.registry.all():
                for name in self.STATES:
                    value = 1.0 if runtime.state.value == name else 0.0
                    state.add_metric([runtime.name, str(runtime.version), name], value)
            for name in self.service.registry.names():
                serving = self.service.registry.resolve(name, ready=False)
                if serving.ready:
                    default.add_metric([name], float(serving.version))
        yield state
        yield default


class _Scrape:
    """The collectors one scrape reads: this process's (or every worker's) and the models."""

    def __init__(self, service: InferenceService | None) -> None:
        self.models = ModelCollector(service)
        multiproc_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        self.base: Collector
        if multiproc_dir:
            self.base = CollectorRegistry()
            # prometheus_client leaves this constructor unannotated.
            MultiProcessCollector(self.base, path=multiproc_dir)  # type: ignore[no-untyped-call]
        else:
            self.base = REGISTRY

    def collect(self) -> Iterator[Metric]:
        yield from self.base.collect()
        yield from self.models.collect()


router = APIRouter(tags=["observability"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus text format (OpenMetrics when the scraper asks for it)."""
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    scrape = _Scrape(getattr(request.app.state, "service", None))
    return Response(encoder(scrape), headers={"Content-Type": content_type})


# -- request logs and metrics ----------------------------------------------------------------

REQUEST_ID_HEADER = "X-Request-ID"

# Probes and scrapes come every few seconds; at INFO they would drown the requests that matter.
_QUIET_ROUTES = ("/health/live", "/health/ready", "/v2/health/live", "/v2/health/ready", "/metrics")


def _model_and_version(scope: Scope) -> tuple[str | None, int | None]:
    asked = model_request(scope)
    return (None, None) if asked is None else (asked.model, asked.asked.version)


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    return getattr(route, "path_format", None) or getattr(route, "path", None) or UNMATCHED_ROUTE


def record_request(scope: Scope, status: int, started: float) -> None:
    """A request's metrics and its log line, once it is answered. The route is the template
    ('/api/models/{name}'), never the raw path, so a scan of made-up URLs cannot grow the
    metrics without bound."""
    seconds = time.perf_counter() - started
    route = _route_template(scope)
    method = scope["method"]
    series(REQUESTS, method, route, str(status)).inc()
    series(REQUEST_LATENCY, method, route).observe(seconds)
    model, version = _model_and_version(scope)
    log_fields(
        logger,
        logging.DEBUG if route in _QUIET_ROUTES else logging.INFO,
        "request",
        {
            "method": method,
            "route": route,
            "model": model,
            "version": version,
            "status": status,
            "latency_ms": round(seconds * 1000, 2),
        },
    )
