"""The web page at `/`, its static files under `/static`, and the example inputs it offers."""

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from starlette.exceptions import HTTPException

STATIC_DIR = Path(__file__).resolve().parents[2] / "static"
EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html")


@router.get("/examples/{name}")
async def example(name: str) -> FileResponse:
    """The committed example input of a model (`app/examples/<name>.*`), for the page's
    "try the example" buttons (a way in that needs neither a mouse nor a file)."""
    path = next((p for p in sorted(EXAMPLES_DIR.glob("*")) if p.stem == name), None)
    if path is None:
        raise HTTPException(404, f"No example input for '{name}'.")
    return FileResponse(path)
