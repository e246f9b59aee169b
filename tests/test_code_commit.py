"""shared.provenance.code_commit on a real git repository: a rewritten results file (markdown, anything under docs/)
leaves the commit clean; a changed code file marks it ``-dirty``; outside git it is None."""

from __future__ import annotations

import subprocess
from pathlib import Path

from shared.provenance import code_commit


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout.strip()


def test_results_files_do_not_dirty_the_commit_but_code_does(tmp_path):
    repo = tmp_path / "repo"
    (repo / "docs" / "results").mkdir(parents=True)
    (repo / "pkg").mkdir()
    files = {"pkg/mod.py": "x = 1\n", "README.md": "# r\n", "docs/results/r.json": "{}\n", "docs/plot.png": "png"}
    for name, text in files.items():
        (repo / name).write_text(text)
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "first")
    head = _git(repo, "rev-parse", "--short=12", "HEAD")
    assert code_commit(repo) == head
    (repo / "README.md").write_text("# changed\n")
    (repo / "docs" / "results" / "r.json").write_text('{"a": 1}\n')
    (repo / "docs" / "plot.png").write_text("other")
    (repo / "pkg" / "new.py").write_text("untracked = 1\n")
    assert code_commit(repo / "pkg") == head  # results rewritten, an untracked file: still the commit's code
    (repo / "pkg" / "mod.py").write_text("x = 2\n")
    assert code_commit(repo / "docs") == head + "-dirty"


def test_outside_git_there_is_no_commit(tmp_path):
    assert code_commit(tmp_path) is None
