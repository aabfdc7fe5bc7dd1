"""Two bare ASGI apps that answer every request with `{}` after a fixed amount of work, for
`python -m bench.tails`: servers with no variance of their own, so their p99/p50 under load is
what this machine's cores give to that kind of work.

- `constant_cpu`: `SPIN_S` of the thread's own CPU time in a loop (`time.thread_time`, so time
  the process spends waiting for a core does not count as work done).
- `python_objects`: what request handling in Python is made of, a fixed amount of it: the body
  validated by pydantic, then `OBJECTS` small dicts built and a few of them JSON-encoded.

No framework, no model, no logging; lifespan is answered so that uvicorn logs its start-up.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict

SPIN_S = 200e-6
OBJECTS = 300

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"2")]


class IrisRow(BaseModel):
    """The iris typed body's four features (any other field is ignored)."""

    model_config = ConfigDict(extra="ignore")
    sepal_length: float = 0.0
    sepal_width: float = 0.0
    petal_length: float = 0.0
    petal_width: float = 0.0


def spin(body: bytes) -> None:
    until = time.thread_time() + SPIN_S
    while time.thread_time() < until:
        pass


def build_objects(body: bytes) -> None:
    row = IrisRow.model_validate_json(body or b"{}")
    objects = [{"index": i, "name": str(i), "pair": [i, row.sepal_length]} for i in range(OBJECTS)]
    json.dumps(objects[:20])


def control(work: Callable[[bytes], None]) -> Callable[[Message, Receive, Send], Awaitable[None]]:
    async def app(scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        work(body)
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


constant_cpu = control(spin)
python_objects = control(build_objects)
