"""Dynamic batching: concurrent predictions for one model version become one signature call.

Each model version has one `Batcher`: a queue (bounded before it, by the model's admission
places) and one worker task. The worker takes the oldest request and every request already
waiting (up to `max_batch_size` rows); then lets the event loop run until `quiet_turns` turns
in a row bring no new request, or `max_wait_ms` has passed; runs the batch on the inference
executor; and hands each request its rows back.

The quiet turns are what make batches on a busy server: when a batch finishes, its callers'
next requests are already in the socket buffers or being parsed, and they reach the queue within
a turn or two of the loop. Launching at once would split them into many small model calls,
each paying TensorFlow's fixed cost per call; waiting for them costs a lone request only those
few turns (microseconds), since nothing else is on its way. While a batch runs, the next one
fills up, so batches also grow with the load.

With tracing on, each traced request gets a `queue` span (its wait for its batch, with the
batch's size), and each batch with a traced request one `batch` span, a child of the first
such request's span and linked to every one's, around a `model call` span.

The signatures are concrete functions with a `None` batch dimension, so no batch size makes
TensorFlow retrace: no padding or bucketing is needed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, cast

import numpy as np

from app.core.errors import DeadlineExceeded, ModelNotReady
from app.core.settings import BatchPolicy
from app.runtime.statistics import InferenceStatistics

logger = logging.getLogger(__name__)


class Rows(Protocol):
    """What a model call answers for a batch: an array, or anything sliced by rows as one."""

    def __getitem__(self, rows: slice, /) -> Any: ...


RowsT = TypeVar("RowsT", bound=Rows)


class BatchObserver(Protocol):
    """Where batch metrics go (app.http.observability in the service; nothing in unit tests)."""

    def observe_inference(
        self, model: str, version: int, seconds: float, batch_size: int
    ) -> None: ...
    def set_queue_depth(self, model: str, version: int, depth: int) -> None: ...
    def count_rejected(self, model: str, version: int, reason: str) -> None: ...


class _Unobserved:
    def observe_inference(self, model: str, version: int, seconds: float, batch_size: int) -> None:
        pass

    def set_queue_depth(self, model: str, version: int, depth: int) -> None:
        pass

    def count_rejected(self, model: str, version: int, reason: str) -> None:
        pass


@dataclass
class _Request(Generic[RowsT]):
    batch: np.ndarray
    future: asyncio.Future[RowsT]
    enqueued: float
    arrived_ns: int  # perf_counter_ns, for the statistics



class Batcher(Generic[RowsT]):
    def __init__(
        self,
        predict: Callable[[np.ndarray], RowsT],
        executor: Executor,
        policy: BatchPolicy,
        observer: BatchObserver | None = None,
        model: tuple[str, int] = ("", 0),
        clock: Callable[[], float] = time.monotonic,
        statistics: InferenceStatistics | None = None,
    ):
        self._predict = predict
        self._clock = clock  # seconds; the tests' own clock makes the waiting rules exact
        self._executor = executor
        self.policy = policy
        self._observer = observer or _Unobserved()
        self._model = model  # (name, version): the metrics' labels
        self.statistics = statistics or InferenceStatistics()
        self._queue: asyncio.Queue[_Request[RowsT]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._carry: _Request[RowsT] | None = None
        self._held: list[
            _Request[RowsT]
        ] = []  # the batch being gathered or computed, off the queue

    @property
    def depth(self) -> int:
        return (self._queue.qsize() if self._queue else 0) + (self._carry is not None)

    async def submit(self, batch: np.ndarray) -> RowsT:
        """The model's output rows for `batch`, computed in a shared batch."""
        queue = self._queue
        if self._worker is None or queue is None:
            # Bounded before it: every request holds one of its model's admission places
            # (app/dataplane/admission.py, the one owner of GLASSBOX_QUEUE_SIZE).
            queue = self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._run(queue), name="batcher")
        arrived = time.perf_counter_ns()
        request: _Request[RowsT] = _Request(
            batch,
            asyncio.get_running_loop().create_future(),
            self._clock(),
            arrived,
        )
        try:
            queue.put_nowait(request)
            self._observer.set_queue_depth(*self._model, queue.qsize())
            outputs = await request.future
        except Exception:
            self.statistics.failed(time.perf_counter_ns() - arrived)
            raise
        self.statistics.answered(time.perf_counter_ns() - arrived)
        return outputs

    async def drain_and_close(self, timeout_s: float = 30.0) -> None:
        """Finish what is queued and running, then stop (a removed model version)."""
        deadline = self._clock() + timeout_s
        # Polled: idle is reached from several places (a batch answered, the queue emptied by a
        # deadline), and the deadline runs on the batcher's own clock.
        while (self.depth or self._held) and self._clock() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        await self.close()

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
        # Whatever was still waiting or being gathered is answered, not left to hang.
        leftovers = [*self._held, *([self._carry] if self._carry else [])]
        while self._queue is not None and not self._queue.empty():
            leftovers.append(self._queue.get_nowait())
        self._held, self._carry = [], None
        for request in leftovers:
            if not request.future.done():
                request.future.set_exception(
                    ModelNotReady("The model version stopped serving; retry the request.")
                )

    async def _run(self, queue: asyncio.Queue[_Request[RowsT]]) -> None:
        while True:
            requests = await self._gather(queue)
            try:
                await self._compute(requests, queue)
            except Exception as error:  # the callers get the error, the worker lives on
                for request in requests:
                    if not request.future.done():
                        request.future.set_exception(error)
            self._held = []

    async def _compute(
        self, requests: list[_Request[RowsT]], queue: asyncio.Queue[_Request[RowsT]]
    ) -> None:
        self._observer.set_queue_depth(*self._model, queue.qsize())
        requests = self._drop_expired(requests)
        if not requests:
            return
        assembling = time.perf_counter_ns()
        for request in requests:
            self.statistics.queue.add(assembling - request.arrived_ns)
        batch = (
            requests[0].batch
            if len(requests) == 1
            else np.concatenate([request.batch for request in requests])
        )
        started = time.perf_counter_ns()
        outputs = await asyncio.get_running_loop().run_in_executor(
            self._executor, self._predict, batch
        )
        computed = time.perf_counter_ns()
        self._answer(requests, outputs)
        self._observer.observe_inference(*self._model, (computed - started) / 1e9, len(batch))
        self.statistics.executed(
            len(requests),
            len(batch),
            started - assembling,
            computed - started,
            time.perf_counter_ns() - computed,
        )

    @staticmethod
    def _answer(requests: list[_Request[RowsT]], outputs: RowsT) -> None:
        offset = 0
        for request in requests:
            rows = len(request.batch)
            if not request.future.done():  # the caller may have gone away
                request.future.set_result(cast(RowsT, outputs[offset : offset + rows]))
            offset += rows


    async def _gather(self, queue: asyncio.Queue[_Request[RowsT]]) -> list[_Request[RowsT]]:
        first = self._carry or await queue.get()
        self._carry = None
        self._held = [first]  # from here until answered: a drain waits for them
        await self._fill(self._held, queue)
        return self._held

    async def _fill(
        self, requests: list[_Request[RowsT]], queue: asyncio.Queue[_Request[RowsT]]
    ) -> None:
        """Add queued requests to a batch that holds its first one, as the policy says."""
        rows = len(requests[0].batch)
        deadline = self._clock() + self.policy.max_wait_ms / 1000
        quiet = 0
        while rows < self.policy.max_batch_size:
            if not queue.empty():
                request = queue.get_nowait()
                if rows + len(request.batch) > self.policy.max_batch_size:
                    self._carry = request  # too big to join: it opens the next batch
                    break
                requests.append(request)
                rows += len(request.batch)
                quiet = 0
                continue
            remaining = deadline - self._clock()
            if remaining <= 0 or (self.policy.quiet_turns and quiet >= self.policy.quiet_turns):
                break
            # One turn of the loop: the requests it is reading and parsing move on. Polling
            # rather than wait_for(get()), which can drop an item when it times out.
            await asyncio.sleep(0 if self.policy.quiet_turns else min(remaining, 0.0002))
            quiet += 1

    def _drop_expired(self, requests: list[_Request[RowsT]]) -> list[_Request[RowsT]]:
        now = self._clock()
        live = []
        for request in requests:
            if request.future.done():
                continue
            if now - request.enqueued > self.policy.timeout_s:
                self._observer.count_rejected(*self._model, "deadline")
                request.future.set_exception(
                    DeadlineExceeded(
                        f"The request waited over {self.policy.timeout_s} s in the queue and "
                        "was not computed. Retry later."
                    )
                )
                continue
            live.append(request)
        return live
