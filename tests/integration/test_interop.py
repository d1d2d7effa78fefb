"""Other tools' configs. Every exported target value is handed to PEFT itself, on the full-size model built on
the meta device, the way that tool hands it over; the modules PEFT wraps must be the plan's. Where a tool
filters names before PEFT, the test states that rule (and the version it was read from) on its own, over the
live model's modules, independently of vlora's emulation. Imports of configs shaped like each tool's published
VLM examples must give a plan equal to what the tool trains, computed the same way."""

from __future__ import annotations

import ast
import inspect
import json
import re
import shlex
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml
from peft import LoraConfig, get_peft_model
from peft.tuners.lora import LoraLayer
from peft.utils.other import ModulesToSaveWrapper

from vlora_core import default_registry, resolve
from vlora_core.cache import tree_for
from vlora_core.cli import main
from vlora_core.interop import export_plan, import_config
from vlora_core.modeltree import build_meta_model, config_from_ref

HERE = Path(__file__).resolve().parents[2] / "examples" / "interop"
ROOT = Path(__file__).resolve().parents[2]
MODELS = ["Qwen2-VL-2B-Instruct", "llava-1.5-7b-hf", "paligemma-3b-pt-224", "Llama-3.2-11B-Vision", "gemma-3-4b-it"]
# projector adapted, a layer selection, another rank in the vision tower, the LM's MLP only
RICH = {"finetune_projector": "lora", "language": {"layers": {"last": 4}}, "vision": {"r": 8, "lora_alpha": 8},
        "finetune_mlp_modules": True}


def meta_model(ref: str) -> torch.nn.Module:
    return build_meta_model(config_from_ref(ref, default_registry())[0])


def wrapped(model: torch.nn.Module, config: LoraConfig) -> tuple[dict[str, int], set[str]]:
    """(module name -> rank of every LoRA layer, names of modules trained in full) after PEFT's injection."""
    get_peft_model(model, config, low_cpu_mem_usage=True)
    lora = {n: m.r["default"] for n, m in model.named_modules() if isinstance(m, LoraLayer) and m.r}
    full = {n for n, m in model.named_modules() if isinstance(m, ModulesToSaveWrapper)}
    return lora, full


LORA_KEYS = set(inspect.signature(LoraConfig).parameters)


# --- how each tool hands the exported values to PEFT ---------------------------------------------------


def peft_config_of_peft(text: str, model) -> LoraConfig:
    data = json.loads(text)
    return LoraConfig(**{k: v for k, v in data.items() if k in LORA_KEYS and k not in ("peft_type", "peft_version")})


def peft_config_of_unsloth(text: str, model) -> LoraConfig:
    # unsloth/models/vision.py: a target_modules other than None/"all-linear" is kept; then every local and
    # keyword whose name LoraConfig accepts is passed to LoraConfig
    (call,) = [n for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Call) and getattr(n.func, "attr", "")
               == "get_peft_model"]
    kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
    assert kwargs["target_modules"] not in (None, "all-linear")
    return LoraConfig(**{k: v for k, v in kwargs.items() if k in LORA_KEYS})


def swift_args(text: str) -> dict[str, list[str]]:
    words = shlex.split(text.replace("\\\n", " "), comments=True)
    out: dict[str, list[str]] = {}
    for w in words[2:]:
        if w.startswith("--"):
            key = w[2:]
            out[key] = []
        else:
            out[key].append(w)
    return out


def peft_config_of_swift(text: str, model) -> LoraConfig:
    # ms-swift: --target_regex replaces target_modules and goes to PEFT as a string; 4.x passes
    # --target_parameters on as PEFT's target_parameters
    args = swift_args(text)
    return LoraConfig(r=int(args["lora_rank"][0]), lora_alpha=float(args["lora_alpha"][0]),
                      target_modules=args["target_regex"][0], modules_to_save=args.get("modules_to_save"),
                      target_parameters=args.get("target_parameters"))


