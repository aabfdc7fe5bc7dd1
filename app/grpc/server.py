"""The gRPC server: KServe v2 and TF Serving gRPC, the standard health service and server
reflection (v1 and v1alpha), on GLASSBOX_GRPC_PORT, in the HTTP app's process and event loop.

`grpc_serving` is what `app.main` gives `create_app`: it starts the server once the models
have loaded and stops it (after `graceful_shutdown_s` for calls in flight) before the service
closes. Both transports share the registry, batchers, admission places, keys and metrics.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc
from tensorflow_serving.apis import (
    model_service_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2,
    prediction_service_pb2_grpc,
)
from tritonclient.grpc import service_pb2, service_pb2_grpc

from app.core.errors import GlassboxError
from app.core.settings import Settings
from app.dataplane.service import InferenceService
from app.grpc.calls import KEY_REQUIRED, CallGuard, DecodeGuard
from app.grpc.tfserving import ModelServicer, PredictionServicer
from app.grpc.v2 import InferenceServicer

logger = logging.getLogger("app.grpc")

SERVICES = [
    service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
    prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"].full_name,
    model_service_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name,
]
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
OPEN_HEALTH = {"", *SERVICES}  # health names answered without a key
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# grpcio-reflection serves only v1alpha; grpcurl, Postman and grpc-go's clients ask for v1
# first. v1 is v1alpha renamed (the same messages, field for field, so the same bytes).
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"
_REFLECTION_V1_FILE = "grpc/reflection/v1/reflection.proto"


def address(settings: Settings) -> str:
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"{host}:{settings.grpc_port}"


class KeyedHealth(HealthServicer):  # type: ignore[misc]
    """The standard health service, with a model's own status behind the API keys, as a
    model's readiness is over HTTP; the server's ('') and each protocol's stay open to probes."""

    def __init__(self, guard: CallGuard):
        super().__init__()
        self.guard = guard

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        await self._refuse_without_key(request, context)
        return await super().Check(request, context)

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> Any:
        await self._refuse_without_key(request, context)
        await super().Watch(request, context)

    async def _refuse_without_key(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> None:
        if request.service in OPEN_HEALTH or not self.guard.keys:
            return
        if not self.guard.authorized(dict(context.invocation_metadata() or ())):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, KEY_REQUIRED)


class HealthStatuses:
    """The health service's statuses, following readiness: '' and each protocol's service are
    SERVING when /health/ready is 200; a model's name when it has a ready version."""

    def __init__(self, service: InferenceService, guard: CallGuard):
        self.service = service
        self.servicer = KeyedHealth(guard)
        self._models: set[str] = set()

    async def update(self) -> None:
        ready = not self.service.catalog.missing()
        for name in ["", *SERVICES]:
            await self.servicer.set(name, SERVING if ready else NOT_SERVING)
        names = set(self.service.registry.names())
        for name in sorted(names | self._models):
            serving = name in names and any(
                runtime.ready for runtime in self.service.registry.versions(name)
            )
            await self.servicer.set(name, SERVING if serving else NOT_SERVING)
        self._models = names


def build_server(service: InferenceService) -> tuple[grpc.aio.Server, HealthStatuses]:
    settings = service.settings
    guard = CallGuard(settings.api_keys, service.admission, settings.admin_api_keys)
    server = grpc.aio.server(
        interceptors=[DecodeGuard(guard)],
        options=[
            ("grpc.max_receive_message_length", settings.max_body_bytes),
            # Answers are bounded by GLASSBOX_TRACE_MAX_VALUES before they are computed.
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 1 if settings.grpc_reuse_port else 0),
        ],
    )
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
        InferenceServicer(service, guard), server
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(service, guard), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(service, guard), server)
    # Health (but a model's) and reflection answer without a key, as /health/* do: probes
    # (Kubernetes' gRPC probe, grpc_health_probe) send no metadata, and reflection describes
    # only the public protocols, never a model.
    health = HealthStatuses(service, guard)
    health_pb2_grpc.add_HealthServicer_to_server(health.servicer, server)
    serve_reflection(server, [*SERVICES, HEALTH_SERVICE])
    return server, health


def serve_reflection(server: grpc.aio.Server, services: list[str]) -> None:
    """Server reflection, v1alpha and v1, by one servicer describing `services` and itself."""
    _describe_reflection_v1()
    servicer = reflection.aio.ReflectionServicer(
        [*services, REFLECTION_V1, reflection.SERVICE_NAME]
    )
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    info = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(REFLECTION_V1, {"ServerReflectionInfo": info}),)
    )


def _describe_reflection_v1() -> None:
    """grpc/reflection/v1/reflection.proto in the default descriptor pool (where reflection
    looks), made from v1alpha's file with the package renamed, unless a package put it there."""
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(_REFLECTION_V1_FILE)
        return
    except KeyError:
        pass
    file = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(file)
    old, new = f".{file.package}.", ".grpc.reflection.v1."
    file.name, file.package = _REFLECTION_V1_FILE, new.strip(".")
    file.ClearField("options")
    for message in file.message_type:
        for field in message.field:
            if field.type_name:
                field.type_name = field.type_name.replace(old, new)
    for method in file.service[0].method:
        method.input_type = method.input_type.replace(old, new)
        method.output_type = method.output_type.replace(old, new)
    pool.AddSerializedFile(file.SerializeToString())


@asynccontextmanager
async def grpc_serving(service: InferenceService) -> AsyncIterator[None]:
    """A companion for `create_app` (see app.http.app.Companion): gRPC for the app's life."""
    settings = service.settings
    if not settings.grpc_port:
        yield
        return
    server, health = build_server(service)
    where = address(settings)
    try:
        server.add_insecure_port(where)
    except RuntimeError as error:  # grpcio's way of saying the port is taken
        raise GlassboxError(f"Cannot listen for gRPC on {where}: {error}") from None
    await health.update()
    service.catalog.on_reload(health.update)
    await server.start()
    logger.info("gRPC listening", extra={"address": where})
    try:
        yield
    finally:
        await health.servicer.enter_graceful_shutdown()
        await server.stop(settings.graceful_shutdown_s)
        logger.info("gRPC stopped", extra={"address": where})
