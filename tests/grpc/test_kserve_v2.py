"""KServe v2 gRPC through tritonclient.grpc (and its generated stub, for typed contents): the
same numbers as the typed endpoint for every model, layer outputs by name, image files as BYTES,
and each kind of bad call answered with its status code and a message that names the problem."""

from __future__ import annotations

import struct

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.grpc.conftest import ADMIN_KEY, KEY, MAX_BODY_BYTES, METADATA, assert_status
from tests.http.protocol_cases import assert_same_numbers

HEADERS = {"x-api-key": KEY}


def fp32(name: str, batch: np.ndarray) -> triton.InferInput:
    tensor = triton.InferInput(name, list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch.astype(np.float32))
    return tensor


def image_files(name: str, files: list[bytes]) -> triton.InferInput:
    tensor = triton.InferInput(name, [len(files)], "BYTES")
    tensor.set_data_from_numpy(np.array(files, dtype=np.object_))
    return tensor


def assert_refused(call, status: str, *words: str) -> None:
    with pytest.raises(InferenceServerException) as refused:
        call()
    assert refused.value.status() == status, refused.value.message()
    for word in words:
        assert word in refused.value.message(), refused.value.message()


@pytest.fixture(scope="module")
def stub(channel):
    return service_pb2_grpc.GRPCInferenceServiceStub(channel)


def test_server_and_models_are_live_ready_and_described(triton_client, case):
    assert triton_client.is_server_live(headers=HEADERS)
    assert triton_client.is_server_ready(headers=HEADERS)
    assert triton_client.is_model_ready(case.card.name, headers=HEADERS)
    server = triton_client.get_server_metadata(headers=HEADERS, as_json=True)
    assert server["name"] == "glassbox"
    assert "binary_tensor_data" in server["extensions"]
    model = triton_client.get_model_metadata(case.card.name, headers=HEADERS, as_json=True)
    assert model["versions"] == [str(case.card.version)]
    assert model["platform"] == "tensorflow_savedmodel"
    assert model["inputs"] == [
        {
            "name": case.card.input.name,
            "datatype": "FP32",
            "shape": [str(-1 if size is None else size) for size in case.card.input.shape],
        }
    ]
    assert [output["name"] for output in model["outputs"]] == [case.card.output.name, "familiarity"]


def test_raw_fp32_inference_matches_typed(triton_client, case):
    answer = triton_client.infer(
        case.card.name, [fp32(case.card.input.name, case.batch)], headers=HEADERS
    )
    assert answer.get_response().model_version == str(case.card.version)
    assert_same_numbers(answer.as_numpy(case.card.output.name), case.expected)


def test_typed_contents_match_typed(stub, case):
    request = service_pb2.ModelInferRequest(model_name=case.card.name, id="typed-contents")
    tensor = request.inputs.add(
        name=case.card.input.name, datatype="FP32", shape=list(case.batch.shape)
    )
    tensor.contents.fp32_contents.extend(case.batch.reshape(-1).tolist())
    answer = stub.ModelInfer(request, metadata=METADATA)
    assert answer.id == "typed-contents"
    (output,) = answer.outputs
    assert (output.name, output.datatype) == (case.card.output.name, "FP32")
    values = np.frombuffer(answer.raw_output_contents[0], "<f4").reshape(output.shape)
    assert_same_numbers(values, case.expected)


def test_layer_outputs_by_trace_key_come_with_the_prediction(triton_client, http, case):
    first, last = case.card.layers[0].trace_key, case.card.layers[-1].trace_key
    asked = [triton.InferRequestedOutput(name) for name in (case.card.output.name, first, last)]
    answer = triton_client.infer(
        case.card.name, [fp32(case.card.input.name, case.batch)], outputs=asked, headers=HEADERS
    )
    assert_same_numbers(answer.as_numpy(case.card.output.name), case.expected)
    assert_same_numbers(answer.as_numpy(last), case.expected)
    trace = http.post(
        f"/v1/models/{case.card.name}:predict",
        json={"signature_name": "trace", "inputs": case.batch.tolist()},
    )
    assert trace.status_code == 200, trace.text
    assert_same_numbers(answer.as_numpy(first), trace.json()["outputs"][first])


