"""The dynamic batcher with a stand-in model: batches form, order holds, limits refuse."""

import asyncio
import threading
import time
from concurrent.futures import Executor, Future, ThreadPoolExecutor

import numpy as np
import pytest
from pydantic import ValidationError

from app.core.errors import DeadlineExceeded, ModelNotReady
from app.core.settings import BatchPolicy, Settings
from app.runtime.batching import Batcher


class SlowDouble:
    """Doubles its input; records the batch sizes it was called with. With a gate, each call
    sets `started` and then waits for the gate."""

    def __init__(self, seconds: float = 0.01, gate: threading.Event | None = None):
        self.seconds = seconds
        self.gate = gate
        self.started = threading.Event()
        self.sizes: list[int] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.started.set()
        if self.gate is not None:
            self.gate.wait(30)
        time.sleep(self.seconds)
        self.sizes.append(len(batch))
        return batch * 2


class ManualClock:
    """The batcher's clock, moved only by the test: waiting rules hold however slow the
    machine is."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class InlineExecutor(Executor):
    """Runs each call at once in the calling thread, so the whole batcher is one thread and
    every batch boundary is decided by the event loop's order alone."""

    def submit(self, function, /, *args, **kwargs) -> Future:
        future: Future = Future()
        future.set_result(function(*args, **kwargs))
        return future


async def until(condition, turns: int = 10_000) -> None:
    """Let the event loop turn until `condition()` holds (a handshake, not a timed guess)."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


async def started(model: SlowDouble) -> None:
    """Wait until a model call is under way on the executor's thread."""
    assert await asyncio.to_thread(model.started.wait, 30)


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
        return inputs, outputs, batcher.statistics

    inputs, outputs, statistics = run(main())
    for x, y in zip(inputs, outputs, strict=True):
        np.testing.assert_array_equal(y, x * 2)
    assert max(model.sizes) > 1
    assert max(model.sizes) <= 16
    assert sum(model.sizes) == 40
    # Triton's statistics: requests, rows and model calls as they happened.
    assert (statistics.success.count, statistics.fail.count) == (40, 0)
    assert (statistics.inference_count, statistics.execution_count) == (40, len(model.sizes))
    for part in (statistics.queue, statistics.compute_infer, statistics.compute_output):
        assert part.count == 40
    assert statistics.compute_infer.ns > 0
    sizes = {size: batch.compute_infer.count for size, batch in statistics.batches.items()}
    assert sizes == {size: model.sizes.count(size) for size in set(model.sizes)}


def test_lone_request_runs_at_once_without_waiting(executor):
    model = SlowDouble(seconds=0)

    async def main():
        batcher = Batcher(model, executor, BatchPolicy(max_wait_ms=0))
        result = await batcher.submit(np.ones((2, 2), np.float32))
        await batcher.close()
        return result

    np.testing.assert_array_equal(run(main()), np.full((2, 2), 2.0))
    assert model.sizes == [2]


async def submit_after_turns(batcher: Batcher, turns: int) -> np.ndarray:
    for _ in range(turns):
        await asyncio.sleep(0)
    return await batcher.submit(np.ones((1, 1), np.float32))


def sizes_for_arrivals(policy: BatchPolicy, turns_apart: list[int], executor) -> list[int]:
    """The batch sizes when one request is submitted after each of `turns_apart` loop turns."""
    model = SlowDouble(seconds=0)

    async def main():
        batcher = Batcher(model, executor, policy)
        # A minute-long max_wait_ms: only the quiet turns can close these batches in time.
        await asyncio.wait_for(
            asyncio.gather(*(submit_after_turns(batcher, turns) for turns in turns_apart)), 60
        )
        await batcher.close()

    run(main())
    return model.sizes


def test_requests_arriving_within_the_quiet_turns_join_one_batch(executor):
    policy = BatchPolicy(max_wait_ms=60_000, quiet_turns=4)
    assert sizes_for_arrivals(policy, [0, 2, 4, 5], executor) == [4]


def test_a_batch_closes_after_its_quiet_turns_not_after_max_wait(executor):
    policy = BatchPolicy(max_wait_ms=60_000, quiet_turns=4)
    assert sizes_for_arrivals(policy, [0], executor) == [1]
    # Ten turns of silence: the first batch has closed and run by the time the second comes.
    assert sizes_for_arrivals(policy, [0, 10], executor) == [1, 1]


