"""Shadow comparison: a candidate version computes a copy of the default version's requests,
after the caller has its answer, and how often and how much the two disagree is counted.

The copies run on a thread of their own, never the inference threads, and at most
`shadow_max_in_flight` at once: a candidate that is slow, hangs or raises can hold up only its
own copies (which are then dropped and counted), never a caller's request. A candidate that
fails `FAILURES_BEFORE_PAUSE` times in a row (errors or timeouts) gets no copies for a pause
that doubles with each further failure, up to `LONGEST_PAUSE_S`: even a thread hand-off per
request is a cost the default version's callers would pay for a broken candidate.
"""

from __future__ import annotations

import asyncio
import logging
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from app.runtime.model import ModelRuntime

logger = logging.getLogger(__name__)

FAILURES_BEFORE_PAUSE = 3
LONGEST_PAUSE_S = 60.0


class ShadowObserver(Protocol):
    def observe_shadow(
        self, model: str, version: int, rows: int, class_changes: int, abs_differences: np.ndarray
    ) -> None: ...

    def count_shadow_failure(self, model: str, version: int, reason: str) -> None: ...


class _Unobserved:
    def observe_shadow(
        self, model: str, version: int, rows: int, class_changes: int, abs_differences: np.ndarray
    ) -> None:
        pass

    def count_shadow_failure(self, model: str, version: int, reason: str) -> None:
        pass


@dataclass
class ShadowTally:
    """What one worker has seen of one candidate version since it started."""

    compared_rows: int = 0
    class_changes: int = 0
    abs_difference_sum: float = 0.0
    max_abs_difference: float = 0.0
    errors: int = 0
    timeouts: int = 0
    dropped: int = 0
    paused: int = 0  # copies not made while the candidate was paused after failing
    failures_in_a_row: int = 0
    paused_until: float = 0.0  # event-loop time


def disagreement(
    primary: np.ndarray, candidate: np.ndarray, classifier: bool
) -> tuple[int, np.ndarray]:
    """(rows whose top class differs, or 0 for a regressor; each row's mean absolute
    difference)."""
    rows = primary.reshape(len(primary), -1)
    other = candidate.reshape(len(candidate), -1)
    changes = int((rows.argmax(axis=1) != other.argmax(axis=1)).sum()) if classifier else 0
    return changes, np.abs(rows - other).mean(axis=1)


class Shadow:
    def __init__(
        self, max_in_flight: int, timeout_s: float, observer: ShadowObserver | None = None
    ) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="shadow")
        self._max_in_flight = max_in_flight
        self._timeout_s = timeout_s
        self._observer = observer or _Unobserved()
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        # Candidates whose failure was logged: one line each, the rest only counted.
        self._logged_failures: set[tuple[str, int]] = set()
        self._tallies: dict[tuple[str, int], ShadowTally] = {}

    @property
    def in_flight(self) -> int:
        """Copies offered and not yet returned (a hung one counts until it returns)."""
        return self._in_flight

    async def idle(self) -> None:
        """Until no copy is in flight."""
        await self._idle.wait()

    def tally(self, model: str, version: int) -> ShadowTally:
        return self._tallies.setdefault((model, version), ShadowTally())

    def offer(
        self,
        candidate: ModelRuntime,
        fraction: float,
        batch: np.ndarray,
        outputs: np.ndarray,
    ) -> None:
        """Copy a request that the default version has answered with `outputs` to `candidate`,
        for a sampled `fraction` of requests; returns at once."""
        if fraction < 1 and random.random() >= fraction:
            return
        key = (candidate.name, candidate.version)
        tally = self.tally(*key)
        loop = asyncio.get_running_loop()
        if tally.paused_until > loop.time():
            tally.paused += 1
            self._observer.count_shadow_failure(*key, "paused")
            return
        if self._in_flight >= self._max_in_flight:
            self.drop(*key)
            return
        self._in_flight += 1
        self._idle.clear()
        future = loop.run_in_executor(self._executor, candidate.predict, batch)
        timer = loop.call_later(self._timeout_s, self._timed_out, future, key)
        classifier = candidate.loaded_card.output.kind == "probabilities"
        future.add_done_callback(lambda done: self._finish(done, timer, key, outputs, classifier))

    def drop(self, model: str, version: int) -> None:
        """Count a copy not made: too many in flight, or the candidate is not there."""
        self.tally(model, version).dropped += 1
        self._observer.count_shadow_failure(model, version, "dropped")

    def _timed_out(self, future: asyncio.Future[np.ndarray], key: tuple[str, int]) -> None:
        if not future.done():
            self.tally(*key).timeouts += 1
            self._observer.count_shadow_failure(*key, "timeout")
            self._failed(key)

    def _failed(self, key: tuple[str, int]) -> None:
        tally = self.tally(*key)
        tally.failures_in_a_row += 1
        beyond = tally.failures_in_a_row - FAILURES_BEFORE_PAUSE
        if beyond >= 0:
            pause = min(LONGEST_PAUSE_S, 2.0**beyond)
            tally.paused_until = asyncio.get_running_loop().time() + pause

    def _finish(
        self,
        future: asyncio.Future[np.ndarray],
        timer: asyncio.TimerHandle,
        key: tuple[str, int],
        outputs: np.ndarray,
        classifier: bool,
    ) -> None:
        # The place is given back only when the candidate's call has returned: a call that
        # hangs keeps it, so later copies are dropped instead of queueing behind it.
        self._in_flight -= 1
        if not self._in_flight:
            self._idle.set()
        late = timer.when() <= asyncio.get_running_loop().time()
        timer.cancel()
        if future.cancelled() or late:
            return
        tally = self.tally(*key)
        error = future.exception()
        if error is not None:
            tally.errors += 1
            self._observer.count_shadow_failure(*key, "error")
            self._failed(key)
            if key not in self._logged_failures:  # a broken candidate fails every copy
                self._logged_failures.add(key)
                logger.warning(
                    "shadow call failed; further failures are only counted",
                    extra={"model": key[0], "version": key[1], "error": repr(error)},
                )
            return
        candidate = future.result()
        if candidate.shape != outputs.shape:
            tally.errors += 1
            self._observer.count_shadow_failure(*key, "error")
            self._failed(key)
            return
        tally.failures_in_a_row = 0
        # A raw-tensor request may hold NaN or infinity (Open Inference v2 takes them as Triton
        # does); such rows compare as nothing, rather than making every later mean NaN.
        finite = np.isfinite(outputs).reshape(len(outputs), -1).all(axis=1) & np.isfinite(
            candidate
        ).reshape(len(candidate), -1).all(axis=1)
        if not finite.all():
            outputs, candidate = outputs[finite], candidate[finite]
            if not len(outputs):
                return
        changes, differences = disagreement(outputs, candidate, classifier)
        tally.compared_rows += len(differences)
        tally.class_changes += changes
        tally.abs_difference_sum += float(differences.sum())
        tally.max_abs_difference = max(tally.max_abs_difference, float(differences.max()))
        self._observer.observe_shadow(*key, len(differences), changes, differences)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
