"""The distribution: vlora-core, one install with every built-in plugin inside, registered through the same entry
points a third-party plugin uses; its package list covers every package folder; nothing tells a user to install
the unrelated `vlora` distribution."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SETUPTOOLS = PROJECT["tool"]["setuptools"]
PLUGINS = sorted(p.name for p in (ROOT / "plugins").iterdir() if (p / f"vlora_{p.name}" / "__init__.py").is_file())


def test_the_distribution_is_vlora_core_with_the_vlora_command():
    assert PROJECT["project"]["name"] == "vlora-core"
    assert PROJECT["project"]["scripts"] == {"vlora": "vlora_core.cli:main"}


def test_every_package_folder_ships():
    core = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "vlora_core").rglob("__init__.py")}
    assert set(SETUPTOOLS["packages"]) == core | {"vlora_core.docs"} | {f"vlora_{n}" for n in PLUGINS}
    assert SETUPTOOLS["package-dir"]["vlora_core.docs"] == "docs"


def test_every_built_in_plugin_ships_inside_with_its_entry_point_and_configs():
    assert len(PLUGINS) >= 12
    assert PROJECT["project"]["entry-points"]["vlora.plugins"] == {n: f"vlora_{n}" for n in PLUGINS}
    for name in PLUGINS:
        assert SETUPTOOLS["package-dir"][f"vlora_{name}"] == f"plugins/{name}/vlora_{name}"
        assert not (ROOT / "plugins" / name / "pyproject.toml").exists()  # no separate distribution to publish
        if (ROOT / "plugins" / name / f"vlora_{name}" / "configs").is_dir():
            assert SETUPTOOLS["package-data"][f"vlora_{name}"] == ["configs/*"]


def test_third_party_plugins_require_vlora_core():
    tutorial = tomllib.loads((ROOT / "examples" / "tutorial_plugin" / "pyproject.toml").read_text())
    assert tutorial["project"]["dependencies"] == ["vlora-core>=0.1,<0.2"]


def test_nothing_tells_a_user_to_install_the_unrelated_vlora_distribution():
    bare = re.compile(r"pip install (-U |--upgrade )?['\"]?vlora(\[|['\"\s]|$)")
    files = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *(ROOT / "docs").glob("*.md"),
             *(ROOT / "examples").rglob("*.yml"), *(ROOT / "vlora_core").rglob("*.py")]
    found = [f"{f.relative_to(ROOT)}:{n}" for f in files for n, line in enumerate(f.read_text().splitlines(), 1)
             if bare.search(line) and "unrelated" not in line]
    assert found == []
