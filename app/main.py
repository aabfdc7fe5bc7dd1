"""The ASGI entry point, `app.main:app`: what deploy/serve.sh and uvicorn run."""

from app.http.app import create_app

app = create_app()
