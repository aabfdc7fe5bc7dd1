"""`python -m bench.compare --groups servers`: which HTTP server Glassbox should run on.

Five servers side by side, each with one and then two workers, in interleaved rounds:
- `service`: Glassbox as deploy/serve.sh runs it, uvicorn through `python -m app.serve` with the
  hand-made HTTP path (app/http/framework_overrides/: its HTTP protocol, `LeanRoute`);
- `service@granian`: the same app on Granian (its Rust HTTP/1.1 server), `LeanRoute` kept;
- `service-plain@granian`: on Granian with FastAPI's own route handler on every route
  (bench/plain_app.py): no hand-made piece left;
- `floor` and `floor@granian`: bench/floor_app.py (the same validated bodies, no model) on each.
Scenarios: iris typed JSON, the same row as Open Inference v2 JSON (Glassbox only: the floor has
no v2 route) and an mnist PNG upload, each at 1, 16 and 64 connections.

The verdicts are issue 33's, each judged against the floor on the same server in the same run.
"""

from __future__ import annotations

from bench.scenarios import Payload

SERVICES = ["service", "service@granian", "service-plain@granian"]
FLOORS = ["floor", "floor@granian"]
CONCURRENCIES = (1, 16, 64)
HOW = {
    "service@granian": "Glassbox on Granian 2.8 at its defaults (`granian --interface asgi "
    "app.main:app`), `LeanRoute` kept",
    "service-plain@granian": "Glassbox on Granian with FastAPI's own route handler on every "
    "route (bench/plain_app.py)",
    "floor@granian": "the floor on Granian",
}


def base_name(server: str) -> str:
    """The app a server name runs (`service`, `floor`), whatever its HTTP server or routes."""
    return server.split("@")[0].removesuffix("-plain")


def http_server(server: str) -> str:
    return server.partition("@")[2] or "uvicorn"


def target(server: str) -> str:
    """The key of bench.servers.TARGETS a server name runs."""
    return server.split("@")[0]


def matrix(sent: dict[str, Payload]) -> list[tuple[str, int, str, Payload, str]]:
    """(scenario, concurrency, server, payload, request) for every row of one worker count."""
    rows = []
    for concurrency in CONCURRENCIES:
        for server in SERVICES + FLOORS:
            rows.append(("iris", concurrency, server, sent["iris typed"], "typed JSON"))
        for server in SERVICES:
            rows.append(("iris v2 JSON", concurrency, server, sent["iris v2"], "v2 JSON"))
        for server in SERVICES + FLOORS:
            rows.append(("mnist", concurrency, server, sent["mnist upload"], "PNG upload"))
    return rows


def _row(rows: list[dict], workers: int, scenario: str, concurrency: int, server: str):
    for row in rows:
        if (row["workers"], row["scenario"], row["concurrency"], row["server"]) == (
            workers,
            scenario,
            concurrency,
            server,
        ):
            return row
    return None


def targets(rows: list[dict]) -> list[tuple[str, str, bool | None]]:
    """Issue 33's verdicts on this run's medians, for each of Glassbox's servers."""
    checks: list[tuple[str, str, bool | None]] = []

    def ratio_check(text: str, numerator, denominator, bound: float, at_most: bool = False):
        if numerator is None or denominator is None or not denominator:
            checks.append((text, "-", None))
            return
        value = numerator / denominator
        checks.append((text, f"{value:.3f}x", value <= bound if at_most else value >= bound))

    for service in SERVICES:
        floor = "floor@granian" if service.endswith("@granian") else "floor"
        for workers, bound in ((1, 0.85), (2, 0.90)):
            ours, theirs = (_row(rows, workers, "iris", 64, name) for name in (service, floor))
            ratio_check(
                f"{service}: iris c=64, {workers} worker(s) >= {bound:.2f} of {floor}",
                ours and ours["rps_median"],
                theirs and theirs["rps_median"],
                bound,
            )
            ratio_check(
                f"{service}: iris c=64, {workers} worker(s) p99 <= 1.25x {floor}'s",
                ours and ours["p99_ms"],
                theirs and theirs["p99_ms"],
                1.25,
                at_most=True,
            )
        ours, theirs = (_row(rows, 1, "iris", 1, name) for name in (service, floor))
        if ours and theirs:
            gap = ours["p50_ms"] - theirs["p50_ms"]
            checks.append(
                (
                    f"{service}: iris c=1 p50 within 0.5 ms of {floor}'s",
                    f"{gap:+.2f} ms",
                    gap <= 0.5,
                )
            )
        typed, v2 = (_row(rows, 1, scenario, 64, service) for scenario in ("iris", "iris v2 JSON"))
        ratio_check(
            f"{service}: v2 JSON c=64 >= 0.85 of typed",
            v2 and v2["rps_median"],
            typed and typed["rps_median"],
            0.85,
        )
    for workers in (1, 2):
        for scenario in ("iris", "iris v2 JSON", "mnist"):
            for concurrency in CONCURRENCIES:
                plain, made = (
                    _row(rows, workers, scenario, concurrency, name)
                    for name in ("service-plain@granian", "service")
                )
                ratio_check(
                    f"plain routes on Granian within 5% of the hand-made path: {scenario} "
                    f"c={concurrency}, {workers} worker(s)",
                    plain and plain["rps_median"],
                    made and made["rps_median"],
                    0.95,
                )
    errors = sum(row["errors"] for row in rows if base_name(row["server"]) == "service")
    checks.append(("every Glassbox row: zero errors", str(errors), errors == 0))
    return checks
