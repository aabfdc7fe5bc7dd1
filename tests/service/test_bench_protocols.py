"""The protocols benchmark's table: medians and spreads over interleaved rounds, and each row
against the same scenario's REST v2 JSON row; and its request bodies say what they claim."""

import json

import numpy as np
from tritonclient.grpc import service_pb2

from bench.protocols import Case, cases_for, iris_row, mnist_batch, table
from tests.http.protocol_cases import newest_card


def run(rps: float, p50: float = 1.0, errors: int = 0) -> dict:
    return {"rps": rps, "p50_ms": p50, "p99_ms": 2 * p50, "errors": errors}


def test_rows_take_the_median_and_spread_of_their_rounds_and_compare_with_rest_v2_json():
    cases = [Case("mnist x32", "REST v2 JSON"), Case("mnist x32", "gRPC v2 raw", grpc_method="m")]
    runs = {
        ("mnist x32", "REST v2 JSON"): [run(100), run(140), run(120)],
        ("mnist x32", "gRPC v2 raw"): [run(300, errors=1), run(260), run(280)],
    }
    rest, grpc_row = table(cases, runs)
    assert (rest["rps_median"], rest["rps_min"], rest["rps_max"]) == (120, 100, 140)
    assert rest["vs_rest_v2_json"] == 1.0
    assert grpc_row["rps_median"] == 280
    assert grpc_row["vs_rest_v2_json"] == round(280 / 120, 2)
    assert grpc_row["errors"] == 1
    assert grpc_row["driver"] == "grpc.aio"


def test_every_way_in_carries_the_same_batch():
    card = newest_card("mnist")
    batch = mnist_batch(card, 32)
    assert batch.shape == (32, 28, 28)
    cases = {case.way: case for case in cases_for(card, batch, "mnist x32")}
    v2_json = json.loads(cases["REST v2 JSON"].http.body)["inputs"][0]
    assert v2_json["shape"] == [32, 28, 28]
    np.testing.assert_array_equal(np.asarray(v2_json["data"], np.float32), batch.reshape(-1))
    raw = service_pb2.ModelInferRequest.FromString(cases["gRPC v2 raw"].grpc_request)
    np.testing.assert_array_equal(
        np.frombuffer(raw.raw_input_contents[0], "<f4"), batch.reshape(-1)
    )
    binary = cases["REST v2 binary"].http
    header_length = int(binary.headers["inference-header-content-length"])
    assert binary.body[header_length:] == batch.astype("<f4").tobytes()
    assert "REST typed JSON" not in cases  # mnist has no typed JSON features route in the table
    iris = {case.way for case in cases_for(newest_card("iris"), iris_row(newest_card("iris")), "i")}
    assert "REST typed JSON" in iris


def test_perf_analyzer_rows_are_added_only_where_it_can_run():
    card = newest_card("iris")
    plain = {case.way for case in cases_for(card, iris_row(card), "iris x1")}
    with_it = cases_for(card, iris_row(card), "iris x1", with_analyzer=True)
    added = [case for case in with_it if case.way not in plain]
    assert [(case.analyzer, case.model, case.rows, case.driver) for case in added] == [
        ("http", "iris", 1, "perf_analyzer"),
        ("grpc", "iris", 1, "perf_analyzer"),
    ]
