"""Model calls off the event loop: predictions batched with concurrent requests for the same
version (sampled into the payload log, copied to a shadow candidate, kept in its drift window),
the wire protocols' signatures, layer traces and two versions compared. With tracing on, a call
of the trace signature is a `model call` span (the batched ones are the batcher's)."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from app.artifact.card import SERVING_SIGNATURE
from app.core.errors import GlassboxError
from app.core.settings import Settings
from app.dataplane import comparison, familiarity, metrics, traces
from app.dataplane.drift import Drift
from app.dataplane.payload_log import PayloadLog
from app.dataplane.schemas import Comparison, InputFamiliarity, LayerTrace, Prediction
from app.dataplane.shadow import Shadow
from app.dataplane.threads import InferenceThreads
from app.runtime import rollout
from app.runtime.batching import Batcher
from app.runtime.model import ModelRuntime, ScoredOutputs
from app.runtime.registry import Asked, ModelRegistry


class Predictor:
    def __init__(
        self,
        settings: Settings,
        registry: ModelRegistry,
        threads: InferenceThreads,
        shadow: Shadow,
        payload_log: PayloadLog | None,
        drift: Drift,
    ):
        self.settings = settings
        self.registry = registry
        self.threads = threads
        self.shadow = shadow
        # GLASSBOX_PAYLOAD_LOG: None when off, which is all a prediction then checks.
        self.payload_log = payload_log
        self.drift = drift

    async def predict(self, runtime: ModelRuntime, batch: np.ndarray) -> np.ndarray:
        """The serving_default output (the card's output) for a float32 batch."""
        return (await self.predict_scored(runtime, batch)).outputs

    async def predict_scored(self, runtime: ModelRuntime, batch: np.ndarray) -> ScoredOutputs:
        """The serving_default output (the card's output) for a float32 batch, and each row's
        familiarity score, batched with concurrent requests for the same model version.

        Every transport's predictions pass here (typed routes, TF Serving and v2 over HTTP and
        gRPC), so this is where the payload log takes its sample, where the answered batch
        joins the version's drift window, and where a request the model's default version
        answers is copied to its shadow candidate, if it has one (after the answer, never
        holding it up)."""
        if self.payload_log is None:
            scored = await self._batcher(runtime).submit(batch)
        else:
            scored = await self._logged_predict(runtime, batch, self.payload_log)
        scores = None if scored.familiarity is None else scored.familiarity.score
        self.drift.observe(runtime, batch, scored.outputs, scores)
        shadow = self.registry.plan(runtime.name).shadow
        if shadow is not None and shadow.version != runtime.version:
            self._offer_shadow(runtime, shadow, batch, scored.outputs)
        return scored

    async def predict_familiarity(
        self, runtime: ModelRuntime, batch: np.ndarray
    ) -> tuple[np.ndarray, list[InputFamiliarity | None]]:
        """The serving output and each row's familiarity answer (None without one in the card)."""
        scored = await self.predict_scored(runtime, batch)
        return scored.outputs, familiarity.answers(runtime, batch, scored.familiarity)

    async def predictions(self, runtime: ModelRuntime, batch: np.ndarray) -> list[Prediction]:
        outputs, familiar = await self.predict_familiarity(runtime, batch)
        return traces.describe(runtime, outputs, familiar)

    def _offer_shadow(
        self,
        runtime: ModelRuntime,
        shadow: rollout.ShadowPlan,
        batch: np.ndarray,
        outputs: np.ndarray,
    ) -> None:
        if self.registry.resolve(runtime.name, ready=False) is not runtime:
            return  # only the default version's requests are copied
        try:
            candidate = self.registry.resolve(runtime.name, Asked(version=shadow.version))
        except GlassboxError:  # the candidate was removed or failed since the rollout was set
            self.shadow.drop(runtime.name, shadow.version)
            return
        self.shadow.offer(candidate, shadow.fraction, batch, outputs)

    async def _logged_predict(
        self, runtime: ModelRuntime, batch: np.ndarray, log: PayloadLog
    ) -> ScoredOutputs:
        if not log.sampled():
            return await self._batcher(runtime).submit(batch)
        started = time.perf_counter()
        scored = await self._batcher(runtime).submit(batch)
        seconds = time.perf_counter() - started
        card = runtime.loaded_card
        log.offer(runtime.name, runtime.version, card, batch, scored.outputs, seconds)
        return scored

    def _batcher(self, runtime: ModelRuntime) -> Batcher[ScoredOutputs]:
        """The version's batcher, made on its first request."""
        if runtime.batcher is None:
            runtime.batcher = Batcher(
                runtime.predict_scored,
                self.threads.executor,
                self.settings.batch_policy(runtime.name),
                observer=metrics,
                model=(runtime.name, runtime.version),
                statistics=runtime.statistics,
            )
        return runtime.batcher

    async def call_signature(
        self, runtime: ModelRuntime, signature: str, batch: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Every output of 'serving_default' or 'trace' by name, for the wire protocols."""
        if signature == SERVING_SIGNATURE:
            return {runtime.loaded_card.output.name: await self.predict(runtime, batch)}
        started = time.perf_counter_ns()
        try:
            outputs = await self._traced_call(runtime, batch)
        except Exception:
            runtime.statistics.failed(time.perf_counter_ns() - started)
            raise
        took = time.perf_counter_ns() - started
        runtime.statistics.executed(1, len(batch), 0, took, 0)
        runtime.statistics.answered(took)
        return outputs

    async def trace(
        self,
        runtime: ModelRuntime,
        one: np.ndarray,
        *,
        full: bool = False,
        weights: bool = False,
    ) -> LayerTrace:
        outputs = await self._traced_call(runtime, one)
        return traces.layer_trace(runtime, one, outputs, self.settings, full=full, weights=weights)

    async def _traced_call(self, runtime: ModelRuntime, batch: np.ndarray) -> dict[str, np.ndarray]:
        """The trace signature's outputs, on an inference thread."""
        return await self.threads.run(runtime.trace, batch)

    async def compare(
        self, first: ModelRuntime, second: ModelRuntime, rows: np.ndarray
    ) -> Comparison:
        """Both versions' answers to `rows`, how far apart they are, and the distance of their
        layer traces. Each version runs once (the trace's last layer is the serving output),
        and not through `predict`: a comparison is not copied to a shadow."""
        comparison.check_comparable(first, second)
        first_trace, second_trace = await asyncio.gather(
            self.threads.run(first.trace, rows), self.threads.run(second.trace, rows)
        )
        return comparison.comparison(first, second, first_trace, second_trace)
