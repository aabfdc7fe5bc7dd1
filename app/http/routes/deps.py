"""Dependencies shared by the routers, written once as `Annotated` aliases."""

from typing import Annotated

from fastapi import Depends, Query, Request

from app.dataplane.service import InferenceService


async def get_service(request: Request) -> InferenceService:
    return request.app.state.service


ServiceDep = Annotated[InferenceService, Depends(get_service)]
VersionQuery = Annotated[
    int | None,
    Query(ge=1, description="Model version to use; the newest ready version when omitted."),
]
