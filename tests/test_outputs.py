"""Files vlora writes are never lost or corrupted, and what PEFT would reject half-way is refused before the
model is touched."""

from __future__ import annotations

import json
import re

import pytest
import torch

from vlora_core import (
    SpecArchitectureMismatch,
    UsageError,
    VloraError,
    apply,
    load_spec,
    make_lock,
    read_lock,
    resolve,
    write_lock,
)
from vlora_core.cli import main


def test_a_lock_is_written_whole_by_rename(tmp_path, model, registry):
    plan = resolve({}, model, registry=registry)
    path = tmp_path / "a.lock.json"
    path.write_text("old content that must be replaced whole")
    inode = path.stat().st_ino
    write_lock(plan, path)
    assert read_lock(path) == json.loads(json.dumps(make_lock(plan)))
    assert path.stat().st_ino != inode  # a new file renamed over the old one, not truncated in place
    assert [p.name for p in tmp_path.iterdir()] == ["a.lock.json"]  # no temporary file left behind


def test_a_lock_never_writes_through_a_link_onto_a_folder_or_into_nowhere(tmp_path, model, registry):
    plan = resolve({}, model, registry=registry)
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    link = tmp_path / "link.lock.json"
    link.symlink_to(target)
    with pytest.raises(UsageError, match="symbolic link"):
        write_lock(plan, link)
    assert target.read_text() == "keep me"
    with pytest.raises(UsageError, match="is a folder"):
        write_lock(plan, tmp_path)
    with pytest.raises(UsageError, match="folder does not exist"):
        write_lock(plan, tmp_path / "missing" / "a.lock.json")


def test_a_folder_that_takes_no_files_is_a_usage_error(model, registry):
    # /proc takes no new files, even for root (a chmod-ed folder would not stop root)
    with pytest.raises(UsageError, match="cannot write the lock"):
        write_lock(resolve({}, model, registry=registry), "/proc/a.lock.json")


def test_a_lock_never_replaces_its_own_spec(tmp_path, model, registry):
    spec_file = tmp_path / "a.json"
    spec_file.write_text('{"task": "vqa"}')
    plan = resolve(load_spec(spec_file), model, registry=registry)
    with pytest.raises(UsageError, match="is the spec file itself"):
        write_lock(plan, spec_file)
    assert json.loads(spec_file.read_text()) == {"task": "vqa"}


@pytest.mark.parametrize("init", ["pissa", "olora", "pissa_niter_4"])
def test_svd_inits_with_a_rank_above_a_weight_are_refused_before_touching_the_model(model, registry, init):
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    spec = {"init_lora_weights": init, "r": 9}  # the tiny model's Linears are 8 wide
    with pytest.raises(SpecArchitectureMismatch, match=f"init_lora_weights: {init} decomposes") as info:
        apply(model, spec, registry=registry)
    assert info.value.location.field == "init_lora_weights"
    assert all(torch.equal(p, before[n]) and p.requires_grad for n, p in model.named_parameters())
    assert resolve({"init_lora_weights": init, "r": 8}, model, registry=registry).targets  # r = the side: fine


def test_a_billion_laughs_spec_is_refused_at_once(tmp_path):
    from vlora_core import SpecFileError

    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join(lines) + "\n")  # under 1 KiB, 9**10 strings once expanded
    with pytest.raises(SpecFileError, match="expands to more than 100,000 values"):
        load_spec(path)
    shared = tmp_path / "shared.yaml"  # a sane alias still works
    shared.write_text("exclude_modules: &x ['vision\\.layers\\.0\\..*']\ntarget_modules_extra: []\n")
    assert load_spec(shared).exclude_modules == ["vision\\.layers\\.0\\..*"]


def test_a_huge_file_is_not_read_as_a_spec(tmp_path):
    from vlora_core import SpecFileError

    path = tmp_path / "big.yaml"
    path.write_text("# " + "x" * (1 << 20) + "\n")
    with pytest.raises(SpecFileError, match="a spec is at most 1,048,576"):
        load_spec(path)


