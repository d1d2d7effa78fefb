"""The one guarded boundary: every command reads foreign input through vlora_core.boundary (regular files, caps,
UTF-8, finite numbers, no base-60), writes through it (never onto an input, never through a link, atomically),
matches foreign patterns with the time-bounded engine, and escapes or refuses foreign text. The AST test at the
end keeps every other module off the raw calls, so the next command that reads or writes by hand fails here."""

from __future__ import annotations

import ast
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from vlora_core import default_registry, read_adapter
from vlora_core.cli import main

ROOT = Path(__file__).resolve().parents[2]
ADAPTER = ROOT / "examples" / "adapters" / "llava-q-v"
TINY = ROOT / "examples" / "adapters" / "tiny-llava"
SPEC = ROOT / "examples" / "qwen2_vl_ocr.yaml"


def run(*argv: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """The command in a process of its own, so that a regression that hangs fails instead of stalling the suite."""
    return subprocess.run([sys.executable, "-m", "vlora_core.cli", *argv], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def adapter_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "adapter"
    shutil.copytree(ADAPTER, folder)
    return folder


def edit_config(folder: Path, **changes) -> None:
    path = folder / "adapter_config.json"
    data = json.loads(path.read_text()) | changes
    path.write_text(json.dumps(data))


# --- reading ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv_of, code", [
    (lambda f: ["plan", f, "--model", "Qwen2-VL-2B-Instruct"], 3),
    (lambda f: ["validate", str(SPEC), "--lock", f], 6),
    (lambda f: ["import", f, "--from", "llamafactory", "--model", "Qwen2-VL-2B-Instruct"], 3),
    (lambda f: ["plan", "--model", f], 4),
])
def test_a_pipe_or_a_device_is_refused_not_read_forever(tmp_path, argv_of, code):
    fifo = tmp_path / "input.yaml"
    os.mkfifo(fifo)
    for path in (str(fifo), "/dev/zero"):
        result = run(*argv_of(path), timeout=60)
        assert result.returncode == code, result.stderr
        said = result.stdout + result.stderr
        assert "not a regular file" in said or "is a folder" in said, said


def test_an_adapter_whose_files_are_pipes_is_damaged(tmp_path):
    folder = adapter_copy(tmp_path)
    (folder / "adapter_model.safetensors").unlink()
    os.mkfifo(folder / "adapter_model.safetensors")
    result = run("adapter", "inspect", str(folder), timeout=60)
    assert result.returncode == 7 and "not a regular file" in result.stderr


@pytest.mark.parametrize("text, words", [
    ("r: 16\nlora_alpha: .inf\n", "lora_alpha: Input should be a finite number (got inf)"),  # the schema says
    ("r: 16\nlora_alpha: .nan\n", "lora_alpha: Input should be a finite number (got nan)"),  # it, with the line
    ("r: 1" + "0" * 40 + "\n", "r: Input should be less than or equal to 4096"),
    ("r: 1" + "0" * 5000 + "\n", "cannot read a value"),
    ("r: 16:00\n", "got '16:00'"),  # YAML 1.1 base 60 (960) is not a number here
])
def test_numbers_in_a_spec_are_finite_sane_and_never_base_60(tmp_path, capsys, text, words):
    spec = tmp_path / "s.yaml"
    spec.write_text("model: Qwen2-VL-2B-Instruct\n" + text)
    assert main(["plan", str(spec)]) == 3
    assert words in capsys.readouterr().err


def test_set_follows_the_same_rule_as_a_file(capsys):
    assert main(["plan", str(SPEC), "--set", "r=16:00"]) == 3
    assert "got '16:00'" in capsys.readouterr().err
    assert main(["plan", str(SPEC), "--set", "lora_alpha=.inf"]) == 3
    assert "lora_alpha: Input should be a finite number (got inf)" in capsys.readouterr().err


