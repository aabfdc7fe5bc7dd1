"""`python -m app.serve [uvicorn options]`: uvicorn's own command line, exiting 0 after a drain.

On SIGTERM uvicorn stops accepting, lets in-flight requests finish, and then raises the signal
again so that the process dies by it (status 143). For an orchestrator a drained shutdown is a
success, so that second SIGTERM (and one that arrives before uvicorn has started) ends the
process with status 0 instead.
"""

import signal
import sys

from uvicorn.main import main


def _exit_cleanly(signum, frame):
    raise SystemExit(0)


def run() -> None:
    signal.signal(signal.SIGTERM, _exit_cleanly)
    main(args=sys.argv[1:], prog_name="python -m app.serve")


if __name__ == "__main__":
    run()