def peft_config_of_axolotl(text: str, model) -> LoraConfig:
    data = yaml.safe_load(text)
    return LoraConfig(r=data["lora_r"], lora_alpha=data["lora_alpha"], target_modules=data["lora_target_modules"],
                      target_parameters=data.get("lora_target_parameters"),
                      modules_to_save=data.get("lora_modules_to_save"))


# LLaMA-Factory mainline (model/model_utils/visual.py, read 2025-2026): for a composite model, the names handed to
# PEFT are every module name containing a lora_target entry and none of the forbidden keys; lora_target "all"
# first becomes the leaf names of modules whose class name has "Linear" (not "Embedding"), skipping lm_head, the
# projector key and (tower frozen) the tower keys. Keys per model type, as read there:
LF_KEYS = {  # model_type: (projector key, vision keys, language keys, conflict keys)
    "qwen2_vl": ("visual.merger", ("visual.patch_embed", "visual.blocks"), ("language_model", "lm_head"),
                 ("patch_embed",)),
    "qwen2_5_vl": ("visual.merger", ("visual.patch_embed", "visual.blocks"), ("language_model", "lm_head"),
                   ("patch_embed",)),
    "llava": ("multi_modal_projector", ("vision_tower",), ("language_model", "lm_head"), ()),
    "paligemma": ("multi_modal_projector", ("vision_tower",), ("language_model", "lm_head"), ()),
    "gemma3": ("multi_modal_projector", ("vision_tower",), ("language_model", "lm_head"), ()),
    "mllama": ("multi_modal_projector", ("vision_model",), ("language_model", "lm_head"), ()),
}


def llamafactory_names(settings: dict, model) -> tuple[list[str], list[str]]:
    projector, vision, language, conflict = LF_KEYS[model.config.model_type]
    targets = [t.strip() for t in str(settings.get("lora_target", "all")).split(",")]
    freeze_vision = settings.get("freeze_vision_tower", True)
    if targets == ["all"]:
        skip = {"lm_head", projector} | (set(vision) if freeze_vision else set())
        targets = sorted({n.split(".")[-1] for n, m in model.named_modules() if n and "Linear" in type(m).__name__
                          and "Embedding" not in type(m).__name__ and not any(s in n for s in skip)})
    forbidden = set(conflict) | (set(vision) if freeze_vision else set())
    if settings.get("freeze_multi_modal_projector", True):
        forbidden.add(projector)
    if settings.get("freeze_language_model", False):
        forbidden |= set(language)
    names = [n for n, _ in model.named_modules() if any(t in n for t in targets) and not any(f in n for f in forbidden)]
    saved = [s.strip() for s in str(settings.get("additional_target") or "").split(",") if s.strip()]
    return names, saved


def peft_config_of_llamafactory(text: str, model) -> LoraConfig:
    data = yaml.safe_load(text)
    names, saved = llamafactory_names(data, model)
    return LoraConfig(r=data["lora_rank"], lora_alpha=data["lora_alpha"], target_modules=names,
                      modules_to_save=saved or None)


HANDOVER = {"peft": peft_config_of_peft, "unsloth": peft_config_of_unsloth, "swift": peft_config_of_swift,
            "axolotl": peft_config_of_axolotl, "llamafactory": peft_config_of_llamafactory}
RANKS_KEPT = {"peft", "unsloth"}  # the tools that pass rank_pattern / alpha_pattern on


@pytest.mark.parametrize("ref", MODELS)
@pytest.mark.parametrize("tool", list(HANDOVER))
def test_peft_wraps_exactly_the_plan_from_each_exported_config(tool, ref):
    registry = default_registry()
    tree = tree_for(ref, registry)
    plan = resolve(RICH, tree)
    result = export_plan(plan, tool, tree)
    model = meta_model(ref)
    config = HANDOVER[tool](result.text, model)
    lora, full = wrapped(model, config)
    expected = {t.name: t.r for t in plan.module_targets}
    params = [t for t in plan.parameter_targets]
    if tool in ("peft", "unsloth", "axolotl", "swift"):  # target_parameters passed on: PEFT wraps the owner
        expected |= {t.name.rpartition(".")[0]: t.r for t in params}
    elif params:
        assert any("parameter targets" in line for line in result.lost)
    assert set(lora) == set(expected)
    assert full == {m.name for m in plan.full_modules}
    if tool in RANKS_KEPT:
        assert lora == expected
        assert result.lost == ()
    else:  # one rank for all: the vision tower's r=8 is lost, and the export says so
        assert set(lora.values()) == {plan.spec.r}
        assert any("vision r=8" in line for line in result.lost), result.lost
        assert all(f"lost: {line}" in result.text for line in result.lost)


