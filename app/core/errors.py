"""One error hierarchy for the whole service; each error carries its HTTP status.

The logic and runtime layers raise these; one handler in `app.http.routes.errors` turns every one of
them into the same JSON body. Nothing here imports FastAPI.
"""

from __future__ import annotations


def clipped(text: str, limit: int = 128) -> str:
    """A client's text (a model name) as echoed in messages and logs: cut short, since it can
    be as long as a request."""
    return text if len(text) <= limit else text[:limit] + "..."


class GlassboxError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(
        self, message: str, *, field: str | None = None, headers: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.message = message
        self.field = field
        self.headers = headers or {}


class BadInput(GlassboxError):
    status_code = 422
    code = "invalid_input"


class ProtocolError(GlassboxError):
    """A TF Serving or Open Inference Protocol request that is malformed or whose tensors do not
    fit the model; both protocols answer a bad request with 400, not 422."""

    status_code = 400
    code = "bad_request"


class ModelNotFound(GlassboxError):
    status_code = 404
    code = "model_not_found"


class ModelNotReady(GlassboxError):
    status_code = 503
    code = "model_not_ready"


class RolloutRefused(GlassboxError):
    """A rollout that points at a version that is not ready; the one in force stays."""

    status_code = 409
    code = "rollout_refused"


class PayloadTooLarge(GlassboxError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(GlassboxError):
    status_code = 415
    code = "unsupported_media_type"


class Overloaded(GlassboxError):
    status_code = 503
    code = "overloaded"

    def __init__(self, message: str, *, retry_after_s: int = 1):
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class DeadlineExceeded(GlassboxError):
    status_code = 504
    code = "deadline_exceeded"


class ClientGone(GlassboxError):
    """The client closed the connection before its answer was ready; nobody reads this, but
    the request is counted and logged with nginx's 499."""

    status_code = 499
    code = "client_closed_request"


class Unauthorized(GlassboxError):
    status_code = 401
    code = "unauthorized"

    def __init__(self, message: str = "A valid API key is required."):
        super().__init__(message, headers={"WWW-Authenticate": 'ApiKey realm="glassbox"'})


class Unimplemented(GlassboxError):
    """A method of a standard protocol that this server does not provide."""

    status_code = 501
    code = "not_implemented"


class ModelLoadError(GlassboxError):
    """A model version that cannot be served; the reason is shown in the model list."""

    code = "model_load_failed"


class RepositoryRefused(GlassboxError):
    """A model repository call (load, unload) that cannot be done as asked: the model failed to
    load, the mode does not allow it, or a parameter is not supported. The protocol answers a
    failed repository call with 400."""

    status_code = 400
    code = "repository_refused"


class ModelNotInRepository(RepositoryRefused):
    """A load or unload of a name that has no folder in the model folder (nor is served)."""

    code = "model_not_in_repository"
