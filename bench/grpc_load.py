"""The gRPC load generator: `concurrency` asyncio tasks on one grpc.aio channel (one HTTP/2
connection, as a client library holds it), each resending one request for a fixed time.

The request is serialized once and sent as bytes, and answers are not parsed (only their status
is read), so the client spends as little of the shared cores as it can; it is still Python,
where the REST rows' wrk is C, so the gRPC rows carry the heavier client.
"""

from __future__ import annotations

import asyncio
import time

import grpc

from bench.stats import Sample, summarize


async def measure(
    target: str, method: str, request: bytes, *, concurrency: int, seconds: float
) -> dict:
    """One timed run after a short unrecorded warm-up, as a table row (bench/stats.py)."""
    options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        call = channel.unary_unary(method)  # bytes in, bytes out
        await _drive(call, request, concurrency, 2.0)
        samples, elapsed = await _drive(call, request, concurrency, seconds)
    return summarize(samples, elapsed)


async def _drive(call, request: bytes, concurrency: int, seconds: float):
    samples: list[Sample] = []
    start = time.perf_counter()
    deadline = start + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            try:
                await call(request, timeout=30)
            except grpc.aio.AioRpcError as error:
                samples.append(Sample(time.perf_counter() - began, error=error.code().name))
            else:
                samples.append(Sample(time.perf_counter() - began, status=200))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return samples, time.perf_counter() - start
