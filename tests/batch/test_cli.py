"""`python -m app.batch`: files in, predictions and rejects out, the summary and exit codes."""

import csv
import shutil
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from app.batch import cli, sources
from tests.batch.conftest import BAD_ROWS, FEATURES, write_housing_csv
from tests.conftest import MODELS, ROOT


def score(*args: object) -> int:
    return cli.main([*map(str, args), "--models-dir", str(MODELS), "--no-progress"])


def test_every_row_is_scored_or_rejected_with_its_reason(tmp_path, housing_csv, housing_rows):
    out = tmp_path / "out.csv"
    assert score("housing", housing_csv, out) == cli.EXIT_REJECTS
    predictions = pa_csv.read_csv(out)
    assert predictions.column("id").to_pylist() == [f"r{i}" for i in range(len(housing_rows))]
    rejects = pa_csv.read_csv(tmp_path / "out.rejects.csv").to_pylist()
    assert [row["id"] for row in rejects] == list(BAD_ROWS)
    for row in rejects:
        assert BAD_ROWS[row["id"]][1] in row["reason"]


def test_the_summary_counts_each(tmp_path, housing_csv, housing_rows, capsys):
    score("housing", housing_csv, tmp_path / "out.csv")
    summary = capsys.readouterr().err
    assert f"scored:   {len(housing_rows)} ->" in summary
    assert f"rejected: {len(BAD_ROWS)} ->" in summary


def test_a_clean_file_exits_0_and_parquet_goes_both_ways(tmp_path, housing_rows):
    table = pa.table({name: housing_rows[:, i] for i, name in enumerate(FEATURES)})
    pq.write_table(table, tmp_path / "in.parquet")
    rejects = tmp_path / "elsewhere" / "refused.csv"
    code = score("housing", tmp_path / "in.parquet", tmp_path / "out.parquet", "--rejects", rejects)
    assert code == cli.EXIT_SCORED
    predictions = pq.read_table(tmp_path / "out.parquet")
    # No id column: the row number.
    assert predictions.column("row").to_pylist() == list(range(len(housing_rows)))
    assert pa_csv.read_csv(rejects).num_rows == 0
    np.testing.assert_allclose(
        predictions.column("value").to_numpy(),
        cli_free_prediction(housing_rows),
        rtol=1e-6,
    )


def cli_free_prediction(rows: np.ndarray) -> np.ndarray:
    from app.batch.loading import load_runtime

    return load_runtime(MODELS, "housing").predict(rows)[:, 0]


def test_an_id_column_can_be_named(tmp_path, housing_csv):
    score("housing", housing_csv, tmp_path / "out.csv", "--id-column", "target")
    assert set(pa_csv.read_csv(tmp_path / "out.csv").column("target").to_pylist()) == {1.0}


def test_a_header_only_file_gives_outputs_with_their_columns(tmp_path):
    empty = write_housing_csv(tmp_path / "empty.csv", np.zeros([0, 8]), bad=False)
    assert score("housing", empty, tmp_path / "out.csv") == cli.EXIT_SCORED
    assert pa_csv.read_csv(tmp_path / "out.csv").column_names == ["id", "value", "dollars"]


def test_images_are_named_by_their_path_in_the_folder(tmp_path, digits_folder):
    assert score("mnist", digits_folder, tmp_path / "out.csv") == cli.EXIT_REJECTS
    files = pa_csv.read_csv(tmp_path / "out.csv").column("file").to_pylist()
    assert files == sorted(f"{'a' if i % 2 else 'b'}/{i:02d}.png" for i in range(12))
    rejects = pa_csv.read_csv(tmp_path / "out.rejects.csv").column("file").to_pylist()
    assert rejects == ["empty.png", "notes.txt"]  # the hidden file and folder are not read


