"""The harnesses' pure helpers: percentiles, run summaries, ratios, the results table and the
soak report's figures."""

import argparse
import datetime as dt
import json

import pytest

from bench import report, soak
from bench.run_info import RunHeader
from bench.scenarios import BOUNDARY, multipart_body
from bench.stats import Sample, percentile, ratio, summarize, summarize_overload


def test_percentile_interpolates_between_ranks_like_numpy():
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([float(x) for x in range(1, 101)], 99) == pytest.approx(99.01)
    assert percentile([7.0], 99) == 7.0
    assert percentile([1.0, 2.0], 0) == 1.0
    assert percentile([1.0, 2.0], 100) == 2.0


def test_percentile_of_nothing_is_none_and_q_is_checked():
    assert percentile([], 50) is None
    with pytest.raises(ValueError, match="q must be between 0 and 100"):
        percentile([1.0], 101)


def test_summarize_times_only_2xx_and_counts_everything_else_as_errors():
    samples = [
        Sample(0.010, status=200),
        Sample(0.030, status=200),
        Sample(0.001, status=503),
        Sample(5.0, error="ReadTimeout"),
    ]
    summary = summarize(samples, elapsed_s=2.0, unfinished=1)
    assert summary["ok"] == 2
    assert summary["rps"] == 1.0
    assert summary["p50_ms"] == 20.0
    assert summary["errors"] == 3
    assert summary["error_kinds"] == {"503": 1, "ReadTimeout": 1, "unfinished": 1}


def test_summarize_with_no_answer_has_no_latency():
    summary = summarize([Sample(0.1, error="ConnectError")], elapsed_s=0.5)
    assert summary["rps"] == 0.0
    assert summary["p50_ms"] is None
    assert summary["errors"] == 1


def test_summarize_overload_separates_fast_503s_and_flags_hung_requests():
    samples = [Sample(0.2, status=200)] * 3 + [Sample(0.002, status=503)] * 5
    calm = summarize_overload(samples, elapsed_s=1.0, unfinished=0, timeout_s=30)
    assert (calm["ok_200"], calm["rejected_503"]) == (3, 5)
    assert calm["p99_503_ms"] == 2.0
    assert calm["all_finished"]

    stuck = summarize_overload(
        [*samples, Sample(30.0, error="ReadTimeout")], elapsed_s=31, unfinished=2, timeout_s=30
    )
    assert (stuck["timeouts"], stuck["hung"], stuck["all_finished"]) == (1, 3, False)
    assert stuck["other"] == {"ReadTimeout": 1}
    assert stuck["max_ms"] == 30000.0


def test_ratio_is_none_without_both_numbers():
    assert ratio(300.0, 100.0) == 3.0
    assert ratio(300.0, None) is None
    assert ratio(None, 100.0) is None
    assert ratio(300.0, 0.0) is None


def _row(scenario, concurrency, server, rps):
    return {
        "scenario": scenario,
        "concurrency": concurrency,
        "server": server,
        "rps": rps,
        "p50_ms": 1.5,
        "p99_ms": 9.25,
        "errors": 0,
    }


def test_with_ratios_puts_service_over_baseline_and_floor_on_the_service_row():
    results = [
        _row("iris", 16, "floor", 1000.0),
        _row("iris", 16, "baseline", 50.0),
        _row("iris", 16, "service", 400.0),
        _row("iris", 1, "service", 100.0),
    ]
    rows = report.with_ratios(results)
    assert [(r["concurrency"], r["server"]) for r in rows] == [
        (1, "service"),
        (16, "service"),
        (16, "baseline"),
        (16, "floor"),
    ]
    assert rows[0]["vs_baseline"] is None  # no baseline run at concurrency 1
    assert (rows[1]["vs_baseline"], rows[1]["vs_floor"]) == (8.0, 0.4)
    assert "vs_baseline" not in rows[2]


def test_markdown_table_has_a_header_a_rule_and_one_line_per_row():
    rows = report.with_ratios([_row("iris", 1, "service", 400.0), _row("iris", 1, "floor", None)])
    lines = report.markdown_table(rows).splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("| scenario")
    assert set(lines[1]) <= {"|", "-", ":"}
    assert len({len(line) for line in lines}) == 1  # columns padded to one width
    cells = [cell.strip() for cell in lines[2].strip("|").split("|")]
    assert cells == ["iris", "1", "service", "400.0", "1.5", "9.2", "0", "-", "-"]
    assert "| floor " in lines[3]
    assert " - " in lines[3]


