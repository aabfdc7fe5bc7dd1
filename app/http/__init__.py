"""Layer 5, HTTP: the FastAPI app, one router per resource (routes/), the ASGI middleware
(middleware/), metrics and request logs, the mapping of errors to status codes, and what depends
on the frameworks' internals (framework_overrides/)."""