@pytest.mark.parametrize(("text", "field"), [
    ("r: true\n", "r"),
    ("r: '16'\n", "r"),
    ("finetune_vision_layers: 'off'\n", "finetune_vision_layers"),
    ("lora_alpha: .inf\n", "lora_alpha"),
    ("vision:\n  r: 2.5\n", "vision.r"),
])
def test_values_are_not_silently_coerced(tmp_path, text, field):
    from vlora_core import SpecValidationError

    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(SpecValidationError) as info:
        load_spec(path)
    (diag,) = info.value.diagnostics
    assert diag.location.field == field and diag.location.line == text.count("\n")


@pytest.mark.parametrize(("name", "text", "line"), [
    ("s.yaml", "r: 8\ntask: vqa\nr: 16\n", 3),
    ("s.json", '{\n  "r": 8,\n  "vision": {"r": 2, "r": 4}\n}\n', 3),
])
def test_a_key_written_twice_is_an_error_at_its_line(tmp_path, name, text, line):
    from vlora_core import SpecFileError

    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(SpecFileError, match="written twice") as info:
        load_spec(path)
    assert info.value.location.line == line


def test_projector_settings_for_a_projector_that_gets_no_adapters_are_warned_about(model, registry):
    plan = resolve({"projector": {"r": 4}}, model, registry=registry)
    assert [d.code for d in plan.diagnostics] == ["ignored-projector-settings"]
    assert "finetune_projector is frozen" in plan.warnings[0]
    assert resolve({"projector": {"r": 4}, "finetune_projector": "lora"}, model, registry=registry).diagnostics == ()


def test_shares_rank_is_a_usage_error_when_not_positive(capsys):
    with pytest.raises(SystemExit) as info:
        main(["shares", "--r", "0"])
    assert info.value.code == 2 and "expected a whole number >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("pattern", ["a{4294967296}", "x" * 5000])
def test_patterns_that_overflow_the_compiler_are_spec_errors(pattern):
    from vlora_core import SpecValidationError
    from vlora_core.spec import spec_from_data

    with pytest.raises(SpecValidationError) as info:
        spec_from_data({"exclude_modules": [pattern]})
    assert info.value.diagnostics[0].location.field == "exclude_modules[0]"


@pytest.mark.parametrize(("name", "content", "words"), [
    ("nul.yaml", b"r: 8\x00\n", r"malformed YAML: (special|control) characters are not allowed"),  # PyYAML | libyaml
    ("key.yaml", b"a[b: 1\n", r"unknown key 'a\[b'"),
    ("big.yaml", ("r: " + "9" * 5000 + "\n").encode(), "cannot read a value"),
    ("big.json", ('{"r": ' + "9" * 5000 + "}").encode(), "cannot read a value"),
    ("self.yaml", b"a: &a [*a]\n", "an alias that contains itself"),
    ("deep.yaml", ("x: " + "[" * 3000 + "]" * 3000 + "\n").encode(), r"nests too deeply|exceeded maximum nesting"),
])
def test_hostile_spec_files_get_the_spec_exit_code_and_one_message(tmp_path, capsys, name, content, words):
    path = tmp_path / name
    path.write_bytes(content)
    assert main(["validate", str(path)]) == 3
    out = capsys.readouterr().out
    assert re.search(words, out) and "internal error" not in out


def test_one_bad_file_does_not_lose_the_others(tmp_path, capsys):
    (tmp_path / "good.yaml").write_text("task: vqa\n")
    (tmp_path / "bad.yaml").write_bytes(b"r: 8\x00\n")
    assert main(["validate", str(tmp_path / "good.yaml"), str(tmp_path / "bad.yaml")]) == 3
    out = capsys.readouterr().out
    assert "good.yaml: ok" in out and "bad.yaml:1: malformed YAML" in out


@pytest.mark.parametrize(("targets", "words"), [
    ([{"component": "vision"}], "target 0 of the lock has no role"),
    ([{"component": "vision", "role": "mlp", "leaf": "x", "name": "n", "layer": "abc", "r": 1, "lora_alpha": 1,
       "lora_params": 1}], "layer that is not a whole number"),
    (["nope"], "is a str, not a mapping"),
])
def test_a_lock_of_the_wrong_shape_is_a_lock_error(tmp_path, targets, words):
    from vlora_core import LockMismatchError

    path = tmp_path / "x.lock.json"
    path.write_text(json.dumps({"vlora_lock": 1, "targets": targets}))
    with pytest.raises(LockMismatchError, match=words):
        read_lock(path)


