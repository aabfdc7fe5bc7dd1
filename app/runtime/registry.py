"""Name and asked version to runtime, one way for every surface: `Asked.of_text` reads version
text (a path's, a protocol field's), `ModelRegistry.resolve` picks the version that answers by
the rules of docs/rollouts.md. A model is registered before it loads, so 'loading' shows. Each
model's rollout (`app.runtime.rollout`) says which version a request that names none gets."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from app.core.errors import BadInput, ModelNotFound, ModelNotReady, RolloutRefused, clipped
from app.runtime.model import ModelRuntime, ModelState
from app.runtime.rollout import STABLE, RolloutPlan, caller_var

logger = logging.getLogger(__name__)

# Asked for on every request: one shared empty rollout rather than a new one each time.
_NO_ROLLOUT = RolloutPlan()


@dataclass(frozen=True, slots=True)
class Asked:
    """What a request names of a model's versions: a version number, a version label, or
    neither (the default, or the canary split's pick)."""

    version: int | None = None
    label: str | None = None

    @classmethod
    def of_text(cls, name: str, text: str, *, labels: bool = True) -> Asked:
        """A version as a URL path or a protocol's field spells it, the one reading of version
        text: empty for the default, ASCII digits for a version, anything else a label; where
        a surface takes no labels there (`labels=False`: TF Serving's `/versions/`), 404."""
        if not text:
            return DEFAULT
        if text.isascii() and text.isdigit():
            return cls(version=int(text))
        if not labels:
            raise ModelNotFound(
                f"Model '{clipped(name)}' has no version '{clipped(text)}'; versions are numbers."
            )
        return cls(label=text)


DEFAULT = Asked()


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

    # -- the one resolution ------------------------------------------------------------------

    def resolve(
        self, name: str, asked: Asked = DEFAULT, *, split: bool = False, ready: bool = True
    ) -> ModelRuntime:
        """The version that answers a request for `name` that names `asked`, by the rules of
        docs/rollouts.md, for every surface:

        1. a version: that version (404 when the model has none such);
        2. a label: the version the model's rollout gives it (404 for a label it has not, 503
           when it points at a version gone since);
        3. neither, with `split` (a request to answer, not a description of the model): the
           canary split's pick for the caller in `caller_var` (a caller keeps its version while
           the weights stay the same), when that version is ready;
        4. otherwise the default: the `stable` label's version when it is ready, else the newest
           ready one (the newest when none is).

        With `ready` (requests to answer, metadata), a version still loading or failed is 503;
        without it (status and readiness), it is returned whatever its state. Both a version and
        a label is 400."""
        if asked.version is not None and asked.label is not None:
            raise BadInput("Ask for a version or a label, not both.", field="label")
        versions = self.versions(name)  # 404 for an unknown model first
        if asked.label is not None:
            runtime = self._by_version(name, versions, self._label_version(name, asked.label))
        elif asked.version is not None:
            runtime = self._by_version(name, versions, asked.version)
        else:
            picked = self.plan(name).pick(name, caller_var.get()) if split else None
            split_to = self._models[name].get(picked) if picked is not None else None
            if split_to is not None and split_to.ready:
                runtime = split_to
            else:  # no split, or the version it picks is not ready (removed since)
                runtime = _default_of(versions, self.plan(name))
        if ready:
            _check_ready(runtime)
        return runtime

    def _label_version(self, name: str, label: str) -> int:
        version = self.plan(name).labels.get(label)
        if version is None:
            known = ", ".join(sorted(self.plan(name).labels)) or "none"
            raise ModelNotFound(
                f"Model '{name}' has no version label '{clipped(label)}'. Labels: {known}."
            )
        if version not in self._models[name]:
            raise ModelNotReady(
                f"Model '{name}' label '{label}' points at version {version}, which is gone."
            )
        return version

    @staticmethod
    def _by_version(name: str, versions: list[ModelRuntime], version: int) -> ModelRuntime:
        for runtime in versions:
            if runtime.version == version:
                return runtime
        raise ModelNotFound(
            f"Model '{name}' has no version {version}. "
            f"Versions: {', '.join(str(r.version) for r in versions)}."
        )


def _check_ready(runtime: ModelRuntime) -> None:
    if runtime.state is ModelState.LOADING:
        raise ModelNotReady(f"Model '{runtime.name}' version {runtime.version} is still loading.")
    if runtime.state is ModelState.FAILED:
        raise ModelNotReady(
            f"Model '{runtime.name}' version {runtime.version} is unavailable: it failed to load."
        )


def _default_of(versions: list[ModelRuntime], plan: RolloutPlan) -> ModelRuntime:
    """The default version (rule 4 of `ModelRegistry.resolve`) of `versions` (ascending, at
    least one) under `plan`."""
    stable = plan.labels.get(STABLE)
    newest_ready = None
    for runtime in versions:
        if runtime.ready:
            if runtime.version == stable:
                return runtime
            newest_ready = runtime
    return newest_ready or versions[-1]
