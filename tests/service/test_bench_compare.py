"""The peers benchmark: its rows, its request bodies, its verdicts and the peers' settings."""

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.compare import Group, Row, groups, payloads, summarize, targets, tree_rss_mib
from bench.peers.registry import mlserver_settings
from bench.scenarios import EXAMPLES_DIR
from tests.conftest import MODELS


def wrk_run(rps: float, p50: float = 10.0, p99: float = 20.0, errors: int = 0) -> dict:
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "errors": errors}


def row(scenario: str, server: str, workers: int, rps: float, p50=10.0, p99=20.0, errors=0):
    group = "one worker" if workers == 1 else "two workers"
    return {
        "group": group,
        "workers": workers,
        "scenario": scenario,
        "server": server,
        "rps_median": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "errors": errors,
    }


def test_a_row_is_the_median_and_spread_of_its_rounds_and_the_latency_of_the_median_round():
    sent = payloads(MODELS)["iris typed"]
    group = Group("one worker", 1, [Row("iris", 64, "service", sent, "typed JSON")])
    runs = {0: [wrk_run(900, p50=30), wrk_run(1000, p50=20, errors=2), wrk_run(1200, p50=10)]}
    (made,) = summarize(group, runs)
    assert (made["rps_median"], made["rps_min"], made["rps_max"]) == (1000, 900, 1200)
    assert made["p50_ms"] == 20
    assert made["errors"] == 2


def test_only_installed_peers_get_rows():
    made = groups(payloads(MODELS), peers=["mlserver"])
    servers = {server for group in made for server in group.servers}
    assert servers == {"service", "floor", "mlserver"}
    assert [group.workers for group in made] == [1, 2]


def test_targets_are_read_from_the_medians_and_a_missing_row_is_not_a_verdict():
    rows = [
        row("iris", "service", 1, 3000, p50=20, p99=50),
        row("iris", "floor", 1, 4000),
        row("iris", "bentoml", 1, 500),
        row("iris v2 JSON", "service", 1, 2500),
        row("iris v2 JSON", "mlserver", 1, 1000),
        row("iris", "service", 2, 5376),
        row("iris", "floor", 2, 6750),  # 0.7964: rounded to two places it would read 0.80
        row("mnist", "service", 2, 900, p50=10, p99=31),
        row("mnist", "bentoml", 2, 1000),
    ]
    overload = {"rejected_503": 10, "retry_after_503": 10, "other": 0, "socket_errors": 0,
                "max_ms": 300.0, "probes": 50, "probes_200": 50}  # fmt: skip
    verdicts = {text: met for text, _, met in targets(rows, overload)}
    assert verdicts["iris c=64, 1 worker: >= 0.60 of the floor"] is True  # 0.75
    assert verdicts["iris c=64, 1 worker: >= 5x BentoML"] is True  # 6x
    assert verdicts["iris c=64, 2 workers: >= 0.80 of the floor"] is False
    assert verdicts["mnist c=16, 2 workers: ahead of mlserver"] is None  # not measured
    assert verdicts["iris v2 JSON c=64, 1 worker: >= 1.5x MLServer"] is True
    assert verdicts["iris v2 JSON c=64, 1 worker: >= 0.80 of the typed route"] is True
    assert verdicts["mnist c=16, 2 workers: ahead of bentoml"] is False
    assert verdicts["every Glassbox row: p99 <= 3x p50"] is False  # 31 / 10
    assert verdicts["every Glassbox row: zero errors"] is True
    assert verdicts["overload: 503 + Retry-After, none over 1 s, ready throughout"] is True
    overload["probes_200"] = 49  # one probe not answered 200
    verdicts = {text: met for text, _, met in targets(rows, overload)}
    assert verdicts["overload: 503 + Retry-After, none over 1 s, ready throughout"] is False


def test_every_server_is_sent_the_same_flower_and_the_same_digit():
    sent = payloads(MODELS)
    typed = json.loads(sent["iris typed"].body)
    v2 = json.loads(sent["iris v2"].body)["inputs"][0]
    native = json.loads(sent["iris bentoml"].body)["features"]
    assert v2["data"] == list(typed.values()) == native[0]
    png = (EXAMPLES_DIR / "mnist.png").read_bytes()
    assert base64.b64decode(json.loads(sent["mnist v2"].body)["inputs"][0]["data"][0]) == png
    assert png in sent["mnist upload"].body
    assert png in sent["mnist bentoml"].body


@pytest.mark.parametrize("name", ["iris typed", "iris v2", "mnist upload", "mnist v2"])
def test_glassbox_answers_every_body_the_benchmark_sends_it(app_client, name):
    sent = payloads(MODELS)[name]
    response = app_client.post(sent.path, content=sent.body, headers=sent.headers)
    assert response.status_code == 200, response.text


