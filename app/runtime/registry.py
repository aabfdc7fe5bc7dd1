"""Name and version to runtime. A model is registered before it loads, so 'loading' shows."""

from __future__ import annotations

import logging

from app.core.errors import ModelNotFound, ModelNotReady, clipped
from app.runtime.model import ModelRuntime, ModelState

logger = logging.getLogger(__name__)


class ModelRegistry:
    def __init__(self) -> None:
        self._models: dict[str, dict[int, ModelRuntime]] = {}

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

    def find(self, name: str, version: int | None = None) -> ModelRuntime:
        """The runtime for a name and version (default: newest ready), whatever its state."""
        versions = self.versions(name)
        if version is None:
            ready = [runtime for runtime in versions if runtime.ready]
            return (ready or versions)[-1]
        for runtime in versions:
            if runtime.version == version:
                return runtime
        raise ModelNotFound(
            f"Model '{name}' has no version {version}. "
            f"Versions: {', '.join(str(r.version) for r in versions)}."
        )

    def get(self, name: str, version: int | None = None) -> ModelRuntime:
        """The runtime to serve a request with; 503 when it is not ready."""
        runtime = self.find(name, version)
        if runtime.state is ModelState.LOADING:
            raise ModelNotReady(f"Model '{name}' version {runtime.version} is still loading.")
        if runtime.state is ModelState.FAILED:
            raise ModelNotReady(
                f"Model '{name}' version {runtime.version} is unavailable: it failed to load."
            )
        return runtime