def test_image_files_as_bytes_match_typed_upload(triton_client, stub, image_case):
    card = image_case.card
    answer = triton_client.infer(
        card.name, [image_files(card.input.name, [image_case.image])], headers=HEADERS
    )
    assert_same_numbers(answer.as_numpy(card.output.name), image_case.expected)
    request = service_pb2.ModelInferRequest(model_name=card.name)
    tensor = request.inputs.add(name=card.input.name, datatype="BYTES", shape=[1])
    tensor.contents.bytes_contents.append(image_case.image)
    typed = stub.ModelInfer(request, metadata=METADATA)
    values = np.frombuffer(typed.raw_output_contents[0], "<f4").reshape(typed.outputs[0].shape)
    assert_same_numbers(values, image_case.expected)


def test_a_batch_of_32_images_as_one_raw_tensor(triton_client, image_case):
    batch = np.repeat(image_case.batch, 32, axis=0)
    answer = triton_client.infer(
        image_case.card.name, [fp32(image_case.card.input.name, batch)], headers=HEADERS
    )
    assert_same_numbers(
        answer.as_numpy(image_case.card.output.name), np.repeat(image_case.expected, 32, 0)
    )


def test_a_version_can_be_asked_for_and_an_unknown_one_is_not_found(triton_client, case):
    name, version = case.card.name, str(case.card.version)
    tensor = fp32(case.card.input.name, case.batch)
    answer = triton_client.infer(name, [tensor], model_version=version, headers=HEADERS)
    assert_same_numbers(answer.as_numpy(case.card.output.name), case.expected)
    assert_refused(
        lambda: triton_client.infer(name, [tensor], model_version="999", headers=HEADERS),
        "StatusCode.NOT_FOUND",
        "no version 999",
    )
    assert_refused(
        lambda: triton_client.infer(name, [tensor], model_version="latest", headers=HEADERS),
        "StatusCode.NOT_FOUND",
        "no version label 'latest'",
    )


def test_unknown_model_is_not_found_everywhere(triton_client):
    for call in (
        lambda: triton_client.is_model_ready("nope", headers=HEADERS),
        lambda: triton_client.get_model_metadata("nope", headers=HEADERS),
        lambda: triton_client.infer("nope", [fp32("x", np.zeros((1, 1)))], headers=HEADERS),
    ):
        assert_refused(call, "StatusCode.NOT_FOUND", "No model named 'nope'")


def test_wrong_datatype_is_invalid_argument_naming_what_the_model_takes(triton_client, case):
    tensor = triton.InferInput(case.card.input.name, list(case.batch.shape), "FP64")
    tensor.set_data_from_numpy(case.batch.astype(np.float64))
    assert_refused(
        lambda: triton_client.infer(case.card.name, [tensor], headers=HEADERS),
        "StatusCode.INVALID_ARGUMENT",
        "datatype FP64",
        "FP32 with shape",
    )


def test_wrong_shape_is_invalid_argument_naming_the_shape(triton_client, case):
    flat = case.batch.reshape(len(case.batch), -1)[:, :-1]
    assert_refused(
        lambda: triton_client.infer(
            case.card.name, [fp32(case.card.input.name, flat)], headers=HEADERS
        ),
        "StatusCode.INVALID_ARGUMENT",
        f"has shape {list(flat.shape)}",
    )