def test_render_and_write_make_markdown_and_json(tmp_path):
    meta = {
        "date": "2026-01-01T00:00:00+00:00",
        "commit": "abc1234-dirty",
        "cpu_count": 2,
        "cpus_usable": 2,
        "loadavg_start": [0.5, 0.5, 0.5],
        "platform": "Linux",
        "python": "3.11.7",
        "args": {"requests": 10},
        "glassbox_env": {},
        "service_settings": {"queue_size": 32},
    }
    overload = {
        "scenario": "iris",
        "concurrency": 256,
        "queue_size": 32,
        "requests": 512,
        **summarize_overload([Sample(0.1, status=200)], 1.0, 0, 30.0),
    }
    rows = report.with_ratios([_row("iris", 1, "service", 400.0)])
    text = report.render_markdown(meta, rows, overload, ["mnist: skipped"])
    assert "abc1234-dirty" in text
    assert "2 cores" in text
    assert "no 503 at all" in text
    assert "- mnist: skipped" in text
    assert '"queue_size": 32' in text
    assert "Settings" not in report.render_markdown(meta, rows, None, [], with_settings=False)

    written = report.write(tmp_path / "out", "2026-01-01_000000", text, {"results": rows})
    assert [p.name for p in written] == ["2026-01-01_000000.md", "2026-01-01_000000.json"]
    assert json.loads(written[1].read_text())["results"][0]["rps"] == 400.0
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_multipart_body_wraps_the_file_between_boundaries():
    body = multipart_body("file", "x.png", "image/png", b"\x89PNG")
    assert body.startswith(f"--{BOUNDARY}\r\n".encode())
    assert b'name="file"; filename="x.png"' in body
    assert body.endswith(f"\r\n\x89PNG\r\n--{BOUNDARY}--\r\n".encode("latin-1"))


SOAK_HEADER = RunHeader(
    started=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
    commit="abc1234 (uncommitted changes)",
    cpu_count=4,
    cpus_usable=2,
    loadavg_start=[0.5, 0.25, 0.125],
    platform="Linux-test",
    machine="x86_64",
    python="3.11.7",
)


def _soak_report(latencies_ms: list[float]) -> str:
    """soak.report of a run with one kind of request, answered in these times."""
    tally = soak.Tally(latencies_ms=list(latencies_ms))
    tally.statuses[200] += len(latencies_ms)
    idle = soak.Sample(t=60.0, rss_kb=100_000, fds=20)
    result = {
        "header": SOAK_HEADER,
        "cards": {"iris": {"version": 1}},
        "calls": [],
        "tallies": {"iris predict": tally},
        "mismatches": [],
        "samples": [idle],
        "warmup_s": 60.0,
        "after_warmup": idle,
        "at_end": soak.Sample(t=300.0, rss_kb=100_000, fds=20),
        "elapsed_s": 296.0,
    }
    text, passed = soak.report(argparse.Namespace(duration=300.0, concurrency=32), result)
    assert passed
    return text


def _soak_row(latencies_ms: list[float]) -> list[str]:
    text = _soak_report(latencies_ms)
    row = next(line for line in text.splitlines() if line.startswith("| iris predict |"))
    return [cell.strip() for cell in row.strip("|").split("|")]


def test_the_soak_report_interpolates_its_percentiles_as_the_benchmark_does():
    # 1..9 ms and one 100 ms answer: interpolated, p50 = 5.5 and p99 = 9 + 0.91 * 91 = 91.81;
    # the nearest rank soak.py used to take would have said 5 and 100.
    latencies = [float(x) for x in range(1, 10)] + [100.0]
    assert percentile(latencies, 99) == pytest.approx(91.81)
    _, count, statuses, p50, p99, slowest, wrong = _soak_row(latencies)
    assert (count, statuses, wrong) == ("10", "200: 10", "0")
    assert (p50, p99, slowest) == ("6", "92", "100")


def test_the_soak_report_of_a_kind_without_latencies_says_nan():
    assert _soak_row([])[3:6] == ["nan", "nan", "nan"]


def test_the_soak_report_prints_the_shared_run_header():
    lines = _soak_report([1.0]).splitlines()
    assert lines[0] == "# Soak run 2026-01-02 03:04 UTC"
    assert "- commit: abc1234 (uncommitted changes)" in lines
    assert "- cores: 4 (usable: 2); Python 3.11.7 on x86_64" in lines
