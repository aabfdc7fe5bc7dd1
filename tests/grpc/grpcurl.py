"""grpcurl's part of the docs' examples, done the way grpcurl does it, for the tests (no grpcurl
binary on the test machines): the method and its message types found through the server's
reflection service, the -d JSON parsed by the protobuf JSON mapping, the answer printed by the
same mapping (camelCase names, enums by name, int64 as strings, bytes as base64)."""

from __future__ import annotations

import json
import shlex

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def run(command: str, target: str, metadata: tuple[tuple[str, str], ...] = ()) -> str:
    """The output of `grpcurl -plaintext [-H 'k: v'] [-d 'JSON'] ADDRESS (list | METHOD)`
    [`| jq -c .path`], sent to `target` in place of ADDRESS, with `metadata` added (as `-H`
    would)."""
    command, _, jq = command.partition(" | jq -c ")
    if jq:  # a dotted path, as the README trims answers
        answer = json.loads(run(command, target, metadata))
        for key in jq.removeprefix(".").split(".") if jq != "." else []:
            answer = answer[key]
        return json.dumps(answer, separators=(",", ":")) + "\n"
    words = shlex.split(command)
    assert words[:2] == ["grpcurl", "-plaintext"], command
    metadata, body, rest = list(metadata), "{}", words[2:]
    while rest[0].startswith("-"):
        flag, value, rest = rest[0], rest[1], rest[2:]
        if flag == "-H":
            key, _, text = value.partition(":")
            metadata.append((key.strip().lower(), text.strip()))
        elif flag == "-d":
            body = value
        else:
            raise AssertionError(f"flag {flag} is not emulated")
    _, what = rest
    with grpc.insecure_channel(target) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        if what == "list":
            return "\n".join(sorted(database.get_services())) + "\n"
        pool = descriptor_pool.DescriptorPool(database)
        service_name, method_name = what.split("/")
        method = pool.FindServiceByName(service_name).FindMethodByName(method_name)
        request = message_factory.GetMessageClass(method.input_type)()
        json_format.Parse(body, request)
        response_class = message_factory.GetMessageClass(method.output_type)
        call = channel.unary_unary(
            f"/{service_name}/{method_name}",
            request_serializer=lambda message: message.SerializeToString(),
            response_deserializer=response_class.FromString,
        )
        answer = call(request, metadata=metadata, timeout=30)
        return json.dumps(json_format.MessageToDict(answer), indent=2) + "\n"