@pytest.mark.parametrize("value, words", [
    ("1e999", "not a finite number"),
    ("NaN", "not a number vlora accepts"),
    ("1" + "0" * 5000, "digits is not a value of any config"),
])
def test_numbers_in_a_json_config_are_checked(tmp_path, capsys, value, words):
    folder = tmp_path / "model"
    shutil.copytree(TINY, folder)
    text = (folder / "config.json").read_text()
    (folder / "config.json").write_text(text.replace('"vocab_size"', f'"x": {value}, "vocab_size"', 1))
    assert main(["plan", "--model", str(folder)]) == 4
    assert words in capsys.readouterr().err


def test_a_yaml_alias_bomb_in_a_tool_config_is_refused(tmp_path, capsys):
    bomb = tmp_path / "bomb.yaml"
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    bomb.write_text("\n".join(lines) + "\nmodel_name_or_path: Qwen2-VL-2B-Instruct\n")
    assert main(["import", str(bomb), "--from", "llamafactory"]) == 3
    assert "expands to more than" in capsys.readouterr().err


@pytest.mark.parametrize("changes, words", [
    ({"r": "2"}, "r must be a positive whole number, got '2'"),
    ({"lora_alpha": [4]}, "lora_alpha must be a number"),
    ({"target_modules": 7}, "target_modules must be a regular expression or a list of names"),
    ({"rank_pattern": {"q_proj": "8"}}, "rank_pattern must be a mapping of patterns to whole numbers"),
    ({"modules_to_save": "lm_head"}, "modules_to_save must be a list of names"),
    ({"rank_pattern": {"([a-z._0-9]+)+!": 2, "(": 3}}, "rank_pattern key"),
])
def test_wrong_types_in_adapter_config_are_a_damaged_adapter_naming_the_key(tmp_path, capsys, changes, words):
    folder = adapter_copy(tmp_path)
    edit_config(folder, **changes)
    assert main(["adapter", "inspect", str(folder)]) == 7
    assert words in capsys.readouterr().err


def test_check_does_not_say_loads_for_a_target_modules_peft_rejects(tmp_path, capsys):
    folder = adapter_copy(tmp_path)
    edit_config(folder, target_modules="model.(vision")
    assert main(["adapter", "check", str(folder), "--model", str(TINY)]) == 7
    err = capsys.readouterr().err
    assert "target_modules" in err and "not a valid regular expression" in err


def test_a_safetensors_header_that_lies_is_damaged(tmp_path, capsys):
    folder = adapter_copy(tmp_path)
    weights = folder / "adapter_model.safetensors"
    data = weights.read_bytes()
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + length])
    name = next(k for k in header if k != "__metadata__")
    header[name]["shape"] = [4]  # a 1-D lora_A
    body = json.dumps(header, separators=(",", ":")).encode().ljust(length)
    weights.write_bytes(data[:8] + body + data[8 + length:])
    assert main(["adapter", "inspect", str(folder)]) == 7
    assert "LoRA weights have at least two dimensions" in capsys.readouterr().err
    weights.write_bytes((10 ** 12).to_bytes(8, "little") + data[8:])
    assert main(["adapter", "inspect", str(folder)]) == 7
    assert "damaged or truncated" in capsys.readouterr().err


def test_a_lock_whose_versions_is_a_list_is_a_lock_error(tmp_path, capsys):
    lock = tmp_path / "x.lock.json"
    assert main(["lock", str(SPEC), "-o", str(lock)]) == 0
    data = json.loads(lock.read_text()) | {"versions": ["vlora", "0.1"]}
    lock.write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["validate", str(SPEC), "--lock", str(lock)]) == 6
    assert "versions must be a mapping" in capsys.readouterr().out


