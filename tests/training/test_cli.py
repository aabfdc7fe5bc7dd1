from pathlib import Path

from training.__main__ import parse_args


def test_cli_all_names_every_pipeline_with_offline_data_dir():
    names, options = parse_args(["all", "--data-dir", "data", "--epochs", "2", "--seed", "7"])
    assert names == ["iris", "housing", "mnist", "catdog"]
    assert options.data_dir == Path("data")
    assert (options.epochs, options.seed) == (2, 7)