def test_llamafactory_export_prefers_the_shortest_target_that_is_exact():
    registry = default_registry()
    tree = tree_for("Qwen2-VL-2B-Instruct", registry)
    whole = export_plan(resolve({}, tree), "llamafactory", tree).kwargs
    assert whole["lora_target"] == "all" and whole["freeze_vision_tower"] is False
    attention = export_plan(resolve({"finetune_mlp_modules": False}, tree), "llamafactory", tree).kwargs
    # the leaf names would not do: Qwen's vision leaf `proj` is a substring of every *_proj (FACTS.md); the
    # modules holding the targets are exact: 32 vision blocks' attn. and 28 language layers' self_attn.
    entries = attention["lora_target"].split(",")
    assert len(entries) == 32 + 28 and all(e.endswith(("attn.", "self_attn.")) for e in entries)
    layers = export_plan(resolve({"language": {"layers": [0, 1]}}, tree), "llamafactory", tree).kwargs
    assert "model.language_model.layers.1.mlp.down_proj" in layers["lora_target"].split(",")


# --- import -------------------------------------------------------------------------------------------


def unsloth_regex(model, vision=True, language=True, attention=True, mlp=True) -> str:
    # unsloth_zoo.peft_utils.get_peft_regex (2025-09 .. 2026-11), stated independently: Linear leaves that occur
    # more than once; a tower tag, then a role tag, then a leaf; or model.layers.N.<role>.<leaf>; without the
    # tower tags when nothing matched
    linear = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    leaves = "|".join(re.escape(k) for k, c in Counter(n.split(".")[-1] for n in linear).items() if c > 1)
    towers = [*(["vision", "image", "visual", "patch"] if vision else []), *(["language", "text"] if language else [])]
    roles = [*(["self_attn", "attention", "attn"] if attention else []),
             *(["mlp", "feed_forward", "ffn", "dense"] if mlp else [])]
    rx = f".*?(?:{'|'.join(towers)}).*?(?:{'|'.join(roles)}).*?(?:{leaves}).*?"
    if language:
        rx = rf"(?:{rx})|(?:\bmodel\.layers\.\d+\.(?:{'|'.join(roles)})\.(?:{leaves}))"
    if not any(re.search(rx, n) for n in linear):
        rx = f".*?(?:{'|'.join(roles)}).*?(?:{leaves}).*?"
    return rx


def test_an_unsloth_notebook_config_imports_as_what_unsloth_trains():
    registry = default_registry()
    for ref in ("Qwen2-VL-7B-Instruct", "llava-1.5-7b-hf"):
        imported = import_config(HERE / "unsloth_qwen2_vl.py", "unsloth", ref)
        model = meta_model(ref)
        lora, _ = wrapped(model, LoraConfig(r=16, lora_alpha=16, target_modules=unsloth_regex(model)))
        assert {t.name for t in imported.plan.targets} == set(lora)
        assert imported.data["r"] == 16 and imported.plan.full_modules == ()
        assert resolve(imported.data, tree_for(ref, registry)).targets == imported.plan.targets
    # LLaVA: Unsloth also adapts vision layer 23, whose output the model never uses; the import says so
    assert imported.data["include_unused_layers"] is True
    assert any("layers.23" in d for d in imported.differences)


