"""bench.repository's table: each call's RSS and its change, and the summary line."""

from bench.memory import MODELS
from bench.repository import markdown

META = {
    "date": "2026-12-07T19:00:00+00:00",
    "commit": "abc",
    "cpu_count": 2,
    "loadavg_start": [1.0],
}


def test_the_table_shows_each_calls_change_and_the_summary_round_by_round():
    rows = [{"round": 0, "step": "at ready (every model loaded)", "rss": 800.0, "anon": 350.0}]
    rss = 800.0
    for number in (1, 2):
        for action, change in (("unload", -2.5), ("load", 3.0)):
            for name in MODELS:
                rss += change
                rows.append(
                    {"round": number, "step": f"{name} {action}ed", "rss": rss, "anon": 1.0}
                )
    text = markdown(META, rows)
    assert "| 0 | at ready (every model loaded) | 800.0 |  | 350.0 |" in text
    assert "| 1 | iris unloaded | 797.5 | -2.5 | 1.0 |" in text
    assert "| 2 | catdog loaded | 804.0 | +3.0 | 1.0 |" in text
    assert "every model unloaded, 790.0, 792.0 MiB" in text
    assert "every model loaded again, 802.0, 804.0 MiB" in text
