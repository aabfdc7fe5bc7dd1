"""The model version a batch job scores with, loaded as the service loads it: every version
of the model in the folder (`app.artifact.layout`), each verified against its card's hashes and
warmed up (`ModelRuntime.load`), the model's rollout file in force, then the service's one
resolution (`ModelRegistry.resolve`): the version or label asked for, else the `stable` label's
version, else the newest ready one. No canary split: a file is not a caller."""

from __future__ import annotations

import contextlib
from pathlib import Path

from app.artifact import layout
from app.core.errors import GlassboxError, ModelNotFound, ModelNotReady
from app.runtime import rollout
from app.runtime.model import ModelRuntime, ModelState
from app.runtime.registry import Asked, ModelRegistry


def load_runtime(
    model_dir: Path, name: str, version: str = "", *, verify_hashes: bool = True
) -> ModelRuntime:
    """The ready runtime that scores for `name` at `version` (a number, a label, or empty for
    the default); ModelNotFound or ModelNotReady, with the service's messages, otherwise."""
    if not model_dir.is_dir():
        raise ModelNotFound(f"The model folder {model_dir} does not exist.")
    found = layout.scan_versions(model_dir, [name])
    registry = ModelRegistry()
    if not found:
        known = sorted({model for model, _ in layout.scan_versions(model_dir)})
        raise ModelNotFound(f"No model named '{name}' in {model_dir}. Models: {', '.join(known)}.")
    for (_, number), path in sorted(found.items()):
        registry.add(ModelRuntime(name, number, path))
    asked = Asked.of_text(name, version)
    if asked.version is not None:  # a number: that version alone (ModelNotFound naming them)
        wanted = [registry.resolve(name, asked, ready=False)]
    else:  # a label or the default: the rollout file decides, over the versions that load
        wanted = registry.versions(name)
    for runtime in wanted:
        runtime.load(verify_hashes)
    plan = rollout.read_plan(model_dir / name)
    if plan is not None and asked.version is None:
        # As the service: a rollout that points at a version not ready is not in force.
        with contextlib.suppress(GlassboxError):
            registry.set_plan(name, plan)
    chosen = registry.resolve(name, asked, ready=False)
    if chosen.state is ModelState.FAILED:  # the reason, which the service shows in its list
        raise ModelNotReady(
            f"Model '{name}' version {chosen.version} failed to load: {chosen.reason}"
        )
    return registry.resolve(name, asked)
