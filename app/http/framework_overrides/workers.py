"""`python -m app.serve --workers N` on Linux: uvicorn's worker supervisor, replaced.

Each worker listens on a socket of its own, bound with SO_REUSEPORT, and the kernel hands each
new connection to one of them by a hash of its addresses. uvicorn's workers share one listening
socket instead, and the worker that wakes first accepts every connection waiting: 16 keep-alive
connections opened together were split 1/15, 12/4 and 5/11 between two workers, and the busier
worker capped throughput (docs/operations.md, "Scaling").

It builds uvicorn's `Config` from the options uvicorn's command line parsed, as uvicorn's `run`
does (its `app_dir` and `log_config`), and runs uvicorn's `Server` on each worker's socket.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from multiprocessing.context import SpawnContext
from typing import Any

import click
from prometheus_client import multiprocess
from uvicorn import Config, Server
from uvicorn.config import LOGGING_CONFIG
from uvicorn.config import STARTUP_FAILURE as STARTUP_FAILURE  # app/serve.py's too
from uvicorn.main import main

logger = logging.getLogger("uvicorn.error")


def parse_options(args: list[str], prog: str) -> dict[str, Any] | None:
    """uvicorn's options as its command line parses them; None when it would not run (a usage
    error, --help, --version), which uvicorn's own `main` then reports."""
    if {"--help", "--version"} & set(args):  # parsing would already print them
        return None
    try:
        with main.make_context(prog, list(args)) as context:
            return dict(context.params)
    except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
        return None


def balanced(options: dict[str, Any]) -> bool:
    """Whether `Workers` runs these options: several workers, on Linux, on one TCP port; else
    uvicorn runs as it is (--reload, --uds, --fd, --port 0)."""
    return (
        (options["workers"] or 1) > 1
        and sys.platform == "linux"  # elsewhere SO_REUSEPORT does not spread connections
        and not options["reload"]
        and options["uds"] is None
        and options["fd"] is None
        and options["port"] != 0  # each worker would get a port of its own
    )


def port_is_free(host: str, port: int, refusal: str) -> bool:
    """Whether nothing listens on the port, checked with a socket without SO_REUSEPORT, which
    cannot share it (one with it would quietly join another server's); logged when taken."""
    try:
        bound_socket(host, port, reuse_port=False).close()
    except OSError as error:
        logger.error("%s %s:%d: %s", refusal, host, port, error)
        return False
    return True


class Workers:
    """Worker processes on one port, one SO_REUSEPORT socket each; a worker that dies is
    replaced, and SIGTERM or SIGINT drains them all.

    Unlike uvicorn's own supervisor it does not ping workers for hangs, nor take SIGHUP,
    SIGTTIN or SIGTTOU; a worker that fails to start (exit status 3) stops the server with 3,
    and workers get SIGTERM if the supervisor dies.
    """

    def __init__(self, options: dict[str, Any]):
        options = dict(options)
        app_dir = options.pop("app_dir")
        if app_dir is not None:
            sys.path.insert(0, app_dir)  # as uvicorn does, before the app is imported
        if options["log_config"] is None:
            options["log_config"] = LOGGING_CONFIG  # as uvicorn's command line passes it on
        # `--header Name:Value` as uvicorn's command line hands it to Config: split in two.
        options["headers"] = [tuple(header.split(":", 1)) for header in options["headers"]]
        self.config = Config(**options)  # configures uvicorn's logging in this process too

    def run(self) -> int:
        if not port_is_free(self.config.host, self.config.port, "Cannot listen on"):
            return STARTUP_FAILURE
        # The handler only records the signal, as uvicorn's supervisor does: a handler runs in
        # the main thread between two of its bytecodes, so taking a lock there (a
        # threading.Event's) can deadlock against that thread (CPython issue 126434).
        received: list[int] = []
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda signum, _frame: received.append(signum))
        status = 0
        context = multiprocessing.get_context("spawn")
        processes = [self._start(context) for _ in range(self.config.workers)]
        logger.info(
            "Started %d workers, a SO_REUSEPORT socket each [%d]", len(processes), os.getpid()
        )
        while not received and status == 0:
            time.sleep(0.1)  # a signal is passed on to the workers within this
            if received:  # the workers got the signal too (Ctrl-C): they are stopping, not dead
                break
            for index, process in enumerate(processes):
                if process.is_alive():
                    continue
                if process.exitcode == STARTUP_FAILURE:
                    logger.error("Worker [%d] failed to start; stopping.", process.pid)
                    status = STARTUP_FAILURE
                    break
                logger.warning(
                    "Worker [%d] died (exit status %s); starting another.",
                    process.pid,
                    process.exitcode,
                )
                forget_metrics_of(process.pid)
                processes[index] = self._start(context)
        for process in processes:
            if process.is_alive() and process.pid is not None:  # started: it has a pid
                os.kill(process.pid, signal.SIGTERM)
        for process in processes:
            process.join()
            forget_metrics_of(process.pid)
        logger.info("Stopped %d workers [%d]", len(processes), os.getpid())
        return status

    def _start(self, context: SpawnContext) -> multiprocessing.process.BaseProcess:
        process = context.Process(target=_serve, args=(self.config, os.getpid()))
        process.start()
        return process


def forget_metrics_of(pid: int | None) -> None:
    """Stop summing a gone worker's live gauges (queue depth, in flight) into every scrape;
    its counters stay, as the metrics library keeps them for a process marked dead."""
    if pid is not None and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def _serve(config: Config, supervisor: int) -> None:
    """One worker: its own listening socket, then uvicorn's server on it."""
    die_with_parent()
    if os.getppid() != supervisor:  # it died before the line above
        sys.exit(1)
    config.configure_logging()  # as in uvicorn's own workers: the parent's setup is not inherited
    try:
        listener = bound_socket(config.host, config.port, reuse_port=True)
    except OSError as error:
        logger.error("Cannot listen on %s:%d: %s", config.host, config.port, error)
        sys.exit(STARTUP_FAILURE)
    Server(config).run(sockets=[listener])


def die_with_parent() -> None:
    """SIGTERM this process when its parent dies, even by SIGKILL (Linux), rather than leave it
    serving with no one to stop it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def bound_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on
    # connections from a socket that says it is TCP, and with it on every answer waited for
    # the client's delayed ACK (two workers: 1,430 req/s at 44 ms p50, against 6,300).
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind((host, port))
    except OSError:
        listener.close()
        raise
    return listener
