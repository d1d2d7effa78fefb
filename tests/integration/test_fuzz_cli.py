"""Property-based fuzzing of the command line (hypothesis), in bounded time: `validate`, `plan` and `lock`
on generated files (spec-like YAML, JSON and TOML, random text, random bytes) exit with a documented code
and never say "internal error". A tiny Qwen2-VL config keeps each run fast."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vlora_core.cli import main

ROOT = Path(__file__).resolve().parents[2]
TABLE = re.search(r"<!-- failures:begin -->\n(.*?)<!-- failures:end -->", (ROOT / "docs" / "cli.md").read_text(),
                  re.S).group(1)
DOCUMENTED = {int(line.strip("|").split("|")[3]) for line in TABLE.splitlines()[2:]} - {1}  # 1 is a bug

EXAMPLES = int(os.environ.get("VLORA_FUZZ_EXAMPLES", "120"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

FIELDS = ["r", "lora_alpha", "task", "finetune_vision_layers", "finetune_language_layers", "finetune_projector",
          "finetune_attention_modules", "finetune_mlp_modules", "layers", "vision", "language", "projector",
          "exclude_modules", "target_modules_extra", "init_lora_weights", "model", "architecture", "use_dora"]
leaf = st.one_of(st.none(), st.booleans(), st.integers(-3, 40), st.integers(), st.floats(), st.text(max_size=20),
                 st.sampled_from(["lora", "full", "frozen", "vqa", "ocr", "pissa", "lm_head", "qwen2_vl", "gemma3",
                                  r"model\.visual\.blocks\.0\.attn\.qkv", "no/such", "../x", "Qwen2-VL-2B-Instruct"]))
value = st.recursive(leaf, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(
    st.one_of(st.sampled_from(["r", "layers", "last", "first", "lora_alpha"]), st.text(max_size=6)), inner,
    max_size=3)), max_leaves=10)
spec = st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=10)), value, max_size=5)


def _toml(data) -> str:
    lines = []
    for k, v in data.items():
        lines.append(f"{json.dumps(str(k))} = {json.dumps(v, default=str)}")
    return "\n".join(lines) + "\n"


files = st.one_of(
    st.tuples(st.just(".yaml"), spec.map(lambda d: yaml.safe_dump(d, allow_unicode=True).encode())),
    st.tuples(st.just(".json"), spec.map(lambda d: json.dumps(d, default=str).encode())),
    st.tuples(st.just(".toml"), spec.map(lambda d: _toml(d).encode())),
    st.tuples(st.sampled_from([".yaml", ".yml", ".json", ".toml", ".txt", ""]), st.binary(max_size=200)),
    st.tuples(st.sampled_from([".yaml", ".json", ".toml"]), st.text(max_size=200).map(str.encode)),
)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> str:
    from transformers import Qwen2VLConfig

    folder = tmp_path_factory.mktemp("tiny-qwen2-vl")
    text = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=128)
    vision = dict(depth=4, embed_dim=16, hidden_size=32, num_heads=2, mlp_ratio=2, patch_size=2)
    Qwen2VLConfig(text_config=text, vision_config=vision).save_pretrained(folder)
    return str(folder)


@FUZZ
@given(file=files, fmt=st.sampled_from(["text", "json", "github"]))
def test_any_file_on_the_command_line_exits_with_a_documented_code(tmp_path, tiny_model_dir, capsys, file, fmt):
    suffix, content = file
    path = tmp_path / f"spec{suffix}"
    path.write_bytes(content)
    runs = [["validate", str(path), "--format", fmt, "--model", tiny_model_dir],
            ["plan", str(path), "--model", tiny_model_dir],
            ["lock", str(path), "--model", tiny_model_dir, "-o", str(tmp_path / "out.lock.json")]]
    for argv in runs:
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse
            code = exc.code
        out, err = capsys.readouterr()
        assert code in DOCUMENTED | {0}, (argv[0], code, content[:200], out[-500:], err[-500:])
        assert "internal error" not in out + err and "Traceback" not in out + err, (argv[0], content[:200], err)
        if fmt == "json" and argv[0] == "validate":
            assert json.loads(out)["exit_code"] == code


def test_the_tiny_model_plans(tmp_path, tiny_model_dir, capsys):  # so that the fuzzing above reaches resolution
    path = tmp_path / "s.yaml"
    path.write_text("task: ocr\nvision:\n  layers: [0, 1]\n")
    assert main(["plan", str(path), "--model", tiny_model_dir]) == 0
    assert "LoRA parameters:" in capsys.readouterr().out


@pytest.mark.parametrize(("content", "words"), [(b"?\n", "key None is not a field name"),
                                               (b"1: x\n", "key 1 is not a field name"),
                                               (b"? [a, b]\n: 1\n", "found unhashable key")])
def test_files_fuzzing_found_stay_spec_errors(tmp_path, tiny_model_dir, capsys, content, words):
    path = tmp_path / "s.yaml"  # YAML keys that are not strings (a lone `?` is the key null)
    path.write_bytes(content)
    assert main(["validate", str(path), "--model", tiny_model_dir]) == 3
    assert words in capsys.readouterr().out


TOOL_KEYS = {
    "unsloth": ["r", "lora_alpha", "lora_dropout", "bias", "finetune_vision_layers", "finetune_language_layers",
                "finetune_attention_modules", "finetune_mlp_modules", "target_modules", "modules_to_save",
                "use_rslora", "use_dora", "layers_to_transform"],
    "llamafactory": ["lora_rank", "lora_alpha", "lora_dropout", "lora_target", "freeze_vision_tower",
                     "freeze_multi_modal_projector", "freeze_language_model", "additional_target", "finetuning_type",
                     "use_dora"],
    "swift": ["lora_rank", "lora_alpha", "lora_dropout", "target_modules", "target_regex", "freeze_vit",
              "freeze_aligner", "freeze_llm", "modules_to_save", "train_type", "use_rslora"],
}
tool_leaf = st.one_of(leaf, st.sampled_from(["all", "all-linear", "q_proj", "q_proj,v_proj", "qkv", "mlp", ".*",
                                             "(", "lm_head", "true", "false", "0.1", "8"]))
LEAVES = ["q_proj", "k_proj", "v_proj", "o_proj", "qkv", "proj", "fc1", "fc2", "gate_proj", "up_proj", "down_proj",
          "mlp.0", "0", "lm_head", "merger", "embed_tokens", "patch_embed"]
REGEXES = [".*q_proj", r".*visual.*\.qkv", r"model\.language_model\.layers\.[01]\..*", ".*", "(", r".*\.mlp\..*"]
GOOD = {  # a likely value per key, so that most configs reach the tool's rule (the rest check the messages)
    "r": st.integers(1, 64), "lora_rank": st.integers(1, 64), "lora_alpha": st.integers(1, 64),
    "lora_dropout": st.sampled_from([0, 0.05, 0.1]), "bias": st.sampled_from(["none", "all", "lora_only"]),
    "target_modules": st.one_of(st.none(), st.just("all-linear"), st.just(["all-linear"]),
                                st.lists(st.sampled_from(LEAVES), min_size=1, max_size=4), st.sampled_from(REGEXES)),
    "target_regex": st.sampled_from(REGEXES), "modules_to_save": st.lists(st.sampled_from(LEAVES), max_size=2),
    "lora_target": st.one_of(st.just("all"), st.lists(st.sampled_from(LEAVES), min_size=1, max_size=4).map(",".join)),
    "additional_target": st.sampled_from(["lm_head", "merger", "embed_tokens", None]),
    "finetuning_type": st.just("lora"), "train_type": st.just("lora"), "layers_to_transform": st.none(),
}
tool_value = st.one_of(tool_leaf, st.lists(tool_leaf, max_size=3))


def tool_config(tool: str):
    def value(key: str):
        good = GOOD.get(key, st.booleans())
        return st.one_of(*[good] * 9, tool_value)  # one value in ten is anything
    keys = st.lists(st.sampled_from(TOOL_KEYS[tool]), unique=True, max_size=6)
    return keys.flatmap(lambda ks: st.fixed_dictionaries({k: value(k) for k in ks}))


@FUZZ
@given(tool=st.sampled_from(sorted(TOOL_KEYS)), data=st.data())
def test_any_config_of_another_tool_imports_or_says_why(tmp_path, tiny_model_dir, capsys, tool, data):
    config = data.draw(tool_config(tool))
    if tool == "swift" and data.draw(st.booleans()):  # as a command line
        path = tmp_path / "run.sh"
        words = [f"--{k} {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in config.items()]
        path.write_text("swift sft " + " ".join(words) + "\n")
    else:
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(config, allow_unicode=True))
    try:
        code = main(["import", str(path), "--from", tool, "--model", tiny_model_dir])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    assert code in DOCUMENTED | {0}, (tool, config, err[-500:])
    assert "internal error" not in out + err and "Traceback" not in out + err, (tool, config, err)
    if code == 0:
        assert yaml.safe_load(out)  # a spec


@FUZZ
@given(tool=st.sampled_from(sorted(TOOL_KEYS)), data=st.data())
def test_a_well_formed_config_imports_as_exactly_what_the_tool_trains(tmp_path, tiny_model_dir, tool, data):
    from vlora_core import VloraError, import_config, resolve

    keys = data.draw(st.lists(st.sampled_from(TOOL_KEYS[tool]), unique=True, max_size=6))
    config = {k: data.draw(GOOD.get(k, st.booleans())) for k in keys}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    try:
        imported = import_config(path, tool, tiny_model_dir)
    except VloraError as exc:  # refused with a reason (nothing to train, an invalid regex, ...)
        assert exc.exit_code in DOCUMENTED and str(exc)
        return
    trained = set(imported.trains.lora) - set(imported.unexpressed)
    assert {t.name for t in imported.plan.targets} == trained
    assert {t.name for t in resolve(imported.data, tiny_model_dir).targets} == trained
    assert {m.name for m in imported.plan.full_modules} == set(imported.trains.full)


# --- the boundary's other inputs: adapter files, safetensors headers, cache entries ---------------------------

ADAPTER = ROOT / "examples" / "adapters" / "llava-q-v"
CONFIG_KEYS = ["r", "lora_alpha", "target_modules", "rank_pattern", "alpha_pattern", "modules_to_save",
               "target_parameters", "peft_type", "base_model_name_or_path", "bias", "use_dora", "lora_dropout"]
adapter_config = st.dictionaries(st.sampled_from(CONFIG_KEYS), value, max_size=4)


def _no_bug(capsys, code: int, allowed: set[int]) -> None:
    err = capsys.readouterr().err
    assert code in allowed, err
    assert "internal error" not in err and "Traceback" not in err


@FUZZ
@given(changes=adapter_config)
def test_any_adapter_config_exits_with_a_documented_code(tmp_path_factory, capsys, changes):
    import shutil

    folder = tmp_path_factory.mktemp("adapter") / "a"
    shutil.copytree(ADAPTER, folder)
    path = folder / "adapter_config.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | changes, default=str))
    _no_bug(capsys, main(["adapter", "inspect", str(folder)]), {0, 7})


@FUZZ
@given(header=st.one_of(st.binary(max_size=64), value.map(lambda v: json.dumps(v, default=str).encode())),
       claimed=st.one_of(st.none(), st.integers(0, 2 ** 64 - 1)))
def test_any_safetensors_header_exits_with_a_documented_code(tmp_path_factory, capsys, header, claimed):
    import shutil

    folder = tmp_path_factory.mktemp("adapter") / "a"
    shutil.copytree(ADAPTER, folder)
    length = len(header) if claimed is None else claimed
    (folder / "adapter_model.safetensors").write_bytes(length.to_bytes(8, "little") + header)
    _no_bug(capsys, main(["adapter", "inspect", str(folder)]), {7})


@FUZZ
@given(content=st.one_of(st.binary(max_size=200), st.tuples(value, value).map(
    lambda hv: (json.dumps(hv[0], default=str) + "\n" + json.dumps(hv[1], default=str) + "\n").encode())))
def test_any_cache_entry_is_rebuilt_never_trusted(tmp_path_factory, monkeypatch, content):
    from vlora_core import default_registry, resolve
    from vlora_core.cache import cache_dir, entry_key, tree_for

    folder = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("VLORA_CACHE_DIR", str(folder))
    monkeypatch.delenv("VLORA_NO_CACHE", raising=False)
    registry = default_registry()
    config = json.loads((ROOT / "examples/adapters/tiny-llava/config.json").read_text())
    key, _ = entry_key(config, registry)
    (cache_dir() / f"{key}.tree.json").write_bytes(content)
    plan = resolve({}, tree_for(str(ROOT / "examples/adapters/tiny-llava"), registry))
    assert plan.targets


@FUZZ
@given(tool=st.sampled_from(["unsloth", "llamafactory", "swift"]),
       content=st.one_of(st.binary(max_size=200), spec.map(lambda d: yaml.safe_dump(d, allow_unicode=True).encode())))
def test_any_tool_file_exits_with_a_documented_code(tmp_path_factory, capsys, tool, content):
    path = tmp_path_factory.mktemp("tool") / "config.yaml"
    path.write_bytes(content)
    code = main(["import", str(path), "--from", tool, "--model", str(ROOT / "examples/adapters/tiny-llava")])
    _no_bug(capsys, code, DOCUMENTED | {0})