def test_mlserver_gets_a_settings_folder_with_both_models_and_adaptive_batching(tmp_path):
    folder = mlserver_settings(tmp_path, port=9123, workers=2, model_dir=MODELS)
    settings = json.loads((folder / "settings.json").read_text())
    assert (settings["http_port"], settings["parallel_workers"]) == (9123, 2)
    for name in ("iris", "mnist"):
        model = json.loads((folder / name / "model-settings.json").read_text())
        assert model["implementation"] == "bench.peers.mlserver_runtime.SavedModelRuntime"
        assert model["max_batch_size"] == 64
        assert Path(model["parameters"]["uri"]).parent == MODELS / name


# Holds its first argument in MiB (written, so resident) and starts itself with the rest; once
# all of its line hold theirs, prints their pids, its own first, and waits for stdin to close.
HOLDER = """
import os, subprocess, sys
held = b"x" * (int(sys.argv[1]) * 2**20)
pids = [str(os.getpid())]
if sys.argv[2:]:
    child = subprocess.Popen([sys.executable, *sys.argv[:1], *sys.argv[2:]],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    pids += child.stdout.readline().split()
print(*pids, flush=True)
sys.stdin.read()
if sys.argv[2:]:
    child.stdin.close()
    child.wait()
"""


def vm_rss_mib(pid: int) -> float:
    """VmRSS of one process, as /proc/<pid>/status gives it."""
    status = Path(f"/proc/{pid}/status").read_text()
    (kib,) = (line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(kib) / 1024


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_memory_is_a_process_s_resident_memory_plus_all_its_descendants_s(tmp_path):
    held = [48, 24, 12]  # MiB: a child of this test, its child and that one's child
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    top = subprocess.Popen(
        [sys.executable, str(script), *map(str, held)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        pids = [int(pid) for pid in top.stdout.readline().split()]  # all hold theirs now
        readings = [tree_rss_mib(pid) for pid in pids]
        own = [vm_rss_mib(pid) for pid in pids]
    finally:
        top.stdin.close()
        top.wait(timeout=30)
    assert len(pids) == len(held)
    assert all(rss > mib for rss, mib in zip(own, held, strict=True)), own
    # Each reading is that process's VmRSS and those below it, grandchildren too. Idle
    # processes read a moment apart differ by a page or two: the tolerance is a MiB each.
    expected = [sum(own[level:]) for level in range(len(own))]
    assert readings == pytest.approx(expected, abs=len(held))


def matrix_row(scenario, concurrency, server, workers, rps, p50=10.0, p99=20.0, errors=0):
    return {
        **row(scenario, server, workers, rps, p50, p99, errors),
        "concurrency": concurrency,
    }


def test_the_server_matrix_runs_every_server_on_every_scenario_it_has_a_route_for():
    from bench.compare import server_groups

    one, two = server_groups(payloads(MODELS))
    assert (one.workers, two.workers) == (1, 2)
    cells = {(r.scenario, r.concurrency, r.server) for r in one.rows}
    assert len(cells) == len(one.rows) == 3 * (5 + 3 + 5)  # the floor has no v2 route
    assert ("iris v2 JSON", 64, "floor") not in cells
    assert set(one.servers) == {
        "service", "service@granian", "service-plain@granian", "floor", "floor@granian"
    }  # fmt: skip


def test_each_service_is_judged_against_the_floor_on_its_own_server():
    from bench import server_matrix

    rows = [
        matrix_row("iris", 64, "service", 1, 850, p99=25),
        matrix_row("iris", 64, "floor", 1, 1000, p99=20),
        matrix_row("iris", 64, "service@granian", 1, 800),
        matrix_row("iris", 64, "floor@granian", 1, 1000),
        matrix_row("iris", 1, "service", 1, 500, p50=0.9),
        matrix_row("iris", 1, "floor", 1, 2000, p50=0.3),
        matrix_row("iris", 64, "service-plain@granian", 1, 806),
    ]
    verdicts = {text: (shown, met) for text, shown, met in server_matrix.targets(rows)}
    assert verdicts["service: iris c=64, 1 worker(s) >= 0.85 of floor"] == ("0.850x", True)
    assert verdicts["service@granian: iris c=64, 1 worker(s) >= 0.85 of floor@granian"] == (
        "0.800x",
        False,
    )
    assert verdicts["service: iris c=64, 1 worker(s) p99 <= 1.25x floor's"] == ("1.250x", True)
    assert verdicts["service: iris c=1 p50 within 0.5 ms of floor's"] == ("+0.60 ms", False)
    plain = "plain routes on Granian within 5% of the hand-made path: iris c=64, 1 worker(s)"
    assert verdicts[plain] == ("0.948x", False)
    missing = "service: iris c=64, 2 worker(s) >= 0.90 of floor"
    assert verdicts[missing] == ("-", None)  # a row not measured is no verdict


def test_a_server_name_says_its_app_its_routes_and_its_http_server():
    from bench import server_matrix

    assert [
        (server_matrix.target(name), server_matrix.base_name(name), server_matrix.http_server(name))
        for name in ("service", "service-plain@granian", "floor@granian")
    ] == [
        ("service", "service", "uvicorn"),
        ("service-plain", "service", "granian"),
        ("floor", "floor", "granian"),
    ]
