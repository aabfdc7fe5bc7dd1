"""The run header both harnesses record: the commit (marked when the tree differs from it),
the date and the machine. Git runs in a repository made here, never the project's own."""

import subprocess

import pytest

from bench import cli, report
from bench.run_info import DIRTY, git_commit, run_header


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A fresh git repository with one commit; git sees nothing outside tmp_path."""
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    path = tmp_path / "repo"
    path.mkdir()

    def git(*command: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *command],
            cwd=path,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    git("init", "-q")
    (path / "code.py").write_text("x = 1\n")
    git("add", "code.py")
    git("commit", "-q", "-m", "one")
    return path, git("rev-parse", "--short", "HEAD")


def test_git_commit_names_head_of_a_clean_tree(repo):
    path, head = repo
    assert git_commit(path) == head


def test_git_commit_marks_a_changed_tracked_file(repo):
    path, head = repo
    (path / "code.py").write_text("x = 2\n")
    assert git_commit(path) == head + DIRTY == f"{head} (uncommitted changes)"


def test_git_commit_marks_an_untracked_file_but_not_an_ignored_one(repo):
    path, head = repo
    (path / ".git" / "info" / "exclude").write_text("*.log\n")
    (path / "run.log").write_text("ignored\n")
    assert git_commit(path) == head
    (path / "new_module.py").write_text("y = 1\n")
    assert git_commit(path) == head + DIRTY


def test_git_commit_outside_a_checkout_is_unknown(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.delenv("GIT_DIR", raising=False)
    assert git_commit(tmp_path) == "unknown"


def test_run_header_has_the_date_commit_and_machine(repo):
    path, head = repo
    header = run_header(path)
    assert header.commit == head
    assert header.started.tzinfo is not None
    assert header.cpu_count >= 1
    assert 1 <= header.cpus_usable <= header.cpu_count
    fields = header.as_dict()
    assert fields["date"] == header.started.isoformat(timespec="seconds")
    assert {"commit", "cpu_count", "cpus_usable", "loadavg_start", "platform", "python"} <= set(
        fields
    )


def test_the_benchmark_header_is_the_shared_one(repo, tmp_path):
    path, head = repo
    (path / "code.py").write_text("x = 2\n")
    header = run_header(path)
    args = cli.parse_args(["--quick"])
    meta = cli.describe(args, header, {}, {}, tmp_path / "models", tmp_path / "logs")
    assert {k: meta[k] for k in header.as_dict()} == header.as_dict()
    text = report.render_markdown(meta, [], None, [], with_settings=False)
    assert f"# Glassbox benchmark {header.started.isoformat(timespec='seconds')}" in text
    assert (
        f"commit `{head} (uncommitted changes)`, {header.cpu_count} cores (os.cpu_count; "
        f"{header.cpus_usable} usable)" in text
    )
    assert f"{header.platform}, Python {header.python}" in text
