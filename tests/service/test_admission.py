"""Requests in progress per model are bounded: one over the limit is refused at once."""

import asyncio
import json
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from app.dataplane.admission import InFlightLimit
from app.http.middleware.gateway import Gateway
from app.http.middleware.limits import BodyLimits
from app.http.middleware.security import KeyCheck
from app.runtime.model import ModelRuntime
from app.runtime.registry import ModelRegistry


def test_one_request_over_the_limit_gets_503_with_retry_after_and_others_pass():
    release = asyncio.Event()
    registry = ModelRegistry()
    for version in (1, 2):  # registered: a refusal is counted against the version it was for
        registry.add(ModelRuntime("iris", version, Path("iris") / str(version)))

    async def slow_app(scope, receive, send):
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    admission = Gateway(
        slow_app,
        keys=KeyCheck([], []),
        admission=InFlightLimit(2, registry),
        limits=BodyLimits(max_bytes=1024, max_json_depth=8),
    )

    async def call(path: str, method: str = "POST") -> tuple[int, dict, bytes]:
        sent = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message)

        path, _, query = path.partition("?")
        scope = {
            "type": "http",
            "method": method,
            "path": path,
            "query_string": query.encode(),
            "headers": [],
        }
        await admission(scope, receive, send)
        headers = {k.decode(): v.decode() for k, v in sent[0].get("headers", [])}
        return sent[0]["status"], headers, sent[1]["body"]

    def refusals(version: str) -> float:
        labels = {"model": "iris", "version": version, "reason": "in_progress_limit"}
        return REGISTRY.get_sample_value("glassbox_rejected_requests_total", labels) or 0.0

    before = {version: refusals(version) for version in ("1", "2")}

    async def main():
        busy = [asyncio.create_task(call("/api/models/iris/predict")) for _ in range(2)]
        await asyncio.sleep(0.01)
        refused = await call("/v1/models/iris:predict")  # the default: the newest, 2
        await call("/v2/models/iris/versions/1/infer")
        await call("/api/models/iris/predict?version=1")
        other_model = asyncio.create_task(call("/v2/models/mnist/infer"))
        probe = asyncio.create_task(call("/api/models/iris/card", method="GET"))
        await asyncio.sleep(0.01)
        release.set()
        return refused, await asyncio.gather(*busy, other_model, probe)

    refused, passed = asyncio.run(main())
    status, headers, body = refused
    assert status == 503
    assert headers["retry-after"] == "1"
    assert json.loads(body)["code"] == "overloaded"
    assert [answer[0] for answer in passed] == [200, 200, 200, 200]
    assert {version: refusals(version) - before[version] for version in ("1", "2")} == {
        "1": 2,
        "2": 1,
    }


def test_a_refusal_for_a_model_name_no_model_has_is_not_counted():
    """Clients choose the names in paths: made-up ones must not grow the metric's series."""
    from app.core.errors import Overloaded

    admission = InFlightLimit(1, ModelRegistry())
    admission.acquire("made-up")
    with pytest.raises(Overloaded):
        admission.acquire("made-up")
    assert not [
        sample
        for metric in REGISTRY.collect()
        if metric.name == "glassbox_rejected_requests"
        for sample in metric.samples
        if sample.labels.get("model") == "made-up"
    ]


def test_a_models_own_queue_size_is_its_limit_above_or_below_the_global_one():
    """GLASSBOX_BATCHING's per-model queue_size is the model's limit, owned by admission alone:
    before, one above GLASSBOX_QUEUE_SIZE did nothing (admission refused first), and one below
    it was enforced by the batcher under another reason."""
    from fastapi.testclient import TestClient

    from app.core.errors import Overloaded
    from app.core.settings import Settings
    from app.http.app import create_app

    settings = Settings(
        models=["iris"],
        queue_size=2,
        batching={"iris": {"queue_size": 5}, "mnist": {"queue_size": 1}},
    )
    with TestClient(create_app(settings)) as client:
        admission = client.app.state.service.admission
        assert admission is client.app.state.service.admission  # the one both transports use
        for model, limit in (("iris", 5), ("mnist", 1), ("housing", 2)):
            for _ in range(limit):
                admission.acquire(model)
            with pytest.raises(Overloaded, match=f"{limit} requests"):
                admission.acquire(model)
            for _ in range(limit):
                admission.release(model)
