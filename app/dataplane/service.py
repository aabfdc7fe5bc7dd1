"""The data plane as one object the transports share: the models (`catalog`), the model
repository calls (`repository`), a request's input (`inputs`), model calls (`predictor`) and
explanations (`explainer`), one in-flight limit per model (`admission`) and the inference
threads they all run on. Nothing here knows HTTP or
gRPC: a route or a servicer resolves the version with `ModelRegistry.resolve`, builds its batch
with `inputs`, and gets its answer from `predictor` or `explainer`."""

from __future__ import annotations

import asyncio

from app.core.settings import Settings
from app.dataplane import metrics
from app.dataplane.admission import InFlightLimit
from app.dataplane.catalog import Catalog
from app.dataplane.drift import Drift
from app.dataplane.explainer import Explainer
from app.dataplane.inputs import Inputs
from app.dataplane.payload_log import PayloadLog
from app.dataplane.predictor import Predictor
from app.dataplane.repository import Repository
from app.dataplane.shadow import Shadow
from app.dataplane.threads import InferenceThreads
from app.runtime.registry import ModelRegistry


class InferenceService:
    def __init__(
        self,
        settings: Settings,
        registry: ModelRegistry | None = None,
        admission: InFlightLimit | None = None,
    ):
        self.settings = settings
        self.registry = registry or ModelRegistry()
        # One limit per model for every transport, so HTTP and gRPC share its places.
        self.admission = admission or InFlightLimit.of(settings, self.registry)
        self.threads = InferenceThreads(settings.inference_threads)
        self.shadow = Shadow(settings.shadow_max_in_flight, settings.shadow_timeout_s, metrics)
        self.catalog = Catalog(settings, self.registry, self.threads, self.shadow)
        self.repository = Repository(self.catalog)
        self.inputs = Inputs(settings)
        self.predictor = Predictor(
            settings,
            self.registry,
            self.threads,
            self.shadow,
            PayloadLog.from_settings(settings),
            Drift(settings),
        )
        self.explainer = Explainer(settings, self.threads)

    async def aclose(self) -> None:
        await self.catalog.aclose()
        self.shadow.close()
        for runtime in self.registry.all():
            if runtime.batcher is not None:
                await runtime.batcher.close()
        self.threads.shutdown()
        log = self.predictor.payload_log
        if log is not None:  # after the last prediction: what it queued is written
            await asyncio.to_thread(log.close)
