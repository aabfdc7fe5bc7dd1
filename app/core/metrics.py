"""What every transport's metrics share: a cheap way to a labelled series."""

from __future__ import annotations

import functools
from typing import TypeVar

from prometheus_client.metrics import MetricWrapperBase

_Metric = TypeVar("_Metric", bound=MetricWrapperBase)


@functools.lru_cache(maxsize=4096)
def series(metric: _Metric, *labels: str) -> _Metric:
    """The metric's child for these label values. prometheus_client's `labels()` checks the
    values and takes a lock on every call, which adds up on the per-request path."""
    return metric.labels(*labels)