def test_with_max_wait_zero_batches_launch_at_once(executor):
    policy = BatchPolicy(max_wait_ms=0, quiet_turns=4)
    assert sizes_for_arrivals(policy, [0, 2], executor) == [1, 1]


def test_without_quiet_turns_a_batch_waits_max_wait_ms(executor):
    model = SlowDouble(seconds=0)
    clock = ManualClock()  # moved only once both requests are in

    async def main():
        policy = BatchPolicy(max_wait_ms=2_000, quiet_turns=0)
        batcher = Batcher(model, executor, policy, clock=clock)
        first = asyncio.create_task(batcher.submit(np.ones((1, 1), np.float32)))
        await until(lambda: batcher._held)  # the batch has its first request and gathers
        for _ in range(100):  # a hundred quiet turns: no batch closes on them
            await asyncio.sleep(0)
        second = asyncio.create_task(batcher.submit(np.ones((1, 1), np.float32)))
        for _ in range(100):
            await asyncio.sleep(0)
        assert model.sizes == []  # still gathering: max_wait_ms has not passed
        clock.advance(2.0)
        await asyncio.wait_for(asyncio.gather(first, second), 30)
        await batcher.close()

    run(main())
    assert model.sizes == [2]


def test_max_wait_ms_closes_a_batch_that_keeps_growing():
    model = SlowDouble(seconds=0)
    clock = ManualClock()
    step_ms, max_wait_ms, arrivals = 1, 20, 300

    async def main():
        policy = BatchPolicy(max_wait_ms=max_wait_ms, max_batch_size=10**6, queue_size=10**6)
        batcher = Batcher(model, InlineExecutor(), policy, clock=clock)
        submitted = []
        for _ in range(arrivals):  # a new request every turn, 1 ms apart: never a quiet turn
            submitted.append(asyncio.create_task(batcher.submit(np.ones((1, 1), np.float32))))
            await asyncio.sleep(0)
            clock.advance(step_ms / 1000)
        await asyncio.gather(*submitted)
        await batcher.close()

    run(main())
    assert sum(model.sizes) == arrivals
    # A batch closes once it has gathered for max_wait_ms: 20 ms of arrivals, one a millisecond,
    # plus the few that queue in the turns between one batch closing and the next taking its
    # first request, so about 20 a batch, and about 15 batches in 300 ms.
    most = max_wait_ms // step_ms + 3
    assert all(size <= most for size in model.sizes), model.sizes
    assert len(model.sizes) >= arrivals // most
    assert max(model.sizes) >= max_wait_ms // step_ms - 2  # the batches did grow


def test_request_queued_past_its_deadline_is_not_computed(executor):
    gate = threading.Event()
    model = SlowDouble(gate=gate)
    clock = ManualClock()

    async def main():
        policy = BatchPolicy(max_batch_size=1, timeout_s=0.25)
        batcher = Batcher(model, executor, policy, clock=clock)
        first = asyncio.create_task(batcher.submit(np.ones((1, 1), np.float32)))
        await started(model)  # the first request is computing, held at the gate
        late = asyncio.create_task(batcher.submit(np.full((1, 1), 7, np.float32)))
        await until(lambda: batcher.depth == 1)
        clock.advance(0.5)  # the late request has waited twice its deadline
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
        with pytest.raises(ValueError, match="boom"):
            await batcher.submit(np.ones((1, 1), np.float32))
        again = await batcher.submit(np.ones((1, 1), np.float32))
        await batcher.close()
        return again, batcher.statistics

    again, statistics = run(main())
    np.testing.assert_array_equal(again, np.ones((1, 1)))
    assert (statistics.success.count, statistics.fail.count) == (1, 1)
    assert statistics.execution_count == 1  # the call that raised computed nothing


def outcome_of_ending_while_gathering(end, executor):
    """Submit one request, let its batch gather (without quiet turns, on a clock that does not
    move: off the queue until the clock passes max_wait_ms), then `end(batcher, clock)`; the
    request's result, or its exception."""
    clock = ManualClock()

    async def main():
        policy = BatchPolicy(max_wait_ms=300, quiet_turns=0)
        batcher = Batcher(SlowDouble(seconds=0), executor, policy, clock=clock)
        request = asyncio.create_task(batcher.submit(np.ones((1, 1), np.float32)))
        await until(lambda: batcher._held)
        await end(batcher, clock)
        return (await asyncio.wait_for(asyncio.gather(request, return_exceptions=True), 30))[0]

    return run(main())


