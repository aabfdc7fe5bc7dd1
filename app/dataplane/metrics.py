"""The data plane's metrics, the same whichever transport a request came by: model calls
(duration, batch size), queue depth, requests refused without a model call, and shadow
comparisons. This module is the batchers' and the shadow's observer (`BatchObserver`,
`ShadowObserver`); `app.http.observability` serves every metric at `/metrics`."""

from __future__ import annotations

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

from app.core.metrics import series

# Seconds.
_INFERENCE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

INFERENCE_LATENCY = Histogram(
    "glassbox_inference_duration_seconds",
    "Time of one model call (one batch), by model and version.",
    ["model", "version"],
    buckets=_INFERENCE_BUCKETS,
)
BATCH_SIZE = Histogram(
    "glassbox_inference_batch_size",
    "Rows in one model call, by model and version.",
    ["model", "version"],
    buckets=_BATCH_BUCKETS,
)
# livesum: with several workers, the depth of the service is the sum over the live workers.
QUEUE_DEPTH = Gauge(
    "glassbox_queue_depth",
    "Requests waiting for a model call, by model and version.",
    ["model", "version"],
    multiprocess_mode="livesum",
)
REJECTED = Counter(
    "glassbox_rejected_requests",
    "Requests refused without a model call (queue full, deadline passed), by reason.",
    ["model", "version", "reason"],
)


SHADOW_ROWS = Counter(
    "glassbox_shadow_compared_rows",
    "Rows a shadow candidate answered and compared with the default version, by candidate.",
    ["model", "version"],
)
SHADOW_CLASS_CHANGES = Counter(
    "glassbox_shadow_class_changes",
    "Compared rows whose top class differs between the default version and the candidate.",
    ["model", "version"],
)
SHADOW_ABS_DIFFERENCE = Counter(
    "glassbox_shadow_abs_difference",
    "Sum over compared rows of the mean absolute difference of the outputs (divide by "
    "glassbox_shadow_compared_rows_total for the mean).",
    ["model", "version"],
)
SHADOW_FAILURES = Counter(
    "glassbox_shadow_failures",
    "Shadow copies not compared, by reason: error, timeout, dropped (too many in flight), "
    "paused (the candidate kept failing).",
    ["model", "version", "reason"],
)


def observe_shadow(
    model: str, version: int, rows: int, class_changes: int, abs_differences: np.ndarray
) -> None:
    labels = (model, str(version))
    series(SHADOW_ROWS, *labels).inc(rows)
    series(SHADOW_CLASS_CHANGES, *labels).inc(class_changes)
    series(SHADOW_ABS_DIFFERENCE, *labels).inc(float(abs_differences.sum()))


def count_shadow_failure(model: str, version: int, reason: str) -> None:
    series(SHADOW_FAILURES, model, str(version), reason).inc()


def observe_inference(model: str, version: int, seconds: float, batch_size: int) -> None:
    """Record one model call: its duration and how many rows it computed."""
    series(INFERENCE_LATENCY, model, str(version)).observe(seconds)
    series(BATCH_SIZE, model, str(version)).observe(batch_size)


def set_queue_depth(model: str, version: int, depth: int) -> None:
    series(QUEUE_DEPTH, model, str(version)).set(depth)


def count_rejected(model: str, version: int, reason: str) -> None:
    series(REJECTED, model, str(version), reason).inc()


# Each worker keeps its own window (docs/drift.md): with several workers, the service's figure
# is the largest live worker's (a drift any worker sees is shown), its window the live sum.
DRIFT_PSI = Gauge(
    "glassbox_drift_psi",
    "Population stability index of a figure of the model version's window against its "
    "training distribution (absent while the window has too few rows), by figure.",
    ["model", "version", "figure"],
    multiprocess_mode="livemax",
)
DRIFT_CROSSED = Gauge(
    "glassbox_drift_crossed",
    "1 while a figure's PSI is over the card's threshold, else 0, by figure.",
    ["model", "version", "figure"],
    multiprocess_mode="livemax",
)
DRIFT_WINDOW_ROWS = Gauge(
    "glassbox_drift_window_rows",
    "Predictions in the model version's drift window(s).",
    ["model", "version"],
    multiprocess_mode="livesum",
)


def set_drift(
    model: str, version: int, rows: int, values: dict[str, float | None], threshold: float
) -> None:
    """A version's drift figures by name (None: not enough data yet, left out of the PSI)."""
    labels = (model, str(version))
    series(DRIFT_WINDOW_ROWS, *labels).set(rows)
    for name, value in values.items():
        if value is not None:
            series(DRIFT_PSI, *labels, name).set(value)
        series(DRIFT_CROSSED, *labels, name).set(
            1 if value is not None and value > threshold else 0
        )
