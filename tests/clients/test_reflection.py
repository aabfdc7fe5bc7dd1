"""gRPC server reflection against a live server, both versions: `grpc.reflection.v1` (what
grpcurl, Postman and grpc-go's clients ask first) and `grpc.reflection.v1alpha` (what older
clients and grpcio-reflection's own client ask). Both list the same services and describe the
same files, including each other's."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import descriptor_database, descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

SERVICES = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
    "inference.GRPCInferenceService",
    "tensorflow.serving.ModelService",
    "tensorflow.serving.PredictionService",
]
VERSIONS = ["v1", "v1alpha"]
Request = reflection_pb2.ServerReflectionRequest


def reflect(channel: grpc.Channel, version: str, *requests: Request) -> list:
    """One reflection stream to `grpc.reflection.<version>`, its answers in order. v1's
    messages are v1alpha's under another package, field for field (checked below), so
    grpcio-reflection's v1alpha classes write and read v1's bytes."""
    call = channel.stream_stream(
        f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
        request_serializer=Request.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    return list(call(iter(requests), timeout=30))


def pool_of(*answers) -> descriptor_pool.DescriptorPool:
    database = descriptor_database.DescriptorDatabase()
    seen = set()
    for answer in answers:
        for serialized in answer.file_descriptor_response.file_descriptor_proto:
            file = descriptor_pb2.FileDescriptorProto.FromString(serialized)
            if file.name not in seen:
                seen.add(file.name)
                database.Add(file)
    return descriptor_pool.DescriptorPool(database)


@pytest.fixture
def channel(live):
    with grpc.insecure_channel(live.grpc_target) as channel:
        yield channel


@pytest.mark.parametrize("version", VERSIONS)
def test_lists_every_service_and_resolves_their_files(channel, version):
    listed, by_symbol, by_name, unknown = reflect(
        channel,
        version,
        Request(list_services=""),
        Request(file_containing_symbol="inference.GRPCInferenceService"),
        Request(file_by_filename="tensorflow_serving/apis/prediction_service.proto"),
        Request(file_containing_symbol="no.such.Service"),
    )
    assert sorted(service.name for service in listed.list_services_response.service) == SERVICES
    pool = pool_of(by_symbol, by_name)
    infer = pool.FindServiceByName("inference.GRPCInferenceService").FindMethodByName("ModelInfer")
    assert infer.input_type.full_name == "inference.ModelInferRequest"
    predict = pool.FindServiceByName("tensorflow.serving.PredictionService")
    assert predict.FindMethodByName("Predict").output_type.full_name == (
        "tensorflow.serving.PredictResponse"
    )
    assert unknown.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


@pytest.mark.parametrize("version", VERSIONS)
def test_describes_reflection_v1_as_v1alpha_renamed(channel, version):
    (answer,) = reflect(
        channel, version, Request(file_containing_symbol="grpc.reflection.v1.ServerReflection")
    )
    service = pool_of(answer).FindServiceByName("grpc.reflection.v1.ServerReflection")
    (method,) = service.methods
    assert method.name == "ServerReflectionInfo"
    assert method.input_type.full_name == "grpc.reflection.v1.ServerReflectionRequest"
    assert method.output_type.full_name == "grpc.reflection.v1.ServerReflectionResponse"
    assert service.file.name == "grpc/reflection/v1/reflection.proto"

    def fields(message) -> list[tuple]:
        return [
            (
                field.name,
                field.number,
                field.type,
                field.is_repeated,
                getattr(field.containing_oneof, "name", ""),
                getattr(field.message_type, "name", ""),
            )
            for field in message.fields
        ]

    v1alpha = reflection_pb2.DESCRIPTOR.message_types_by_name
    v1 = service.file.message_types_by_name
    assert sorted(v1) == sorted(v1alpha)
    for name in v1alpha:
        assert fields(v1[name]) == fields(v1alpha[name]), name


def test_grpcio_reflections_own_client_finds_both_versions(channel):
    database = ProtoReflectionDescriptorDatabase(channel)
    assert sorted(database.get_services()) == SERVICES
    pool = descriptor_pool.DescriptorPool(database)
    for version in VERSIONS:
        service = pool.FindServiceByName(f"grpc.reflection.{version}.ServerReflection")
        assert [method.name for method in service.methods] == ["ServerReflectionInfo"]
    health = pool.FindServiceByName("grpc.health.v1.Health")
    assert {method.name for method in health.methods} == {"Check", "Watch"}
