"""The results table (markdown and JSON). Rendering is pure; `write` is the one I/O step."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.stats import ratio

RESULTS = Path(__file__).resolve().parent / "results"  # every benchmark's default --out
SERVER_ORDER = ("service", "baseline", "floor")
COLUMNS = (
    ("scenario", "scenario"),
    ("concurrency", "conc."),
    ("server", "server"),
    ("rps", "req/s"),
    ("p50_ms", "p50 ms"),
    ("p99_ms", "p99 ms"),
    ("errors", "errors"),
    ("vs_baseline", "service/baseline"),
    ("vs_floor", "service/floor"),
)


def with_ratios(results: list[dict]) -> list[dict]:
    """Rows in (scenario, concurrency, server) order; the service rows get its req/s divided
    by the baseline's and the floor's at the same scenario and concurrency."""
    rps = {(r["scenario"], r["concurrency"], r["server"]): r.get("rps") for r in results}
    rows = []
    for result in results:
        row = dict(result)
        if row["server"] == "service":
            key = (row["scenario"], row["concurrency"])
            row["vs_baseline"] = ratio(row.get("rps"), rps.get((*key, "baseline")))
            row["vs_floor"] = ratio(row.get("rps"), rps.get((*key, "floor")))
        rows.append(row)
    order = {name: index for index, name in enumerate(SERVER_ORDER)}
    scenarios = list(dict.fromkeys(r["scenario"] for r in results))
    rows.sort(
        key=lambda r: (
            scenarios.index(r["scenario"]),
            r["concurrency"],
            order.get(r["server"], len(order)),
        )
    )
    return rows


def _cell(key: str, value) -> str:
    if value is None:
        return "-"
    if key in ("vs_baseline", "vs_floor"):
        return f"{value:.2f}x"
    if isinstance(value, float):
        return f"{value:,.1f}" if key == "rps" else f"{value:.1f}"
    return str(value)


def markdown_table(rows: list[dict]) -> str:
    """A markdown table of the rows, columns padded so it also reads as plain text."""
    header = [title for _, title in COLUMNS]
    body = [[_cell(key, row.get(key)) for key, _ in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    numeric = [key not in ("scenario", "server") for key, _ in COLUMNS]

    def line(cells: list[str]) -> str:
        padded = [
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, right in zip(cells, widths, numeric, strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(
        "-" * (w + 1) + ":" if right else "-" * (w + 2)
        for w, right in zip(widths, numeric, strict=True)
    )
    return "\n".join([line(header), rule + "|", *(line(cells) for cells in body)])


def overload_markdown(overload: dict) -> str:
    """The overload run as a short list."""
    if not overload:
        return ""
    o = overload
    verdict = (
        "every request finished within the timeout"
        if o["all_finished"]
        else f"{o['hung']} request(s) HUNG ({o['timeouts']} timed out after {o['timeout_s']} s, "
        f"{o['unfinished']} still in flight at the wall-clock cap)"
    )
    other = ", ".join(f"{k}: {v}" for k, v in o["other"].items()) or "none"
    lines = [
        f"Overload: {o['scenario']} at concurrency {o['concurrency']} against the service with "
        f"GLASSBOX_QUEUE_SIZE={o['queue_size']}, {o['requests']} requests.",
        "",
        f"- 200: {o['ok_200']} (p50 {_cell('', o['p50_200_ms'])} ms, "
        f"p99 {_cell('', o['p99_200_ms'])} ms, {_cell('rps', o['ok_rps'])} req/s)",
        f"- 503: {o['rejected_503']} (p50 {_cell('', o['p50_503_ms'])} ms, "
        f"p99 {_cell('', o['p99_503_ms'])} ms)",
        f"- other outcomes: {other}",
        f"- slowest request: {_cell('', o['max_ms'])} ms; {verdict}",
    ]
    if o["rejected_503"] == 0 and o["all_finished"]:
        lines.append(
            "- no 503 at all: the Python client sent too slowly to keep more than "
            "GLASSBOX_QUEUE_SIZE requests in progress at once (compare its req/s with the "
            "service's); overload it with wrk: bench/overload.lua"
        )
    return "\n".join(lines)


def render_markdown(
    meta: dict,
    rows: list[dict],
    overload: dict | None,
    notes: list[str],
    *,
    with_settings: bool = True,
) -> str:
    """The report: header, table, overload, notes and (for the file) the settings used."""
    parts = [
        f"# Glassbox benchmark {meta['date']}",
        "",
        f"commit `{meta['commit']}`, {meta['cpu_count']} cores (os.cpu_count; "
        f"{meta['cpus_usable']} usable), load average {meta['loadavg_start']} at the start, "
        f"{meta['platform']}, Python {meta['python']}",
        "",
        f"every server: {meta.get('launcher', 'uvicorn')} "
        f"{' '.join(meta.get('uvicorn_options', []))}",
        "",
        "models: "
        + (", ".join(f"{n} v{v}" for n, v in meta.get("models", {}).items()) or "none")
        + (f" from {meta['model_dir']}" if meta.get("model_dir") else ""),
        "",
        "req/s: 2xx answers per second of the measured run (after the warm-up); p50/p99: "
        "latency of those answers; errors: any other outcome (non-2xx, exception, or still in "
        "flight at the wall-clock cap). service/baseline and service/floor: the service's req/s "
        "divided by theirs.",
        "",
        markdown_table(rows) if rows else "(no runs)",
    ]
    if overload:
        parts += ["", overload_markdown(overload)]
    if notes:
        parts += ["", "Notes:", "", *(f"- {note}" for note in notes)]
    if with_settings:
        used = {key: meta.get(key) for key in ("args", "glassbox_env", "service_settings")}
        parts += ["", "Settings:", "", "```json", json.dumps(used, indent=2), "```"]
    return "\n".join([*parts, ""])


def write(out_dir: Path, stem: str, markdown: str, data: dict) -> list[Path]:
    """Write `<stem>.md` and `<stem>.json` (through .tmp files, so a crash leaves no half file)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix, text in ((".md", markdown), (".json", json.dumps(data, indent=2) + "\n")):
        path = out_dir / f"{stem}{suffix}"
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(text)
        temporary.replace(path)
        written.append(path)
    return written


def publish(out_dir: Path, stem: str, markdown: str, data: dict) -> list[Path]:
    """`write`, then the table on stdout and where it went on stderr: a benchmark's last step."""
    written = write(out_dir, stem, markdown, data)
    sys.stdout.write(markdown)
    sys.stderr.write("written: " + ", ".join(str(path) for path in written) + "\n")
    return written
