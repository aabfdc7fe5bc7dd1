"""Admission control shared by every transport: at most `limit` requests per model inside the
service at once (parsing, waiting for the batcher or computing), whether they came over HTTP or
gRPC; one more is refused at once (503 and Retry-After, RESOURCE_EXHAUSTED on gRPC). A request
takes its place once its body has been read (HTTP: `BodyLimits.read`; gRPC reads a message
whole itself), so a client sending slowly holds none.

The batcher's queue alone does not bound this: under overload requests pile up before they
reach it (in the event loop, parsing and decoding), and latency would grow without a refusal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Self

from app.core.errors import Overloaded
from app.core.settings import Settings


class InFlightLimit:
    """The one owner of the queue limit: `limit` places per model (GLASSBOX_QUEUE_SIZE), or the
    model's own from `per_model` (GLASSBOX_BATCHING's `queue_size`), above or below it."""

    def __init__(
        self,
        limit: int,
        on_reject: Callable[[str], None] | None = None,
        per_model: Mapping[str, int] | None = None,
    ):
        self.limit = limit
        self.per_model = dict(per_model or {})
        self.on_reject = on_reject or (lambda model: None)
        self.in_flight: dict[str, int] = {}

    @classmethod
    def of(cls, settings: Settings, on_reject: Callable[[str], None] | None = None) -> Self:
        per_model = {
            name: override.queue_size
            for name, override in settings.batching.items()
            if override.queue_size is not None
        }
        return cls(settings.queue_size, on_reject, per_model)

    def acquire(self, model: str) -> None:
        """Takes one of the model's places; Overloaded when none is free."""
        limit = self.per_model.get(model, self.limit)
        if self.in_flight.get(model, 0) >= limit:
            self.on_reject(model)
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

    @contextmanager
    def admit(self, model: str) -> Iterator[None]:
        """One of the model's places, held for the block."""
        self.acquire(model)
        try:
            yield
        finally:
            self.release(model)
