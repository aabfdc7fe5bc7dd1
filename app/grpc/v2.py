"""KServe v2 gRPC (`inference.GRPCInferenceService`), on the stubs `tritonclient[grpc]` ships.

A ModelInferRequest becomes the same InferenceRequest the REST route validates, with each
input's values as they would be in the binary tensor data extension (typed `contents` are
packed into that form, `raw_input_contents` already are), so both transports share one
decoding path and its error messages. Outputs always come back in `raw_output_contents`, as
Triton answers and as `tritonclient.grpc`'s `as_numpy` reads them.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format
from pydantic import ValidationError
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from app.core.errors import ProtocolError
from app.grpc.v2_repository import METHODS as REPOSITORY_METHODS
from app.grpc.v2_repository import RepositoryCalls
from app.protocols import tensors, triton
from app.protocols import v2 as protocol
from app.protocols.v2_binary import wire_bytes
from app.protocols.v2_bodies import InferenceRequest
from app.runtime.registry import Asked

PROTOCOL = "v2"
SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
IMPLEMENTED = {
    "ServerLive",
    "ServerReady",
    "ModelReady",
    "ServerMetadata",
    "ModelMetadata",
    "ModelInfer",
    "ModelConfig",
    "ModelStatistics",
    *REPOSITORY_METHODS,
}

# The contents field that holds each datatype's values; the model takes FP32 (or BYTES images).
_CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def _packed(tensor: pb.ModelInferRequest.InferInputTensor, where: str) -> bytes:
    """A tensor's typed contents in the binary extension's layout."""
    filled = [field.name for field, _ in tensor.contents.ListFields()]
    expected = _CONTENTS_FIELD.get(tensor.datatype)
    if filled and filled != [expected]:
        raise ProtocolError(
            f"{where} has datatype {tensor.datatype}, whose values go in contents."
            f"{expected or '<none>'}; it has {', '.join(f'contents.{name}' for name in filled)}."
        )
    if tensor.datatype == "BYTES":
        return b"".join(
            struct.pack("<I", len(item)) + item for item in tensor.contents.bytes_contents
        )
    if tensor.datatype == "FP32":
        values = tensor.contents.fp32_contents
        needed = math.prod(tensor.shape)
        if len(values) != needed:
            raise ProtocolError(
                f"{where} has {len(values)} values in contents.fp32_contents; its shape "
                f"{list(tensor.shape)} needs {needed}."
            )
        return np.asarray(values, dtype="<f4").tobytes()
    return b""  # another datatype: refused with the REST route's message


def _parameters(parameters: Any) -> dict[str, Any] | None:
    """A message's InferParameter map as the REST body's parameters (each its one value)."""
    values = {
        key: getattr(value, value.WhichOneof("parameter_choice"))
        for key, value in parameters.items()
        if value.WhichOneof("parameter_choice")
    }
    return values or None


def inference_request(message: pb.ModelInferRequest) -> tuple[InferenceRequest, bytes]:
    """The request as the REST route's body, and its binary section."""
    raw = message.raw_input_contents
    if raw and len(raw) != len(message.inputs):
        raise ProtocolError(
            f"raw_input_contents holds {len(raw)} tensors; the request has "
            f"{len(message.inputs)} inputs (one each, in order)."
        )
    inputs: list[dict[str, Any]] = []
    parts: list[bytes] = []
    for index, tensor in enumerate(message.inputs):
        where = f"Input '{tensor.name}'"
        if raw and tensor.HasField("contents"):
            raise ProtocolError(f"{where} has contents and raw_input_contents; send one of them.")
        if any(size < 0 for size in tensor.shape):
            raise ProtocolError(
                f"{where} has shape {list(tensor.shape)}; sizes cannot be negative."
            )
        data = raw[index] if raw else _packed(tensor, where)
        parts.append(data)
        inputs.append(
            {
                "name": tensor.name,
                "shape": list(tensor.shape),
                "datatype": tensor.datatype,
                "parameters": {"binary_data_size": len(data)},
            }
        )
    try:
        request = InferenceRequest.model_validate(
            {
                "id": message.id or None,
                "inputs": inputs,
                "outputs": [
                    {"name": output.name, "parameters": _parameters(output.parameters)}
                    for output in message.outputs
                ]
                or None,
            }
        )
    except ValidationError as error:
        raise ProtocolError(tensors.describe_invalid(error.errors())) from None
    return request, b"".join(parts)


