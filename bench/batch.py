"""`python -m bench.batch`: batch scoring of files (`python -m app.batch`) against the running
service over HTTP, on the same machine, in interleaved rounds; and the command line's peak
memory as the file grows.

- housing: the California housing rows (the offline copy in --data-dir) as a CSV; the command
  line against the typed endpoint with batched requests (`{"instances": [...]}` of --http-batch
  rows, --batch-clients at once, as a client with a file would send them) and with one-row
  requests (--single-clients at once, over the first --single-rows rows); and the command line
  on the rows ten times over, its rate once the model's first calls (slower than the next ones)
  are paid, as the service's are by the warm-up requests before the rounds; and the command
  line with `--familiarity`, scoring each row's familiarity as every typed answer does.
- mnist: the test digits as PNG files in a folder; the command line against one upload a
  request (--upload-clients at once), the only way the typed endpoint takes images.

Each round runs every path once, the command line first in odd rounds and last in even ones.
The command line's rate counts its scoring (reading, checking, the model, writing), not the
model's loading, which the running service has already done; its wall time with start-up is
shown beside it. Peak RSS: the command line's maximum resident set (wait4) on the housing file
and on ones 10x and 100x larger (2,064,000 rows, 184 MB), on the digits and on 10x as many.
Client, service and command line share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
from PIL import Image

from bench import report
from bench.run_info import run_header
from bench.servers import ROOT, Servers, child_env

# The command line's summary; its rate is from the unrounded time (the seconds are rounded to
# 10 ms, a tenth of the housing file's run).
# The command line on housing's rows ten times over: its rate once the model's first calls,
# slower than the next ones, are paid, beside the service's after its warm-up requests.
LARGE_CLI = "command line, 10x the rows"
# The command line writing each row's familiarity too, as every typed answer carries it: the
# like-for-like comparison with the service (without the option, no score is computed).
FAMILIAR_CLI = "command line, --familiarity"
RATE = re.compile(r"(\d+) read in ([\d.]+) s \(([\d,]+) a second\)")


def housing_table(data_dir: Path) -> pa.Table:
    from sklearn.datasets import fetch_california_housing

    data = fetch_california_housing(
        data_home=data_dir / "scikit_learn_data", download_if_missing=False, as_frame=True
    )
    frame = data.frame.drop(columns=[data.target_names[0]])
    return pa.table({"id": np.arange(len(frame)), **{c: frame[c].to_numpy() for c in frame}})


def write_digits(folder: Path, pixels: np.ndarray) -> list[bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for index, digit in enumerate(pixels):
        buffer = io.BytesIO()
        Image.fromarray(255 - digit).save(buffer, format="PNG")  # ink on white, as drawn
        (folder / f"{index:05d}.png").write_bytes(buffer.getvalue())
        files.append(buffer.getvalue())
    return files


def run_cli(model: str, source: Path, out: Path, *options: str) -> dict:
    """One command line run: its scoring rate from the summary, wall time and peak RSS."""
    command = [
        sys.executable, "-m", "app.batch", model, str(source), str(out), "--no-progress", *options
    ]  # fmt: skip
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=ROOT, env=child_env([]), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert process.stderr is not None
    err = process.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    found = RATE.search(err)
    if process.returncode not in (0, 1) or found is None:
        raise RuntimeError(f"{' '.join(command)} exited {process.returncode}:\n{err[-2000:]}")
    count, seconds = int(found[1]), float(found[2])
    return {
        "inputs": count,
        "seconds": seconds,
        "per_second": float(found[3].replace(",", "")),
        "wall_s": round(wall, 2),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),  # Linux: KiB
    }


async def run_http(url: str, path: str, bodies: list[dict], clients: int, files: bool = False):
    """`bodies` sent from `clients` tasks over keep-alive connections; inputs a second (a
    batch's instances each count)."""
    queue = list(reversed(bodies))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60.0, limits=limits) as client:

        async def worker() -> None:
            while queue:
                body = queue.pop()
                if files:
                    answer = await client.post(path, files=body)
                else:
                    answer = await client.post(path, json=body)
                answer.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        seconds = time.perf_counter() - started
    count = sum(len(body.get("instances", [None])) for body in bodies)
    return {"inputs": count, "seconds": round(seconds, 3), "per_second": count / seconds}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.batch", description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=Path("/work/shared/data"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--digits", type=int, default=1000, help="mnist files (x10 for RSS)")
    parser.add_argument("--http-batch", type=int, default=256)
    parser.add_argument("--batch-clients", type=int, default=4)
    parser.add_argument("--single-clients", type=int, default=16)
    parser.add_argument("--single-rows", type=int, default=2000)
    parser.add_argument("--upload-clients", type=int, default=8)
    parser.add_argument("--out", type=Path, default=report.RESULTS)
    return parser.parse_args(argv)


