"""BodyLimits.read: the whole body within its deadline (408 after it), one timer for all reads."""

import asyncio

import pytest

from app.http.middleware.limits import BadBody, BodyLimits


def body_in(*messages):
    """A `receive` giving `messages`, then waiting for good (a client that stops sending)."""
    queue = list(messages)

    async def receive():
        if queue:
            return queue.pop(0)
        await asyncio.Event().wait()

    return receive


def test_a_body_that_stops_coming_is_408_with_connection_close_and_others_are_read():
    limits = BodyLimits(max_bytes=100, max_json_depth=8, timeout_s=0.05)

    async def main():
        slow = asyncio.ensure_future(
            limits.read(body_in({"type": "http.request", "body": b"{", "more_body": True}), {})
        )
        whole = await limits.read(body_in({"type": "http.request", "body": b"{}"}), {})
        replayed = await whole()
        with pytest.raises(BadBody) as refused:
            await slow
        # A read that finished long ago is never cancelled by its deadline.
        await asyncio.sleep(0.1)
        return replayed, refused.value, asyncio.current_task().cancelling()

    replayed, refused, cancelling = asyncio.run(main())
    assert replayed == {"type": "http.request", "body": b"{}", "more_body": False}
    assert refused.status == 408
    assert refused.headers == {"Connection": "close"}
    assert cancelling == 0


def test_deadlines_end_in_order_each_after_its_own_start():
    limits = BodyLimits(max_bytes=100, max_json_depth=8, timeout_s=0.2)
    ended: dict[str, float] = {}

    async def late(name: str) -> None:
        started = asyncio.get_running_loop().time()
        with pytest.raises(BadBody):
            await limits.read(body_in(), {})
        ended[name] = asyncio.get_running_loop().time() - started

    async def main():
        first = asyncio.ensure_future(late("first"))
        await asyncio.sleep(0.1)
        await asyncio.gather(first, late("second"))

    asyncio.run(main())
    assert ended["first"] >= 0.2
    assert ended["second"] >= 0.2  # not cut short by the first one's timer


def test_a_declared_length_over_the_limit_is_413_before_any_read():
    limits = BodyLimits(max_bytes=10, max_json_depth=8)

    async def never():
        raise AssertionError("read")

    with pytest.raises(BadBody) as refused:
        asyncio.run(limits.read(never, {b"content-length": b"11"}))
    assert refused.value.status == 413
