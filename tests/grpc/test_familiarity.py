"""`familiarity` over gRPC: TF Serving's Predict answers it when output_filter names it, and
KServe v2's ModelInfer when its outputs do; neither answers it otherwise."""

from __future__ import annotations

import json

import numpy as np
import tensorflow as tf
import tritonclient.grpc as triton
from tensorflow_serving.apis import predict_pb2

from app.dataplane.schemas import InputFamiliarity
from tests.grpc.conftest import KEY, METADATA
from tests.http.protocol_cases import assert_same_numbers

HEADERS = {"x-api-key": KEY}


def predict_request(case, *names: str) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = case.card.name
    request.inputs[case.card.input.name].CopyFrom(tf.make_tensor_proto(case.batch))
    request.output_filter.extend(names)
    return request


def answers(values) -> list[InputFamiliarity]:
    return [InputFamiliarity.model_validate(json.loads(value)) for value in values]


def test_tf_serving_predict_answers_familiarity_when_the_filter_names_it(predictions, case):
    plain = predictions.Predict(predict_request(case), metadata=METADATA)
    assert list(plain.outputs) == [case.card.output.name]
    asked = predictions.Predict(
        predict_request(case, case.card.output.name, "familiarity"), metadata=METADATA
    )
    assert set(asked.outputs) == {case.card.output.name, "familiarity"}
    assert_same_numbers(tf.make_ndarray(asked.outputs[case.card.output.name]), case.expected)
    tensor = asked.outputs["familiarity"]
    assert tf.dtypes.as_dtype(tensor.dtype) == tf.string
    found = answers(tensor.string_val)
    assert len(found) == len(case.batch)
    assert found[0].familiar  # the training means, or the committed example image


def test_v2_model_infer_answers_familiarity_when_the_outputs_name_it(triton_client, case):
    tensor = triton.InferInput(case.card.input.name, list(case.batch.shape), "FP32")
    tensor.set_data_from_numpy(case.batch.astype(np.float32))
    plain = triton_client.infer(case.card.name, [tensor], headers=HEADERS)
    assert [output.name for output in plain.get_response().outputs] == [case.card.output.name]
    asked = triton_client.infer(
        case.card.name,
        [tensor],
        outputs=[triton.InferRequestedOutput("familiarity")],
        headers=HEADERS,
    )
    found = answers(asked.as_numpy("familiarity").tolist())
    assert len(found) == len(case.batch)
    assert found[0].familiar