def test_a_drain_waits_for_the_batch_being_gathered(executor):
    async def drain_while_gathering(batcher, clock):
        drain = asyncio.create_task(batcher.drain_and_close(timeout_s=10))
        await asyncio.sleep(0.05)  # the drain polls; the batch is still gathering
        assert not drain.done()
        clock.advance(0.3)  # max_wait_ms passes: the batch runs, and then the drain ends
        await asyncio.wait_for(drain, 30)

    outcome = outcome_of_ending_while_gathering(drain_while_gathering, executor)
    np.testing.assert_array_equal(outcome, np.full((1, 1), 2.0))


def test_closing_answers_a_request_while_its_batch_gathers(executor):
    outcome = outcome_of_ending_while_gathering(lambda batcher, _: batcher.close(), executor)
    assert isinstance(outcome, ModelNotReady)


def test_closing_answers_every_request_it_still_holds(executor):
    gate = threading.Event()
    model = SlowDouble(seconds=0, gate=gate)

    async def main():
        batcher = Batcher(model, executor, BatchPolicy(max_batch_size=1))
        requests = [
            asyncio.create_task(batcher.submit(np.ones((1, 1), np.float32))) for _ in range(3)
        ]
        await started(model)  # one is computing (held at the gate)
        await until(lambda: batcher.depth == 2)  # and two are queued
        await batcher.close()
        gate.set()
        return await asyncio.wait_for(asyncio.gather(*requests, return_exceptions=True), 30)

    outcomes = run(main())
    assert [type(outcome) for outcome in outcomes] == [ModelNotReady] * 3
    assert outcomes[0].status_code == 503


def test_per_model_batching_overrides_replace_only_their_keys():
    settings = Settings(
        batch_max_wait_ms=1.5, batching={"catdog": {"max_batch_size": 16, "quiet_turns": 0}}
    )
    assert settings.batch_policy("catdog") == BatchPolicy(
        max_batch_size=16, max_wait_ms=1.5, quiet_turns=0
    )
    assert settings.batch_policy("mnist") == BatchPolicy(max_wait_ms=1.5)


@pytest.mark.parametrize(
    "override",
    [
        {"max_wait": 5},
        {"max_batch_size": 0},
        {"max_batch_size": 16.5},
        {"quiet_turns": -1},
        {"timeout_s": "soon"},
        {"max_wait_ms": float("inf")},
        {"max_wait_ms": 100, "timeout_s": 0.05},  # every batch's first request would time out
    ],
)
def test_a_mistyped_batching_override_is_refused(override):
    with pytest.raises(ValidationError):
        Settings(batching={"catdog": override})


@pytest.mark.parametrize(
    "settings", [{"batch_max_wait_ms": float("inf")}, {"batch_max_wait_ms": 5_000}]
)
def test_a_max_wait_that_reaches_the_request_timeout_is_refused(settings):
    with pytest.raises(ValidationError, match=r"max_wait_ms|finite"):
        Settings(**settings)


def test_a_batch_that_cannot_be_assembled_fails_its_requests_and_the_worker_lives_on(executor):
    model = SlowDouble(seconds=0)

    async def main():
        batcher = Batcher(model, executor, BatchPolicy())
        # Rows of different widths cannot be concatenated into one batch.
        mismatched = await asyncio.wait_for(
            asyncio.gather(
                batcher.submit(np.ones((1, 2), np.float32)),
                batcher.submit(np.ones((1, 3), np.float32)),
                return_exceptions=True,
            ),
            60,  # a bound on a hang, as every wait here: never a measure of speed
        )
        again = await asyncio.wait_for(batcher.submit(np.ones((1, 2), np.float32)), 60)
        await batcher.close()
        return mismatched, again

    mismatched, again = run(main())
    assert all(isinstance(outcome, ValueError) for outcome in mismatched)
    np.testing.assert_array_equal(again, np.full((1, 2), 2.0))
