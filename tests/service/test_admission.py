"""Requests in progress per model are bounded: one over the limit is refused at once."""

import asyncio
import json

from app.dataplane.admission import InFlightLimit
from app.http.middleware.gateway import Gateway
from app.http.middleware.limits import BodyLimits
from app.http.middleware.security import KeyCheck


def test_one_request_over_the_limit_gets_503_with_retry_after_and_others_pass():
    release = asyncio.Event()
    refused_models = []

    async def slow_app(scope, receive, send):
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    admission = Gateway(
        slow_app,
        keys=KeyCheck([], []),
        admission=InFlightLimit(2, on_reject=refused_models.append),
        limits=BodyLimits(max_bytes=1024, max_json_depth=8),
    )

    async def call(path: str, method: str = "POST") -> tuple[int, dict, bytes]:
        sent = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": method, "path": path, "headers": []}
        await admission(scope, receive, send)
        headers = {k.decode(): v.decode() for k, v in sent[0].get("headers", [])}
        return sent[0]["status"], headers, sent[1]["body"]

    async def main():
        busy = [asyncio.create_task(call("/api/models/iris/predict")) for _ in range(2)]
        await asyncio.sleep(0.01)
        refused = await call("/v1/models/iris:predict")
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
    assert refused_models == ["iris"]