@pytest.mark.parametrize(("config", "words"), [
    ({"model_type": ["llava"]}, "model_type is a list, not a string"),
    ({"model_type": "llama", "num_hidden_layers": "two"}, "cannot make a llama config from it"),
    ([1, 2], "a config is a JSON object, not a list"),
])
def test_a_config_json_of_the_wrong_shape_is_a_model_load_error(tmp_path, registry, config, words):
    from vlora_core import ModelLoadError, module_tree

    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=words):
        module_tree(str(tmp_path), registry)


def _state(model: torch.nn.Module) -> dict:
    """Everything a failed apply must put back: module names and types, every tensor's value, dtype and flag,
    and the attributes PEFT sets on the model."""
    return {
        "modules": [(n, type(m).__name__) for n, m in model.named_modules()],
        "tensors": {n: (t.detach().clone(), t.dtype, t.requires_grad)
                    for n, t in [*model.named_parameters(), *model.named_buffers()]},
        "attrs": sorted(model.__dict__),
    }


def _assert_same(model: torch.nn.Module, before: dict) -> None:
    after = _state(model)
    assert after["modules"] == before["modules"] and after["attrs"] == before["attrs"]
    assert after["tensors"].keys() == before["tensors"].keys()
    for name, (value, dtype, flag) in before["tensors"].items():
        now, now_dtype, now_flag = after["tensors"][name]
        assert now_dtype == dtype and now_flag == flag and torch.equal(now, value), name


class _Stop(Exception):
    pass


@pytest.mark.parametrize("interruption", [_Stop, KeyboardInterrupt])
def test_an_apply_that_fails_half_way_restores_every_tensor_flag_and_module(model, registry, interruption):
    from torch.nn.modules.module import register_module_parameter_registration_hook

    model.embed.weight.requires_grad_(False)  # a flag PEFT would not restore by itself
    model.language.layers[0].attn.q.weight.data = model.language.layers[0].attn.q.weight.data.half().float()
    before = _state(model)
    pixels, ids = torch.randn(1, 3, 4, 4), torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        expected = model(pixels, ids)
    registered = []

    def stop_at_the_fifth(module, name, param):  # lora_A and lora_B per target: the third target's lora_A
        registered.append(name)
        if len(registered) == 5:
            raise interruption("stopped half-way")

    handle = register_module_parameter_registration_hook(stop_at_the_fifth)
    try:
        # PiSSA rewrites each target's base weight after adding its lora_A and lora_B: two targets are rewritten
        with pytest.raises(VloraError if interruption is _Stop else KeyboardInterrupt) as info:
            apply(model, {"init_lora_weights": "pissa", "r": 2}, registry=registry)
    finally:
        handle.remove()
    assert len(registered) == 5
    if interruption is _Stop:
        assert "PEFT failed while adding the adapters (_Stop: stopped half-way); the model was restored" in str(
            info.value)
    _assert_same(model, before)
    with torch.no_grad():
        assert torch.equal(model(pixels, ids), expected)
    assert apply(model, {"r": 2}, registry=registry).vlora_plan.targets  # and it can be adapted afterwards


def test_an_svd_init_on_a_float64_weight_is_refused_before_touching_the_model(model, registry):
    model.language.layers[2].mlp.down.double()
    before = _state(model)
    with pytest.raises(SpecArchitectureMismatch, match=r"language\.layers\.2\.mlp\.down is float64") as info:
        apply(model, {"init_lora_weights": "olora", "r": 2}, registry=registry)
    assert info.value.location.field == "init_lora_weights"
    _assert_same(model, before)