# --- writing ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv_of, source_of", [
    (lambda s, t: ["export", s, "--to", "peft", "-o", s], lambda s, t: s),
    (lambda s, t: ["plan", s, "--svg", s], lambda s, t: s),
    (lambda s, t: ["import", t, "--from", "llamafactory", "--model", "Qwen2-VL-2B-Instruct", "-o", t],
     lambda s, t: t),
])
def test_an_output_onto_an_input_is_refused_and_the_input_kept(tmp_path, capsys, argv_of, source_of):
    spec, tool = tmp_path / "s.yaml", tmp_path / "t.yaml"
    spec.write_text(SPEC.read_text())
    tool.write_text("model_name_or_path: Qwen2-VL-2B-Instruct\nfinetuning_type: lora\nlora_target: all\n")
    source = Path(source_of(str(spec), str(tool)))
    before = source.read_bytes()
    assert main(argv_of(str(spec), str(tool))) == 2
    assert "one of this command's inputs" in capsys.readouterr().err
    assert source.read_bytes() == before


def test_adapter_spec_never_writes_into_the_adapter(tmp_path, capsys):
    folder = adapter_copy(tmp_path)
    before = (folder / "adapter_config.json").read_bytes()
    assert main(["adapter", "spec", str(folder), "--model", str(TINY), "-o",
                 str(folder / "adapter_config.json")]) == 2
    assert (folder / "adapter_config.json").read_bytes() == before


