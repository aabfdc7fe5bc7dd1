"""Name and version to runtime. A model is registered before it loads, so 'loading' shows."""

from __future__ import annotations

import logging
from pathlib import Path

from app.errors import ModelNotFound, ModelNotReady
from app.runtime import ModelRuntime, ModelState

logger = logging.getLogger(__name__)


def scan_versions(model_dir: Path, names: list[str] | None = None) -> dict[tuple[str, int], Path]:
    """Every `<model_dir>/<name>/<version>/` folder with a numeric version, by (name, version).

    Folders whose names are not numbers (e.g. a copy in progress, `.tmp-3`) are not versions, so
    a new version is published atomically by renaming its finished folder.
    """
    if not model_dir.is_dir():
        logger.error("model folder not found", extra={"path": str(model_dir)})
        return {}
    found = {}
    for model_path in sorted(p for p in model_dir.iterdir() if p.is_dir()):
        if names and model_path.name not in names:
            continue
        for version_path in model_path.iterdir():
            if (
                version_path.is_dir()
                and version_path.name.isascii()
                and version_path.name.isdigit()
            ):
                found[(model_path.name, int(version_path.name))] = version_path
    return found


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
            raise ModelNotFound(f"No model named '{name}'. Models: {', '.join(self.names())}.")
        return [self._models[name][v] for v in sorted(self._models[name])]

    def all(self) -> list[ModelRuntime]:
        return [runtime for name in self.names() for runtime in self.versions(name)]

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
