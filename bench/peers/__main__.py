"""`python -m bench.peers install [bentoml] [mlserver]`: the peers' locked environments."""

from __future__ import annotations

import argparse
import sys

from bench.peers.registry import PEERS, install


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__)
    parser.add_argument("action", choices=["install"])
    parser.add_argument("peers", nargs="*", help=f"default: all ({', '.join(PEERS)})")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.peers) - set(PEERS))
    if unknown:
        parser.error(f"unknown peers {unknown}; choose from {', '.join(PEERS)}")
    return install(args.peers or list(PEERS))


if __name__ == "__main__":
    sys.exit(main())
