"""The web page at `/`, its static files under `/static`, and the example inputs it offers.

`/` is also KServe v1's liveness path: a client that does not ask for HTML (KServe's SDK,
curl, a probe) gets `{"status": "alive"}`, as KServe's own server answers there, while a
browser, whose Accept header asks for text/html, gets the page.
"""

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from starlette.exceptions import HTTPException
from starlette.responses import Response

from app.http.routes.responses import ModelJSON
from app.http.schemas import Liveness

STATIC_DIR = Path(__file__).resolve().parents[2] / "static"
EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
# The answer depends on the Accept header: caches must keep the two apart.
_VARY = {"Vary": "Accept"}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def index(request: Request) -> Response:
    if "text/html" in request.headers.get("accept", "").lower():
        return FileResponse(STATIC_DIR / "index.html", headers=_VARY)
    return ModelJSON(Liveness(), headers=_VARY)


@router.get("/examples/{name}")
async def example(name: str) -> FileResponse:
    """The committed example input of a model (`app/examples/<name>.*`), for the page's
    "try the example" buttons (a way in that needs neither a mouse nor a file)."""
    path = next((p for p in sorted(EXAMPLES_DIR.glob("*")) if p.stem == name), None)
    if path is None:
        raise HTTPException(404, f"No example input for '{name}'.")
    return FileResponse(path)
