"""Pure helpers: request outcomes into req/s, percentiles and error counts.

No I/O, no clock: the load generator records `Sample`s, these turn them into numbers.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    """One request: how long it took and how it ended."""

    latency_s: float
    status: int | None = None  # HTTP status; None when the request raised
    error: str | None = None  # exception class name when it raised

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100), interpolated linearly between ranks (numpy's default).

    None for no values.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"q must be between 0 and 100 (got {q})")
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def outcome(sample: Sample) -> str:
    """'200', '503', ... or the exception name, e.g. 'ReadTimeout'."""
    return str(sample.status) if sample.status is not None else (sample.error or "error")


def summarize(samples: Sequence[Sample], elapsed_s: float, unfinished: int = 0) -> dict:
    """req/s and latency of the 2xx answers; every other outcome counted as an error.

    `unfinished` requests were still in flight when the run's wall-clock cap cancelled them;
    they count as errors too.
    """
    good = [s.latency_s for s in samples if s.ok]
    bad = Counter(outcome(s) for s in samples if not s.ok)
    if unfinished:
        bad["unfinished"] += unfinished
    return {
        "completed": len(samples),
        "ok": len(good),
        "errors": sum(bad.values()),
        "error_kinds": dict(sorted(bad.items())),
        "elapsed_s": round(elapsed_s, 3),
        "rps": round(len(good) / elapsed_s, 2) if elapsed_s > 0 else None,
        "p50_ms": _ms(percentile(good, 50)),
        "p99_ms": _ms(percentile(good, 99)),
    }


def summarize_overload(
    samples: Sequence[Sample], elapsed_s: float, unfinished: int, timeout_s: float
) -> dict:
    """How an overloaded service answered: 200s, fast 503s, and whether anything hung.

    A request hung when it timed out on the client or was still in flight at the wall-clock cap.
    """
    ok = [s.latency_s for s in samples if s.status == 200]
    rejected = [s.latency_s for s in samples if s.status == 503]
    timeouts = sum(1 for s in samples if s.error is not None and "Timeout" in s.error)
    other = Counter(outcome(s) for s in samples if s.status not in (200, 503))
    latencies = [s.latency_s for s in samples]
    return {
        "completed": len(samples),
        "ok_200": len(ok),
        "rejected_503": len(rejected),
        "other": dict(sorted(other.items())),
        "timeouts": timeouts,
        "unfinished": unfinished,
        "hung": timeouts + unfinished,
        "all_finished": timeouts + unfinished == 0,
        "timeout_s": timeout_s,
        "elapsed_s": round(elapsed_s, 3),
        "ok_rps": round(len(ok) / elapsed_s, 2) if elapsed_s > 0 else None,
        "p50_200_ms": _ms(percentile(ok, 50)),
        "p99_200_ms": _ms(percentile(ok, 99)),
        "p50_503_ms": _ms(percentile(rejected, 50)),
        "p99_503_ms": _ms(percentile(rejected, 99)),
        "max_ms": _ms(max(latencies)) if latencies else None,
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator rounded to 2 places; None when either is missing or zero."""
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 2)
