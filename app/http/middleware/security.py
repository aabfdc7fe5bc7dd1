"""API keys (app.core.keys) and the security headers of every answer, for `gateway.Gateway`."""

from __future__ import annotations

from starlette.responses import Response

from app.core.errors import Unauthorized
from app.core.keys import KeyRing, presented_key
from app.http.routes.errors import error_response
from app.http.routes.responses import CONTENT_SECURITY_POLICY, SECURITY_HEADERS

# Routes that answer without a key: probes must work for orchestrators, and the page's own files
# hold no data (the page's API calls need a key like any client's).
OPEN_PATHS = ("/health/live", "/health/ready", "/v2/health/live", "/v2/health/ready")
OPEN_PREFIXES = ("/static/", "/docs-assets/")
# The admin routes and the model repository extension's (which change what is served).
ADMIN_PREFIXES = ("/admin", "/v2/repository/")


class KeyCheck:
    """401 with WWW-Authenticate for a missing or wrong key."""

    def __init__(self, api_keys: list[str], admin_keys: list[str]):
        self.clients = KeyRing(api_keys)
        self.admins = KeyRing(admin_keys)

    def refusal(self, method: str, path: str, headers: dict[bytes, bytes]) -> Response | None:
        """The 401 answer for a request whose key does not open `path`, else None."""
        if method == "OPTIONS":  # a CORS preflight carries no credentials
            return None
        if not self.clients and not path.startswith(ADMIN_PREFIXES):
            return None  # no keys set: open, nothing to look up
        given = headers.get(b"x-api-key")
        key = presented_key(
            given.decode("latin-1") if given is not None else None,
            headers.get(b"authorization", b"").decode("latin-1"),
        )
        if path.startswith(ADMIN_PREFIXES):
            allowed = self.admins.accepts(key)
        elif path in OPEN_PATHS or path.startswith(OPEN_PREFIXES) or path == "/":
            allowed = True
        else:
            allowed = self.clients.accepts(key)
        if allowed:
            return None
        refusal = Unauthorized()
        return error_response(401, refusal.message, refusal.code, headers=refusal.headers)


def with_security_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """An answer's headers with the security headers added; a route may set a content security
    policy of its own (the docs pages allow their inline script)."""
    if not any(name == b"content-security-policy" for name, _ in headers):
        headers.append((b"content-security-policy", CONTENT_SECURITY_POLICY))
    headers.extend(SECURITY_HEADERS)
    return headers