async def measure(args: argparse.Namespace, work: Path) -> tuple[list[dict], list[dict]]:
    table = housing_table(args.data_dir)
    small = work / "housing.csv"
    pa_csv.write_csv(table, small)
    larger = [work / f"housing_x{times}.csv" for times in (10, 100)]
    for times, path in zip((10, 100), larger, strict=True):
        tiled = pa.concat_tables([table] * times)
        pa_csv.write_csv(tiled.set_column(0, "id", pa.array(np.arange(tiled.num_rows))), path)
    rows = table.drop_columns(["id"]).to_pylist()
    batches = [
        {"instances": rows[i : i + args.http_batch]} for i in range(0, len(rows), args.http_batch)
    ]
    with np.load(args.data_dir / "mnist.npz") as mnist:
        pixels = mnist["x_test"]
    digits = write_digits(work / "digits", pixels[: args.digits])
    write_digits(work / "digits_x10", np.resize(pixels, (args.digits * 10, 28, 28)))
    uploads = [{"file": (f"{i}.png", data, "image/png")} for i, data in enumerate(digits)]

    paths = {
        ("housing", "command line"): lambda: run_cli("housing", small, work / "h.csv"),
        ("housing", LARGE_CLI): lambda: run_cli("housing", larger[0], work / "h10.csv"),
        ("housing", FAMILIAR_CLI): lambda: run_cli(
            "housing", small, work / "hf.csv", "--familiarity"
        ),
        ("housing", f"HTTP, batches of {args.http_batch}"): lambda: run_http(
            url, "/api/models/housing/predict", batches, args.batch_clients
        ),
        ("housing", "HTTP, one row a request"): lambda: run_http(
            url, "/api/models/housing/predict", rows[: args.single_rows], args.single_clients
        ),
        ("mnist", "command line"): lambda: run_cli("mnist", work / "digits", work / "m.csv"),
        ("mnist", "HTTP, one upload a request"): lambda: run_http(
            url, "/api/models/mnist/predict", uploads, args.upload_clients, files=True
        ),
    }
    runs: dict[tuple[str, str], list[dict]] = {key: [] for key in paths}
    with Servers(work) as servers:
        server = servers.start("service", child_env(["housing", "mnist"]))
        await servers.wait_ready(server, timeout=180, path="/health/ready")
        url = server.url
        await run_http(url, "/api/models/housing/predict", batches[:4], 2)  # warm-up
        await run_http(url, "/api/models/mnist/predict", uploads[:16], 2, files=True)
        for round_number in range(args.rounds):
            order = list(paths) if round_number % 2 == 0 else list(reversed(paths))
            for key in order:
                result = paths[key]()
                runs[key].append(await result if asyncio.iscoroutine(result) else result)
                say(f"round {round_number + 1} {key}: {runs[key][-1]['per_second']:,.0f}/s")
    rates = []
    for (model, path), results in runs.items():
        rate = statistics.median(r["per_second"] for r in results)
        cli = statistics.median(r["per_second"] for r in runs[(model, "command line")])
        large = runs.get((model, LARGE_CLI))
        cli_large = statistics.median(r["per_second"] for r in large) if large else None
        familiar = runs.get((model, FAMILIAR_CLI))
        cli_familiar = statistics.median(r["per_second"] for r in familiar) if familiar else None
        rates.append(
            {
                "model": model,
                "path": path,
                "inputs": results[0]["inputs"],
                "per_second": round(rate, 1),
                "rounds": [round(r["per_second"], 1) for r in results],
                "cli_vs_this": round(cli / rate, 2),
                "cli_large_vs_this": round(cli_large / rate, 2) if cli_large else None,
                "cli_familiar_vs_this": round(cli_familiar / rate, 2) if cli_familiar else None,
                "wall_s": statistics.median(r.get("wall_s", r["seconds"]) for r in results),
            }
        )
    memory = []
    for model, sources in (
        ("housing", (small, *larger)),
        ("mnist", (work / "digits", work / "digits_x10")),
    ):
        for source in sources:
            found = run_cli(model, source, work / "rss.csv")
            memory.append({"model": model, "input": source.name, **found})
    return rates, memory


def markdown(meta: dict, rates: list[dict], memory: list[dict]) -> str:
    lines = [
        f"# Batch scoring against the service over HTTP ({meta['date']})",
        "",
        f"Commit {meta['commit']}; {meta['cpus_usable']} usable cores, load average "
        f"{meta['loadavg_start']} at the start (the machine is shared: other engineers' tests "
        f"ran meanwhile); {meta['rounds']} interleaved rounds, medians. "
        "The command line's rate is its scoring (read, check, model, write) without the model's "
        "loading; wall s includes start-up.",
        "",
        "| model | path | inputs | inputs/s (median) | each round | command line / this "
        "| 10x rows / this | --familiarity / this | wall s |",
        "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rates:
        each = ", ".join(f"{v:,.0f}" for v in r["rounds"])
        large, familiar = r.get("cli_large_vs_this"), r.get("cli_familiar_vs_this")
        lines.append(
            f"| {r['model']} | {r['path']} | {r['inputs']:,} | {r['per_second']:,.0f} | {each} "
            f"| {r['cli_vs_this']:.2f}x | {f'{large:.2f}x' if large else ''} "
            f"| {f'{familiar:.2f}x' if familiar else ''} | {r['wall_s']:.1f} |"
        )
    lines += [
        "",
        "Peak resident memory of the command line (one run each):",
        "",
        "| model | input | inputs | peak RSS MiB | scoring s | inputs/s |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
        *(
            f"| {m['model']} | {m['input']} | {m['inputs']:,} | {m['peak_rss_mib']:,.1f} "
            f"| {m['seconds']:.1f} | {m['per_second']:,.0f} |"
            for m in memory
        ),
        "",
    ]
    return "\n".join(lines)


def say(text: str) -> None:
    sys.stderr.write(text + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    header = run_header()
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as work:
        rates, memory = asyncio.run(measure(args, Path(work)))
    meta = {
        **header.as_dict(),
        "rounds": args.rounds,
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    text = markdown(meta, rates, memory)
    stem = f"{header.started:%Y-%m-%d_%H%M%S}_batch"
    for path in report.write(args.out, stem, text, {**meta, "rates": rates, "memory": memory}):
        say(f"wrote {path}")
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
