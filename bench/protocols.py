"""`python -m bench.protocols`: one service, every way in side by side: REST (typed JSON, TF
Serving JSON, Open Inference JSON and binary) and gRPC (KServe v2 raw, TF Serving), for one iris
row and for a batch of 32 mnist images sent as one tensor. Rounds are interleaved, so the
machine's noise falls on every row alike; the table gives the median and spread of req/s.

REST rows are driven by wrk, gRPC rows by bench/grpc_load.py (Python, on the same two cores),
and, where Triton's perf_analyzer can run (bench/perf_analyzer.py), two rows each driven by it
over REST and gRPC with its own random inputs, as a Triton user would measure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tritonclient.grpc import service_pb2

from app.artifact import imaging
from app.artifact.card import ModelCard
from bench import grpc_load, perf_analyzer, report, wrk
from bench.cards import newest_versions
from bench.run_info import loadavg, run_header
from bench.scenarios import EXAMPLES_DIR, Payload
from bench.servers import ROOT, Servers, child_env, free_port

V2_INFER = "/inference.GRPCInferenceService/ModelInfer"
TF_PREDICT = "/tensorflow.serving.PredictionService/Predict"


@dataclass(frozen=True)
class Case:
    scenario: str  # what is sent: "iris x1", "mnist x32"
    way: str  # how: "REST v2 JSON", "gRPC v2 raw", ...
    http: Payload | None = None
    grpc_method: str | None = None
    grpc_request: bytes | None = None
    # perf_analyzer's rows: its protocol ("http" or "grpc"), the model and the rows a request
    analyzer: str | None = None
    model: str = ""
    rows: int = 1

    @property
    def driver(self) -> str:
        if self.analyzer is not None:
            return "perf_analyzer"
        return "wrk" if self.http is not None else "grpc.aio"


def mnist_batch(card: ModelCard, rows: int) -> np.ndarray:
    """The committed example digit as the model sees it, `rows` times."""
    data = (EXAMPLES_DIR / "mnist.png").read_bytes()
    image = imaging.open_image(data, max_bytes=len(data), max_pixels=10**7)
    one = imaging.preprocess(imaging.load(image), card.input.image_spec)
    return np.repeat(one[np.newaxis], rows, axis=0).astype(np.float32)


def iris_row(card: ModelCard) -> np.ndarray:
    return np.array([[spec.mean for spec in card.input.features or []]], dtype=np.float32)


def _json(body: dict) -> Payload:
    return Payload("", json.dumps(body).encode(), {"content-type": "application/json"})


def cases_for(
    card: ModelCard, batch: np.ndarray, scenario: str, with_analyzer: bool = False
) -> list[Case]:
    name, input_name = card.name, card.input.name
    v2_tensor = {"name": input_name, "shape": list(batch.shape), "datatype": "FP32"}
    v2_json = _json({"inputs": [{**v2_tensor, "data": batch.reshape(-1).tolist()}]})
    header = json.dumps(
        {
            "inputs": [{**v2_tensor, "parameters": {"binary_data_size": batch.nbytes}}],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    v2_binary = Payload(
        "",
        header + batch.astype("<f4").tobytes(),
        {
            "content-type": "application/octet-stream",
            "inference-header-content-length": str(len(header)),
        },
    )
    v2_grpc = service_pb2.ModelInferRequest(model_name=name)
    v2_grpc.inputs.add(name=input_name, datatype="FP32", shape=list(batch.shape))
    v2_grpc.raw_input_contents.append(batch.astype("<f4").tobytes())
    tf_grpc = predict_pb2.PredictRequest()
    tf_grpc.model_spec.name = name
    tf_grpc.inputs[input_name].CopyFrom(tf.make_tensor_proto(batch))
    cases = []
    if card.input.features:
        typed = _json(
            {spec.name: float(v) for spec, v in zip(card.input.features, batch[0], strict=True)}
        )
        cases.append(Case(scenario, "REST typed JSON", _at(typed, f"/api/models/{name}/predict")))
    tf_json = _json({"inputs": {input_name: batch.tolist()}})
    cases += [
        Case(scenario, "REST TF Serving JSON", _at(tf_json, f"/v1/models/{name}:predict")),
        Case(scenario, "REST v2 JSON", _at(v2_json, f"/v2/models/{name}/infer")),
        Case(scenario, "REST v2 binary", _at(v2_binary, f"/v2/models/{name}/infer")),
        Case(
            scenario, "gRPC v2 raw", grpc_method=V2_INFER, grpc_request=v2_grpc.SerializeToString()
        ),
        Case(
            scenario,
            "gRPC TF Serving",
            grpc_method=TF_PREDICT,
            grpc_request=tf_grpc.SerializeToString(),
        ),
    ]
    if with_analyzer:
        cases += [
            Case(scenario, f"{way} perf_analyzer", analyzer=protocol, model=name, rows=len(batch))
            for way, protocol in (("REST v2", "http"), ("gRPC v2", "grpc"))
        ]
    return cases


Analyzer = tuple[Path, dict[str, str]]  # perf_analyzer's binary and its environment


def find_analyzer() -> Analyzer | None:
    try:
        return perf_analyzer.perf_analyzer()
    except perf_analyzer.Unavailable as why:
        sys.stderr.write(f"no perf_analyzer rows: {why}\n")
        return None


def _at(payload: Payload, path: str) -> Payload:
    return Payload(path, payload.body, payload.headers)


async def measure_case(
    case: Case,
    url: str,
    target: str,
    concurrency: int,
    seconds: float,
    analyzer: Analyzer | None = None,
):
    if case.analyzer is not None:
        assert analyzer is not None
        binary, environment = analyzer
        return await asyncio.to_thread(
            perf_analyzer.measure,
            binary,
            environment,
            model=case.model,
            url=url.removeprefix("http://") if case.analyzer == "http" else target,
            protocol=case.analyzer,
            rows=case.rows,
            concurrency=concurrency,
            seconds=seconds,
        )
    if case.http is not None:
        return await asyncio.to_thread(
            wrk.measure_warm, url, case.http, concurrency=concurrency, seconds=seconds
        )
    assert case.grpc_method is not None
    assert case.grpc_request is not None
    return await grpc_load.measure(
        target, case.grpc_method, case.grpc_request, concurrency=concurrency, seconds=seconds
    )


def table(cases: list[Case], runs: dict[tuple[str, str], list[dict]]) -> list[dict]:
    rows = []
    for case in cases:
        measured = runs[(case.scenario, case.way)]
        rps = [run["rps"] or 0.0 for run in measured]
        rows.append(
            {
                "scenario": case.scenario,
                "way": case.way,
                "driver": case.driver,
                "rps_median": round(statistics.median(rps), 1),
                "rps_min": round(min(rps), 1),
                "rps_max": round(max(rps), 1),
                "p50_ms": round(statistics.median(run["p50_ms"] or 0 for run in measured), 2),
                "p99_ms": round(statistics.median(run["p99_ms"] or 0 for run in measured), 2),
                "errors": sum(run["errors"] for run in measured),
            }
        )
    for row in rows:
        base = next(
            (r for r in rows if r["scenario"] == row["scenario"] and r["way"] == "REST v2 JSON"),
            None,
        )
        row["vs_rest_v2_json"] = (
            round(row["rps_median"] / base["rps_median"], 2)
            if base and base["rps_median"]
            else None
        )
    return rows


def markdown(meta: dict, rows: list[dict]) -> str:
    header = [
        f"# Glassbox protocols benchmark {meta['date']}",
        "",
        f"commit `{meta['commit']}`, {meta['cpu_count']} cores ({meta['cpus_usable']} usable), "
        f"load average {meta['loadavg_start']} at the start, {meta['loadavg_end']} at the end, "
        f"Python {meta['python']}",
        "",
        "GLASSBOX_* settings of the run: "
        + (", ".join(f"`{k}={v}`" for k, v in meta["glassbox_env"].items()) or "the defaults"),
        "",
    ]
    return "\n".join(header) + section(
        rows, meta["concurrency"], meta["rounds"], meta["seconds"], meta.get("workers", 1)
    )


def section(
    rows: list[dict], concurrency: int, rounds: int, seconds: float, workers: int = 1
) -> str:
    """The table with what it measured, as the protocols run and `python -m bench` print it."""
    columns = [
        "scenario", "way", "driver", "rps_median", "rps_min", "rps_max",
        "p50_ms", "p99_ms", "errors", "vs_rest_v2_json",
    ]  # fmt: skip
    lines = [
        f"REST and gRPC, side by side: one service (`python -m app.serve app.main:app`, "
        f"{workers} worker(s)), concurrency {concurrency}, {rounds} interleaved rounds of "
        f"{seconds} s per row (after a 2 s warm-up each). req/s: median of the rounds, and "
        "their min and max; p50/p99: medians of the rounds'. vs_rest_v2_json: the row's "
        "median req/s over the same scenario's REST v2 JSON row. REST rows are driven by wrk "
        "(C), gRPC rows by a Python grpc.aio client on one channel (bench/grpc_load.py), "
        "perf_analyzer rows by Triton's perf_analyzer 2.41 (C++, its random inputs, three "
        "windows of the row's seconds, no warm-up of its own), all on the same cores as the "
        "service.",
        "",
        "| " + " | ".join(columns) + " |",
        "| " + " | ".join("---" for _ in columns) + " |",
        *(
            "| " + " | ".join("" if row[c] is None else str(row[c]) for c in columns) + " |"
            for row in rows
        ),
        "",
    ]
    return "\n".join(lines)


async def measure_all(
    servers: Servers, env: dict[str, str], *, concurrency: int, seconds: float, rounds: int
) -> tuple[list[dict], dict[str, list[dict]]]:
    """One service with gRPC, every way in, `rounds` interleaved rounds: the table's rows and
    every run."""
    present = newest_versions(ROOT / "models", ["iris", "mnist"])
    cards = {name: ModelCard.read(path) for name, path in present.items()}
    analyzer = find_analyzer()
    cases = cases_for(
        cards["iris"], iris_row(cards["iris"]), "iris x1", analyzer is not None
    ) + cases_for(
        cards["mnist"], mnist_batch(cards["mnist"], 32), "mnist x32", analyzer is not None
    )
    grpc_port = free_port()
    env = {**env, "GLASSBOX_MODELS": "iris,mnist", "GLASSBOX_GRPC_PORT": str(grpc_port)}
    runs: dict[tuple[str, str], list[dict]] = {(c.scenario, c.way): [] for c in cases}
    server = servers.start("service", env, label="service-protocols")
    await servers.wait_ready(server, 300)
    target = f"127.0.0.1:{grpc_port}"
    for round_number in range(rounds):
        for case in cases:
            row = await measure_case(case, server.url, target, concurrency, seconds, analyzer)
            runs[(case.scenario, case.way)].append(row)
            sys.stderr.write(
                f"round {round_number + 1} {case.scenario:<10} {case.way:<22} "
                f"{row['rps'] or 0:>8.1f} req/s  p50 {row['p50_ms']} ms  "
                f"errors {row['errors']}\n"
            )
    servers.stop(server)
    every_run = {f"{scenario} / {way}": measured for (scenario, way), measured in runs.items()}
    return table(cases, runs), every_run


async def run(args: argparse.Namespace) -> int:
    header = run_header()
    with Servers(Path(tempfile.mkdtemp(prefix="glassbox-protocols-"))) as servers:
        rows, every_run = await measure_all(
            servers,
            child_env(["iris", "mnist"]),
            concurrency=args.concurrency,
            seconds=args.seconds,
            rounds=args.rounds,
        )
    meta = {
        **header.as_dict(),
        "loadavg_end": loadavg(),
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "seconds": args.seconds,
        "glassbox_env": {k: v for k, v in os.environ.items() if k.startswith("GLASSBOX_")},
    }
    text = markdown(meta, rows)
    stem = header.started.strftime("%Y-%m-%d_%H%M%S") + "_protocols"
    data = {"meta": meta, "results": rows, "runs": every_run}
    report.publish(args.out, stem, text, data)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.protocols", description=__doc__)
    wrk.add_run_options(parser, concurrency=16, seconds=10.0, rounds=2)
    args = parser.parse_args(argv)
    if wrk.missing("the REST rows"):
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