def test_a_llamafactory_example_imports_as_what_llamafactory_trains(tmp_path):
    ref = "Qwen/Qwen2.5-VL-7B-Instruct"
    base = yaml.safe_load((HERE / "llamafactory_qwen2_5vl_lora_sft.yaml").read_text())
    unfrozen = tmp_path / "unfrozen.yaml"
    unfrozen.write_text(yaml.safe_dump({**base, "freeze_vision_tower": False, "freeze_multi_modal_projector": False}))
    for path in (HERE / "llamafactory_qwen2_5vl_lora_sft.yaml", unfrozen):
        settings = yaml.safe_load(path.read_text())
        imported = import_config(path, "llamafactory", ref)
        model = meta_model(ref)
        names, _ = llamafactory_names(settings, model)
        lora, _ = wrapped(model, LoraConfig(r=8, lora_alpha=16, target_modules=names))
        assert {t.name for t in imported.plan.targets} == set(lora)
        assert imported.data["r"] == 8 and imported.data["lora_alpha"] == 16  # its default alpha: twice the rank
    # freeze_multi_modal_projector: false does nothing with lora_target: all; the import says so
    assert not any(t.component == "projector" for t in imported.plan.targets)
    assert any("projector" in d and "nothing" in d for d in imported.differences)
    assert any(t.component == "vision" for t in imported.plan.targets)


SWIFT_ARCH = {  # ms-swift's model_arch of Qwen2.5-VL for this transformers layout (language, vision, aligner)
    "qwen2_5_vl": ("model.language_model", "model.visual", "model.visual.merger"),
}


def swift_all_linear(model, freeze_vit=True, freeze_aligner=True, freeze_llm=False) -> str:
    # ms-swift get_multimodal_target_regex (3.x-4.x), stated independently: per unfrozen part, its prefix, then
    # any name ending with the leaf of a Linear inside it (the aligner excluded from the tower's part); a leaf that
    # also ends the name of a non-Linear module (digits as {}) is lengthened by its parents (find_layers)
    language, vision, aligner = SWIFT_ARCH[model.config.model_type]
    inner = {re.sub(r"\d+\.", "{}.", n) for n, m in model.named_modules() if not isinstance(m, torch.nn.Linear)}

    def leaf(name: str) -> str:
        parts = name.split(".")
        out = parts.pop()
        while parts and any(i.endswith(re.sub(r"\d+\.", "{}.", out)) for i in inner):
            out = f"{parts.pop()}.{out}"
        return out

    parts = ([language] if not freeze_llm else []) + ([vision] if not freeze_vit else []) + (
        [aligner] if not freeze_aligner else [])
    out = []
    for part in parts:
        sub = model.get_submodule(part)
        leaves = sorted({leaf(f"{part}.{n}") for n, m in sub.named_modules() if n and isinstance(m, torch.nn.Linear)})
        reject = f"(?!{re.escape(aligner)})" if part == vision else ""
        out.append(rf"{reject}{re.escape(part)}.*\.({'|'.join(leaves)})")
    return rf"^({'|'.join(out)})$"


def test_a_swift_example_imports_as_what_swift_trains(tmp_path):
    ref = "Qwen/Qwen2.5-VL-7B-Instruct"
    text = (HERE / "swift_qwen2_5vl_ocr.sh").read_text()
    vit = tmp_path / "vit.sh"
    vit.write_text(text.replace("--freeze_vit true", "--freeze_vit false --freeze_aligner false"))
    for path, flags in ((HERE / "swift_qwen2_5vl_ocr.sh", {}), (vit, {"freeze_vit": False, "freeze_aligner": False})):
        imported = import_config(path, "swift", ref)
        model = meta_model(ref)
        lora, _ = wrapped(model, LoraConfig(r=8, lora_alpha=32, target_modules=swift_all_linear(model, **flags)))
        assert {t.name for t in imported.plan.targets} == set(lora)
        assert (imported.data["r"], imported.data["lora_alpha"], imported.data["lora_dropout"]) == (8, 32, 0.05)
    assert {t.component for t in imported.plan.targets} == {"vision", "projector", "language"}


