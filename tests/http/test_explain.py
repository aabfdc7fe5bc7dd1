"""POST /api/models/{name}/explain and KServe v1's :explain on the committed models: the
attributions, their completeness, the counterfactual, the maps and overlays, and every way to
ask wrongly answered 4xx with the usual error body."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import threading
import time

import numpy as np
import pytest
from PIL import Image

from app.core.errors import ClientGone, DeadlineExceeded, Overloaded
from app.dataplane import explain
from tests.http.protocol_cases import EXAMPLES, newest_card

FLOWER = {"sepal_length": 6.3, "sepal_width": 3.3, "petal_length": 6.0, "petal_width": 2.5}


def mean_row(name: str) -> dict[str, float]:
    return {spec.name: spec.mean for spec in newest_card(name).input.features}


def test_iris_attributions_add_up_come_sorted_and_the_counterfactual_holds(app_client):
    answer = app_client.post("/api/models/iris/explain", json=FLOWER)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["method"] == "integrated_gradients"
    assert body["target"] == "virginica"
    assert "mean" in body["baseline"]
    assert body["completeness"]["relative_error"] <= 0.02
    magnitudes = [abs(item["attribution"]) for item in body["features"]]
    assert magnitudes == sorted(magnitudes, reverse=True)
    assert {item["name"] for item in body["features"]} == set(FLOWER)
    counterfactual = body["counterfactual"]
    assert counterfactual["found"]
    assert counterfactual["feature"] in counterfactual["sentence"]
    changed = {**FLOWER, counterfactual["feature"]: counterfactual["changed_to"]}
    again = app_client.post("/api/models/iris/predict", json=changed).json()
    assert again["label"] == counterfactual["outcome"] != "virginica"


def test_a_class_other_than_the_predicted_one_can_be_explained(app_client):
    body = app_client.post("/api/models/iris/explain?target=setosa", json=FLOWER).json()
    assert body["target"] == "setosa"
    assert body["completeness"]["output_change"] < 0  # far less setosa than the mean flower


def test_housing_attributions_are_in_its_unit_and_the_counterfactual_moves_the_value(
    app_client, housing_sample
):
    names = [spec.name for spec in newest_card("housing").input.features]
    row = dict(zip(names, map(float, housing_sample["x_test"][0]), strict=True))
    body = app_client.post("/api/models/housing/explain?change=-0.3", json=row).json()
    assert body["target"] == "value"
    assert abs(body["completeness"]["output_change"]) > 0.01  # a block unlike the average
    assert body["completeness"]["relative_error"] <= 0.02
    assert {item["unit"] for item in body["features"]} >= {"$10,000", "years"}
    counterfactual = body["counterfactual"]
    assert counterfactual["found"], counterfactual
    changed = {**row, counterfactual["feature"]: counterfactual["changed_to"]}
    value = app_client.post("/api/models/housing/predict", json=changed).json()["value"]
    assert value <= body["output"] - 0.3 + 1e-5
    assert counterfactual["feature"] in counterfactual["sentence"]


def test_no_counterfactual_within_the_ranges_is_said_in_words(app_client):
    body = app_client.post("/api/models/housing/explain?change=100", json=mean_row("housing"))
    counterfactual = body.json()["counterfactual"]
    assert counterfactual["found"] is False
    assert counterfactual["sentence"].startswith("No change of one feature")


@pytest.mark.parametrize("method", explain.IMAGE_METHODS)
def test_every_image_method_answers_a_map_at_the_input_size(app_client, method):
    with (EXAMPLES / "mnist.png").open("rb") as file:
        answer = app_client.post(f"/api/models/mnist/explain?method={method}", files={"file": file})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["target"] == "7"
    assert np.asarray(body["attribution_map"]).shape == (28, 28)
    assert ("completeness" in body) == (method == "integrated_gradients")


def test_png_overlays_on_the_input_and_on_the_uploaded_photo(app_client):
    data = (EXAMPLES / "catdog.jpg").read_bytes()
    photo = Image.open(io.BytesIO(data))
    for onto, size in (("input", None), ("photo", photo.size)):
        answer = app_client.post(
            f"/api/models/catdog/explain?method=grad_cam&format=png&onto={onto}",
            files={"file": ("catdog.jpg", data)},
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "image/png"
        image = Image.open(io.BytesIO(answer.content))
        assert image.format == "PNG"
        if size is not None:
            assert image.size == size


@pytest.mark.parametrize(
    ("path", "query", "words"),
    [
        ("iris", "method=grad_cam", "integrated_gradients"),
        ("iris", "method=lime", "integrated_gradients"),
        ("iris", "steps=1000000", "GLASSBOX_EXPLAIN_MAX_STEPS"),
        ("iris", "steps=0", "greater than or equal to 1"),
        ("iris", "target=daisy", "no class 'daisy'"),
        ("iris", "change=0.5", "regressor"),
        ("housing", "target=price", "one value"),
    ],
)
def test_asking_wrongly_is_422_naming_the_problem(app_client, path, query, words):
    body = FLOWER if path == "iris" else mean_row("housing")
    answer = app_client.post(f"/api/models/{path}/explain?{query}", json=body)
    assert answer.status_code == 422, answer.text
    assert words in answer.json()["error"]


def test_smoothgrad_samples_over_the_cap_is_422(app_client):
    with (EXAMPLES / "mnist.png").open("rb") as file:
        answer = app_client.post(
            "/api/models/mnist/explain?method=smoothgrad&samples=100000", files={"file": file}
        )
    assert answer.status_code == 422
    assert "GLASSBOX_EXPLAIN_MAX_SAMPLES" in answer.json()["error"]


def test_explanations_beyond_their_queue_are_refused_at_once_and_places_come_back(app_client):
    service = app_client.app.state.service
    service.explainer._explaining = (
        service.settings.explain_queue_size
    )  # as if that many were running
    try:
        refused = app_client.post("/api/models/iris/explain", json=FLOWER)
    finally:
        service.explainer._explaining = 0
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert "explanations at most wait or run at once" in refused.json()["error"]
    assert app_client.post("/api/models/iris/explain", json=FLOWER).status_code == 200
    assert service.explainer._explaining == 0  # the place taken was given back
    runtime = service.registry.resolve("iris")
    call = service.explainer.explain(runtime, np.ones((1, 4), np.float32), explain.ExplainOptions())
    service.explainer._explaining = (
        service.settings.explain_queue_size
    )  # the data plane's own check
    try:
        with pytest.raises(Overloaded):
            asyncio.run(call)
    finally:
        service.explainer._explaining = 0


@pytest.mark.parametrize(
    ("query", "words"),
    [("target=%C2%B2", "no class"), ("onto=photo&format=png", "crops and centres")],
)
def test_an_image_request_asked_wrongly_is_422(app_client, query, words):
    with (EXAMPLES / "mnist.png").open("rb") as file:
        answer = app_client.post(f"/api/models/mnist/explain?{query}", files={"file": file})
    assert answer.status_code == 422, answer.text
    assert words in answer.json()["error"]


def test_a_change_that_is_not_a_number_is_422(app_client):
    answer = app_client.post("/api/models/housing/explain?change=nan", json=mean_row("housing"))
    assert answer.status_code == 422


def test_a_request_takes_a_place_per_row_all_or_none(app_client):
    service = app_client.app.state.service
    service.explainer._explaining = service.settings.explain_queue_size - 1  # room for one row only
    try:
        refused = app_client.post(
            "/v1/models/iris:explain", json={"instances": [list(FLOWER.values())] * 2}
        )
        one = app_client.post(
            "/v1/models/iris:explain", json={"instances": [list(FLOWER.values())]}
        )
    finally:
        service.explainer._explaining = 0
    assert refused.status_code == 503
    assert "this request has 2" in refused.json()["error"]
    assert one.status_code == 200


def test_an_explanation_that_waits_past_the_timeout_is_504(app_client):
    service = app_client.app.state.service
    runtime = service.registry.resolve("iris")

    async def main():
        service.explainer._slots = asyncio.Semaphore(0)  # every turn taken, none given back
        return await service.explainer.explain(
            runtime, np.ones((1, 4), np.float32), explain.ExplainOptions()
        )

    saved, timeout = service.explainer._slots, service.settings.explain_timeout_s
    service.settings.explain_timeout_s = 0.01
    try:
        with pytest.raises(DeadlineExceeded):
            asyncio.run(main())
    finally:
        service.explainer._slots, service.settings.explain_timeout_s = saved, timeout
    assert service.explainer._explaining == 0


def test_kserve_v1_explain_answers_integrated_gradients_per_instance(app_client):
    answer = app_client.post(
        "/v1/models/iris:explain", json={"instances": [list(FLOWER.values()), [5.1, 3.5, 1.4, 0.2]]}
    )
    assert answer.status_code == 200, answer.text
    explanations = answer.json()["explanations"]
    assert [item["target"] for item in explanations] == ["virginica", "setosa"]
    assert all(item["completeness"]["relative_error"] <= 0.02 for item in explanations)
    too_many = app_client.post(
        "/v1/models/iris:explain", json={"instances": [[5.1, 3.5, 1.4, 0.2]] * 17}
    )
    assert too_many.status_code == 400
    assert "at most 16" in too_many.json()["error"]


def test_an_explanation_too_costly_for_the_model_is_422_saying_how_far_it_may_go(app_client):
    with (EXAMPLES / "catdog.jpg").open("rb") as file:
        answer = app_client.post("/api/models/catdog/explain?steps=5000", files={"file": file})
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert "GLASSBOX_EXPLAIN_MAX_VALUES" in error
    assert "at most 1156 for model 'catdog'" in error


def _slow_explanations(monkeypatch) -> tuple[list[float], threading.Event, list[float]]:
    """explain.explanation replaced by one that records each row's first value and waits
    until released or told its caller has gone (as the real one stops at its next chunk):
    (rows started, the release, rows stopped)."""
    started: list[float] = []
    release = threading.Event()

    def slow(runtime, row, options, stop):
        started.append(float(row[0]))
        deadline = time.monotonic() + 30  # a bound on a wait for the test's release
        while not release.wait(0.01) and time.monotonic() < deadline:
            if stop():
                stopped.append(float(row[0]))
                raise ClientGone("gone")
        return {"row": float(row[0])}

    stopped: list[float] = []

    monkeypatch.setattr(explain, "explanation", slow)
    return started, release, stopped


def run_with_one_slot(service, release: threading.Event, main) -> None:
    """asyncio.run(main()) with one explanation slot; the slow explanations released after."""
    saved = service.explainer._slots

    async def with_one_slot():
        service.explainer._slots = asyncio.Semaphore(1)
        await main()

    try:
        asyncio.run(with_one_slot())
    finally:
        release.set()
        service.explainer._slots = saved


async def _until(condition, bound_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + bound_s  # a bound, not a timing
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "never happened"
        await asyncio.sleep(0.01)


def test_a_caller_that_goes_away_leaves_its_waiting_rows_and_stops_the_running_one(
    app_client, monkeypatch
):
    service = app_client.app.state.service
    runtime = service.registry.resolve("iris")
    started, release, stopped = _slow_explanations(monkeypatch)
    options = explain.ExplainOptions()

    async def main():
        rows = np.array([[1, 1, 1, 1], [2, 2, 2, 2]], np.float32)
        first = asyncio.ensure_future(service.explainer.explain(runtime, rows, options))
        await _until(lambda: started)
        assert service.explainer._explaining == 2
        first.cancel()  # as a closed connection or a cancelled gRPC call does
        with contextlib.suppress(asyncio.CancelledError):
            await first
        await _until(lambda: stopped == [1.0])  # the running row, at its next chunk
        await _until(lambda: service.explainer._explaining == 0)  # its slot and places given back
        second = asyncio.ensure_future(
            service.explainer.explain(runtime, np.full((1, 4), 7, np.float32), options)
        )
        await _until(lambda: len(started) == 2)
        release.set()
        assert await second == [{"row": 7.0}]
        assert started == [1.0, 7.0]  # the first request's second row was never computed

    run_with_one_slot(service, release, main)


def test_an_explanation_whose_client_disconnects_while_it_waits_is_never_computed(
    app_client, monkeypatch
):
    service = app_client.app.state.service
    runtime = service.registry.resolve("iris")
    started, release, _ = _slow_explanations(monkeypatch)
    sent: list[dict] = []

    async def main():
        holder = asyncio.ensure_future(
            service.explainer.explain(
                runtime, np.ones((1, 4), np.float32), explain.ExplainOptions()
            )
        )
        await _until(lambda: started)
        body = [{"type": "http.request", "body": json.dumps(FLOWER).encode(), "more_body": False}]
        gone = asyncio.Event()

        async def receive():
            if body:
                return body.pop()
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/api/models/iris/explain",
            "raw_path": b"/api/models/iris/explain",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"testserver"), (b"content-type", b"application/json")],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
            "state": {},
        }
        request = asyncio.ensure_future(app_client.app(scope, receive, send))
        await _until(lambda: service.explainer._explaining == 2)  # the request waits for its turn
        gone.set()
        await asyncio.wait_for(request, 30)
        assert service.explainer._explaining == 1  # only the one running
        release.set()
        await holder

    run_with_one_slot(service, release, main)
    assert started == [1.0]
    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] == 499
