"""The model repository calls both transports share (Triton's model repository extension):
the index of the model folder with each model's state, a load that reads a model's folder now,
and an unload that stops serving a model and lets its memory go once its requests have finished.

What a load and an unload do depends on GLASSBOX_MODEL_CONTROL (docs/api.md, "Model
repository"): in explicit mode they change the wanted set (`app.dataplane.model_control`); in
poll mode every model of the folder is served, so a load only reads the folder now and an
unload is refused (the next poll would load the model again).
"""

from __future__ import annotations

import logging

from app.artifact.layout import scan_versions
from app.core.errors import ModelNotInRepository, RepositoryRefused, clipped
from app.dataplane.catalog import Catalog
from app.dataplane.schemas import RepositoryEntry

logger = logging.getLogger(__name__)


class Repository:
    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self.settings = catalog.settings
        self.registry = catalog.registry

    def folder_models(self) -> list[str]:
        """The names of the model folder's models (each with at least one version folder)."""
        return sorted({name for name, _ in scan_versions(self.settings.model_dir)})

    def _in_folder(self, name: str) -> bool:
        return bool(name) and bool(scan_versions(self.settings.model_dir, [name]))

    def index(self, ready_only: bool = False) -> list[RepositoryEntry]:
        """Every model of the folder and every model served: one row per version the service
        has, one row without a version for a model it does not serve, by name; with
        `ready_only`, the ready versions only."""
        entries: list[RepositoryEntry] = []
        for name in sorted(set(self.folder_models()) | set(self.registry.names())):
            if name in self.registry.names():
                entries.extend(
                    RepositoryEntry(
                        name=name,
                        version=runtime.version,
                        state=runtime.state.value,
                        reason=runtime.reason,
                    )
                    for runtime in self.registry.versions(name)
                )
            else:
                entries.append(RepositoryEntry(name=name, state="unloaded", reason=self._why(name)))
        return [entry for entry in entries if entry.state == "ready"] if ready_only else entries

    def _why(self, name: str) -> str:
        if self.catalog.wanted is not None:
            return "unloaded"
        if self.settings.models and name not in self.settings.models:
            return "not in GLASSBOX_MODELS"
        return "found since the last poll: not loaded yet"

    async def load(self, name: str) -> None:
        """Read the model's folder now and serve what loads; RepositoryRefused naming the
        reasons when no version of it is ready. A model already served gets its new versions
        and loses its removed ones, as at a poll."""
        if not self._in_folder(name):
            raise ModelNotInRepository(
                f"No model named '{clipped(name)}' in the model folder (no "
                f"<name>/<version>/ folder). Models there: {', '.join(self.folder_models())}."
            )
        wanted = self.catalog.wanted
        if wanted is None and self.settings.models and name not in self.settings.models:
            raise RepositoryRefused(
                f"Model '{name}' is not in GLASSBOX_MODELS ({', '.join(self.settings.models)}), "
                "the only models this server loads in poll mode (GLASSBOX_MODEL_CONTROL=poll)."
            )
        if wanted is not None:
            wanted.add(name)  # before it loads: another worker's poll may start on it now
        await self.catalog.reload()
        versions = self.registry.versions(name)
        if not any(runtime.ready for runtime in versions):
            reasons = "; ".join(f"version {r.version}: {r.reason}" for r in versions)
            raise RepositoryRefused(f"Model '{name}' failed to load: {reasons}.")
        logger.info("model loaded on request", extra={"model": name})

    async def unload(self, name: str) -> None:
        """Stop serving the model (explicit mode only): new requests for it are 404 at once;
        those in flight finish on it, and the answer comes once they have and its memory is
        collected. A model of the folder that is not served: nothing to do."""
        wanted = self.catalog.wanted
        if wanted is None:
            raise RepositoryRefused(
                f"Model '{clipped(name)}' cannot be unloaded in poll mode "
                "(GLASSBOX_MODEL_CONTROL=poll serves every model in the folder, and the next "
                "poll would load it again): start the server with "
                "GLASSBOX_MODEL_CONTROL=explicit, or remove the model's folder."
            )
        served = name in wanted.refresh() or name in self.registry.names()
        if not served and not self._in_folder(name):
            raise ModelNotInRepository(
                f"No model named '{clipped(name)}' is served or in the model folder: nothing "
                f"to unload. Served: {', '.join(sorted(wanted.names)) or 'none'}."
            )
        wanted.discard(name)
        await self.catalog.reload()
        await self.catalog.drained()
        logger.info("model unloaded on request", extra={"model": name})