def test_an_explicit_swift_list_is_not_scoped_by_the_freeze_flags(tmp_path):
    ref = "llava-1.5-7b-hf"
    script = tmp_path / "list.sh"
    script.write_text(f"swift sft --model {ref} --train_type lora --target_modules q_proj k_proj v_proj o_proj "
                      "--freeze_vit true\n")
    imported = import_config(script, "swift", ref)
    model = meta_model(ref)
    lora, _ = wrapped(model, LoraConfig(target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    assert {t.name for t in imported.plan.targets} == set(lora)
    vision = [t for t in imported.plan.targets if t.component == "vision"]
    assert len(vision) == 72  # CLIP's q, k, v_proj (its output projection is out_proj) in all 24 layers (FACTS.md)
    assert any(d.startswith("vision attention: the flags suggest none") for d in imported.differences)


# --- the commands ------------------------------------------------------------------------------------


def test_vlora_export_writes_a_file_and_names_what_is_lost(tmp_path, capsys):
    out = tmp_path / "swift.sh"
    assert main(["export", str(ROOT / "examples" / "qwen2_vl_ocr.yaml"), "--to", "swift", "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert "wrote" in captured.out and "lost: per-component rank" in captured.err
    assert "--target_regex" in out.read_text()


def test_vlora_export_and_import_refuse_bad_input_in_one_line(tmp_path, capsys):
    assert main(["export", "--to", "peft"]) == 2
    assert "no SPEC given" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("lora_rank: [1\n")
    assert main(["import", str(bad), "--from", "llamafactory", "--model", "llava-1.5-7b-hf"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") <= 2 and "bad.yaml:" in err and "Traceback" not in err
    bad.write_text("lora_rank: many\n")
    assert main(["import", str(bad), "--from", "llamafactory", "--model", "llava-1.5-7b-hf"]) == 3
    assert "lora_rank must be a positive whole number" in capsys.readouterr().err
    nameless = tmp_path / "n.yaml"
    nameless.write_text("lora_rank: 8\n")
    assert main(["import", str(nameless), "--from", "llamafactory"]) == 2
    assert "does not name its model" in capsys.readouterr().err


def test_vlora_import_writes_a_spec_that_plans_the_same(tmp_path, capsys):
    out = tmp_path / "spec.yaml"
    assert main(["import", str(HERE / "llamafactory_qwen2_5vl_lora_sft.yaml"), "--from", "llamafactory",
                 "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    plan = resolve(out)
    assert plan.model == "Qwen/Qwen2.5-VL-7B-Instruct" and {t.component for t in plan.targets} == {"language"}


@pytest.mark.parametrize("tool", ["unsloth", "llamafactory", "swift"])
@pytest.mark.parametrize(("spec", "ref"), [
    ("examples/llava_vqa.yaml", None), ({"finetune_projector": "full", "vision": {"r": 8}}, "Qwen2-VL-2B-Instruct")])
def test_an_exported_config_imports_back_as_the_same_plan(tool, spec, ref, tmp_path):
    plan = resolve(ROOT / spec if isinstance(spec, str) else spec, ref)
    exported = export_plan(plan, tool)
    path = tmp_path / {"unsloth": "peft.py", "llamafactory": "train.yaml", "swift": "run.sh"}[tool]
    path.write_text(exported.text)
    back = import_config(path, tool, plan.model).plan
    assert [t.name for t in back.targets] == [t.name for t in plan.targets]
    assert [m.name for m in back.full_modules] == [m.name for m in plan.full_modules]
    if not exported.lost:  # ranks and alphas too, where the tool kept them
        assert [(t.r, t.lora_alpha) for t in back.targets] == [(t.r, t.lora_alpha) for t in plan.targets]


def test_an_unsloth_call_reads_module_level_constants_as_a_person_would(tmp_path):
    notebook = tmp_path / "nb.py"
    notebook.write_text("from unsloth import FastVisionModel\nlora_rank = 32\nscale = lora_rank * 2\n"
                        "model = FastVisionModel.get_peft_model(model, finetune_vision_layers=False, r=lora_rank,\n"
                        "                                       lora_alpha=lora_rank, lora_dropout=0)\n")
    imported = import_config(notebook, "unsloth", "Qwen2-VL-2B-Instruct")
    assert {t.r for t in imported.plan.targets} == {32} and imported.plan.spec.lora_alpha == 32
    assert {t.component for t in imported.plan.targets} == {"language"}
    # a name bound twice, or to an expression, is no constant: the value is refused, naming it
    notebook.write_text(notebook.read_text().replace("lora_alpha=lora_rank", "lora_alpha=scale"))
    with pytest.raises(Exception, match=r"lora_alpha=scale is not a literal value"):
        import_config(notebook, "unsloth", "Qwen2-VL-2B-Instruct")


def test_an_import_says_loudly_that_a_regex_inside_a_target_list_trains_nothing(tmp_path):
    config = tmp_path / "unsloth.yaml"
    config.write_text(yaml.safe_dump({"target_modules": [r"visual\.blocks\.\d+\.attn\.qkv", "q_proj", "v_proj"],
                                      "r": 8, "lora_alpha": 16}))
    imported = import_config(config, "unsloth", "Qwen2-VL-2B-Instruct")
    assert {t.component for t in imported.plan.targets} == {"language"}
    assert any("a regular expression inside a list" in d for d in imported.differences)
    assert "a regular expression inside a list" in imported.to_yaml()


def test_the_swift_export_spells_the_tuner_switch_of_the_version_asked(capsys):
    registry = default_registry()
    plan = resolve(str(ROOT / "examples" / "gemma3_projector.yaml"))
    newest = export_plan(plan, "swift")
    assert "--tuner_type lora" in newest.text and "--train_type" not in newest.text
    assert "# for ms-swift 4.x" in newest.text
    assert "--target_parameters model.multi_modal_projector.mm_input_projection_weight" in newest.text
    assert not any("parameter targets" in line for line in newest.lost)
    older = export_plan(plan, "swift", tool_version="3")
    assert "--train_type lora" in older.text and "--tuner_type" not in older.text
    assert any("parameter targets" in line for line in older.lost) and "--target_parameters" not in older.text
    assert main(["export", str(ROOT / "examples" / "qwen2_vl_ocr.yaml"), "--to", "swift", "--tool-version", "9"]) == 2
    assert "vlora knows ms-swift 4.x, 3.x" in capsys.readouterr().err
    for flag in ("--tuner_type", "--train_type"):  # import reads every spelling
        script = f"swift sft --model Qwen/Qwen2-VL-2B-Instruct {flag} lora --target_modules all-linear\n"
        assert import_config_text(script, registry).plan.targets


def import_config_text(script: str, registry):
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.sh"
        path.write_text(script)
        return import_config(path, "swift", "Qwen2-VL-2B-Instruct", registry=registry)


def test_swift_4_adapts_a_single_linear_aligner_when_it_is_not_frozen():
    registry = default_registry()
    script = ("swift sft --model meta-llama/Llama-3.2-11B-Vision --tuner_type lora --target_modules all-linear "
              "--freeze_aligner false\n")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.sh"
        path.write_text(script)
        imported = import_config(path, "swift", "Llama-3.2-11B-Vision", registry=registry)
    projector = [t.name for t in imported.plan.targets if t.component == "projector"]
    assert projector == ["model.multi_modal_projector"]


def test_a_moe_config_with_dropout_imports_when_no_expert_is_adapted(tmp_path):
    config = tmp_path / "unsloth.yaml"
    # target_parameters: [] keeps Unsloth from adding the expert weights by itself
    config.write_text("r: 16\nlora_alpha: 16\nlora_dropout: 0.05\nfinetune_vision_layers: false\n"
                      "target_parameters: []\n")
    imported = import_config(config, "unsloth", "Qwen3.5-35B-A3B")
    assert imported.plan.spec.lora_dropout == 0.05 and imported.data["lora_dropout"] == 0.05
    assert imported.plan.targets and not imported.plan.parameter_targets  # the experts are not adapted
