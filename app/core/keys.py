"""API keys, as every transport checks them (HTTP headers, gRPC call metadata).

Keys are compared as sha256 digests with `hmac.compare_digest`, so neither the comparison time
nor the error says anything about which keys exist.
"""

from __future__ import annotations

import hashlib
import hmac


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class KeyRing:
    def __init__(self, keys: list[str]):
        self._digests = [_digest(key) for key in keys]

    def __bool__(self) -> bool:
        return bool(self._digests)

    def accepts(self, presented: str | None) -> bool:
        if not presented:
            return False
        digest = _digest(presented)
        # Compare against every key, so timing does not tell how many matched or which.
        matches = [hmac.compare_digest(digest, known) for known in self._digests]
        return any(matches)


def caller_of(
    caller_id: str | None, x_api_key: str | None, authorization: str | None
) -> str | None:
    """Who is calling, for a sticky canary split: the caller id the client sends, else its API
    key, else None (both transports: HTTP headers, gRPC call metadata)."""
    return caller_id or presented_key(x_api_key, authorization) or None


def presented_key(x_api_key: str | None, authorization: str | None) -> str | None:
    """The key a caller presents: `X-API-Key: KEY`, else `Authorization: Bearer KEY`."""
    if x_api_key is not None:
        return x_api_key.strip()
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None
