"""A bounded soak test: a real server under a steady mix of requests for a fixed time.

    python -m bench.soak --duration 300 --concurrency 32

Starts the service (`python -m uvicorn app.main:app`) on a free 127.0.0.1 port and waits for
/health/ready. Captures the answer to every request of the mix once, then runs the mix with
`--concurrency` clients for `--duration` seconds: tabular predictions (single and batched),
image uploads (mnist PNG, catdog JPEG) and base64 JSON, layer traces, and about 10% invalid
requests (out of range, missing field, NaN, garbage and truncated images, bad base64, an unknown
model). Every answer must equal the one captured at the start (same status and error code; the
same probabilities or value within 1e-3); no answer may be a 5xx.

Memory and file descriptors are measured on the server process from /proc: sampled every
`--sample-every` seconds under load for the timeline, and compared between two idle moments, at
the end of the warm-up (the first minute or first 20% of the run, whichever is shorter) and at
the end, each taken after the clients have closed their connections. Targets: RSS growth under
10%, no descriptor growth, no 5xx, no wrong answer, no transport error. The table is printed and
written to bench/results/soak-<date>.md with the core count and the git commit; the exit code
is 1 when a target is missed (2 when the server does not start). The server is always stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import math
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from bench.run_info import RunHeader, run_header
from bench.servers import ROOT, Server, ServerFailed, Servers, served_models
from bench.stats import percentile

RESULTS = Path(__file__).resolve().parent / "results"
FIXTURES = ROOT / "tests" / "fixtures"
EXAMPLES = ROOT / "app" / "examples"
# Answers are equal when probabilities (or a value, relative to its size) differ by at most this:
# a batch of another size can change the last bits of a float32 result.
TOLERANCE = 1e-3
RSS_GROWTH_TARGET_PCT = 10.0
SETTLE_S = 2.0  # idle time before an idle measurement, for closed sockets to go


@dataclass
class Call:
    """One request of the mix."""

    kind: str  # what the table groups by, e.g. "iris predict" or "invalid"
    name: str  # this request, e.g. "iris out of range"
    method: str
    path: str
    weight: float
    json: object | None = None
    content: bytes | None = None
    headers: dict[str, str] | None = None
    upload: tuple[str, bytes, str] | None = None  # filename, bytes, media type
    valid: bool = True

    async def send(self, client: httpx.AsyncClient) -> httpx.Response:
        files = {"file": self.upload} if self.upload else None
        return await client.request(
            self.method,
            self.path,
            json=self.json,
            content=self.content,
            headers=self.headers,
            files=files,
        )


@dataclass
class Tally:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    wrong: int = 0
    transport_errors: int = 0


@dataclass
class Sample:
    t: float
    rss_kb: int
    fds: int


# -- the request mix ------------------------------------------------------------------------


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _digit_on_paper(digit: np.ndarray) -> bytes:
    ink = Image.fromarray(255 - digit).resize((112, 112), Image.Resampling.BICUBIC)
    page = Image.new("L", (152, 152), 240)
    page.paste(ink, (20, 20))
    return _png(Image.fromarray(np.minimum(np.asarray(page), 240).astype(np.uint8)))


def _feature_rows(card: dict, rng: random.Random, count: int) -> list[dict[str, float]]:
    specs = card["input"]["features"]
    rows = [{s["name"]: s["mean"] for s in specs}]
    rows += [{s["name"]: s["observed_min"] for s in specs}]
    rows += [{s["name"]: s["observed_max"] for s in specs}]
    while len(rows) < count:
        rows.append(
            {s["name"]: round(rng.uniform(s["observed_min"], s["observed_max"]), 4) for s in specs}
        )
    return rows


def build_mix(cards: dict[str, dict], rng: random.Random) -> list[Call]:
    calls: list[Call] = []
    for name, card in sorted(cards.items()):
        base = f"/api/models/{name}"
        if card["input"]["kind"] == "features":
            rows = _feature_rows(card, rng, 6)
            for i, row in enumerate(rows):
                calls.append(
                    Call(
                        f"{name} predict",
                        f"{name} row {i}",
                        "POST",
                        f"{base}/predict",
                        12 / len(rows),
                        json=row,
                    )
                )
            calls.append(
                Call(
                    f"{name} batch",
                    f"{name} batch",
                    "POST",
                    f"{base}/predict",
                    4,
                    json={"instances": rows},
                )
            )
            calls.append(
                Call(f"{name} trace", f"{name} trace", "POST", f"{base}/trace", 3, json=rows[0])
            )
            continue
        if name == "mnist":
            with np.load(FIXTURES / "mnist_sample.npz") as data:
                images = [_digit_on_paper(d) for d in data["x_test"][:6]]
            images.append((EXAMPLES / "mnist.png").read_bytes())
            media, suffix = "image/png", "png"
        else:
            photos = sorted((FIXTURES / "catdog" / "test").glob("*/*.jpg"))
            images = [p.read_bytes() for p in photos[:3] + photos[-3:]]
            if (EXAMPLES / "catdog.jpg").exists():
                images.append((EXAMPLES / "catdog.jpg").read_bytes())
            media, suffix = "image/jpeg", "jpg"
        for i, data in enumerate(images):
            upload = (f"{name}-{i}.{suffix}", data, media)
            calls.append(
                Call(
                    f"{name} upload",
                    f"{name} image {i}",
                    "POST",
                    f"{base}/predict",
                    14 / len(images),
                    upload=upload,
                )
            )
        encoded = base64.b64encode(images[0]).decode()
        calls.append(
            Call(
                f"{name} json",
                f"{name} base64",
                "POST",
                f"{base}/predict/json",
                3,
                json={"image_base64": encoded},
            )
        )
        calls.append(
            Call(
                f"{name} trace",
                f"{name} trace",
                "POST",
                f"{base}/trace",
                3,
                upload=(f"{name}.{suffix}", images[0], media),
            )
        )
    return calls + _invalid_calls(cards, calls)


def _invalid_calls(cards: dict[str, dict], valid: list[Call]) -> list[Call]:
    """About a tenth of the mix: requests every one of which must be refused with a 4xx."""
    bad: list[tuple[str, str, str, dict]] = []  # name, method, path, request options
    for name, card in sorted(cards.items()):
        base = f"/api/models/{name}/predict"
        if card["input"]["kind"] == "features":
            specs = card["input"]["features"]
            row = {s["name"]: s["mean"] for s in specs}
            first = specs[0]
            over = {**row, first["name"]: first["allowed_max"] * 10 + 100}
            missing = {k: v for k, v in row.items() if k != specs[-1]["name"]}
            nan = (
                "{"
                + ", ".join(f'"{k}": {"NaN" if k == first["name"] else v}' for k, v in row.items())
                + "}"
            )
            bad += [
                (f"{name} out of range", "POST", base, {"json": over}),
                (f"{name} missing field", "POST", base, {"json": missing}),
                (
                    f"{name} NaN",
                    "POST",
                    base,
                    {"content": nan.encode(), "headers": {"content-type": "application/json"}},
                ),
            ]
        else:
            image = next(c.upload for c in valid if c.kind == f"{name} upload")
            bad += [
                (
                    f"{name} garbage image",
                    "POST",
                    base,
                    {"upload": ("junk.png", b"\x89PNG but not really" * 8, "image/png")},
                ),
                (
                    f"{name} truncated image",
                    "POST",
                    base,
                    {"upload": (image[0], image[1][: len(image[1]) // 2], image[2])},
                ),
                (f"{name} bad base64", "POST", f"{base}/json", {"json": {"image_base64": "!!"}}),
            ]
    bad.append(("unknown model", "POST", "/api/models/no-such-model/predict", {"json": {}}))
    valid_weight = sum(c.weight for c in valid)
    weight = valid_weight / 9 / len(bad)  # invalid: 10% of all
    return [Call("invalid", n, m, p, weight, valid=False, **options) for n, m, p, options in bad]


# -- answers ---------------------------------------------------------------------------------


def essence(response: httpx.Response) -> tuple:
    """What must not change between two answers to the same request."""
    try:
        body = response.json()
    except ValueError:
        return (response.status_code, "not JSON")
    if response.status_code != 200:
        return (response.status_code, body.get("code"))
    if "layers" in body:
        return (200, "trace", len(body["layers"]), _prediction(body["prediction"]))
    if "predictions" in body:
        return (200, "batch", tuple(_prediction(p) for p in body["predictions"]))
    return (200, _prediction(body))


def _prediction(body: dict) -> tuple:
    if "probabilities" in body:
        return ("probabilities", tuple(sorted(body["probabilities"].items())))
    return ("value", body["value"])


def same(reference: tuple, answer: tuple) -> bool:
    if type(reference) is not type(answer):
        return False
    if isinstance(reference, float) and isinstance(answer, float):
        return abs(reference - answer) <= TOLERANCE * max(1.0, abs(reference))
    if isinstance(reference, tuple):
        return len(reference) == len(answer) and all(map(same, reference, answer))
    return reference == answer


# -- the server process ----------------------------------------------------------------------


def sample(pid: int, t: float) -> Sample:
    rss_kb = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
    return Sample(t, rss_kb, len(os.listdir(f"/proc/{pid}/fd")))


async def served_cards(server: Server, client: httpx.AsyncClient) -> dict[str, dict]:
    """The card of every model the service answers for (a ready version)."""
    names = sorted(await served_models(server))
    return {name: (await client.get(f"/api/models/{name}/card")).json() for name in names}


# -- the run ---------------------------------------------------------------------------------


async def drive(
    url: str,
    calls: list[Call],
    references: dict[str, tuple],
    concurrency: int,
    until: float,
    tallies: dict[str, Tally],
    mismatches: list[str],
    seed: int,
) -> None:
    """`concurrency` clients sending weighted-random calls until the monotonic time `until`."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    weights = [call.weight for call in calls]

    async def client_loop(rng: random.Random, client: httpx.AsyncClient) -> None:
        while time.monotonic() < until:
            call = rng.choices(calls, weights)[0]
            tally = tallies[call.kind]
            started = time.perf_counter()
            try:
                response = await call.send(client)
            except httpx.HTTPError as error:
                tally.transport_errors += 1
                if len(mismatches) < 20:
                    mismatches.append(f"{call.name}: {type(error).__name__}: {error}")
                await asyncio.sleep(0.1)  # a server that is gone is not hammered
                continue
            tally.latencies_ms.append((time.perf_counter() - started) * 1000)
            tally.statuses[response.status_code] += 1
            answer = essence(response)
            if not same(references[call.name], answer):
                tally.wrong += 1
                if len(mismatches) < 20:
                    mismatches.append(f"{call.name}: {answer} (at start: {references[call.name]})")

    async with httpx.AsyncClient(base_url=url, timeout=30.0, limits=limits) as client:
        await asyncio.gather(
            *(client_loop(random.Random(seed * 1000 + i), client) for i in range(concurrency))
        )