def test_a_model_that_already_carries_adapters_is_named_as_such(model, registry):
    from vlora_core import ModelLoadError, UsageError

    peft_model = apply(model, {"r": 2}, registry=registry)
    # apply changes the model in place: the inner model is no base model any more
    with pytest.raises(ModelLoadError, match=r"already carries PEFT adapters on .*vision\.layers\.0\.attn\.q and"):
        apply(model, {"r": 2}, registry=registry)
    # the PeftModel takes a second adapter, under a name of its own
    with pytest.raises(UsageError, match="already has an adapter named 'default'"):
        apply(peft_model, {"r": 2}, registry=registry)
    assert apply(peft_model, {"r": 2}, registry=registry, adapter_name="two").vlora_plans["two"].targets
    base = peft_model.unload()
    assert apply(base, {"r": 2}, registry=registry).vlora_plan.targets  # the hint's way out works


def test_a_layer_list_of_a_quarter_million_entries_is_checked_in_linear_time():
    import time

    from vlora_core import SpecValidationError
    from vlora_core.spec import spec_from_data

    start = time.monotonic()  # the duplicate check was quadratic: hours for this list
    with pytest.raises(SpecValidationError, match="layer 7 is listed twice"):
        spec_from_data({"language": {"layers": [*range(250_000), 7]}})
    assert time.monotonic() - start < 10


@pytest.mark.parametrize(("version", "words"), [
    (2, "the lock has format 2, written by a newer vlora; this one reads format 1"),
    (0, "the lock has format 0, which this vlora no longer reads"),
    ("1", "not a vlora lock file"),
    (None, "not a vlora lock file"),
])
def test_a_lock_of_another_format_gets_one_message_saying_what_to_do(tmp_path, model, registry, version, words):
    from vlora_core import LockMismatchError

    path = write_lock(resolve({}, model, registry=registry), tmp_path / "a.lock.json")
    data = json.loads(path.read_text())
    data["vlora_lock"] = version
    path.write_text(json.dumps(data))
    with pytest.raises(LockMismatchError, match=words) as info:
        read_lock(path)
    assert info.value.exit_code == 6 and ("vlora lock SPEC" in info.value.hint or "upgrade" in info.value.hint)


def test_path_components_the_file_system_refuses_get_their_exit_code_and_a_short_message(
        tmp_path, capsys, model, registry):
    long = "a" * 300
    spec = tmp_path / "s.yaml"
    spec.write_text("r: 8\n")
    with pytest.raises(UsageError, match="cannot use the lock path: File name too long") as info:
        write_lock(resolve({}, model, registry=registry), tmp_path / long)
    assert long not in str(info.value) and "(300 bytes)" in str(info.value)
    cases = [(["plan", f"{long}.yaml"], 3), (["validate", f"{long}.yaml"], 3),
             (["plan", str(spec), "--model", long], 4)]
    for argv, code in cases:
        assert main(argv) == code, argv
        err = capsys.readouterr().err
        assert "File name too long" in err and long not in err and ("(300 bytes)" in err or "(305 bytes)" in err)


