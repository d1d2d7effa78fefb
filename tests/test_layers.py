"""The package is a one-way house: the module map in docs/how-it-works.md lists every module with its
layer, and no module imports from its own layer or above (function-level imports included; imports under
``if TYPE_CHECKING:`` are annotations only). Plugins import only the public API."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import vlora_core

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vlora_core"
ROW = re.compile(r"^\| (\d+) \| `(\w+)` \| .+ \|$", re.M)


def module_map() -> dict[str, int]:
    text = (ROOT / "docs" / "how-it-works.md").read_text()
    section = text[text.index("## The module map"):]
    return {name: int(layer) for layer, name in ROW.findall(section)}


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports(path: Path, package: str) -> list[tuple[int, str, list[str]]]:
    """(line, absolute module, imported names) of every runtime import in ``path`` (any depth)."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_lines(tree)
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Import | ast.ImportFrom) or node.lineno in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name, []) for alias in node.names]
        elif node.level:  # relative: from .x import y / from . import x
            base = package if node.level == 1 else package.rsplit(".", node.level - 1)[0]
            names = [a.name for a in node.names]
            if node.module:
                out.append((node.lineno, f"{base}.{node.module}", names))
            else:
                out += [(node.lineno, f"{base}.{name}", []) for name in names]
        else:
            out.append((node.lineno, node.module or "", [a.name for a in node.names]))
    return out


def rooms(package_dir: Path = PACKAGE) -> dict[str, list[Path]]:
    """Each room of the package and its files: a module, or a subpackage (one room, all its files)."""
    out = {p.stem: [p] for p in package_dir.glob("*.py")}
    for sub in package_dir.iterdir():
        if sub.is_dir() and (sub / "__init__.py").is_file():
            out[sub.name] = sorted(sub.rglob("*.py"))
    return out


def layer_violations(layers: dict[str, int], package_dir: Path = PACKAGE) -> list[str]:
    """Imports that go up or sideways; inside a subpackage its files may import one another (one room)."""
    problems = []
    for here, paths in sorted(rooms(package_dir).items()):
        for path in paths:
            package = ".".join(path.relative_to(package_dir.parent).parent.parts)
            shown = path.relative_to(package_dir).as_posix()
            for line, module, names in imports(path, package):
                if not module.startswith(f"{package_dir.name}."):
                    continue
                target = module.split(".")[1]
                file = package_dir.parent.joinpath(*module.split("."))
                if not names and not file.with_suffix(".py").is_file():  # `from . import x`: x may be a name
                    file = file.parent
                if not (file.with_suffix(".py").is_file() or (file / "__init__.py").is_file()):
                    problems.append(f"{shown}:{line}: imports {module}, which does not exist")
                elif target not in layers:
                    problems.append(f"{shown}:{line}: imports {module}, which the module map does not list")
                elif here != "__init__" and target != here and layers[target] >= layers[here]:
                    problems.append(f"{shown}:{line}: {here} (layer {layers[here]}) imports {target} "
                                    f"(layer {layers[target]}): imports go down only")
                elif here != "__init__" and target == here and path.parent == package_dir:
                    problems.append(f"{shown}:{line}: {here} imports itself")
    return problems


def test_the_module_map_lists_every_module_once():
    layers = module_map()
    on_disk = set(rooms())
    assert set(layers) == on_disk, f"missing from the map: {on_disk - set(layers)}; gone: {set(layers) - on_disk}"
    assert layers["__init__"] == max(layers.values())


def test_imports_go_down_only():
    assert layer_violations(module_map()) == []