def test_outputs_that_are_links_folders_or_under_files_are_usage_errors(tmp_path, capsys):
    target = tmp_path / "real.json"
    target.write_text("keep")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    assert main(["export", str(SPEC), "--to", "peft", "-o", str(link)]) == 2
    assert "symbolic link" in capsys.readouterr().err and target.read_text() == "keep"
    assert main(["export", str(SPEC), "--to", "peft", "-o", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main(["export", str(SPEC), "--to", "peft", "-o", str(target / "x.json")]) == 2
    assert "which is a file" in capsys.readouterr().err


def test_a_written_file_is_atomic_and_takes_the_umask(tmp_path, capsys):
    old = os.umask(0o027)
    try:
        out = tmp_path / "cfg.json"
        assert main(["export", str(SPEC), "--to", "peft", "-o", str(out)]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert json.loads(out.read_text())["peft_type"] == "LORA"
    assert [p.name for p in tmp_path.iterdir()] == ["cfg.json"]  # no temporary file left beside it


def test_scaffold_name_never_leaves_the_output_folder(tmp_path, capsys):
    out = tmp_path / "plugin"
    assert main(["scaffold", str(TINY), "-o", str(out), "--name", "../../escaped"]) == 2
    assert "is not a plain name" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "escaped.json").exists()


# --- text --------------------------------------------------------------------------------------------------


def test_a_newline_in_a_model_name_never_becomes_a_line_of_an_export(tmp_path, capsys):
    folder = tmp_path / "model\ntouch pwned"
    shutil.copytree(TINY, folder)
    assert main(["export", "--model", str(folder), "--to", "swift"]) == 2
    assert "holds a newline or control character" in capsys.readouterr().err


def test_control_characters_from_an_adapter_are_escaped_on_the_terminal(tmp_path, capsys):
    folder = adapter_copy(tmp_path)
    edit_config(folder, base_model_name_or_path="tiny\x1b[2J\rverified OK")
    assert main(["adapter", "inspect", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out and "\\x1b[2J\\rverified OK" in out


def test_explain_does_not_echo_a_huge_name(capsys):
    assert main(["plan", str(SPEC), "--explain", "a" * 100_000]) == 2
    err = capsys.readouterr().err
    assert len(err) < 1000 and "100,002 characters" in err


# --- cache ----------------------------------------------------------------------------------------------------


def test_a_cache_folder_others_may_write_to_is_not_used(tmp_path, monkeypatch):
    from vlora_core import cache as cache_module
    from vlora_core.cache import CacheWarning, tree_for

    folder = tmp_path / "shared-cache"
    folder.mkdir()
    folder.chmod(0o777)
    monkeypatch.setenv("VLORA_CACHE_DIR", str(folder))
    monkeypatch.delenv("VLORA_NO_CACHE", raising=False)
    monkeypatch.setattr(cache_module, "_WARNED", set())
    with pytest.warns(CacheWarning, match="other users may write to it"):
        tree_for("llava-1.5-7b-hf", default_registry())
    assert list(folder.iterdir()) == []  # nothing read from it, nothing written


# --- the boundary is the only way in and out ---------------------------------------------------------------

# calls that touch files: methods of any object (Path's), and functions of these modules; outside
# vlora_core/boundary only the (file, call) pairs below may make them, each for the reason given
METHODS = {"read_text", "read_bytes", "write_text", "write_bytes", "unlink", "open"}
FUNCTIONS = {"os": {"replace", "rename", "fdopen", "open", "remove"},
             "shutil": {"rmtree", "copyfile", "copytree", "move"},
             "tempfile": {"mkstemp", "mkdtemp", "NamedTemporaryFile", "TemporaryDirectory"},
             "yaml": {"safe_load", "load", "compose", "full_load", "unsafe_load"}, "json": {"load"},
             "tomllib": {"load"}, "torch": {"load", "save"}}
LIBRARY = {"safe_open", "load_file", "save_file"}  # safetensors' readers and writer
ALLOWED = {
    ("peft/files.py", "torch.load"): "a .bin adapter, with weights_only=True, after the boundary checked the file",
    ("peft/files.py", "load_file"): "migrate loads the tensors of an adapter whose header the boundary checked",
    ("peft/files.py", "save_file"): "safetensors' own saver, into the boundary's temporary folder (write_folder)",
    ("cache.py", "unlink"): "cache clear removes entries it proved its own (header, digest, name)",
    ("spec.py", "yaml.load"): "a --set value (text, not a file) with the boundary's LOADER",
    ("spec_file.py", "yaml.load"): "--write's round trip parses text the boundary read (read_text), to keep comments",
    ("serving/engines.py", "read_text"): "the serving engines' tables that ship inside the package (its own data)",
}


def raw_file_calls(package: Path) -> list[str]:
    found = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).as_posix()
        if rel.startswith("boundary/"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func, name = node.func, None
            if isinstance(func, ast.Name) and func.id in ("open", *LIBRARY):
                name = func.id
            elif isinstance(func, ast.Attribute):
                owner = func.value.id if isinstance(func.value, ast.Name) else None
                if owner in FUNCTIONS and func.attr in FUNCTIONS[owner]:
                    name = f"{owner}.{func.attr}"
                elif owner not in FUNCTIONS and func.attr in METHODS | LIBRARY:
                    name = func.attr
            if name and (rel, name) not in ALLOWED:
                found.append(f"{rel}:{node.lineno}: {name}(...)")
    return sorted(found)


def test_no_module_outside_the_boundary_reads_or_writes_by_hand():
    assert raw_file_calls(ROOT / "vlora_core") == []


def test_the_boundary_check_catches_a_command_that_reads_by_hand(tmp_path):
    package = tmp_path / "vlora_core"
    (package / "boundary").mkdir(parents=True)
    (package / "boundary" / "ok.py").write_text("open('x').read()\n")
    (package / "newcommand.py").write_text("from pathlib import Path\nimport yaml\n\n"
                                           "def run(p):\n    data = yaml.safe_load(Path(p).read_text())\n"
                                           "    Path(p + '.out').write_text(str(data))\n")
    assert raw_file_calls(package) == ["newcommand.py:5: read_text(...)", "newcommand.py:5: yaml.safe_load(...)",
                                       "newcommand.py:6: write_text(...)"]


def test_every_adapter_read_goes_through_the_header_not_torch(tmp_path):
    adapter = read_adapter(ADAPTER, default_registry())
    assert adapter.weights_file == "adapter_model.safetensors" and adapter.modules


# --- faults the boundary alone does not cover --------------------------------------------------------------


def test_migrate_refuses_two_modules_that_map_to_one(tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    folder = adapter_copy(tmp_path)
    weights = folder / "adapter_model.safetensors"
    tensors = load_file(str(weights))
    module = next(k for k in tensors if ".vision_tower.encoder.layers.0." in k).rpartition(".lora_")[0]
    for key in [k for k in tensors if k.startswith(module + ".")]:  # the same module under its 4.52-5.5 name too
        tensors[key.replace(".vision_tower.encoder.", ".vision_tower.vision_model.encoder.")] = tensors[key].clone()
    save_file(tensors, str(weights))
    out = tmp_path / "migrated"
    assert main(["adapter", "migrate", str(folder), "--model", str(TINY), "-o", str(out)]) == 7
    err = capsys.readouterr().err
    assert "would receive two of the adapter's modules" in err and "one would be lost" in err
    assert not out.exists()


def test_param_groups_refuses_rates_that_would_not_train(tmp_path):
    from vlora_core import UsageError, apply, param_groups, resolve
    from vlora_core.modeltree import build_meta_model, config_from_file

    model = build_meta_model(config_from_file(TINY / "config.json"))
    peft_model = apply(model, {"r": 2})
    for kwargs, words in [({"lr": float("nan")}, "lr must be a positive finite number"),
                          ({"lr": float("inf")}, "lr must be a positive finite number"),
                          ({"lr": 1e-4, "weight_decay": -0.1}, "weight_decay must be a non-negative"),
                          ({"lr": 1e-4, "weight_decay": float("nan")}, "weight_decay must be a non-negative"),
                          ({"lr": 1e-4, "loraplus_lr_ratio": 0}, "lora_B would climb the loss"),
                          ({"lr": 1e-4, "loraplus_lr_ratio": -16}, "lora_B would climb the loss")]:
        with pytest.raises(UsageError, match=words):
            param_groups(peft_model, **kwargs)
    other = resolve({"r": 2, "finetune_vision_layers": False}, str(TINY))
    with pytest.raises(UsageError, match="the plan is of another spec or model"):
        param_groups(peft_model, other, lr=1e-4)
    assert param_groups(peft_model, lr=1e-4)  # the plan apply attached


def test_orthogonal_init_with_an_odd_rank_is_refused_before_peft(capsys):
    assert main(["validate", str(SPEC), "--set", "init_lora_weights=orthogonal", "--set", "r=7"]) == 4
    assert "orthogonal initialisation needs an even rank" in capsys.readouterr().out


def test_an_imported_value_is_named_by_the_tools_file_and_key(tmp_path, capsys):
    config = tmp_path / "lf.yaml"
    config.write_text("model_name_or_path: Qwen/Qwen2-VL-2B-Instruct\nfinetuning_type: lora\nlora_target: all\n"
                      "lora_rank: 5000\n")
    assert main(["import", str(config), "--from", "llamafactory", "--model", "Qwen2-VL-2B-Instruct"]) == 3
    err = capsys.readouterr().err
    assert f"{config}: lora_rank: Input should be less than or equal to 4096" in err


class _Pickled:
    """Something a .bin may hold that torch's weights_only loader refuses."""


def test_a_bin_that_needs_unpickling_is_refused_without_torchs_unsafe_advice(tmp_path, capsys):
    import torch

    folder = adapter_copy(tmp_path)
    (folder / "adapter_model.safetensors").unlink()
    torch.save({"x": _Pickled()}, folder / "adapter_model.bin")
    assert main(["adapter", "inspect", str(folder)]) == 7
    err = capsys.readouterr().err
    assert "cannot be read safely" in err and "weights_only=False" not in err and "trust" not in err


def test_an_unsloth_rank_pattern_runs_on_the_bounded_engine(tmp_path):
    # with Python's re this key backtracks for minutes on every module name; the boundary's engine ends it
    config = tmp_path / "unsloth.yaml"
    config.write_text("r: 8\nlora_alpha: 16\nrank_pattern:\n  '([a-z._0-9]+)+!': 4\n")
    result = run("import", str(config), "--from", "unsloth", "--model", "Qwen2-VL-2B-Instruct", timeout=60)
    assert result.returncode == 0, result.stderr
