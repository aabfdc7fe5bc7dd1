"""The dynamic batcher with a stand-in model: batches form, order holds, limits refuse."""

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from app.batching import Batcher, BatchPolicy
from app.errors import DeadlineExceeded, Overloaded


class SlowDouble:
    """Doubles its input; records the batch sizes it was called with."""

    def __init__(self, seconds: float = 0.01, gate: threading.Event | None = None):
        self.seconds = seconds
        self.gate = gate
        self.sizes: list[int] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if self.gate is not None:
            self.gate.wait(5)
        time.sleep(self.seconds)
        self.sizes.append(len(batch))
        return batch * 2


@pytest.fixture
def executor():
    with ThreadPoolExecutor(1) as pool:
        yield pool


def run(coroutine):
    return asyncio.run(coroutine)


def test_concurrent_requests_share_batches_and_get_their_own_rows(executor):
    model = SlowDouble()

    async def main():
        batcher = Batcher(model, executor, BatchPolicy(max_batch_size=16))
        inputs = [np.full((1, 3), i, dtype=np.float32) for i in range(40)]
        outputs = await asyncio.gather(*(batcher.submit(x) for x in inputs))
        await batcher.close()
        return inputs, outputs

    inputs, outputs = run(main())
    for x, y in zip(inputs, outputs, strict=True):
        np.testing.assert_array_equal(y, x * 2)
    assert max(model.sizes) > 1
    assert max(model.sizes) <= 16
    assert sum(model.sizes) == 40


def test_lone_request_runs_at_once_without_waiting(executor):
    model = SlowDouble(seconds=0)

    async def main():
        batcher = Batcher(model, executor, BatchPolicy(max_wait_ms=0))
        result = await batcher.submit(np.ones((2, 2), np.float32))
        await batcher.close()
        return result

    np.testing.assert_array_equal(run(main()), np.full((2, 2), 2.0))
    assert model.sizes == [2]


def test_full_queue_refuses_at_once_with_retry_after(executor):
    gate = threading.Event()
    model = SlowDouble(gate=gate)

    async def main():
        batcher = Batcher(model, executor, BatchPolicy(max_batch_size=1, queue_size=3))
        first = asyncio.create_task(batcher.submit(np.ones((1, 1), np.float32)))
        await asyncio.sleep(0.05)  # the first request is running, two wait: three in flight
        queued = [asyncio.create_task(batcher.submit(np.ones((1, 1), np.float32))) for _ in "ab"]
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded) as refused:
            await batcher.submit(np.ones((1, 1), np.float32))
        gate.set()
        await asyncio.gather(first, *queued)
        await batcher.close()
        return refused.value

    refused = run(main())
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "1"


def test_request_queued_past_its_deadline_is_not_computed(executor):
    gate = threading.Event()
    model = SlowDouble(gate=gate)

    async def main():
        # The first request is taken at the next turn of the loop; the deadline leaves a busy
        # machine a quarter of a second for that, and the late one waits twice as long.
        batcher = Batcher(model, executor, BatchPolicy(max_batch_size=1, timeout_s=0.25))
        first = asyncio.create_task(batcher.submit(np.ones((1, 1), np.float32)))
        await asyncio.sleep(0.02)
        late = asyncio.create_task(batcher.submit(np.full((1, 1), 7, np.float32)))
        await asyncio.sleep(0.5)
        gate.set()
        await first
        with pytest.raises(DeadlineExceeded):
            await late
        await batcher.close()

    run(main())
    assert model.sizes == [1]


def test_model_error_reaches_every_caller_and_the_worker_survives(executor):
    calls = []

    def flaky(batch):
        calls.append(len(batch))
        if len(calls) == 1:
            raise ValueError("boom")
        return batch

    async def main():
        batcher = Batcher(flaky, executor, BatchPolicy())
        with pytest.raises(ValueError):
            await batcher.submit(np.ones((1, 1), np.float32))
        again = await batcher.submit(np.ones((1, 1), np.float32))
        await batcher.close()
        return again

    np.testing.assert_array_equal(run(main()), np.ones((1, 1)))