def test_a_binary_file_is_named_as_not_text(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_bytes(b"\x81\xff\x00binary")
    assert main(["plan", str(path)]) == 3
    assert "not a UTF-8 text file (byte 0x81 at offset 0)" in capsys.readouterr().err


def test_plan_and_validate_give_one_exit_code_for_a_missing_spec(tmp_path, capsys):
    assert main(["plan", str(tmp_path / "none.yaml")]) == main(["validate", str(tmp_path / "none.yaml")]) == 3


@pytest.mark.parametrize(("key", "words"), [
    ("freeze_vision_tower", "in vlora: finetune_vision_layers, with the meaning inverted"),
    ("lora_rank", "in vlora: r"),
    ("freeze_llm", "in vlora: finetune_language_layers, with the meaning inverted"),
    ("target_modules", "add modules outside them with target_modules_extra"),
])
def test_keys_of_other_tools_say_what_vlora_writes_instead(key, words):
    from vlora_core import SpecValidationError
    from vlora_core.spec import spec_from_data

    with pytest.raises(SpecValidationError, match=words) as info:
        spec_from_data({key: True})
    assert "did you mean" not in str(info.value)


def test_toml_errors_point_at_the_key_s_own_line(tmp_path):
    from vlora_core import SpecError

    cases = {
        'r = 8\n\n[vision]\nr = "x"\n': 4,  # a table
        'r = 8\nvision.r = "x"\n': 2,  # a dotted key
        'r = 8\n\nlanguage = { layers = [1, 1] }\n': 3,  # an inline table
        'r = 8\nx = [\n': 2,  # malformed, at the end of the document
    }
    for text, line in cases.items():
        path = tmp_path / "s.toml"
        path.write_text(text)
        with pytest.raises(SpecError) as info:
            load_spec(path)
        assert info.value.diagnostics[0].location.line == line, text


def test_independent_faults_of_a_spec_are_reported_together(tmp_path, model, registry, capsys):
    from vlora_core import LayerSelectionError, ResolutionErrors, UserPatternError

    path = tmp_path / "s.yaml"
    path.write_text("vision:\n  layers: [9]\nlanguage:\n  layers: {last: 99}\n"
                    "target_modules_extra:\n  - 'nowhere'\n  - 'lm_head'\n")
    with pytest.raises(ResolutionErrors) as info:
        resolve(load_spec(path), model, registry=registry)
    errors = info.value.errors
    assert [type(e) for e in errors[:2]] == [LayerSelectionError, LayerSelectionError]
    assert [d.location.field for d in info.value.diagnostics] == ["vision.layers", "language.layers"]
    assert info.value.exit_code == 4
    # once the layers are right, the three pattern faults come together, each at its line
    path.write_text("target_modules_extra:\n  - 'nowhere'\n  - 'lm_head'\nexclude_modules: ['x']\n")
    with pytest.raises(ResolutionErrors) as info:
        resolve(load_spec(path), model, registry=registry)
    diagnostics = info.value.diagnostics
    assert [(d.location.field, d.location.line) for d in diagnostics] == [
        ("target_modules_extra[0]", 2), ("target_modules_extra[1]", 3)]  # exclusions wait for the extras
    assert isinstance(info.value.errors[0], UserPatternError)
    text = str(info.value)
    assert text.count("hint:") == 2 and "lies in no component" in text
    # a single fault stays its own class
    with pytest.raises(LayerSelectionError):
        resolve({"vision": {"layers": [9]}}, model, registry=registry)


def test_constructing_a_spec_in_python_gives_vlora_s_errors_not_pydantic_s():
    from vlora_core import SpecValidationError, VisionLoRASpec

    with pytest.raises(SpecValidationError) as info:
        VisionLoRASpec(rr=16, lora_alpha="x")
    fields = {d.location.field: d.message for d in info.value.diagnostics}
    assert "did you mean 'r'?" in fields["rr"] and "valid number" in fields["lora_alpha"]
    assert VisionLoRASpec(r=4).r == 4


@pytest.mark.parametrize("text", ["", "# only a comment\n", "{}\n"])
def test_a_spec_file_that_sets_nothing_is_warned_about(tmp_path, model, registry, text):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    plan = resolve(load_spec(path), model, registry=registry)
    assert [d.code for d in plan.diagnostics] == ["empty-spec"] and plan.targets
    assert not resolve({}, model, registry=registry).diagnostics  # a spec made in code says what it means


def test_oversized_config_and_lock_files_are_refused_before_reading(tmp_path, monkeypatch, model, registry):
    import vlora_core.lock as lock
    import vlora_core.modeltree as modeltree
    from vlora_core import LockMismatchError, ModelLoadError

    monkeypatch.setattr(modeltree, "MAX_CONFIG_BYTES", 100)  # the real limits are tens of MiB
    monkeypatch.setattr(lock, "MAX_LOCK_BYTES", 100)
    config = tmp_path / "config.json"
    config.write_text('{"model_type": "llama", "pad": "' + "x" * 200 + '"}')
    with pytest.raises(ModelLoadError, match=r"a config\.json is at most 100"):
        resolve({}, str(config), registry=registry)
    path = write_lock(resolve({}, model, registry=registry), tmp_path / "a.lock.json")
    with pytest.raises(LockMismatchError, match="a lock is at most 100"):
        read_lock(path)
