"""An image model's batch is built from a wire-protocol request (files decoded, nested lists
made an array) on a worker thread, so a request of many images cannot hold up the event loop
that every other request and probe shares; a tabular model's small batch is built in place."""

import base64

from tests.http.protocol_cases import EXAMPLES


def test_image_batches_are_built_off_the_event_loop_and_tabular_ones_in_place(
    app_client, threads_used
):
    digit = base64.b64encode((EXAMPLES / "mnist.png").read_bytes()).decode()
    answer = app_client.post(
        "/v2/models/mnist/infer",
        json={
            "inputs": [{"name": "image", "shape": [2], "datatype": "BYTES", "data": [digit] * 2}]
        },
    )
    assert answer.status_code == 200, answer.text
    answer = app_client.post("/v1/models/mnist:predict", json={"instances": [{"b64": digit}]})
    assert answer.status_code == 200, answer.text
    answer = app_client.post("/v1/models/mnist:predict", json={"inputs": [[[0.0] * 28] * 28]})
    assert answer.status_code == 200, answer.text
    assert threads_used == ["_v2_batch", "_tf_row_batch", "_tf_column_batch"]
    answer = app_client.post(
        "/v2/models/iris/infer",
        json={
            "inputs": [
                {
                    "name": "features",
                    "shape": [1, 4],
                    "datatype": "FP32",
                    "data": [5.1, 3.5, 1.4, 0.2],
                }
            ]
        },
    )
    assert answer.status_code == 200, answer.text
    assert threads_used == ["_v2_batch", "_tf_row_batch", "_tf_column_batch"]