def test_malformed_contents_are_invalid_argument(stub, case):
    name = case.card.input.name
    request = service_pb2.ModelInferRequest(model_name=case.card.name)
    tensor = request.inputs.add(name=name, datatype="FP32", shape=list(case.batch.shape))
    tensor.contents.int_contents.extend([1, 2])
    assert_status(
        lambda: stub.ModelInfer(request, metadata=METADATA),
        grpc.StatusCode.INVALID_ARGUMENT,
        "contents.fp32_contents",
    )
    tensor.ClearField("contents")
    tensor.contents.fp32_contents.extend([1.0])
    assert_status(
        lambda: stub.ModelInfer(request, metadata=METADATA),
        grpc.StatusCode.INVALID_ARGUMENT,
        "has 1 values",
    )
    tensor.ClearField("contents")
    request.raw_input_contents.append(b"\0\0\0")
    assert_status(
        lambda: stub.ModelInfer(request, metadata=METADATA),
        grpc.StatusCode.INVALID_ARGUMENT,
        "has 3 bytes",
    )
    request.raw_input_contents.append(b"")
    assert_status(
        lambda: stub.ModelInfer(request, metadata=METADATA),
        grpc.StatusCode.INVALID_ARGUMENT,
        "raw_input_contents holds 2 tensors",
    )


def test_broken_image_bytes_are_invalid_argument(triton_client, image_case):
    card = image_case.card
    for files, words in (
        ([b"not an image"], ("element 0",)),
        ([struct.pack("<I", 4)], ("element 0",)),
    ):
        assert_refused(
            lambda files=files: triton_client.infer(
                card.name, [image_files(card.input.name, files)], headers=HEADERS
            ),
            "StatusCode.INVALID_ARGUMENT",
            *words,
        )


def test_unknown_output_is_invalid_argument_listing_the_outputs(triton_client, case):
    assert_refused(
        lambda: triton_client.infer(
            case.card.name,
            [fp32(case.card.input.name, case.batch)],
            outputs=[triton.InferRequestedOutput("nope")],
            headers=HEADERS,
        ),
        "StatusCode.INVALID_ARGUMENT",
        "no output 'nope'",
        case.card.layers[0].trace_key,
    )


def test_a_message_over_the_size_limit_is_resource_exhausted(stub, triton_client, case):
    request = service_pb2.ModelInferRequest(model_name=case.card.name)
    request.raw_input_contents.append(b"\0" * (MAX_BODY_BYTES + 1))
    assert_status(
        lambda: stub.ModelInfer(request, metadata=METADATA), grpc.StatusCode.RESOURCE_EXHAUSTED
    )
    assert triton_client.is_server_ready(headers=HEADERS)  # still serving


def test_a_missing_or_wrong_key_is_unauthenticated(stub, case):
    request = service_pb2.ModelReadyRequest(name=case.card.name)
    for metadata in ((), (("x-api-key", "wrong"),), (("authorization", "Basic " + KEY),)):
        assert_status(
            lambda metadata=metadata: stub.ModelReady(request, metadata=metadata),
            grpc.StatusCode.UNAUTHENTICATED,
            "API key",
        )
    bearer = (("authorization", f"Bearer {KEY}"),)
    assert stub.ModelReady(request, metadata=bearer).ready


@pytest.mark.parametrize("method", ["SystemSharedMemoryStatus", "TraceSetting", "LogSettings"])
def test_methods_not_served_are_unimplemented_and_say_what_is(channel, method):
    call = channel.unary_unary(
        f"/inference.GRPCInferenceService/{method}",
        request_serializer=lambda message: message.SerializeToString(),
        response_deserializer=lambda data: data,
    )
    request = getattr(service_pb2, f"{method}Request")()
    assert_status(
        lambda: call(request, metadata=METADATA), grpc.StatusCode.UNIMPLEMENTED, "ModelInfer"
    )


