"""The Ray Data job (`app.batch.distributed`) on a local Ray: the same predictions and rejects
as the command line, from the same scoring function."""

import os

import numpy as np
import pyarrow.csv as pa_csv
import pytest
import ray  # the test extra has it, as the batch extra

from app.batch import cli
from app.core.settings import Settings
from tests.conftest import MODELS, ROOT


@pytest.fixture(scope="module")
def local_ray():
    """Ray in local mode on this machine: two CPUs (the scoring actor holds one while the reads
    and filters run on the other), no dashboard; the workers import
    this checkout's `app`."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "2"}},
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


def by_id(rows: list[dict], key: str) -> dict:
    return {row[key]: row for row in rows}


def test_the_ray_job_scores_as_the_command_line(local_ray, tmp_path, housing_csv):
    from app.batch.distributed import score_dataset

    out = tmp_path / "cli.csv"
    assert cli.main(["housing", str(housing_csv), str(out), "--models-dir", str(MODELS),
                     "--no-progress"]) == cli.EXIT_REJECTS  # fmt: skip
    predictions, rejects = score_dataset(
        Settings(model_dir=MODELS), "housing", housing_csv, "csv", batch_size=16
    )
    expected = by_id(pa_csv.read_csv(out).to_pylist(), "id")
    found = by_id(predictions.take_all(), "id")
    assert found.keys() == expected.keys()
    for key, row in found.items():
        assert row.keys() == expected[key].keys()
        np.testing.assert_allclose(row["value"], expected[key]["value"], rtol=1e-5)
        np.testing.assert_allclose(row["dollars"], expected[key]["dollars"], atol=0.011)
    refused = pa_csv.read_csv(tmp_path / "cli.rejects.csv").to_pylist()
    assert by_id(rejects.take_all(), "id") == by_id(refused, "id")


def test_the_ray_job_scores_a_folder_of_images_as_the_command_line(
    local_ray, tmp_path, digits_folder
):
    from app.batch.distributed import score_dataset

    out = tmp_path / "cli.parquet"
    assert cli.main(["mnist", str(digits_folder), str(out), "--models-dir", str(MODELS),
                     "--no-progress"]) == cli.EXIT_REJECTS  # fmt: skip
    predictions, rejects = score_dataset(
        Settings(model_dir=MODELS), "mnist", digits_folder, "images"
    )
    import pyarrow.parquet as pq

    expected = by_id(pq.read_table(out).to_pylist(), "file")
    found = by_id(predictions.take_all(), "file")
    assert {k: r["label"] for k, r in found.items()} == {k: r["label"] for k, r in expected.items()}
    for key, row in found.items():
        np.testing.assert_allclose(
            [row[f"probability_{d}"] for d in range(10)],
            [expected[key][f"probability_{d}"] for d in range(10)],
            atol=1e-5,
        )
    refused = pq.read_table(tmp_path / "cli.rejects.parquet").to_pylist()
    assert by_id(rejects.take_all(), "file") == by_id(refused, "file")
