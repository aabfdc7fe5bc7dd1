"""Admission control shared by every transport: at most `limit` requests per model inside the
service at once (parsing, waiting for the batcher or computing), whether they came over HTTP or
gRPC; one more is refused at once (503 and Retry-After, RESOURCE_EXHAUSTED on gRPC). A request
takes its place once its body has been read (HTTP: `BodyLimits.read`; gRPC reads a message
whole itself), so a client sending slowly holds none.

The batcher's queue alone does not bound this: under overload requests pile up before they
reach it (in the event loop, parsing and decoding), and latency would grow without a refusal.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Self

from app.core.errors import GlassboxError, Overloaded
from app.core.settings import Settings
from app.dataplane import metrics
from app.runtime.registry import DEFAULT, Asked, ModelRegistry


class InFlightLimit:
    """The one owner of the queue limit: `limit` places per model (GLASSBOX_QUEUE_SIZE), or the
    model's own from `per_model` (GLASSBOX_BATCHING's `queue_size`), above or below it. A
    refusal is counted (`glassbox_rejected_requests`, reason `in_progress_limit`) against the
    version the request would have been answered by, resolved in `registry`."""

    def __init__(
        self,
        limit: int,
        registry: ModelRegistry,
        per_model: Mapping[str, int] | None = None,
    ):
        self.limit = limit
        self.registry = registry
        self.per_model = dict(per_model or {})
        self.in_flight: dict[str, int] = {}

    @classmethod
    def of(cls, settings: Settings, registry: ModelRegistry) -> Self:
        per_model = {
            name: override.queue_size
            for name, override in settings.batching.items()
            if override.queue_size is not None
        }
        return cls(settings.queue_size, registry, per_model)

    def acquire(self, model: str, asked: Asked = DEFAULT) -> None:
        """Takes one of the model's places; Overloaded when none is free."""
        limit = self.per_model.get(model, self.limit)
        if self.in_flight.get(model, 0) >= limit:
            self._count_refusal(model, asked)
            raise Overloaded(
                f"The model is busy: {limit} requests are already in progress. Retry shortly."
            )
        self.in_flight[model] = self.in_flight.get(model, 0) + 1

    def release(self, model: str) -> None:
        """Gives the place back; a model with none taken is forgotten, so made-up names sent
        by clients do not pile up here."""
        self.in_flight[model] -= 1
        if not self.in_flight[model]:
            del self.in_flight[model]

    def _count_refusal(self, model: str, asked: Asked) -> None:
        try:
            version = self.registry.resolve(model, asked, split=True, ready=False).version
        except GlassboxError:  # a name or version no model has: no series for made-up names
            return
        metrics.count_rejected(model, version, "in_progress_limit")

    @contextmanager
    def admit(self, model: str, asked: Asked = DEFAULT) -> Iterator[None]:
        """One of the model's places, held for the block."""
        self.acquire(model, asked)
        try:
            yield
        finally:
            self.release(model)
