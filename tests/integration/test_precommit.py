"""The pre-commit hook end to end: pre-commit (from PyPI) in a temporary git repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def project(tmp_path) -> tuple[Path, dict[str, str]]:
    """A hooks repository holding this project's .pre-commit-hooks.yaml, and a user repository using it."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    shutil.copy(ROOT / ".pre-commit-hooks.yaml", hooks)
    _git(hooks, "init", "-q")
    _git(hooks, "add", ".")
    _git(hooks, "commit", "-qm", "hooks")
    rev = _git(hooks, "rev-parse", "HEAD")
    user = tmp_path / "user"
    user.mkdir()
    _git(user, "init", "-q")
    (user / ".pre-commit-config.yaml").write_text(
        f"repos:\n  - repo: {hooks}\n    rev: {rev}\n    hooks:\n      - id: vlora-validate\n")
    (user / "vqa.vlora.yaml").write_text("model: paligemma-3b-pt-224\ntask: vqa\n")
    (user / "unrelated.yaml").write_text("not: a spec\n")
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "cache"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return user, env


def _pre_commit(user: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    _git(user, "add", ".")
    exe = shutil.which("pre-commit", path=env["PATH"])
    assert exe, "pre-commit is installed with the dev requirements"
    return subprocess.run([exe, "run", "--all-files"], cwd=user, env=env, capture_output=True, text=True,
                          check=False)


def test_good_spec_passes_and_bad_spec_fails(project):
    user, env = project
    good = _pre_commit(user, env)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "vlora validate" in good.stdout and "Passed" in good.stdout
    (user / "broken.vlora.yaml").write_text("model: paligemma-3b-pt-224\nlanguage:\n  layers: [40]\n")
    bad = _pre_commit(user, env)
    assert bad.returncode == 1
    assert "Failed" in bad.stdout
    assert "broken.vlora.yaml:3: language.layers: layer 40 does not exist" in bad.stdout
    assert "unrelated.yaml" not in bad.stdout
