"""Name, version or label to runtime. A model is registered before it loads, so 'loading'
shows. Each model's rollout (`app.runtime.rollout`) says which version a request that names
none gets."""

from __future__ import annotations

import logging

from app.core.errors import BadInput, ModelNotFound, ModelNotReady, RolloutRefused, clipped
from app.runtime.model import ModelRuntime, ModelState
from app.runtime.rollout import STABLE, RolloutPlan, caller_var

logger = logging.getLogger(__name__)

# Asked for on every request: one shared empty rollout rather than a new one each time.
_NO_ROLLOUT = RolloutPlan()


class ModelRegistry:
    def __init__(self) -> None:
        self._models: dict[str, dict[int, ModelRuntime]] = {}
        self._plans: dict[str, RolloutPlan] = {}

    def add(self, runtime: ModelRuntime) -> None:
        self._models.setdefault(runtime.name, {})[runtime.version] = runtime

    def remove(self, name: str, version: int) -> None:
        self._models.get(name, {}).pop(version, None)
        if not self._models.get(name):
            self._models.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._models)

    def versions(self, name: str) -> list[ModelRuntime]:
        if name not in self._models:
            raise ModelNotFound(
                f"No model named '{clipped(name)}'. Models: {', '.join(self.names())}."
            )
        return [self._models[name][v] for v in sorted(self._models[name])]

    def all(self) -> list[ModelRuntime]:
        return [runtime for name in self.names() for runtime in self.versions(name)]

    def described(self, name: str) -> ModelRuntime | None:
        """The version whose card describes `name`: the newest ready, else the newest with a
        card; None for an unknown name or one with no card yet."""
        versions = self._models.get(name, {})
        ordered = [versions[v] for v in sorted(versions)]
        candidates = [r for r in ordered if r.ready] or [r for r in ordered if r.card]
        return candidates[-1] if candidates else None

    # -- rollouts ----------------------------------------------------------------------------

    def plan(self, name: str) -> RolloutPlan:
        """The model's rollout in force (an empty one when none was set; never changed in
        place: `set_plan` replaces it)."""
        return self._plans.get(name, _NO_ROLLOUT)

    def set_plan(self, name: str, plan: RolloutPlan) -> None:
        """Put `plan` in force for `name`, only if every version it points at is ready; else
        RolloutRefused, and the rollout in force keeps serving."""
        versions = {runtime.version: runtime for runtime in self.versions(name)}
        plan.check()
        not_ready = sorted(v for v in plan.versions() if v not in versions or not versions[v].ready)
        if not_ready:
            states = ", ".join(
                f"{v} ({versions[v].state.value if v in versions else 'absent'})" for v in not_ready
            )
            raise RolloutRefused(
                f"The rollout of '{name}' points at versions that are not ready: {states}. "
                "The rollout in force keeps serving."
            )
        if plan.shadow is not None:
            default = _default_of(list(versions.values()), plan)
            if plan.shadow.version == default.version:
                raise RolloutRefused(
                    f"The shadow of '{name}' is version {default.version}, the default version "
                    "itself, which would only be compared with itself: name another version. "
                    "The rollout in force keeps serving."
                )
        self._plans[name] = plan

    def label_version(self, name: str, label: str) -> int:
        versions = self.versions(name)  # 404 for an unknown model first
        version = self.plan(name).labels.get(label)
        if version is None:
            known = ", ".join(sorted(self.plan(name).labels)) or "none"
            raise ModelNotFound(
                f"Model '{name}' has no version label '{clipped(label)}'. Labels: {known}."
            )
        if not any(runtime.version == version for runtime in versions):
            raise ModelNotReady(
                f"Model '{name}' label '{label}' points at version {version}, which is gone."
            )
        return version

    def default(self, name: str) -> ModelRuntime:
        """The version a request that names none gets, without the canary split: the `stable`
        label's when it is ready, else the newest ready one (the newest when none is)."""
        return _default_of(self.versions(name), self.plan(name))

    def serve(
        self, name: str, version: int | None = None, label: str | None = None
    ) -> ModelRuntime:
        """`get`, with the canary split for a request that names neither version nor label:
        the caller (`caller_var`) keeps its version while the weights stay the same. A version
        the split picks that is not ready (removed since) gives way to the default."""
        if version is None and label is None:
            picked = self.plan(name).pick(name, caller_var.get())
            if picked is not None:
                runtime = self._models.get(name, {}).get(picked)
                if runtime is not None and runtime.ready:
                    return runtime
        return self.get(name, version, label)

    # -- lookups -----------------------------------------------------------------------------

    def find(self, name: str, version: int | None = None, label: str | None = None) -> ModelRuntime:
        """The runtime for a name and a version or label (default: `default`), whatever its
        state."""
        if version is not None and label is not None:
            raise BadInput("Ask for a version or a label, not both.", field="label")
        if label is not None:
            version = self.label_version(name, label)
        if version is None:
            return self.default(name)
        versions = self.versions(name)
        for runtime in versions:
            if runtime.version == version:
                return runtime
        raise ModelNotFound(
            f"Model '{name}' has no version {version}. "
            f"Versions: {', '.join(str(r.version) for r in versions)}."
        )

    def get(self, name: str, version: int | None = None, label: str | None = None) -> ModelRuntime:
        """The runtime to serve a request with; 503 when it is not ready."""
        runtime = self.find(name, version, label)
        if runtime.state is ModelState.LOADING:
            raise ModelNotReady(f"Model '{name}' version {runtime.version} is still loading.")
        if runtime.state is ModelState.FAILED:
            raise ModelNotReady(
                f"Model '{name}' version {runtime.version} is unavailable: it failed to load."
            )
        return runtime


def _default_of(versions: list[ModelRuntime], plan: RolloutPlan) -> ModelRuntime:
    """`Registry.default` of `versions` (ascending, at least one) under `plan`."""
    stable = plan.labels.get(STABLE)
    newest_ready = None
    for runtime in versions:
        if runtime.ready:
            if runtime.version == stable:
                return runtime
            newest_ready = runtime
    return newest_ready or versions[-1]