def test_a_model_whose_files_differ_from_its_card_is_refused(tmp_path, housing_csv, capsys):
    copy = tmp_path / "models" / "housing"
    shutil.copytree(MODELS / "housing", copy)
    with (copy / "1" / "saved_model.pb").open("ab") as stream:
        stream.write(b"tampered")
    out = tmp_path / "out.csv"
    code = cli.main(["housing", str(housing_csv), str(out), "--models-dir", str(copy.parent)])
    assert code == cli.EXIT_UNUSABLE
    assert (
        "files do not match the model card's sha256: ['saved_model.pb']" in capsys.readouterr().err
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["nosuchmodel", "{csv}", "{out}"], "No model named 'nosuchmodel'"),
        (["housing", "{csv}", "{out}", "--id-column", "nope"], "has no column 'nope'"),
        (["housing", "{tmp}/absent.csv", "{out}"], "does not exist"),
        (["housing", "{tmp}/garbage.parquet", "{out}"], "is not a readable Parquet file"),
        (["housing", "{tmp}/narrow.csv", "{out}"], "lacks the column(s) Longitude"),
        (["housing", "{csv}", "{tmp}/out.json"], "name it .csv or .parquet"),
        (["housing", "{tmp}/digits", "{out}"], "give it a CSV or Parquet file"),
        (["mnist", "{csv}", "{out}"], "give it a folder of images"),
        (["mnist", "{tmp}/digits", "{out}", "--explain", "2"], "for tabular models"),
        (["housing", "{csv}", "{out}", "--model-version", "7"], "has no version 7"),
    ],
)
def test_what_cannot_be_scored_exits_2_and_says_why(
    tmp_path, housing_csv, digits_folder, capsys, args, says
):
    (tmp_path / "garbage.parquet").write_bytes(b"not parquet at all")
    (tmp_path / "narrow.csv").write_text("id," + ",".join(FEATURES[:-1]) + "\n")
    out = tmp_path / "out.csv"
    filled = [a.format(csv=housing_csv, out=out, tmp=tmp_path) for a in args]
    assert score(*filled) == cli.EXIT_UNUSABLE
    assert says in capsys.readouterr().err
    assert not out.exists()


def test_output_is_written_chunk_by_chunk_and_kept_when_the_input_breaks(
    tmp_path, housing_rows, monkeypatch
):
    """The CSV is read a block at a time: a row that breaks the file far down stops the job
    after the chunks before it were written, not before anything was."""
    monkeypatch.setattr(sources, "CSV_BLOCK_BYTES", 1024)
    rows = np.tile(housing_rows, (50, 1))  # past the first 64 KiB, where the header is read
    path = write_housing_csv(tmp_path / "broken.csv", rows, bad=False)
    with path.open("a", newline="") as stream:
        csv.writer(stream).writerow(["short", "1.0"])  # too few columns
    out = tmp_path / "out.csv"
    assert score("housing", path, out, "--batch-size", "16") == cli.EXIT_STOPPED
    written = pa_csv.read_csv(out).num_rows
    assert 16 <= written < len(rows)


def test_the_reader_is_consumed_lazily(tmp_path, housing_rows, housing_runtime, monkeypatch):
    """The first chunk comes from a file whose end is broken: only what it needs was read."""
    monkeypatch.setattr(sources, "CSV_BLOCK_BYTES", 1024)
    rows = np.tile(housing_rows, (50, 1))
    path = write_housing_csv(tmp_path / "in.csv", rows, bad=False)
    with path.open("a", newline="") as stream:
        csv.writer(stream).writerow(["short", "1.0"])
    source = sources.Source(
        path, "csv", housing_runtime.loaded_card, None, batch_size=4, max_image_bytes=1 << 20
    )
    chunks = source.chunks()
    first = next(chunks)
    assert first.table.num_rows == 4
    assert first.table.column("id").to_pylist()[:2] == ["r0", "r1"]
    assert first.done < path.stat().st_size
    with pytest.raises(pa.ArrowInvalid):
        list(chunks)


def test_chunks_have_the_batch_size_whatever_the_blocks(
    tmp_path, housing_rows, housing_runtime, monkeypatch
):
    """Blocks of about six rows are gathered into chunks of the batch size, the last what is
    left, every row once and in order."""
    monkeypatch.setattr(sources, "CSV_BLOCK_BYTES", 1024)
    rows = np.tile(housing_rows, (50, 1))
    path = write_housing_csv(tmp_path / "in.csv", rows, bad=False)
    source = sources.Source(
        path, "csv", housing_runtime.loaded_card, None, batch_size=300, max_image_bytes=1 << 20
    )
    chunks = list(source.chunks())
    assert [chunk.table.num_rows for chunk in chunks] == [300] * 6 + [200]
    ids = [i for chunk in chunks for i in chunk.table.column("id").to_pylist()]
    assert ids == [f"r{i}" for i in range(len(rows))]
    assert chunks[-1].done == path.stat().st_size


def test_the_module_runs_as_a_command(tmp_path, housing_csv):
    done = subprocess.run(
        [sys.executable, "-m", "app.batch", "--version"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0
    assert done.stdout.startswith("glassbox-batch ")
