"""bench/gateway.py measures the Gateway that create_app builds, on requests it answers 200."""

import asyncio

from bench import gateway


def test_each_measured_request_is_answered_200(monkeypatch):
    statuses = []
    real = gateway._answer

    async def recording(scope, receive, send):
        async def sending(message):
            if message["type"] == "http.response.start":
                statuses.append(message["status"])
            await send(message)

        await real(scope, receive, sending)

    monkeypatch.setattr(gateway, "_answer", recording)
    found = asyncio.run(gateway.per_request_us(gateway.gateway(), count=20, runs=2))
    assert len(found) == 2
    assert all(value > 0 for value in found)
    assert statuses == [200] * (2 + 2 * 20)  # the warm-up's and both runs'
