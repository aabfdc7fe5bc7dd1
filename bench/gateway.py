"""`python -m bench.gateway [--root DIR]`: the Gateway middleware's own time per request.

An iris prediction's request (JSON body, Content-Length) through `Gateway` around an app that
reads the body and answers at once, in-process, no sockets: what the request id, the keys,
the body read and its deadline, admission, the limits and the log line cost together. `--root`
imports `app` from another checkout (a worktree of an older commit) to compare with it; run
the two one after the other, a few times, as the machine's speed drifts. Prints the best of
five runs of 20,000 requests, in microseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import logging
import sys
import time
from pathlib import Path

BODY = b'{"sepal_length": 5.8, "sepal_width": 3.0, "petal_length": 4.4, "petal_width": 1.4}'
HEADERS = [
    (b"host", b"127.0.0.1"),
    (b"content-type", b"application/json"),
    (b"content-length", str(len(BODY)).encode()),
]


async def _answer(scope, receive, send) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def gateway():
    """A Gateway as create_app builds one, with no keys, around `_answer`."""
    module = importlib.import_module
    limits_class = module("app.http.middleware.limits").BodyLimits
    try:
        limits = limits_class(16 * 1024 * 1024, 32, 5.0)
    except TypeError:  # a checkout from before the body deadline
        limits = limits_class(16 * 1024 * 1024, 32)
    limit_class = module("app.dataplane.admission").InFlightLimit
    if "registry" in inspect.signature(limit_class).parameters:
        admission = limit_class(256, module("app.runtime.registry").ModelRegistry())
    else:  # a checkout from before refusals were counted per version
        admission = limit_class(256)
    return module("app.http.middleware.gateway").Gateway(
        _answer,
        keys=module("app.http.middleware.security").KeyCheck([], []),
        admission=admission,
        limits=limits,
    )


async def per_request_us(app, count: int, runs: int) -> list[float]:
    async def one() -> None:
        sent = False

        async def receive():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": BODY, "more_body": False}
            await asyncio.Event().wait()  # a client that stays connected

        async def send(message) -> None:
            pass

        scope = {
            "type": "http",
            "method": "POST",
            "path": "/api/models/iris/predict",
            "query_string": b"",
            "headers": list(HEADERS),
        }
        await app(scope, receive, send)

    for _ in range(count // 10):  # warm up
        await one()
    found = []
    for _ in range(runs):
        began = time.perf_counter()
        for _ in range(count):
            await one()
        found.append((time.perf_counter() - began) / count * 1e6)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway", description=__doc__)
    parser.add_argument("--root", type=Path, help="a checkout whose `app` to measure")
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args(argv)
    if args.root is not None:
        sys.path.insert(0, str(args.root.resolve()))
        for name in [name for name in sys.modules if name == "app" or name.startswith("app.")]:
            del sys.modules[name]
    logging.disable(logging.CRITICAL)  # the per-request log line's formatting, not its output
    found = asyncio.run(per_request_us(gateway(), args.requests, runs=5))
    where = args.root or Path(__file__).resolve().parent.parent
    sys.stdout.write(
        f"{where}: best {min(found):.2f} us a request (runs: "
        + ", ".join(f"{value:.2f}" for value in found)
        + ")\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