async def monitor(
    pid: int,
    t0: float,
    every: float,
    samples: list[Sample],
    tallies: dict[str, Tally],
    stop: asyncio.Event,
) -> None:
    """Samples RSS and fds every `every` seconds; a progress line about every 15 seconds."""
    last_line = 0.0
    while not stop.is_set():
        with contextlib.suppress(OSError):
            samples.append(sample(pid, time.monotonic() - t0))
            if samples[-1].t - last_line >= 15:
                last_line = samples[-1].t
                done = sum(t.statuses.total() + t.transport_errors for t in tallies.values())
                progress(
                    f"{samples[-1].t:4.0f} s: {done} requests, RSS "
                    f"{samples[-1].rss_kb / 1024:.0f} MB, {samples[-1].fds} fds"
                )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


def alive_sample(server: Server, t: float) -> Sample:
    if server.process.poll() is not None:
        raise ServerFailed(
            f"the service exited (code {server.process.returncode}) during the run; its log "
            f"ends:\n{server.log_tail()}"
        )
    return sample(server.process.pid, t)


async def soak(args: argparse.Namespace, servers: Servers, server: Server) -> dict:
    await servers.wait_ready(server, args.ready_timeout, path="/health/ready")
    pid = server.process.pid
    async with httpx.AsyncClient(base_url=server.url, timeout=60.0) as client:
        cards = await served_cards(server, client)
        calls = build_mix(cards, random.Random(args.seed))
        references = {call.name: essence(await call.send(client)) for call in calls}
    problems = [
        f"{c.name}: answered {references[c.name]} at start"
        for c in calls
        if (references[c.name][0] == 200) != c.valid or references[c.name][0] >= 500
    ]
    if problems:
        raise ServerFailed("the mix is not answered as expected:\n" + "\n".join(problems))

    warmup = min(60.0, 0.2 * args.duration)
    tallies: dict[str, Tally] = defaultdict(Tally)
    mismatches: list[str] = []
    samples: list[Sample] = []
    stop = asyncio.Event()
    t0 = time.monotonic()
    watcher = asyncio.create_task(monitor(pid, t0, args.sample_every, samples, tallies, stop))
    try:
        await drive(
            server.url,
            calls,
            references,
            args.concurrency,
            t0 + warmup,
            tallies,
            mismatches,
            args.seed,
        )
        await asyncio.sleep(SETTLE_S)
        after_warmup = alive_sample(server, time.monotonic() - t0)
        progress(
            f"warm-up done after {warmup:.0f} s: RSS {after_warmup.rss_kb / 1024:.0f} MB, "
            f"{after_warmup.fds} fds idle"
        )
        await drive(
            server.url,
            calls,
            references,
            args.concurrency,
            t0 + args.duration,
            tallies,
            mismatches,
            args.seed + 1,
        )
        await asyncio.sleep(SETTLE_S)
        at_end = alive_sample(server, time.monotonic() - t0)
    finally:
        stop.set()
        await watcher
    return {
        "cards": cards,
        "calls": calls,
        "tallies": tallies,
        "mismatches": mismatches,
        "samples": samples,
        "warmup_s": warmup,
        "after_warmup": after_warmup,
        "at_end": at_end,
        "elapsed_s": at_end.t - 2 * SETTLE_S,
    }


