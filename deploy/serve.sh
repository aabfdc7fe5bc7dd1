#!/bin/sh
# The one command line that serves Glassbox. The README's serve command and the container's
# ENTRYPOINT run this file, and so do the tests that start a real server (tests/ops/server.py),
# so all of them run the same server, with one JSON log line per request.
#
#   GLASSBOX_HOST        address to listen on            (default 127.0.0.1; the image sets
#                        0.0.0.0, where the container's own network keeps it private)
#   GLASSBOX_PORT        port                            (default 8000)
#   GLASSBOX_WORKERS     uvicorn worker processes        (default 1; each loads every model)
#   GLASSBOX_GRACEFUL_SHUTDOWN_S  seconds in-flight requests get after SIGTERM (default 20)
#   GLASSBOX_KEEP_ALIVE_S  idle keep-alive connections are closed after this (default 75: longer
#                          than clients' and load balancers' own, e.g. httpx 5 s, nginx 60 s, so
#                          the server never closes a connection just as a client sends on it)
#   PYTHON               interpreter                     (default python)
# Extra arguments are passed on to uvicorn (e.g. --log-level debug).
set -eu

workers="${GLASSBOX_WORKERS:-1}"
port="${GLASSBOX_PORT:-8000}"
if [ "$workers" -gt 1 ] && [ -z "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
    # Each worker counts its own requests; the metrics library sums them from files here, so a
    # scrape shows the whole server whichever worker answers it. Emptied first: files left by
    # an earlier run would be summed in too.
    PROMETHEUS_MULTIPROC_DIR="${TMPDIR:-/tmp}/glassbox-metrics-$port"
    rm -rf "$PROMETHEUS_MULTIPROC_DIR"
    mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
    export PROMETHEUS_MULTIPROC_DIR
fi

# exec: uvicorn replaces this shell, so it gets SIGTERM directly (PID 1 in a container), stops
# accepting connections and lets in-flight requests finish for up to the graceful timeout.
# --no-access-log: the app logs one JSON line per request itself (app/observability.py).
exec "${PYTHON:-python}" -m app.serve app.main:app \
    --host "${GLASSBOX_HOST:-127.0.0.1}" \
    --port "$port" \
    --workers "$workers" \
    --timeout-graceful-shutdown "${GLASSBOX_GRACEFUL_SHUTDOWN_S:-20}" \
    --timeout-keep-alive "${GLASSBOX_KEEP_ALIVE_S:-75}" \
    --no-access-log \
    "$@"
