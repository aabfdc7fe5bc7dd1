"""The inference threads: one pool for model calls, loads, traces and explanations, so that
GLASSBOX_INFERENCE_THREADS bounds all of TensorFlow's work together."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar, TypeVarTuple

_Args = TypeVarTuple("_Args")
_T = TypeVar("_T")


class InferenceThreads:
    def __init__(self, count: int):
        self.executor = ThreadPoolExecutor(count, thread_name_prefix="inference")

    async def run(self, function: Callable[[*_Args], _T], *args: *_Args) -> _T:
        """`function(*args)` on one of the threads, awaited."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    def shutdown(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
