"""`python -m app.serve [uvicorn options]`: uvicorn's own command line, exiting 0 after a drain.

On SIGTERM uvicorn stops accepting, lets in-flight requests finish, and then raises the signal
again so that the process dies by it (status 143). For an orchestrator a drained shutdown is a
success, so that second SIGTERM (and one that arrives before uvicorn has started) ends the
process with status 0 instead.

With `--workers N` (N > 1) on Linux, each worker listens on a socket of its own, bound with
SO_REUSEPORT, so that the kernel spreads connections over the workers, which uvicorn's shared
socket does not (`app/http/framework_overrides/workers.py`; docs/operations.md, "Scaling").
Elsewhere, or with --reload, --uds, --fd or --port 0, uvicorn runs as it is. With several
workers, every worker also serves gRPC on GLASSBOX_GRPC_PORT, each binding it with SO_REUSEPORT,
once this process has checked that nothing else listens there; with
GLASSBOX_MODEL_CONTROL=explicit, they share one model control file (`share_model_control`).
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from collections.abc import MutableMapping
from pathlib import Path
from types import FrameType
from typing import NoReturn

from uvicorn.main import main

from app.core.settings import Settings
from app.dataplane.model_control import WantedModels
from app.http.framework_overrides.workers import (
    STARTUP_FAILURE,
    Workers,
    balanced,
    parse_options,
    port_is_free,
)

PROG = "python -m app.serve"


def _exit_cleanly(signum: int, frame: FrameType | None) -> NoReturn:
    raise SystemExit(0)


# Python's own asyncio loop unless --loop says otherwise: under uvloop, a server whose
# connections all keep it busy does not accept a new one until the load stops (256 wrk
# connections: a /health/ready probe on a new connection waited 4-6 s, the whole run), so
# orchestrators' probes would fail exactly when the service sheds load; with asyncio they are
# answered in 0.1-0.2 s. It costs about 8% of one worker's iris req/s (docs/performance.md).
DEFAULT_LOOP = ["--loop", "asyncio"]
# uvicorn's httptools protocol with each answer's head and body sent in one write, and an h2c
# upgrade offer declined rather than the request's body lost
# (app/http/framework_overrides/transport.py), unless --http says otherwise.
DEFAULT_HTTP = ["--http", "app.http.framework_overrides.transport:HttpProtocol"]


def run() -> None:
    signal.signal(signal.SIGTERM, _exit_cleanly)
    args = sys.argv[1:]
    for option, default in (("--loop", DEFAULT_LOOP), ("--http", DEFAULT_HTTP)):
        if not any(arg == option or arg.startswith(f"{option}=") for arg in args):
            args = [*default, *args]
    options = parse_options(args, PROG)
    workers = (options["workers"] or 1) if options is not None else 1
    if workers > 1 and not share_grpc_port():
        sys.exit(STARTUP_FAILURE)
    with tempfile.TemporaryDirectory(prefix="glassbox-") as scratch:
        if workers > 1:
            share_cores(workers, os.environ)
            share_model_control(Path(scratch), os.environ)
        if options is not None and balanced(options):
            sys.exit(Workers(options).run())
        main(args=args, prog_name=PROG)


TF_THREAD_SETTINGS = ("GLASSBOX_TF_INTRA_OP_THREADS", "GLASSBOX_TF_INTER_OP_THREADS")


def share_cores(workers: int, environ: MutableMapping[str, str]) -> None:
    """Give each worker's TensorFlow its share of the usable cores, where the settings leave
    it to TensorFlow: each worker would otherwise size its thread pools for every core, and N
    workers' pools compete for the same cores (two workers on two cores: 6,795 against 5,511
    iris predictions a second with one thread each, docs/performance.md)."""
    share = str(max(1, len(os.sched_getaffinity(0)) // workers))
    for name in TF_THREAD_SETTINGS:
        if environ.get(name, "0") == "0":
            environ[name] = share  # the workers inherit it


def share_model_control(scratch: Path, environ: MutableMapping[str, str]) -> None:
    """With GLASSBOX_MODEL_CONTROL=explicit and no GLASSBOX_MODEL_CONTROL_FILE, give the
    workers one in `scratch` (gone when the server stops, so a restart begins again from
    GLASSBOX_MODELS), seeded here with GLASSBOX_MODELS: a load or unload on any worker reaches
    every worker at its next poll, and a worker started again serves what the others serve."""
    settings = Settings()
    if settings.model_control != "explicit" or settings.model_control_file is not None:
        return
    path = scratch / "model-control.json"
    WantedModels(settings.models, path)  # written now, before any worker reads it
    environ["GLASSBOX_MODEL_CONTROL_FILE"] = str(path)  # the workers inherit it


def share_grpc_port() -> bool:
    """Let several workers listen on the gRPC port (each binds it with SO_REUSEPORT), once it
    is known to be free; False (and logged) when something already listens there."""
    settings = Settings()
    if not settings.grpc_port:
        return True
    if not port_is_free(settings.host, settings.grpc_port, "Cannot listen for gRPC on"):
        return False
    os.environ["GLASSBOX_GRPC_REUSE_PORT"] = "1"  # the workers inherit it
    return True


if __name__ == "__main__":
    run()
