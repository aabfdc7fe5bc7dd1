"""TensorFlow Serving gRPC through tensorflow-serving-api's stubs and tf.make_tensor_proto, as
a TF Serving client calls it: Predict on both signatures, metadata, status, Classify and
Regress, and bad calls answered with their status codes."""

from __future__ import annotations

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow.core.framework import tensor_shape_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
    regression_pb2,
)

from tests.grpc.conftest import METADATA, assert_status
from tests.http.protocol_cases import assert_same_numbers


def refused(predictions, request, *words, code=grpc.StatusCode.INVALID_ARGUMENT) -> None:
    """Predict fails with `code` (INVALID_ARGUMENT unless said) and a message holding `words`."""
    assert_status(lambda: predictions.Predict(request, metadata=METADATA), code, *words)


def predict_request(case, batch=None, **spec) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = case.card.name
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    values = case.batch if batch is None else batch
    request.inputs[case.card.input.name].CopyFrom(tf.make_tensor_proto(values))
    return request


def test_predict_matches_typed(predictions, case):
    answer = predictions.Predict(predict_request(case), metadata=METADATA)
    assert answer.model_spec.name == case.card.name
    assert answer.model_spec.version.value == case.card.version
    assert answer.model_spec.signature_name == "serving_default"
    assert list(answer.outputs) == [case.card.output.name]
    assert_same_numbers(tf.make_ndarray(answer.outputs[case.card.output.name]), case.expected)


def test_predict_with_a_version_number(predictions, case):
    answer = predictions.Predict(
        predict_request(case, version=case.card.version), metadata=METADATA
    )
    assert_same_numbers(tf.make_ndarray(answer.outputs[case.card.output.name]), case.expected)
    assert_status(
        lambda: predictions.Predict(predict_request(case, version=999), metadata=METADATA),
        grpc.StatusCode.NOT_FOUND,
        "no version 999",
    )


def test_a_version_label_is_not_found_and_says_why(predictions, case):
    assert_status(
        lambda: predictions.Predict(
            predict_request(case, version_label="stable"), metadata=METADATA
        ),
        grpc.StatusCode.NOT_FOUND,
        "no version label 'stable'",
    )


def test_trace_signature_answers_every_layer_or_the_filtered_ones(predictions, case):
    keys = [layer.trace_key for layer in case.card.layers]
    answer = predictions.Predict(predict_request(case, signature_name="trace"), metadata=METADATA)
    assert sorted(answer.outputs) == sorted(keys)
    assert_same_numbers(tf.make_ndarray(answer.outputs[keys[-1]]), case.expected)
    request = predict_request(case, signature_name="trace")
    request.output_filter.append(keys[0])
    filtered = predictions.Predict(request, metadata=METADATA)
    assert list(filtered.outputs) == [keys[0]]
    assert_same_numbers(
        tf.make_ndarray(filtered.outputs[keys[0]]), tf.make_ndarray(answer.outputs[keys[0]])
    )
    request.output_filter.append("nope")
    refused(predictions, request, "output tensor alias not found in signature: nope")


def test_encoded_image_strings_match_typed_upload(predictions, image_case):
    request = predict_request(image_case, batch=np.array([image_case.image], dtype=object))
    answer = predictions.Predict(request, metadata=METADATA)
    output = tf.make_ndarray(answer.outputs[image_case.card.output.name])
    assert_same_numbers(output, image_case.expected)


def test_metadata_is_the_signature_defs(predictions, http, case):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = case.card.name
    answer = predictions.GetModelMetadata(request, metadata=METADATA)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert answer.metadata["signature_def"].Unpack(signatures)
    assert set(signatures.signature_def) == {"serving_default", "trace"}
    serving = signatures.signature_def["serving_default"]
    rest = http.get(f"/v1/models/{case.card.name}/metadata").json()
    rest_serving = rest["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert (
        serving.inputs[case.card.input.name].name
        == (rest_serving["inputs"][case.card.input.name]["name"])
    )
    assert serving.inputs[case.card.input.name].dtype == tf.float32.as_datatype_enum
    assert [dim.size for dim in serving.inputs[case.card.input.name].tensor_shape.dim] == [
        -1 if size is None else size for size in case.card.input.shape
    ]
    request.metadata_field[:] = ["other"]
    assert_status(
        lambda: predictions.GetModelMetadata(request, metadata=METADATA),
        grpc.StatusCode.INVALID_ARGUMENT,
        "other",
    )


def test_model_status_is_available(model_service, case):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = case.card.name
    answer = model_service.GetModelStatus(request, metadata=METADATA)
    (status,) = answer.model_version_status
    assert status.version == case.card.version
    assert status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert status.status.error_code == 0


def _example(values: dict[str, list[float]]) -> example_pb2.Example:
    return example_pb2.Example(
        features=feature_pb2.Features(
            feature={
                name: feature_pb2.Feature(float_list=feature_pb2.FloatList(value=value))
                for name, value in values.items()
            }
        )
    )


def _examples_by_feature(case) -> list[example_pb2.Example]:
    names = [feature.name for feature in case.card.input.features]
    return [
        _example({name: [value] for name, value in zip(names, row, strict=True)})
        for row in case.rows
    ]


def _examples_by_input(case) -> list[example_pb2.Example]:
    return [_example({case.card.input.name: row.reshape(-1).tolist()}) for row in case.batch]


