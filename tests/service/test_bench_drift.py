"""bench.drift's table: medians over rounds of each percentile, ratios to drift off."""

from bench import drift


def test_the_table_gives_medians_over_rounds_and_ratios_to_the_window_off():
    results = {
        "predict, window 0": [[0.001] * 100, [0.003] * 100, [0.002] * 100],
        "predict, window 1000": [[0.004] * 100, [0.004] * 100, [0.004] * 100],
        "observe, 1 row": [[0.00001] * 100],
    }
    rows = {row["what"]: row for row in drift.rows(results)}
    assert rows["predict, window 0"]["p50_ms"] == 2.0
    assert rows["predict, window 1000"]["p50_vs_window_0"] == 2.0
    assert rows["observe, 1 row"]["p50_vs_window_0"] is None
    table = drift.markdown_table(list(rows.values()))
    assert table.splitlines()[0].startswith("| what | p50_ms")
    assert "| observe, 1 row | 0.01 | 0.01 | - | - |" in table
