"""bench/batch.py reads the command line's summary and renders its table."""

from pathlib import Path

from app.batch.cli import Summary
from bench import batch


def test_the_benchmark_reads_the_command_lines_summary():
    summary = Summary("housing", 1, 20640, 20630, 10, 0.25, Path("o.csv"), Path("r.csv"))
    found = batch.RATE.search("\n".join(summary.lines()))
    assert found is not None
    assert (int(found[1]), float(found[2])) == (20640, 0.25)


def test_the_table_has_a_row_per_path_and_input():
    meta = {"date": "d", "commit": "c", "cpus_usable": 2, "loadavg_start": [1.0], "rounds": 1}
    rates = [
        {"model": "housing", "path": "command line", "inputs": 10, "per_second": 100.0,
         "rounds": [100.0], "cli_vs_this": 1.0, "wall_s": 5.0},
        {"model": "housing", "path": "HTTP", "inputs": 10, "per_second": 20.0,
         "rounds": [20.0], "cli_vs_this": 5.0, "cli_large_vs_this": 8.0,
         "cli_familiar_vs_this": 3.0, "wall_s": 0.5},
    ]  # fmt: skip
    memory = [{"model": "housing", "input": "a.csv", "inputs": 10, "peak_rss_mib": 700.0,
               "seconds": 0.1, "per_second": 100.0}]  # fmt: skip
    text = batch.markdown(meta, rates, memory)
    assert "| housing | command line | 10 | 100 | 100 | 1.00x |  |  | 5.0 |" in text
    assert "| housing | HTTP | 10 | 20 | 20 | 5.00x | 8.00x | 3.00x | 0.5 |" in text
    assert "| housing | a.csv | 10 | 700.0 | 0.1 | 100 |" in text
