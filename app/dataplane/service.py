"""The logic layer: input arrays from requests, model calls off the event loop, answers.

Routes call this; this calls the registry and the runtimes. Nothing here knows HTTP.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, TypeVarTuple

import numpy as np

from app.artifact import imaging
from app.artifact.card import SERVING_SIGNATURE, ModelCard
from app.artifact.layout import scan_versions
from app.core.errors import (
    BadInput,
    DeadlineExceeded,
    GlassboxError,
    Overloaded,
    PayloadTooLarge,
    RolloutRefused,
)
from app.core.settings import Settings
from app.dataplane import explain, traces
from app.dataplane.admission import InFlightLimit
from app.dataplane.payload_log import PayloadLog
from app.dataplane.schemas import (
    Comparison,
    Explanation,
    LayerDistance,
    LayerTrace,
    ModelSummary,
    Prediction,
    ReloadReport,
    RolloutStatus,
    RowComparison,
    ShadowStatus,
    VersionStatus,
)
from app.dataplane.shadow import Shadow, ShadowObserver, disagreement
from app.runtime import rollout
from app.runtime.batching import Batcher, BatchObserver
from app.runtime.model import ModelRuntime, ModelState, folder_fingerprint, settle_heap
from app.runtime.registry import ModelRegistry

if TYPE_CHECKING:
    from PIL import Image

logger = logging.getLogger(__name__)

_Args = TypeVarTuple("_Args")
_T = TypeVar("_T")


class Observer(BatchObserver, ShadowObserver, Protocol):
    """What the service reports to: the batchers' inference metrics and the shadow's."""


def _input_form(card: ModelCard) -> tuple[object, ...]:
    """What two versions must share for one request to go to both: the input's kind, name and
    shape, and its features by name (their observed and accepted ranges may differ)."""
    spec = card.input
    return spec.kind, spec.name, spec.shape, [f.name for f in spec.features or []]


class InferenceService:
    def __init__(
        self,
        settings: Settings,
        registry: ModelRegistry | None = None,
        observer: Observer | None = None,
        admission: InFlightLimit | None = None,
    ):
        self.settings = settings
        self.registry = registry or ModelRegistry()
        self.observer = observer
        # One limit per model for every transport, so HTTP and gRPC share its places.
        self.admission = admission or InFlightLimit.of(settings)
        self._reload_listeners: list[Callable[[], Awaitable[None]]] = []
        self.executor = ThreadPoolExecutor(
            settings.inference_threads, thread_name_prefix="inference"
        )
        self._reload_lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        self._explain_slots = asyncio.Semaphore(settings.explain_concurrency)
        self._explaining = 0
        # A large image takes ~100 MB while it decodes: bound how many decode at once.
        self._decode_slots = asyncio.Semaphore(settings.max_concurrent_decodes)
        self.shadow = Shadow(settings.shadow_max_in_flight, settings.shadow_timeout_s, observer)
        # Per model: why its rollout file is not in force (a version it names is not ready, or
        # the file is invalid); the reason is shown at /api/models/{name}/rollout.
        self.rollout_refusals: dict[str, str] = {}
        # GLASSBOX_PAYLOAD_LOG: None when off, which is all a prediction then checks.
        self.payload_log = PayloadLog.from_settings(settings)

    # -- lifecycle ---------------------------------------------------------------------------

    async def reload(self) -> ReloadReport:
        """Bring the registry in line with the model folder: load new versions (and failed ones
        whose files changed), drop removed ones. A version that fails to load never replaces a
        ready one: the newest *ready* version keeps serving. Requests in flight on a removed
        version finish on it."""
        async with self._reload_lock:
            on_disk = scan_versions(self.settings.model_dir, self.settings.models or None)
            known = {(r.name, r.version): r for r in self.registry.all()}
            fresh = [
                ModelRuntime(name, version, path)
                for (name, version), path in sorted(on_disk.items())
                if (name, version) not in known
                or (
                    known[(name, version)].state is ModelState.FAILED
                    and known[(name, version)].fingerprint != folder_fingerprint(path)
                )
            ]
            for runtime in fresh:
                if (runtime.name, runtime.version) not in known:
                    self.registry.add(runtime)
            if fresh:  # registered as loading: readiness may have changed already
                await self._notify_reload()
            for runtime in fresh:
                await self._in_executor(runtime.load, self.settings.verify_hashes)
                self.registry.add(runtime)  # replaces a failed attempt only once loaded
            removed = sorted(set(known) - set(on_disk))
            draining = []
            for name, version in removed:
                runtime = known[(name, version)]
                self.registry.remove(name, version)
                if runtime.batcher is not None:
                    draining.append(runtime.batcher)
            if draining:
                task = asyncio.create_task(self._drain_then_settle(draining))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
            self._apply_rollout_files()
            report = ReloadReport(
                loaded=[f"{r.name}/{r.version}" for r in fresh if r.ready],
                failed=[f"{r.name}/{r.version}: {r.reason}" for r in fresh if not r.ready],
                removed=[f"{name}/{version}" for name, version in removed],
            )
            if fresh or removed:
                if fresh or not draining:  # draining versions settle once they finish
                    settle_heap()
                logger.info("models reloaded", extra=report.model_dump())
                await self._notify_reload()
            return report

    def _apply_rollout_files(self) -> None:
        """Put each model's rollout file in force where it differs from the rollout in force and
        every version it names is ready; a model without one has no labels, split or shadow."""
        for name in self.registry.names():
            try:
                plan = rollout.read_plan(self.settings.model_dir / name) or rollout.RolloutPlan()
                if plan != self.registry.plan(name):
                    self.registry.set_plan(name, plan)
                    logger.info("rollout in force", extra={"model": name, **plan.model_dump()})
                self.rollout_refusals.pop(name, None)
            except GlassboxError as refused:
                if self.rollout_refusals.get(name) != refused.message:
                    logger.warning(
                        "rollout refused", extra={"model": name, "reason": refused.message}
                    )
                self.rollout_refusals[name] = refused.message

    async def set_rollout(self, name: str, plan: rollout.RolloutPlan) -> RolloutStatus:
        """Put `plan` in force now and write it as the model's rollout file, which the other
        workers read at their next poll; refused (the rollout in force stays) when a version it
        names is not ready or the file cannot be written."""
        async with self._reload_lock:
            self.registry.versions(name)  # 404 for an unknown model
            previous = self.registry.plan(name)
            self.registry.set_plan(name, plan)
            try:
                await self._in_executor(rollout.write_plan, self.settings.model_dir / name, plan)
            except OSError as error:
                self.registry.set_plan(name, previous)
                raise RolloutRefused(
                    f"The rollout of '{name}' could not be written to its model folder "
                    f"({error.strerror}); the rollout in force stays."
                ) from None
            self.rollout_refusals.pop(name, None)
            logger.info("rollout set", extra={"model": name, **plan.model_dump()})
        return self.rollout_status(name)

    def rollout_status(self, name: str) -> RolloutStatus:
        plan = self.registry.plan(name)
        default = self.registry.default(name)
        shadow = None
        if plan.shadow is not None:
            tally = self.shadow.tally(name, plan.shadow.version)
            compared = tally.compared_rows
            classifier = default.card is not None and default.card.output.kind == "probabilities"
            shadow = ShadowStatus(
                version=plan.shadow.version,
                fraction=plan.shadow.fraction,
                compared_with=default.version,
                compared_rows=compared,
                class_changes=tally.class_changes if classifier else None,
                class_change_rate=(tally.class_changes / compared if compared else None)
                if classifier
                else None,
                mean_abs_difference=tally.abs_difference_sum / compared if compared else None,
                max_abs_difference=tally.max_abs_difference if compared else None,
                errors=tally.errors,
                timeouts=tally.timeouts,
                dropped=tally.dropped,
                paused=tally.paused,
            )
        return RolloutStatus(
            model=name,
            default_version=default.version if default.ready else None,
            labels=plan.labels,
            weights=plan.weights,
            shadow=shadow,
            refused=self.rollout_refusals.get(name),
        )

    async def _notify_reload(self) -> None:
        for listener in self._reload_listeners:
            await listener()

    def on_reload(self, listener: Callable[[], Awaitable[None]]) -> None:
        """Call `listener` when a reload changes the registry: once new versions are registered
        (loading), and again when it has loaded or removed versions (e.g. to update the gRPC
        health statuses)."""
        self._reload_listeners.append(listener)

    @staticmethod
    async def _drain_then_settle(batchers: list[Batcher]) -> None:
        """Let removed versions finish their requests, then collect them in one pass (each
        collection holds up the event loop for a while)."""
        await asyncio.gather(*(batcher.drain_and_close() for batcher in batchers))
        settle_heap()

    async def watch(self, interval_s: float) -> None:
        """Reload every `interval_s` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.reload()
            except Exception:  # a bad poll must not stop the next one
                logger.exception("model reload failed")

    async def aclose(self) -> None:
        await asyncio.gather(*self._background, return_exceptions=True)
        self.shadow.close()
        for runtime in self.registry.all():
            if runtime.batcher is not None:
                await runtime.batcher.close()
        self.executor.shutdown(wait=True, cancel_futures=True)
        if self.payload_log is not None:  # after the last prediction: what it queued is written
            await asyncio.to_thread(self.payload_log.close)

    async def _in_executor(self, function: Callable[[*_Args], _T], *args: *_Args) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    # -- status ------------------------------------------------------------------------------

    def summary(self, name: str) -> ModelSummary:
        versions = self.registry.versions(name)
        default = self.registry.default(name)
        described = self.registry.described(name)
        card = described.card if described else None
        return ModelSummary(
            name=name,
            task=card.task if card else None,
            description=card.description if card else None,
            default_version=default.version if default.ready else None,
            versions=[
                VersionStatus(version=r.version, state=r.state.value, reason=r.reason)
                for r in versions
            ],
            explanation_methods=list(explain.methods(card)) if card else [],
        )

    def summaries(self) -> list[ModelSummary]:
        return [self.summary(name) for name in self.registry.names()]

    def missing(self) -> list[str]:
        """What keeps the service from being ready: each wanted model without a folder, and the
        versions of each model that has no ready version. A new version still loading (or one
        that failed) beside a ready one does not count: the model serves."""
        wanted = self.settings.models or []
        absent = [
            f"{name} (no model folder)" for name in wanted if name not in self.registry.names()
        ]
        not_serving = [
            f"{runtime.name}/{runtime.version}"
            for name in self.registry.names()
            if not any(runtime.ready for runtime in self.registry.versions(name))
            for runtime in self.registry.versions(name)
        ]
        return absent + not_serving

    # -- inputs ------------------------------------------------------------------------------

    @staticmethod
    def feature_rows(card: ModelCard, rows: list[dict[str, float]]) -> np.ndarray:
        names = [feature.name for feature in card.input.features or []]
        return np.array([[row[name] for name in names] for row in rows], dtype=np.float32)

    def image_array(self, card: ModelCard, data: bytes) -> np.ndarray:
        return self._model_input(card, self._open_image(data))

    async def image_input(self, card: ModelCard, data: bytes) -> np.ndarray:
        """`image_array`, on a worker thread unless the image is small and plain.

        Decoding and resizing a large image is CPU work that must not hold up the event loop
        (Pillow releases the GIL while it decodes). A small plain one (see
        `imaging.cheap_to_open`, with at most `inline_decode_pixels`) takes about a millisecond
        or less, less than handing it to a thread and back, which is why it is done in place."""
        limit = self.settings.inline_decode_pixels
        if not (limit and imaging.cheap_to_open(data)):
            async with self._decode_slots:
                return await asyncio.to_thread(self.image_array, card, data)
        image = self._open_image(data)
        if image.width * image.height <= limit:
            return self._model_input(card, image)
        async with self._decode_slots:
            return await asyncio.to_thread(self._model_input, card, image)

    def _open_image(self, data: bytes) -> Image.Image:
        return imaging.open_image(
            data,
            max_bytes=self.settings.max_image_bytes,
            max_pixels=self.settings.max_image_pixels,
        )

    @staticmethod
    def _model_input(card: ModelCard, image: Image.Image) -> np.ndarray:
        return imaging.preprocess(imaging.load(image), card.input.image_spec)[np.newaxis]

    async def image_work(self, function: Callable[[*_Args], _T], *args: *_Args) -> _T:
        """`function(*args)`, heavy work on images (building an image model's batch from a wire
        protocol's request, up to GLASSBOX_MAX_INSTANCES files; drawing an explanation's
        overlay), on a worker thread in one of the decode slots: on the event loop it would
        hold up every other request and probe meanwhile."""
        async with self._decode_slots:
            return await asyncio.to_thread(function, *args)

    async def base64_image_input(self, card: ModelCard, encoded: str) -> np.ndarray:
        async with self._decode_slots:
            return await asyncio.to_thread(self.base64_image_array, card, encoded)

    def base64_image_array(
        self, card: ModelCard, encoded: str, where: str = "image_base64"
    ) -> np.ndarray:
        """`image_array` of a base64 image file; `where` names it in errors. Whitespace is
        ignored (`base64` on the command line wraps its output)."""
        limit = self.settings.max_image_bytes
        if len(encoded) > limit * 4 // 3 + 4:
            raise PayloadTooLarge(f"{where}: the image is over the limit of {limit} bytes.")
        try:
            data = base64.b64decode("".join(encoded.split()), validate=True)
        except (binascii.Error, ValueError):
            raise BadInput(f"{where} is not valid base64.", field="image_base64") from None
        return self.image_array(card, data)

    @staticmethod
    def pixel_array(card: ModelCard, pixels: Any) -> np.ndarray:
        expected = card.input.shape[1:]
        try:
            array = np.asarray(pixels, dtype=np.float32)
        except (ValueError, TypeError):
            raise BadInput(
                f"pixels must be a numeric array of shape {expected}.", field="pixels"
            ) from None
        if list(array.shape) != expected:
            raise BadInput(
                f"pixels has shape {list(array.shape)}; '{card.name}' takes {expected}.",
                field="pixels",
            )
        low, high = card.input.image_spec.value_range
        if not np.isfinite(array).all() or array.min() < low or array.max() > high:
            raise BadInput(f"pixels must be finite values from {low} to {high}.", field="pixels")
        return array[np.newaxis]

    # -- model calls -------------------------------------------------------------------------

    async def predict(self, runtime: ModelRuntime, batch: np.ndarray) -> np.ndarray:
        """The serving_default output (the card's output) for a float32 batch, batched with
        concurrent requests for the same model version.

        Every transport's predictions pass here (typed routes, TF Serving and v2 over HTTP and
        gRPC), so this is where the payload log takes its sample, and where a request the
        model's default version answers is copied to its shadow candidate, if it has one (after
        the answer, never holding it up)."""
        if self.payload_log is None:
            outputs = await self._batcher(runtime).submit(batch)
        else:
            outputs = await self._logged_predict(runtime, batch, self.payload_log)
        shadow = self.registry.plan(runtime.name).shadow
        if shadow is not None and shadow.version != runtime.version:
            self._offer_shadow(runtime, shadow, batch, outputs)
        return outputs

    def _offer_shadow(
        self,
        runtime: ModelRuntime,
        shadow: rollout.ShadowPlan,
        batch: np.ndarray,
        outputs: np.ndarray,
    ) -> None:
        if self.registry.default(runtime.name) is not runtime:
            return
        try:
            candidate = self.registry.get(runtime.name, shadow.version)
        except GlassboxError:  # the candidate was removed or failed since the rollout was set
            self.shadow.drop(runtime.name, shadow.version)
            return
        self.shadow.offer(candidate, shadow.fraction, batch, outputs)

    async def compare(
        self, first: ModelRuntime, second: ModelRuntime, rows: np.ndarray
    ) -> Comparison:
        """Both versions' answers to `rows`, how far apart they are, and the distance of their
        layer traces where a layer has the same name and output shape in both."""
        if _input_form(first.loaded_card) != _input_form(second.loaded_card):
            raise BadInput(
                f"Versions {first.version} and {second.version} of '{first.name}' take different "
                "inputs, so one request cannot be sent to both.",
                field="b",
            )
        # The trace's last layer is the serving output, so each version runs once; and not
        # through `predict`: a comparison is not copied to a shadow.
        first_trace, second_trace = await asyncio.gather(
            self._in_executor(first.trace, rows), self._in_executor(second.trace, rows)
        )
        first_out = first_trace[first.loaded_card.layers[-1].trace_key]
        second_out = second_trace[second.loaded_card.layers[-1].trace_key]
        classifier = (
            first.loaded_card.output.kind == second.loaded_card.output.kind == "probabilities"
        )
        compared = []
        a_answers = traces.describe(first, first_out)
        b_answers = traces.describe(second, second_out)
        for a_row, b_row, a_answer, b_answer in zip(
            first_out, second_out, a_answers, b_answers, strict=True
        ):
            changes, difference = (
                disagreement(a_row[np.newaxis], b_row[np.newaxis], classifier)
                if a_row.shape == b_row.shape
                else (None, None)
            )
            compared.append(
                RowComparison(
                    a=a_answer,
                    b=b_answer,
                    mean_abs_difference=None if difference is None else float(difference[0]),
                    max_abs_difference=None
                    if difference is None
                    else float(np.abs(a_row - b_row).max()),
                    class_changed=bool(changes) if classifier and changes is not None else None,
                )
            )
        layers, unmatched = [], []
        second_specs = {spec.name: spec for spec in second.loaded_card.layers}
        for spec in first.loaded_card.layers:
            other = second_specs.pop(spec.name, None)
            a_values = first_trace[spec.trace_key]
            b_values = None if other is None else second_trace[other.trace_key]
            if b_values is None or a_values.shape != b_values.shape:
                unmatched.append(spec.name)
                continue
            norm = float(np.linalg.norm(a_values))
            layers.append(
                LayerDistance(
                    layer=spec.name,
                    shape=list(a_values.shape[1:]),
                    mean_abs_difference=float(np.abs(a_values - b_values).mean()),
                    relative_l2=float(np.linalg.norm(a_values - b_values)) / norm if norm else None,
                )
            )
        unmatched += list(second_specs)
        return Comparison(
            model=first.name,
            a=first.version,
            b=second.version,
            rows=compared,
            layers=layers,
            unmatched_layers=unmatched,
        )

    async def _logged_predict(
        self, runtime: ModelRuntime, batch: np.ndarray, log: PayloadLog
    ) -> np.ndarray:
        if not log.sampled():
            return await self._batcher(runtime).submit(batch)
        started = time.perf_counter()
        outputs = await self._batcher(runtime).submit(batch)
        seconds = time.perf_counter() - started
        log.offer(runtime.name, runtime.version, runtime.loaded_card, batch, outputs, seconds)
        return outputs

    def _batcher(self, runtime: ModelRuntime) -> Batcher:
        """The version's batcher, made on its first request."""
        if runtime.batcher is None:
            runtime.batcher = Batcher(
                runtime.predict,
                self.executor,
                self.settings.batch_policy(runtime.name),
                observer=self.observer,
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
            outputs = await self._in_executor(runtime.trace, batch)
        except Exception:
            runtime.statistics.failed(time.perf_counter_ns() - started)
            raise
        took = time.perf_counter_ns() - started
        runtime.statistics.executed(1, len(batch), 0, took, 0)
        runtime.statistics.answered(took)
        return outputs

    async def predictions(self, runtime: ModelRuntime, batch: np.ndarray) -> list[Prediction]:
        outputs = await self.predict(runtime, batch)
        return traces.describe(runtime, outputs)

    async def explain(
        self, runtime: ModelRuntime, rows: np.ndarray, options: explain.ExplainOptions
    ) -> list[Explanation]:
        """An explanation of each input row, on the inference threads, at most
        GLASSBOX_EXPLAIN_CONCURRENCY at once and GLASSBOX_EXPLAIN_QUEUE_SIZE waiting or running
        (a request takes a place per row, all or none): a burst of explanations waits for its
        own places, not the predictions'. One that waits longer than GLASSBOX_EXPLAIN_TIMEOUT_S
        for a turn is answered 504, not computed."""
        explain.check_options(runtime.loaded_card, options, self.settings)
        limit = self.settings.explain_queue_size
        if self._explaining + len(rows) > limit:
            raise Overloaded(
                f"{limit} explanations at most wait or run at once; {self._explaining} are, and "
                f"this request has {len(rows)}. Retry shortly."
            )
        self._explaining += len(rows)
        waiting = len(rows)  # this request's places not yet handed to an inference thread
        try:
            answers = []
            for row in rows:
                try:
                    await asyncio.wait_for(
                        self._explain_slots.acquire(), self.settings.explain_timeout_s
                    )
                except TimeoutError:
                    raise DeadlineExceeded(
                        f"The explanation waited {self.settings.explain_timeout_s} s for its "
                        "turn (GLASSBOX_EXPLAIN_TIMEOUT_S). Retry shortly."
                    ) from None
                waiting -= 1
                gone = threading.Event()
                work = asyncio.get_running_loop().run_in_executor(
                    self.executor, explain.explanation, runtime, row, options, gone.is_set
                )
                # The slot and the place are given back when the thread is done, not when the
                # caller stops waiting: a caller that goes away (a closed connection, a
                # cancelled call) leaves the rows it has not started, and the one running
                # stops at its next chunk of gradients, counted until it has.
                work.add_done_callback(self._explanation_ended)
                try:
                    answers.append(await asyncio.shield(work))
                except asyncio.CancelledError:
                    gone.set()
                    raise
            return answers
        finally:
            self._explaining -= waiting

    def _explanation_ended(self, work: asyncio.Future[Explanation]) -> None:
        self._explain_slots.release()
        self._explaining -= 1
        if not work.cancelled():
            work.exception()  # one stopped for a caller gone (ClientGone) is no one's to raise

    async def trace(
        self,
        runtime: ModelRuntime,
        one: np.ndarray,
        *,
        full: bool = False,
        weights: bool = False,
    ) -> LayerTrace:
        outputs = await self._in_executor(runtime.trace, one)
        return traces.layer_trace(runtime, outputs, self.settings, full=full, weights=weights)