class InferenceServicer(RepositoryCalls, service_pb2_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    protocol = PROTOCOL

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        async def answer() -> pb.ServerLiveResponse:
            return pb.ServerLiveResponse(live=True)

        return await self.guard.run(PROTOCOL, "ServerLive", context, answer, open_call=True)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        async def answer() -> pb.ServerReadyResponse:
            return pb.ServerReadyResponse(ready=not self.service.catalog.missing())

        return await self.guard.run(PROTOCOL, "ServerReady", context, answer, open_call=True)

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        async def answer() -> pb.ModelReadyResponse:
            version = Asked.of_text(request.name, request.version)
            return pb.ModelReadyResponse(
                ready=self.service.registry.resolve(request.name, version, ready=False).ready
            )

        return await self.guard.run(PROTOCOL, "ModelReady", context, answer, model=request.name)

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        async def answer() -> pb.ServerMetadataResponse:
            metadata = protocol.v2_server_metadata(tensors.SERVER_VERSION)
            return json_format.ParseDict(metadata.model_dump(), pb.ServerMetadataResponse())

        return await self.guard.run(PROTOCOL, "ServerMetadata", context, answer)

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        async def answer() -> pb.ModelMetadataResponse:
            registry = self.service.registry
            runtime = registry.resolve(request.name, Asked.of_text(request.name, request.version))
            metadata = protocol.v2_model_metadata(runtime, registry.versions(request.name))
            return json_format.ParseDict(metadata.model_dump(), pb.ModelMetadataResponse())

        return await self.guard.run(PROTOCOL, "ModelMetadata", context, answer, model=request.name)

    async def ModelConfig(
        self, request: pb.ModelConfigRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelConfigResponse:
        async def answer() -> pb.ModelConfigResponse:
            runtime = self.service.registry.resolve(
                request.name, Asked.of_text(request.name, request.version)
            )
            config = triton.model_config(runtime, self.service.settings)
            return pb.ModelConfigResponse(
                config=json_format.ParseDict(config.model_dump(), mc.ModelConfig())
            )

        return await self.guard.run(PROTOCOL, "ModelConfig", context, answer, model=request.name)

    async def ModelStatistics(
        self, request: pb.ModelStatisticsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelStatisticsResponse:
        async def answer() -> pb.ModelStatisticsResponse:
            registry = self.service.registry
            if not request.name:
                runtimes = registry.all()
            elif not request.version:
                runtimes = registry.versions(request.name)
            else:
                runtimes = [
                    registry.resolve(request.name, Asked.of_text(request.name, request.version))
                ]
            statistics = triton.model_statistics(runtimes)
            return json_format.ParseDict(statistics.model_dump(), pb.ModelStatisticsResponse())

        return await self.guard.run(
            PROTOCOL, "ModelStatistics", context, answer, model=request.name or None
        )

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        async def answer() -> pb.ModelInferResponse:
            name = request.model_name
            runtime = self.service.registry.resolve(
                name, Asked.of_text(name, request.model_version), split=True
            )
            body, binary = inference_request(request)
            results = await protocol.v2_outputs(self.service, runtime, body, binary)
            return pb.ModelInferResponse(
                model_name=runtime.name,
                model_version=str(runtime.version),
                id=request.id,
                outputs=[
                    pb.ModelInferResponse.InferOutputTensor(
                        name=output, datatype=protocol.datatype(values), shape=values.shape
                    )
                    for output, values in results.items()
                ],
                raw_output_contents=[wire_bytes(values) for values in results.values()],
            )

        return await self.guard.run(
            PROTOCOL, "ModelInfer", context, answer, model=request.model_name, infer=True
        )


def _unimplemented(method: str) -> Any:
    async def refuse(
        self: InferenceServicer, request: Any, context: grpc.aio.ServicerContext
    ) -> Any:
        message = (
            f"{SERVICE.full_name}/{method} is not supported by this server. It answers "
            f"{', '.join(sorted(IMPLEMENTED))}."
        )
        return await self.refuse(method, message, context)

    refuse.__name__ = method
    return refuse


# Streaming, shared memory, statistics, trace and log settings: answered
# UNIMPLEMENTED with the list of what is, rather than the generated stubs' bare message.
for _method in SERVICE.methods:
    if _method.name not in IMPLEMENTED:
        setattr(InferenceServicer, _method.name, _unimplemented(_method.name))
