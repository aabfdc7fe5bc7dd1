"""Pure-ASGI middleware: body and JSON limits, admission, API keys and security headers."""