# -- the report ------------------------------------------------------------------------------


def _ms_cell(value: float | None) -> str:
    """Milliseconds to the unit; 'nan' for no value (a kind that got no answer at all)."""
    return f"{math.nan if value is None else value:.0f}"


def report(args: argparse.Namespace, result: dict) -> tuple[str, bool]:
    """The markdown report and whether every target was met."""
    header: RunHeader = result["header"]
    tallies: dict[str, Tally] = result["tallies"]
    warm, end = result["after_warmup"], result["at_end"]
    total = sum(sum(t.statuses.values()) + t.transport_errors for t in tallies.values())
    server_errors = sum(n for t in tallies.values() for s, n in t.statuses.items() if s >= 500)
    wrong = sum(t.wrong for t in tallies.values())
    transport = sum(t.transport_errors for t in tallies.values())
    invalid = sum(t.statuses.total() for k, t in tallies.items() if k == "invalid")
    rss_growth = (end.rss_kb - warm.rss_kb) / warm.rss_kb * 100
    fd_growth = end.fds - warm.fds
    under_load = [s for s in result["samples"] if s.t > result["warmup_s"]]
    peak = max((s.rss_kb for s in result["samples"]), default=0)
    checks = [
        ("5xx answers", f"{server_errors}", "0", server_errors == 0),
        ("wrong answers (differ from the start)", f"{wrong}", "0", wrong == 0),
        ("transport errors", f"{transport}", "0", transport == 0),
        (
            "RSS growth after warm-up (idle to idle)",
            f"{rss_growth:+.1f}% ({warm.rss_kb / 1024:.0f} -> {end.rss_kb / 1024:.0f} MB)",
            f"< {RSS_GROWTH_TARGET_PCT:.0f}%",
            rss_growth < RSS_GROWTH_TARGET_PCT,
        ),
        (
            "open fds growth after warm-up (idle to idle)",
            f"{fd_growth:+d} ({warm.fds} -> {end.fds})",
            "none",
            fd_growth <= 0,
        ),
    ]
    passed = all(ok for *_, ok in checks)
    models = ", ".join(
        f"{name} v{card['version']}" for name, card in sorted(result["cards"].items())
    )
    lines = [
        f"# Soak run {header.started:%Y-%m-%d %H:%M %Z}",
        "",
        f"- command: `python -m bench.soak --duration {args.duration:g} "
        f"--concurrency {args.concurrency}`",
        f"- commit: {header.commit}",
        f"- cores: {header.cpu_count} (usable: {header.cpus_usable}); "
        f"Python {header.python} on {header.machine}",
        f"- models: {models}",
        f"- load: {total} requests in {result['elapsed_s']:.0f} s "
        f"({total / max(result['elapsed_s'], 1e-9):.1f}/s), {invalid} of them invalid "
        f"({invalid / max(total, 1):.0%}); warm-up {result['warmup_s']:.0f} s",
        f"- RSS under load after warm-up: {_range_mb(under_load)}; peak {peak / 1024:.0f} MB",
        "",
        "| check | measured | target | met |",
        "| --- | --- | --- | --- |",
        *(
            f"| {name} | {value} | {target} | {'yes' if ok else '**NO**'} |"
            for name, value, target, ok in checks
        ),
        "",
        "| requests | count | statuses | p50 ms | p99 ms | max ms | wrong |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for kind, tally in sorted(tallies.items()):
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(tally.statuses.items()))
        if tally.transport_errors:
            statuses += f", transport errors: {tally.transport_errors}"
        lat = tally.latencies_ms
        p50, p99, slowest = percentile(lat, 50), percentile(lat, 99), max(lat, default=None)
        lines.append(
            f"| {kind} | {tally.statuses.total()} | {statuses} | {_ms_cell(p50)} | "
            f"{_ms_cell(p99)} | {_ms_cell(slowest)} | {tally.wrong} |"
        )
    lines += ["", "| t (s) | RSS (MB) | open fds |", "| ---: | ---: | ---: |"]
    step = max(1, len(result["samples"]) // 12)
    lines += [f"| {s.t:.0f} | {s.rss_kb / 1024:.0f} | {s.fds} |" for s in result["samples"][::step]]
    if result["mismatches"]:
        lines += ["", "First problems:", "", *(f"- {m}" for m in result["mismatches"][:20])]
    lines += ["", f"Result: {'all targets met' if passed else 'TARGETS MISSED'}.", ""]
    return "\n".join(lines), passed


def _range_mb(samples: list[Sample]) -> str:
    if not samples:
        return "no samples"
    values = [s.rss_kb / 1024 for s in samples]
    return f"{min(values):.0f}-{max(values):.0f} MB (median {statistics.median(values):.0f})"


def progress(text: str) -> None:
    sys.stderr.write(f"[soak] {text}\n")
    sys.stderr.flush()


# -- the command -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of load (300)")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent clients (32)")
    parser.add_argument(
        "--sample-every", type=float, default=3.0, help="seconds between RSS and fd samples (3)"
    )
    parser.add_argument(
        "--ready-timeout", type=float, default=600.0, help="seconds to wait for /health/ready (600)"
    )
    parser.add_argument("--model-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for soak-<date>.md")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.concurrency < 1:
        parser.error("--duration and --concurrency must be positive")
    return args


def server_env(model_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLASSBOX_")}
    env.update(
        {
            "GLASSBOX_MODEL_DIR": str(model_dir.resolve()),
            "GLASSBOX_LOG_LEVEL": "WARNING",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def on_term(signum, frame):  # SIGTERM stops the run like Ctrl-C: the server is stopped
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    with (
        tempfile.TemporaryDirectory(prefix="glassbox-soak-") as logs,
        Servers(Path(logs)) as servers,
    ):
        header = run_header()  # the code the server imports, not what changes meanwhile
        server = servers.start("service", server_env(args.model_dir), label="soak")
        progress(f"service starting at {server.url} (pid {server.process.pid})")
        try:
            result = asyncio.run(soak(args, servers, server))
            result["header"] = header
        except ServerFailed as error:
            progress(str(error))
            return 2
        except KeyboardInterrupt:
            progress("interrupted; the service is stopped, nothing written")
            return 130
        finally:
            servers.stop_all()
    text, passed = report(args, result)
    sys.stdout.write(text)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"soak-{header.started:%Y-%m-%d}.md"
    path.write_text(text)
    progress(f"written to {path}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