def test_the_layer_check_catches_an_upward_and_a_function_level_import(tmp_path):
    pkg = tmp_path / "vlora_core"
    pkg.mkdir()
    (pkg / "low.py").write_text("def f():\n    from .high import g\n    return g\n")
    (pkg / "high.py").write_text("from . import low\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                 "    from .low import f\n")
    (pkg / "side.py").write_text("from .high import low\n")
    room = pkg / "room"
    room.mkdir()
    (room / "__init__.py").write_text("from .a import f\n")
    (room / "a.py").write_text("from ..low import f\nfrom . import b\nfrom ..high import g\nfrom .gone import h\n")
    (room / "b.py").write_text("")
    found = layer_violations({"low": 0, "high": 1, "side": 1, "room": 1}, pkg)
    assert found == ["low.py:2: low (layer 0) imports high (layer 1): imports go down only",
                     "room/a.py:3: room (layer 1) imports high (layer 1): imports go down only",
                     "room/a.py:4: imports vlora_core.room.gone, which does not exist",
                     "side.py:1: side (layer 1) imports high (layer 1): imports go down only"]


PLUGIN_PACKAGES = sorted([*ROOT.glob("plugins/*/vlora_*"), *ROOT.glob("examples/*/vlora_*")])
PLUGIN_TESTS = sorted([*ROOT.glob("plugins/*/tests"), *ROOT.glob("examples/*/tests")])


def public_api_violations(directory: Path, allowed_modules: set[str]) -> list[str]:
    problems = []
    for path in sorted(directory.rglob("*.py")):
        for line, module, names in imports(path, directory.name):
            if module != "vlora_core" and not module.startswith("vlora_core."):
                continue
            where = f"{path.relative_to(ROOT)}:{line}"
            if module not in allowed_modules:
                problems.append(f"{where}: imports {module}; plugins import only `from vlora_core import ...`")
            elif module == "vlora_core":
                private = [n for n in names if n not in vlora_core.__all__]
                if private or not names:
                    problems.append(f"{where}: {private or 'import vlora_core'} is not in vlora_core.__all__")
    return problems


@pytest.mark.parametrize("package", PLUGIN_PACKAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_plugins_import_only_the_public_api(package):
    assert public_api_violations(package, {"vlora_core"}) == []


@pytest.mark.parametrize("tests", PLUGIN_TESTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_plugin_tests_import_the_public_api_the_kit_and_the_command(tests):
    assert public_api_violations(tests, {"vlora_core", "vlora_core.testing", "vlora_core.cli"}) == []


def test_the_plugin_check_catches_a_private_import(tmp_path):
    package = ROOT / "plugins" / "_probe"
    try:
        package.mkdir()
        (package / "x.py").write_text("from vlora_core import Component, resolve\nfrom vlora_core import _DEFAULT\n"
                                      "from vlora_core.plan import TargetPlan\n")
        found = public_api_violations(package, {"vlora_core"})
    finally:
        (package / "x.py").unlink(missing_ok=True)
        package.rmdir()
    assert found == ["plugins/_probe/x.py:2: ['_DEFAULT'] is not in vlora_core.__all__",
                     "plugins/_probe/x.py:3: imports vlora_core.plan; plugins import only `from vlora_core import ...`"]


# --- what the package says about its documentation ----------------------------------------------------

DOC_REF = re.compile(r"\bdocs/[\w-]+\.md\b")


def test_every_doc_page_the_package_names_exists():
    from vlora_core.diagnostics import DOC_PAGES

    for path, title in DOC_PAGES.values():
        assert (ROOT / path).read_text().splitlines()[0] == f"# {title}", f"{path}: its title is not {title!r}"
    named = {path for path, _ in DOC_PAGES.values()}
    # every page ships and `vlora docs` knows it: DOC_PAGES holds each page of docs/
    assert named == {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    for path in PACKAGE.rglob("*.py"):
        named |= set(DOC_REF.findall(path.read_text()))
    missing = sorted(p for p in named if not (ROOT / p).is_file())
    assert missing == []


def _hints(path: Path) -> list[tuple[int, str]]:
    """Source text of every ``hint=`` argument in ``path``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            out += [(kw.value.lineno, ast.unparse(kw.value)) for kw in node.keywords if kw.arg == "hint"]
    return out


def test_hints_name_pages_or_commands_never_repository_paths():
    found = [f"{p.name}:{line}: {text}" for p in sorted(PACKAGE.rglob("*.py")) for line, text in _hints(p)
             if DOC_REF.search(text) or ".md" in text]
    assert found == []
    assert _hints(PACKAGE / "plugins.py"), "the check reads hints (none found: is the AST walk broken?)"


# The public API of vlora 0.1.0 (CHANGELOG.md): names are added, never removed.
PUBLIC_0_1 = (
    "ArchitectureSpec",
    "Component",
    "ComponentOverlapError",
    "ComponentOverride",
    "EmptySelectionError",
    "FullModule",
    "KNOWN_COMPONENTS",
    "KNOWN_ROLES",
    "LayerRange",
    "LayerSelectionError",
    "LockDiff",
    "LockMismatchError",
    "ModelLoadError",
    "ModuleEntry",
    "ModuleTree",
    "PatternMatchError",
    "PluginConflictError",
    "PluginError",
    "PluginFailure",
    "PluginInfo",
    "ProjectorOverride",
    "ReferenceModel",
    "Registry",
    "ResolutionError",
    "SpecArchitectureMismatch",
    "SpecError",
    "SpecFileError",
    "SpecValidationError",
    "TASK_PRESETS",
    "Target",
    "TargetPlan",
    "UnsupportedModelError",
    "UnsupportedModuleTypeError",
    "UnusedLayers",
    "UsageError",
    "UserPatternError",
    "VisionLoRASpec",
    "VloraError",
    "apply",
    "default_registry",
    "diff_lock",
    "hookimpl",
    "load_spec",
    "make_lock",
    "module_tree",
    "read_lock",
    "resolve",
    "tree_from_module",
    "write_lock",
)


def test_the_public_api_only_grows():
    assert sorted(set(PUBLIC_0_1) - set(vlora_core.__all__)) == []
    assert all(hasattr(vlora_core, name) for name in vlora_core.__all__)


def test_what_a_plugin_imports_needs_no_torch():
    import subprocess
    import sys

    code = ("import sys, vlora_core; from vlora_core import vision_tower_components; vision_tower_components(('x',)); "
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
