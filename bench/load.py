"""The load generator: a fixed number of requests from `concurrency` asyncio tasks.

One `httpx.AsyncClient` per run with a keep-alive pool as large as the concurrency, reused for
the warm-up and the measured requests; each task builds its request once and resends it, so the
client spends as little CPU as it can (client and servers share the same cores).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx

from bench.scenarios import Payload
from bench.stats import Sample

WARMUP_MAX_SECONDS = 10.0  # the warm-up stops sending after this, whatever its count


@dataclass
class Run:
    samples: list[Sample]
    elapsed_s: float
    unfinished: int  # in flight when the wall-clock cap cancelled them
    capped: bool  # the cap stopped the run before every request was sent


async def drive(
    client: httpx.AsyncClient,
    payload: Payload,
    *,
    requests: int,
    concurrency: int,
    max_seconds: float,
) -> Run:
    """Send `requests` requests from `concurrency` tasks; stop sending at `max_seconds`.

    Requests in flight at the cap get the client's timeout to finish and are then cancelled,
    so a run lasts at most max_seconds + timeout + 1 s.
    """
    samples: list[Sample] = []
    sent = 0
    capped = False
    start = time.perf_counter()
    deadline = start + max_seconds

    async def worker() -> None:
        nonlocal sent, capped
        request = client.build_request(
            "POST", payload.path, content=payload.body, headers=payload.headers
        )
        while sent < requests:
            if time.perf_counter() >= deadline:
                capped = True
                return
            sent += 1
            began = time.perf_counter()
            try:
                response = await client.send(request)
            except httpx.HTTPError as error:  # timeouts, refused or dropped connections
                samples.append(Sample(time.perf_counter() - began, error=type(error).__name__))
            else:
                samples.append(Sample(time.perf_counter() - began, status=response.status_code))

    tasks = [asyncio.create_task(worker()) for _ in range(max(1, min(concurrency, requests)))]
    timeout = client.timeout.read or 0.0
    _, pending = await asyncio.wait(tasks, timeout=max_seconds + timeout + 1)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    elapsed = time.perf_counter() - start
    return Run(samples, elapsed, unfinished=sent - len(samples), capped=capped or bool(pending))


async def measure(
    base_url: str,
    payload: Payload,
    *,
    requests: int,
    concurrency: int,
    warmup: int,
    max_seconds: float,
    timeout: float,  # noqa: ASYNC109 (each request's httpx timeout, not this run's deadline)
) -> Run:
    """Warm up (not recorded), then one measured run, on the same client and connections."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout) as client:
        if warmup:
            await drive(
                client,
                payload,
                requests=warmup,
                concurrency=min(concurrency, warmup),
                max_seconds=min(max_seconds, WARMUP_MAX_SECONDS),
            )
        return await drive(
            client, payload, requests=requests, concurrency=concurrency, max_seconds=max_seconds
        )
