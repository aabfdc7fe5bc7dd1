"""The models GLASSBOX_MODEL_CONTROL=explicit serves: those named in GLASSBOX_MODELS at start and
those loaded since through the model repository calls, until unloaded.

With GLASSBOX_MODEL_CONTROL_FILE set, the set lives in that file: a load or unload rewrites it
(read, changed and replaced under an exclusive lock, so two workers' calls at once both count)
and every worker's poll reads it, so every worker converges on the same set within one
`GLASSBOX_POLL_INTERVAL_S` (docs/operations.md, "Explicit model control"). Without one, it is
kept in memory: one worker's own.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from app.core.errors import RepositoryRefused

logger = logging.getLogger(__name__)


class WantedModels:
    def __init__(self, start: list[str], path: Path | None):
        self.path = path
        self._names = frozenset(start)
        if path is not None:
            with self._locked():
                if path.exists():  # a worker started again, or a restart keeping the set
                    self._names = self._read()
                else:
                    self._write(self._names)

    @property
    def names(self) -> frozenset[str]:
        """The set as last read (each poll reads the file again: `refresh`)."""
        return self._names

    def refresh(self) -> frozenset[str]:
        """The set in force, read again from the file where there is one (another worker may
        have changed it); an unreadable file leaves the set as it was, and is logged."""
        if self.path is not None:
            try:
                self._names = self._read()
            except (OSError, ValueError) as error:
                logger.warning(
                    "model control file unreadable; the models served stay as they are",
                    extra={"path": str(self.path), "reason": str(error)},
                )
        return self._names

    def add(self, name: str) -> None:
        self._change(lambda names: names | {name})

    def discard(self, name: str) -> None:
        self._change(lambda names: names - {name})

    def _change(self, how: Callable[[frozenset[str]], frozenset[str]]) -> None:
        if self.path is None:
            self._names = how(self._names)
            return
        try:
            with self._locked():
                changed = how(self._read() if self.path.exists() else self._names)
                self._write(changed)
        except (OSError, ValueError) as error:
            raise RepositoryRefused(
                f"The model control file (GLASSBOX_MODEL_CONTROL_FILE) could not be "
                f"rewritten ({error}); the models served stay as they are."
            ) from None
        self._names = changed

    def _read(self) -> frozenset[str]:
        assert self.path is not None
        names = json.loads(self.path.read_text())["models"]
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise ValueError('"models" must be a list of model names')
        return frozenset(names)

    def _write(self, names: frozenset[str]) -> None:
        """Replaces the file in one rename, so that a poll never reads half of it."""
        assert self.path is not None
        partial = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps({"models": sorted(names)}) + "\n")
        partial.replace(self.path)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        assert self.path is not None
        with self.path.with_name(f".{self.path.name}.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # held for a read and a rename: microseconds
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
