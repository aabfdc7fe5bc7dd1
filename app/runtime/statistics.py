"""Per model version: what it has computed and how long each part took, as Triton counts it.

The dynamic batcher records every prediction here: a request's time in the queue, the batch it
joined (assembling the batch is `compute_input`, the model call `compute_infer`, handing each
caller its rows `compute_output`) and whether it was answered (`success`) or refused on its way
(`fail`: the queue full, its deadline passed, the model call raising). A layer-output call (the
trace signature, which is not batched) counts as a batch of its own. Durations are cumulative
nanoseconds, counts are requests; `inference_count` counts rows and `execution_count` model
calls. The numbers are this process's: with several workers, each keeps its own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += ns


@dataclass
class BatchDurations:
    """The model calls of one batch size (a count per call, not per request)."""

    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


@dataclass
class InferenceStatistics:
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0  # milliseconds since the epoch; 0 before the first
    batches: dict[int, BatchDurations] = field(default_factory=dict)

    def executed(
        self, requests: int, rows: int, input_ns: int, infer_ns: int, output_ns: int
    ) -> None:
        """One model call for `requests` requests holding `rows` rows in all: each request
        counts the whole call's durations, as it waited for all of it."""
        self.execution_count += 1
        self.inference_count += rows
        self.last_inference_ms = time.time_ns() // 1_000_000
        self.compute_input.add(input_ns * requests, requests)
        self.compute_infer.add(infer_ns * requests, requests)
        self.compute_output.add(output_ns * requests, requests)
        batch = self.batches.get(rows)
        if batch is None:
            batch = self.batches[rows] = BatchDurations()
        batch.compute_input.add(input_ns)
        batch.compute_infer.add(infer_ns)
        batch.compute_output.add(output_ns)

    def answered(self, ns: int) -> None:
        self.success.add(ns)

    def failed(self, ns: int) -> None:
        self.fail.add(ns)
