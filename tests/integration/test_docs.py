"""Every code block in README.md, CONTRIBUTING.md and docs/, and every spec in examples/, runs here.

These tests exercise the installed built-in plugins (the docs are about them); the core tests next door
use only an in-test plugin. ``sh`` blocks (the set-up commands in README) are run by .ci/run itself.

- ``python`` blocks of one file run in order, in one namespace, from the repository root;
- ``console`` blocks: each ``$ vlora ...`` line runs; the lines after it are its expected output, with
  ``...`` standing for any lines and the version header compared up to "· transformers"; a trailing
  ``# exit N`` sets the expected exit code (default 0);
- ``yaml`` / ``json`` / ``toml`` blocks are specs: they must validate, and resolve when they name a model;
- a block whose info string says ``file=PATH`` must be exactly the repository file PATH (the tutorial
  shows the tutorial plugin's real files, which its own tests run);
- ``pyi`` blocks in docs/hooks.md are the hook signatures, checked against vlora_core/hookspecs.py.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import tomllib
import warnings
from pathlib import Path

import pytest
import yaml

from vlora_core import load_spec, resolve
from vlora_core.cli import main
from vlora_core.spec import spec_from_data

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", ROOT / "CONTRIBUTING.md", *(ROOT / "docs").glob("*.md")])
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.S | re.M)


def blocks(path: Path, lang: str) -> list[str]:
    """Bodies of the blocks in ``lang``, except copies of repository files (``file=...`` blocks)."""
    return [body for kind, info, body in FENCE.findall(path.read_text()) if kind == lang and "file=" not in info]


def file_blocks(path: Path) -> list[tuple[str, str]]:
    return [(re.search(r"file=(\S+)", info).group(1), body) for _, info, body in FENCE.findall(path.read_text())
            if "file=" in info]


def _ids(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.fixture(autouse=True)
def _at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


@pytest.mark.parametrize("path", [p for p in DOCS if blocks(p, "python")], ids=_ids)
def test_python_blocks(path, capsys, caplog):
    """Each block runs, and says nothing a reader would see as a warning from its own code: no FutureWarning
    (deprecated calls) and no transformers warning about the documented configs (pytest's configuration
    leaves only one warning out, raised inside PEFT and named there)."""
    namespace: dict = {"__name__": "__docs__"}
    with warnings.catch_warnings(record=True) as seen, caplog.at_level(logging.WARNING, logger="transformers"):
        warnings.simplefilter("always", FutureWarning)
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
        for i, code in enumerate(blocks(path, "python")):
            try:
                exec(compile(code, f"{path.name}[python block {i + 1}]", "exec"), namespace)
            except Exception as exc:
                pytest.fail(f"{path.name} python block {i + 1} failed: {type(exc).__name__}: {exc}")
    assert [str(w.message) for w in seen if issubclass(w.category, FutureWarning)] == []
    assert [r.getMessage() for r in caplog.records if "token_id" in r.getMessage()] == []


def _commands(body: str) -> list[tuple[str, int, list[str]]]:
    out: list[tuple[str, int, list[str]]] = []
    for line in body.splitlines():
        if line.startswith("$ "):
            cmd, _, comment = line[2:].partition("  #")
            match = re.search(r"exit (\d+)", comment)
            out.append((cmd.strip(), int(match.group(1)) if match else 0, []))
        elif out:
            out[-1][2].append(line)
    return out


def _matches(expected: list[str], actual: list[str]) -> bool:
    """Expected lines in order; '...' skips any number of lines; version headers compared up to their versions."""

    def same(e: str, a: str) -> bool:
        if "· transformers" in e:
            return a.startswith(e.split("· plugin")[0])
        return e.rstrip() == a.rstrip()

    def walk(i: int, j: int) -> bool:
        if i == len(expected):
            return True
        if expected[i] == "...":
            return any(walk(i + 1, k) for k in range(j, len(actual) + 1))
        return j < len(actual) and same(expected[i], actual[j]) and walk(i + 1, j + 1)

    return walk(0, 0)


CONSOLE = [(p, n, c) for p in DOCS for n, b in enumerate(blocks(p, "console")) for c in _commands(b)]


@pytest.mark.parametrize(("path", "n", "command"), CONSOLE,
                         ids=[f"{p.name}:{c[0][:60]}" for p, _, c in CONSOLE])
def test_console_blocks(path, n, command, capsys):
    cmd, want_code, expected = command
    argv = shlex.split(cmd)
    assert argv[0] == "vlora", f"{path.name}: only vlora commands run in console blocks: {cmd}"
    code = main(argv[1:])
    out, err = capsys.readouterr()
    actual = (out + err).splitlines()
    assert code == want_code, f"{cmd} exited {code}:\n{out}{err}"
    while expected and not expected[-1].strip():
        expected.pop()
    assert _matches(expected, actual), f"{path.name}: output of `{cmd}` differs:\n" + "\n".join(actual)


SPEC_BLOCKS = [(p, lang, b) for p in DOCS for lang in ("yaml", "json", "toml") for b in blocks(p, lang)]


@pytest.mark.parametrize(("path", "lang", "body"), SPEC_BLOCKS,
                         ids=[f"{p.name}:{lang}{i}" for i, (p, lang, _) in enumerate(SPEC_BLOCKS)])
def test_spec_blocks(path, lang, body):
    data = {"yaml": yaml.safe_load, "json": json.loads, "toml": tomllib.loads}[lang](body)
    spec = spec_from_data(data, source=f"{path.name} {lang} block")
    if spec.model:
        assert resolve(spec).targets


EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*")
                  if p.suffix in (".yaml", ".yml", ".json", ".toml") and not p.name.endswith(".lock.json"))
BROKEN = sorted((ROOT / "examples" / "broken").glob("*.yaml"))


def test_there_are_examples():
    assert len(EXAMPLES) >= 4 and BROKEN


@pytest.mark.parametrize("path", EXAMPLES, ids=_ids)
def test_example_specs_plan(path, capsys):
    spec = load_spec(path)
    assert spec.model, f"{path.name}: example specs name their model"
    assert main(["plan", str(path.relative_to(ROOT))]) == 0
    out, _ = capsys.readouterr()
    assert "LoRA parameters:" in out
    assert main(["validate", str(path.relative_to(ROOT))]) == 0


@pytest.mark.parametrize("path", BROKEN, ids=_ids)
def test_broken_examples_fail_as_documented(path, capsys):
    first = path.read_text().splitlines()[0]
    match = re.fullmatch(r"# expect (\d): (.*)", first)
    assert match, f"{path.name}: first line must be '# expect CODE: message'"
    code = main(["validate", str(path.relative_to(ROOT))])
    out, _ = capsys.readouterr()
    assert code == int(match.group(1))
    assert match.group(2) in out


def test_readme_commands_are_what_ci_runs():
    sh = blocks(ROOT / "README.md", "sh")
    assert len(sh) >= 2
    text = (ROOT / "README.md").read_text()
    assert text.index("```sh") < text.index("## "), "the two commands come first"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "readme_block 1" in ci and "readme_block 2" in ci and os.access(ROOT / ".ci" / "run", os.X_OK)


FILE_BLOCKS = [(p, f, b) for p in DOCS for f, b in file_blocks(p)]


@pytest.mark.parametrize(("path", "file", "body"), FILE_BLOCKS, ids=[f"{p.name}:{f}" for p, f, _ in FILE_BLOCKS])
def test_file_blocks_are_the_real_files(path, file, body):
    assert (ROOT / file).read_text() == body, f"{path.name}: the block for {file} differs from the file"


def _normalize(code: str) -> str:
    code = " ".join(code.split())
    return re.sub(r",?\s*\)", ")", re.sub(r"\(\s+", "(", code))


def _hook_headers() -> dict[str, str]:
    """``def vlora_...(...) -> ...:`` of every hook in hookspecs.py, whitespace-normalized."""
    import inspect

    from vlora_core import hookspecs

    headers = {}
    for name, fn in vars(hookspecs).items():
        if name.startswith("vlora_") and callable(fn):
            source = inspect.getsource(fn)
            header = source[source.index("def "):source.index(":\n", source.index(")")) + 1]
            headers[name] = _normalize(header)
    return headers


def test_every_hook_is_documented_with_its_exact_signature():
    documented = {}
    for body in blocks(ROOT / "docs" / "hooks.md", "pyi"):
        text = _normalize(body)
        name = re.match(r"def (vlora_\w+)", text).group(1)
        documented[name] = text.removesuffix(" ...")
    headers = _hook_headers()
    assert headers, "no hooks found"
    assert sorted(documented) == sorted(headers), "docs/hooks.md must document exactly the hooks of hookspecs.py"
    for name, header in headers.items():
        assert documented[name] == header, f"docs/hooks.md documents {name} as\n{documented[name]}\nbut it is\n{header}"


def test_the_example_workflow_runs_here(capsys):
    """The `vlora` steps of the GitHub Actions example pass on this repository."""
    workflow = yaml.safe_load((ROOT / "examples" / "ci" / "github-workflow.yml").read_text())
    steps = workflow["jobs"]["validate"]["steps"]
    commands = [step["run"] for step in steps if step.get("run", "").startswith("vlora")]
    assert len(commands) == 2
    for command in commands:
        assert main(shlex.split(command)[1:]) == 0, capsys.readouterr().out
