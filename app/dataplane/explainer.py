"""Explanations' way in: each row's explanation on the inference threads, with places of its
own (GLASSBOX_EXPLAIN_CONCURRENCY running, GLASSBOX_EXPLAIN_QUEUE_SIZE waiting or running) so a
burst of explanations waits for its own turn, not the predictions'; a caller that goes away
stops the work at its next chunk of gradients."""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from app.core.errors import DeadlineExceeded, Overloaded
from app.core.settings import Settings
from app.dataplane import explain
from app.dataplane.schemas import Explanation
from app.dataplane.threads import InferenceThreads
from app.runtime.model import ModelRuntime


class Explainer:
    def __init__(self, settings: Settings, threads: InferenceThreads):
        self.settings = settings
        self.threads = threads
        self._slots = asyncio.Semaphore(settings.explain_concurrency)
        self._explaining = 0

    async def explain(
        self, runtime: ModelRuntime, rows: np.ndarray, options: explain.ExplainOptions
    ) -> list[Explanation]:
        """An explanation of each input row, at most GLASSBOX_EXPLAIN_CONCURRENCY at once and
        GLASSBOX_EXPLAIN_QUEUE_SIZE waiting or running (a request takes a place per row, all or
        none). One that waits longer than GLASSBOX_EXPLAIN_TIMEOUT_S for a turn is answered
        504, not computed."""
        explain.check_options(runtime.loaded_card, options, self.settings)
        limit = self.settings.explain_queue_size
        if self._explaining + len(rows) > limit:
            raise Overloaded(
                f"{limit} explanations at most wait or run at once; {self._explaining} are, and "
                f"this request has {len(rows)}. Retry shortly."
            )
        self._explaining += len(rows)
        waiting = len(rows)  # this request's places not yet handed to an inference thread
        try:
            answers = []
            for row in rows:
                try:
                    await asyncio.wait_for(self._slots.acquire(), self.settings.explain_timeout_s)
                except TimeoutError:
                    raise DeadlineExceeded(
                        f"The explanation waited {self.settings.explain_timeout_s} s for its "
                        "turn (GLASSBOX_EXPLAIN_TIMEOUT_S). Retry shortly."
                    ) from None
                waiting -= 1
                gone = threading.Event()
                work = asyncio.get_running_loop().run_in_executor(
                    self.threads.executor, explain.explanation, runtime, row, options, gone.is_set
                )
                # The slot and the place are given back when the thread is done, not when the
                # caller stops waiting: a caller that goes away (a closed connection, a
                # cancelled call) leaves the rows it has not started, and the one running
                # stops at its next chunk of gradients, counted until it has.
                work.add_done_callback(self._ended)
                try:
                    answers.append(await asyncio.shield(work))
                except asyncio.CancelledError:
                    gone.set()
                    raise
            return answers
        finally:
            self._explaining -= waiting

    def _ended(self, work: asyncio.Future[Explanation]) -> None:
        self._slots.release()
        self._explaining -= 1
        if not work.cancelled():
            work.exception()  # one stopped for a caller gone (ClientGone) is no one's to raise
