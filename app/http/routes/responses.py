"""A pydantic model as the response, serialized once; the security headers of every response.

Routes that return a model instance make FastAPI validate it against `response_model` again and
then serialize it: the prediction routes return `ModelJSON` instead, and keep `response_model`
for the OpenAPI schema only. The models were validated when they were built.
"""

from fastapi import Response
from pydantic import BaseModel

# On every answer: `gateway.Gateway` adds them, and the 500 handler, which Starlette
# runs outside every middleware, adds them itself.
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
# Unless the route sets its own (the docs pages: app/http/routes/docs.py).
CONTENT_SECURITY_POLICY = (
    b"default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    b"connect-src 'self'; frame-ancestors 'none'"
)


class ModelJSON(Response):
    media_type = "application/json"

    def __init__(
        self, model: BaseModel, status_code: int = 200, headers: dict[str, str] | None = None
    ):
        super().__init__(
            model.__pydantic_serializer__.to_json(model, exclude_none=True), status_code, headers
        )


# Which version answered, on protocol answers whose body does not say (TF Serving REST).
MODEL_VERSION_HEADER = "X-Model-Version"
