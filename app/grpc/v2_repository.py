"""Triton's model repository extension over gRPC (`RepositoryIndex`, `RepositoryModelLoad`,
`RepositoryModelUnload`), a part of `app.grpc.v2.InferenceServicer`: the same calls as
`/v2/repository` over REST (`app.dataplane.repository`), behind the admin keys. A failure is
FAILED_PRECONDITION (NOT_FOUND for a name the model folder does not have, INVALID_ARGUMENT for
a parameter this server does not support) with the REST answer's message."""

from __future__ import annotations

from typing import Any

import grpc
from tritonclient.grpc import service_pb2 as pb

from app.core.errors import ProtocolError
from app.grpc.calls import GuardedServicer
from app.protocols import repository as protocol

PROTOCOL = "v2"
METHODS = {"RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload"}


def _parameters(parameters: Any) -> dict[str, Any]:
    """A ModelRepositoryParameter map as the REST body's parameters (each its one value)."""
    values = {}
    for key, value in parameters.items():
        choice = value.WhichOneof("parameter_choice")
        values[key] = getattr(value, choice) if choice else None
    return values


def _repository_name(request: Any) -> None:
    if request.repository_name:
        raise ProtocolError(
            f"repository_name is '{request.repository_name[:128]}'; this server has one "
            "model repository (GLASSBOX_MODEL_DIR): leave it empty.",
            field="repository_name",
        )


class RepositoryCalls(GuardedServicer):
    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryIndexResponse:
        async def answer() -> pb.RepositoryIndexResponse:
            _repository_name(request)
            entries = protocol.index_response(self.service.repository.index(request.ready))
            return pb.RepositoryIndexResponse(
                models=[
                    pb.RepositoryIndexResponse.ModelIndex(**entry.model_dump(exclude_none=True))
                    for entry in entries.root
                ]
            )

        return await self.guard.run(PROTOCOL, "RepositoryIndex", context, answer, admin=True)

    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryModelLoadResponse:
        async def answer() -> pb.RepositoryModelLoadResponse:
            _repository_name(request)
            protocol.check_load_parameters(_parameters(request.parameters))
            await self.service.repository.load(request.model_name)
            return pb.RepositoryModelLoadResponse()

        return await self.guard.run(
            PROTOCOL, "RepositoryModelLoad", context, answer, model=request.model_name, admin=True
        )

    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryModelUnloadResponse:
        async def answer() -> pb.RepositoryModelUnloadResponse:
            _repository_name(request)
            protocol.check_unload_parameters(_parameters(request.parameters))
            await self.service.repository.unload(request.model_name)
            return pb.RepositoryModelUnloadResponse()

        return await self.guard.run(
            PROTOCOL, "RepositoryModelUnload", context, answer, model=request.model_name, admin=True
        )
