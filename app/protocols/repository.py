"""Triton's model repository extension in the protocol's shapes, for both transports: the index's
rows (states READY, LOADING, UNAVAILABLE) and the load and unload parameters, where what this
server does not do (a model configuration or override files sent with a load) is refused with
a 400 that names it rather than ignored."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, RootModel

from app.core.errors import ProtocolError
from app.dataplane.schemas import RepositoryEntry

# The data plane's states as Triton names them: a version that failed and a model of the folder
# that is not served are both UNAVAILABLE, the reason saying which.
STATES = {
    "loading": "LOADING",
    "ready": "READY",
    "failed": "UNAVAILABLE",
    "unloaded": "UNAVAILABLE",
}


class RepositoryIndexRequest(BaseModel):
    ready: bool = Field(False, description="Only the versions ready to answer.")


class RepositoryIndexEntry(BaseModel):
    name: str
    version: str | None = Field(None, description="Absent for a model that is not served.")
    state: str = Field(description="READY, LOADING or UNAVAILABLE.")
    reason: str = Field(description="Why it is UNAVAILABLE (failed to load, or unloaded).")


class RepositoryIndexResponse(RootModel[list[RepositoryIndexEntry]]):
    """The index: a JSON array of rows, by model name and version."""


class RepositoryLoadRequest(BaseModel):
    parameters: dict[str, Any] | None = Field(
        None, description="None supported: `config` and `file:` overrides are refused (400)."
    )


class RepositoryUnloadRequest(BaseModel):
    parameters: dict[str, Any] | None = Field(
        None, description="`unload_dependents` (true or false: no model here has dependents)."
    )


def index_response(entries: list[RepositoryEntry]) -> RepositoryIndexResponse:
    return RepositoryIndexResponse(
        [
            RepositoryIndexEntry(
                name=entry.name,
                version=None if entry.version is None else str(entry.version),
                state=STATES[entry.state],
                reason=entry.reason or "",
            )
            for entry in entries
        ]
    )


def check_load_parameters(parameters: dict[str, Any] | None) -> None:
    """ProtocolError naming every load parameter sent: none is supported."""
    problems = []
    for key in sorted(parameters or {}):
        if key == "config":
            problems.append(
                "parameters.config (a model configuration to load the model with) is not "
                "supported: a model loads from its folder, as its model card describes it."
            )
        elif key.startswith("file:"):
            problems.append(
                f"parameters.{key} (a file overriding the model's folder) is not supported: "
                "publish a new version folder instead (docs/rollouts.md)."
            )
        else:
            problems.append(f"parameters.{key} is not a load parameter; none is supported.")
    if problems:
        first = sorted(parameters or {})[0]
        raise ProtocolError(" ".join(problems), field=f"parameters.{first}")


def check_unload_parameters(parameters: dict[str, Any] | None) -> None:
    """ProtocolError naming an unload parameter other than a boolean `unload_dependents`."""
    for key, value in sorted((parameters or {}).items()):
        if key != "unload_dependents":
            raise ProtocolError(
                f"parameters.{key} is not an unload parameter; the one supported is "
                "unload_dependents.",
                field=f"parameters.{key}",
            )
        if not isinstance(value, bool):
            raise ProtocolError(
                f"parameters.unload_dependents is {value!r}; it must be true or false.",
                field="parameters.unload_dependents",
            )