def test_the_repository_calls_need_an_admin_key_even_for_a_message_that_does_not_parse(
    channel,
):
    call = channel.unary_unary(
        "/inference.GRPCInferenceService/RepositoryIndex",
        request_serializer=lambda data: data,
        response_deserializer=service_pb2.RepositoryIndexResponse.FromString,
    )
    assert_status(
        lambda: call(b"\xff\xff", metadata=METADATA), grpc.StatusCode.UNAUTHENTICATED, "admin"
    )
    assert_status(
        lambda: call(b"\xff\xff", metadata=(("x-api-key", ADMIN_KEY),)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "not a valid inference.GRPCInferenceService/RepositoryIndex",
    )
    index = call(
        service_pb2.RepositoryIndexRequest(ready=True).SerializeToString(),
        metadata=(("x-api-key", ADMIN_KEY),),
    )
    assert {model.state for model in index.models} == {"READY"}


def test_a_repository_other_than_the_one_is_refused_naming_the_field(stub):
    admin = (("x-api-key", ADMIN_KEY),)
    for call, request in (
        (stub.RepositoryIndex, service_pb2.RepositoryIndexRequest(repository_name="other")),
        (
            stub.RepositoryModelLoad,
            service_pb2.RepositoryModelLoadRequest(repository_name="other", model_name="iris"),
        ),
    ):
        assert_status(
            lambda call=call, request=request: call(request, metadata=admin),
            grpc.StatusCode.INVALID_ARGUMENT,
            "repository_name",
        )


def test_streaming_inference_is_unimplemented(stub, case):
    request = service_pb2.ModelInferRequest(model_name=case.card.name)
    answers = stub.ModelStreamInfer(iter([request]), metadata=METADATA)
    assert_status(lambda: list(answers), grpc.StatusCode.UNIMPLEMENTED, "ModelInfer")


def test_the_request_id_is_echoed_in_trailing_metadata(stub, case):
    request = service_pb2.ModelReadyRequest(name=case.card.name)
    _, call = stub.ModelReady.with_call(request, metadata=(*METADATA, ("x-request-id", "abc-123")))
    assert ("x-request-id", "abc-123") in call.trailing_metadata()


@pytest.mark.parametrize(
    "method",
    [
        "/inference.GRPCInferenceService/ModelInfer",
        "/tensorflow.serving.PredictionService/Predict",
    ],
)
def test_bytes_that_are_not_a_request_message_are_invalid_argument(channel, method):
    call = channel.unary_unary(method)  # bytes as they are
    for junk in (b"\xff\xff\xff", b"\x0a\x02\xc3\x28"):  # truncated; a bad UTF-8 name
        assert_status(
            lambda junk=junk: call(junk, metadata=METADATA),
            grpc.StatusCode.INVALID_ARGUMENT,
            "not a valid",
        )


@pytest.mark.parametrize(
    "method",
    [
        "/inference.GRPCInferenceService/ModelInfer",
        "/tensorflow.serving.PredictionService/Predict",
    ],
)
def test_bytes_that_are_not_a_request_message_without_a_key_are_unauthenticated(channel, method):
    """The key is checked first: a caller without one learns nothing of what was parsed."""
    call = channel.unary_unary(method)
    error = assert_status(lambda: call(b"\xff\xff\xff"), grpc.StatusCode.UNAUTHENTICATED, "key")
    assert "not a valid" not in error.details()


def test_negative_sizes_are_invalid_argument(stub, case):
    request = service_pb2.ModelInferRequest(model_name=case.card.name)
    tensor = request.inputs.add(name=case.card.input.name, datatype="FP32", shape=[-1, 4])
    tensor.contents.fp32_contents.extend([1.0] * 4)
    assert_status(
        lambda: stub.ModelInfer(request, metadata=METADATA),
        grpc.StatusCode.INVALID_ARGUMENT,
        "cannot be negative",
    )


def test_liveness_and_readiness_need_no_key_as_over_rest(stub):
    assert stub.ServerLive(service_pb2.ServerLiveRequest()).live
    assert stub.ServerReady(service_pb2.ServerReadyRequest()).ready


def test_a_grpc_prediction_joins_the_models_drift_window(triton_client, http):
    """One worker: the window the HTTP endpoint reads is the one gRPC's answers went to."""
    before = http.get("/api/models/iris/drift").json()["seen"]
    flowers = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]])
    triton_client.infer("iris", [fp32("features", flowers)], headers=HEADERS)
    assert http.get("/api/models/iris/drift").json()["seen"] == before + 3
