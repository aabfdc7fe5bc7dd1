"""Dependencies shared by the routers, written once as `Annotated` aliases."""

import asyncio
from collections.abc import Coroutine
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query, Request

from app.core.errors import ClientGone
from app.dataplane.service import InferenceService
from app.runtime.model import ModelRuntime

_T = TypeVar("_T")


async def get_service(request: Request) -> InferenceService:
    service: InferenceService = request.app.state.service
    return service


ServiceDep = Annotated[InferenceService, Depends(get_service)]
VersionQuery = Annotated[
    int | None,
    Query(
        ge=1,
        description="Model version to use. Omitted (with no label): the model's canary split "
        "if it has one, else its `stable` label's version, else the newest ready version.",
    ),
]
LabelQuery = Annotated[
    str | None,
    Query(
        description="A version label of the model's rollout (e.g. stable, canary) instead of "
        "a version number; see GET /api/models/{name}/rollout."
    ),
]

# The scope key under which a matched request carries the runtime that will answer it (or the
# error that answers instead), so the body is validated and served by the same version.
SERVING = "glassbox.serving"


def serving_runtime(request: Request) -> ModelRuntime:
    """The runtime chosen when the request matched, whose card validated its body."""
    runtime: ModelRuntime = request.scope[SERVING]
    return runtime


async def while_connected(request: Request, work: Coroutine[Any, Any, _T]) -> _T:
    """`work`'s result, unless the client closes the connection first: then `work` is
    cancelled (an explanation still waiting for its turn is never computed) and ClientGone
    is raised. For slow answers only: it reads the request's messages after its body."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait({task})  # its clean-up (places given back) before the answer
    if not task.cancelled():  # done either way by now
        return task.result()
    raise ClientGone("The client closed the connection before the answer was ready.")


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
