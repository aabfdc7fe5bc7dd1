"""The in-process tracing benchmark: its direct ASGI calls and the ratios of its table."""

import asyncio

import pytest

from bench.tracing_cpu import Caller, summary


async def _answer(scope, receive, send):
    message = await receive()
    status = 200 if message["body"] == b"{}" and scope["path"].endswith("/predict") else 422
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def test_a_block_makes_every_request_and_counts_those_not_answered_200():
    made = []

    async def app(scope, receive, send):
        made.append(scope["method"])
        await _answer(scope, receive, send)

    assert asyncio.run(Caller(app, b"{}").block(50, 4)) == 0
    assert made == ["POST"] * 50
    assert asyncio.run(Caller(_answer, b"[]").block(7, 3)) == 7


def test_each_setting_is_judged_by_the_median_of_its_rounds_ratios_to_off():
    rows = {
        row["setting"]: row
        for row in summary({"off": [100.0, 200.0, 100.0], "10%": [110.0, 200.0, 130.0]})
    }
    assert rows["off"]["ratio_median"] == 1.0
    assert rows["10%"]["ratio_median"] == pytest.approx(1.1)  # ratios 1.1, 1.0, 1.3
    assert (rows["10%"]["min_us"], rows["10%"]["max_us"]) == (110.0, 200.0)
    assert rows["10%"]["median_us"] == 130.0