def test_classify_and_regress_match_typed(predictions, case):
    examples = [_examples_by_input(case)]
    if case.card.input.features:
        examples.append(_examples_by_feature(case))
    for listed in examples:
        if case.card.task == "classification":
            request = classification_pb2.ClassificationRequest()
            request.model_spec.name = case.card.name
            request.input.example_list.examples.extend(listed)
            answer = predictions.Classify(request, metadata=METADATA)
            scores = [[c.score for c in row.classes] for row in answer.result.classifications]
            labels = [c.label for c in answer.result.classifications[0].classes]
            assert labels == case.card.output.labels
        else:
            request = regression_pb2.RegressionRequest()
            request.model_spec.name = case.card.name
            request.input.example_list.examples.extend(listed)
            answer = predictions.Regress(request, metadata=METADATA)
            scores = [[row.value] for row in answer.result.regressions]
        assert_same_numbers(scores, case.expected)


def test_classify_on_a_regressor_and_regress_on_a_classifier_are_unimplemented(predictions, case):
    if case.card.task == "classification":
        request = regression_pb2.RegressionRequest()
        call = predictions.Regress
    else:
        request = classification_pb2.ClassificationRequest()
        call = predictions.Classify
    request.model_spec.name = case.card.name
    request.input.example_list.examples.extend(_examples_by_input(case))
    assert_status(
        lambda: call(request, metadata=METADATA), grpc.StatusCode.UNIMPLEMENTED, "Predict"
    )


def test_examples_with_the_wrong_features_are_invalid_argument(predictions, case):
    request = (
        classification_pb2.ClassificationRequest()
        if case.card.task == "classification"
        else regression_pb2.RegressionRequest()
    )
    call = predictions.Classify if case.card.task == "classification" else predictions.Regress
    request.model_spec.name = case.card.name
    request.input.example_list.examples.append(_example({"nope": [1.0]}))
    assert_status(
        lambda: call(request, metadata=METADATA),
        grpc.StatusCode.INVALID_ARGUMENT,
        "['nope']",
        case.card.input.name,
    )


def test_wrong_dtype_is_invalid_argument(predictions, case):
    request = predict_request(case, batch=case.batch.astype(np.float64))
    refused(predictions, request, "dtype DT_DOUBLE", "DT_FLOAT with shape")


def test_wrong_shape_and_wrong_input_name_are_invalid_argument(predictions, case):
    flat = case.batch.reshape(len(case.batch), -1)[:, :-1]
    assert_status(
        lambda: predictions.Predict(predict_request(case, batch=flat), metadata=METADATA),
        grpc.StatusCode.INVALID_ARGUMENT,
        f"has shape {list(flat.shape)}",
    )
    request = predict_request(case)
    request.inputs["other"].CopyFrom(request.inputs[case.card.input.name])
    refused(predictions, request, "'other'")


def test_strings_to_a_tabular_model_are_invalid_argument(predictions, tabular_case):
    case = tabular_case
    request = predict_request(case, batch=np.array([b"text"], dtype=object))
    refused(predictions, request, "takes numbers")


def test_unknown_model_and_signature(predictions, case):
    request = predict_request(case)
    request.model_spec.name = "nope"
    refused(predictions, request, "No model named 'nope'", code=grpc.StatusCode.NOT_FOUND)
    request = predict_request(case, signature_name="other")
    refused(predictions, request, "'other' not found in signature def")


def test_missing_key_is_unauthenticated(predictions, case):
    assert_status(
        lambda: predictions.Predict(predict_request(case)),
        grpc.StatusCode.UNAUTHENTICATED,
        "API key",
    )


def test_multi_inference_is_unimplemented(channel):
    from tensorflow_serving.apis import inference_pb2

    call = channel.unary_unary(
        "/tensorflow.serving.PredictionService/MultiInference",
        request_serializer=lambda message: message.SerializeToString(),
        response_deserializer=lambda data: data,
    )
    assert_status(
        lambda: call(inference_pb2.MultiInferenceRequest(), metadata=METADATA),
        grpc.StatusCode.UNIMPLEMENTED,
        "Predict",
    )


def _string_request(case, dims: list[int], values: list[bytes]) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = case.card.name
    tensor = request.inputs[case.card.input.name]
    tensor.dtype = tf.string.as_datatype_enum
    tensor.tensor_shape.dim.extend([tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims])
    tensor.string_val.extend(values)
    return request


def test_a_string_tensor_is_checked_before_it_is_read(predictions, image_case):
    """A few bytes that declare a billion strings are refused by count, not filled out."""
    huge = _string_request(image_case, [10**9], [b"x"])
    refused(predictions, huge, "instances")
    empty = _string_request(image_case, [1], [])
    refused(predictions, empty, "string_val")


def test_a_dtype_outside_tensorflows_is_invalid_argument(predictions, case):
    request = predict_request(case)
    request.inputs[case.card.input.name].dtype = 9999
    refused(predictions, request, "not a DataType")


def test_context_features_are_shared_by_every_example(predictions, tabular_case):
    case = tabular_case
    names = [feature.name for feature in case.card.input.features]
    request = (
        classification_pb2.ClassificationRequest()
        if case.card.task == "classification"
        else regression_pb2.RegressionRequest()
    )
    request.model_spec.name = case.card.name
    listed = request.input.example_list_with_context
    first = case.rows[0]
    listed.context.CopyFrom(
        _example({name: [value] for name, value in zip(names[1:], first[1:], strict=True)})
    )
    listed.examples.append(_example({names[0]: [first[0]]}))
    if case.card.task == "classification":
        answer = predictions.Classify(request, metadata=METADATA)
        scores = [[c.score for c in row.classes] for row in answer.result.classifications]
    else:
        answer = predictions.Regress(request, metadata=METADATA)
        scores = [[row.value] for row in answer.result.regressions]
    assert_same_numbers(scores, case.expected[:1])
