"""bench.memory's readings and table: a process tree, RSS against PSS, the steps' deltas."""

import os
import subprocess
import sys
import time

import pytest

from bench import memory
from bench.compare import process_tree

LINUX = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@LINUX
def test_a_tree_holds_the_process_and_its_children_and_pss_never_exceeds_rss():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        deadline = time.monotonic() + 10
        while child.pid not in process_tree(os.getpid()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert {os.getpid(), child.pid} <= set(process_tree(os.getpid()))
        assert os.getpid() not in process_tree(child.pid)
        reading = memory.rollup(os.getpid())
        assert 0 < reading["pss"] <= reading["rss"]
    finally:
        child.kill()
        child.wait()


def test_each_step_shows_what_it_added_to_the_one_before():
    def step(name, seconds, rss, anon, file):
        return {"step": name, "seconds": seconds, "rss": rss, "anon": anon, "file": file}

    steps = [
        step("interpreter", None, 10.0, 4.0, 6.0),
        step("TensorFlow imported", None, 650.0, 260.0, 390.0),
        step("iris loaded and warmed up", 0.25, 660.0, 268.0, 392.0),
    ]
    at_ready = [{"workers": 2, "processes": 3, "rss_mib": 1400.0, "pss_mib": 1000.0}]
    text = memory.markdown({"date": "d", "commit": "c", "cpu_count": 2}, steps, at_ready)
    assert "| TensorFlow imported | 650 | +640 | 260 | 390 |  |" in text
    assert "| iris loaded and warmed up | 660 | +10 | 268 | 392 | 0.250 |" in text
    assert "| 2 | 3 | 1400.0 | 1000.0 |" in text
