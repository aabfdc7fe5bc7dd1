"""The models the service has: the registry kept in line with the model folder (loaded,
reloaded, removed, polled), each model's rollout put in force from its file or the admin API,
and what each model's status is."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from app.artifact.layout import scan_versions
from app.core.errors import GlassboxError, RolloutRefused
from app.core.settings import Settings
from app.dataplane import explain
from app.dataplane.model_control import WantedModels
from app.dataplane.schemas import (
    ModelSummary,
    ReloadReport,
    RolloutStatus,
    ShadowStatus,
    VersionStatus,
)
from app.dataplane.shadow import Shadow
from app.dataplane.threads import InferenceThreads
from app.runtime import rollout
from app.runtime.batching import Batcher
from app.runtime.model import (
    ModelRuntime,
    ModelState,
    ScoredOutputs,
    folder_fingerprint,
    settle_heap,
)
from app.runtime.registry import ModelRegistry

logger = logging.getLogger(__name__)


class Catalog:
    def __init__(
        self,
        settings: Settings,
        registry: ModelRegistry,
        threads: InferenceThreads,
        shadow: Shadow,
    ):
        self.settings = settings
        self.registry = registry
        self.threads = threads
        self.shadow = shadow
        self._reload_listeners: list[Callable[[], Awaitable[None]]] = []
        self._reload_lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        # Per model: why its rollout file is not in force (a version it names is not ready, or
        # the file is invalid); the reason is shown at /api/models/{name}/rollout.
        self.rollout_refusals: dict[str, str] = {}
        # GLASSBOX_MODEL_CONTROL=explicit: the models to serve (None in poll mode: all found).
        self.wanted = (
            WantedModels(settings.models, settings.model_control_file)
            if settings.model_control == "explicit"
            else None
        )

    def served_names(self) -> list[str] | None:
        """The models a reload brings in line with the folder: in poll mode those of
        GLASSBOX_MODELS (None: every one found), in explicit mode the wanted set as the model
        control file now says (every worker's poll reads it)."""
        if self.wanted is None:
            return self.settings.models or None
        return sorted(self.wanted.refresh())

    async def reload(self) -> ReloadReport:
        """Bring the registry in line with the model folder: load new versions (and failed ones
        whose files changed), drop removed ones. A version that fails to load never replaces a
        ready one: the newest *ready* version keeps serving. Requests in flight on a removed
        version finish on it."""
        async with self._reload_lock:
            names = self.served_names()
            on_disk = scan_versions(self.settings.model_dir, names) if names != [] else {}
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
                await self.threads.run(runtime.load, self.settings.verify_hashes)
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
                await self.threads.run(rollout.write_plan, self.settings.model_dir / name, plan)
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
        default = self.registry.resolve(name, ready=False)
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
    async def _drain_then_settle(batchers: list[Batcher[ScoredOutputs]]) -> None:
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

    async def drained(self) -> None:
        """Once the removed versions still draining have finished (and their memory settled)."""
        await asyncio.gather(*self._background, return_exceptions=True)

    async def aclose(self) -> None:
        await self.drained()

    def summary(self, name: str) -> ModelSummary:
        versions = self.registry.versions(name)
        default = self.registry.resolve(name, ready=False)
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
        """What keeps the service from being ready: each wanted model (GLASSBOX_MODELS, or in
        explicit mode those loaded) without a folder, and the versions of each model that has
        no ready version (in explicit mode: ready once what was asked for has loaded). A new
        version still loading (or one that failed) beside a ready one does not count: the
        model serves."""
        wanted = sorted(self.wanted.names) if self.wanted is not None else self.settings.models
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
