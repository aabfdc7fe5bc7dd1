"""API keys (app.core.keys) and security headers, as ASGI middleware."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import Unauthorized
from app.core.keys import KeyRing, presented_key
from app.http.routes.errors import error_response
from app.http.routes.responses import CONTENT_SECURITY_POLICY, SECURITY_HEADERS

# Routes that answer without a key: probes must work for orchestrators, and the page's own files
# hold no data (the page's API calls need a key like any client's).
OPEN_PATHS = ("/health/live", "/health/ready", "/v2/health/live", "/v2/health/ready")
OPEN_PREFIXES = ("/static/", "/docs-assets/")
ADMIN_PREFIX = "/admin"


class ApiKeys:
    """401 with WWW-Authenticate for a missing or wrong key."""

    def __init__(self, app: ASGIApp, api_keys: list[str], admin_keys: list[str]):
        self.app = app
        self.clients = KeyRing(api_keys)
        self.admins = KeyRing(admin_keys)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if not self.clients and not path.startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)  # no keys set: open, nothing to look up
            return
        headers = dict(scope["headers"])
        given = headers.get(b"x-api-key")
        key = presented_key(
            given.decode("latin-1") if given is not None else None,
            headers.get(b"authorization", b"").decode("latin-1"),
        )
        if path.startswith(ADMIN_PREFIX):
            allowed = self.admins.accepts(key)
        elif path in OPEN_PATHS or path.startswith(OPEN_PREFIXES) or path == "/":
            allowed = True
        else:
            allowed = self.clients.accepts(key)  # keys are set: the fast path above
        if allowed:
            await self.app(scope, receive, send)
            return
        refusal = Unauthorized()
        response = error_response(401, refusal.message, refusal.code, headers=refusal.headers)
        await response(scope, receive, send)


class SecurityHeaders:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                # A route may set a policy of its own (the docs pages allow their inline script).
                if not any(name == b"content-security-policy" for name, _ in headers):
                    headers.append((b"content-security-policy", CONTENT_SECURITY_POLICY))
                headers.extend(SECURITY_HEADERS)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
