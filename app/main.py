"""The ASGI entry point, `app.main:app`: what deploy/serve.sh and uvicorn run. The HTTP app,
with the gRPC server (GLASSBOX_GRPC_PORT) beside it in the same process and event loop."""

from app.grpc.server import grpc_serving
from app.http.app import create_app

app = create_app(companions=[grpc_serving])
