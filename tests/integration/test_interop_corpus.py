"""Every published config in tests/data/interop (the tools' own example YAMLs, scripts and notebook cells, with
provenance) imports on a bundled reference of its family to a plan of the size the real tool trains. The sizes were
measured by handing the same files to LLaMA-Factory 0.9.5, ms-swift 4.6.0 and unsloth-zoo 2026.10.9's
get_peft_regex (.ci/real_llamafactory.py, .ci/real_swift.py, .ci/real_unsloth.py, which CI runs and which compare
name by name); the checks below pin the behaviours that were wrong before."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlora_core import default_registry, resolve
from vlora_core.cache import tree_for
from vlora_core.interop import export_plan, import_config

CORPUS = Path(__file__).resolve().parents[1] / "data" / "interop"

# file -> (tool, bundled reference of its family, modules + parameters the real tool adapts on it)
MEASURED = {
    "unsloth/u01_qwen2_vl_7b_vision.py": ("unsloth", "Qwen2-VL-7B-Instruct", 324),
    "unsloth/u04_qwen3_vl_8b_vision.py": ("unsloth", "Qwen3-VL-8B-Instruct", 360),
    "unsloth/u06_qwen3_5_4b_vision.py": ("unsloth", "Qwen3.5-9B", 356),
    "unsloth/u09_llama3_2_11b_vision.py": ("unsloth", "Llama-3.2-11B-Vision", 520),
    "unsloth/u12_pixtral_12b_vision.py": ("unsloth", "pixtral-12b", 192),
    "unsloth/u15_gemma4_e2b_vision.py": ("unsloth", "gemma-4-E2B-it", 494),
    "unsloth/u17_gemma4_26b_a4b_vision.py": ("unsloth", "gemma-4-26B-A4B-it", 379),
    "llamafactory/lf01_qwen3vl_lora_sft.yaml": ("llamafactory", "Qwen3-VL-8B-Instruct", 252),
    "llamafactory/lf03_qwen3vlmoe_lora_sft_fsdp_ascend.yaml": ("llamafactory", "Qwen3-VL-30B-A3B-Instruct", 192),
    "llamafactory/lf05_qwen3_5moe_lora_sft_fsdp2_ascend.yaml": ("llamafactory", "Qwen3.5-35B-A3B", 350),
    "llamafactory/lf09_qwen2_5vl_lora_sft.yaml": ("llamafactory", "Qwen2.5-VL-7B-Instruct", 196),
    "llamafactory/lf11_qwen2vl_lora_sft_2025-04.yaml": ("llamafactory", "Qwen2-VL-7B-Instruct", 196),
    "llamafactory/lf14_llava1_5_lora_sft_2025-04.yaml": ("llamafactory", "llava-1.5-7b-hf", 224),
    "llamafactory/lf16_llama4_lora_sft.yaml": ("llamafactory", "Llama-4-Scout-17B-16E-Instruct", 336),
    "swift/s01_caption_qwen2_5vl.sh": ("swift", "Qwen2.5-VL-7B-Instruct", 196),
    "swift/s03_ocr_qwen2_5vl.sh": ("swift", "Qwen2.5-VL-7B-Instruct", 196),
    "swift/s06_qwen3vl_mixed.sh": ("swift", "Qwen3-VL-8B-Instruct", 252),
    "swift/s08_qwen3_5_moe_transformers.sh": ("swift", "Qwen3.5-35B-A3B", 350),
    "swift/s10_gemma4_train.sh": ("swift", "gemma-4-E2B-it", 316),
    "swift/s11_llama4_moe.sh": ("swift", "Llama-4-Scout-17B-16E-Instruct", 336),
}


def imported(name: str):
    tool, ref, _ = MEASURED[name]
    return import_config(CORPUS / name, tool, ref)


def test_every_collected_config_is_measured_and_has_provenance():
    files = {f"{p.parent.name}/{p.name}" for p in CORPUS.glob("*/*") if p.name != "provenance.tsv"}
    assert files == set(MEASURED)
    for folder in ("llamafactory", "swift", "unsloth"):
        listed = {line.split("\t")[0] for line in (CORPUS / folder / "provenance.tsv").read_text().splitlines()}
        assert {p.name for p in (CORPUS / folder).iterdir() if p.name != "provenance.tsv"} <= listed


@pytest.mark.parametrize("name", sorted(MEASURED))
def test_a_published_config_imports_as_large_as_the_real_tool_trains(name):
    result = imported(name)
    # what vlora plans, plus what it says it cannot plan (modules outside every component)
    assert len(result.plan.targets) + len(result.unexpressed) == MEASURED[name][2]


def test_unsloth_2026_adapts_gemma4_clipped_linears_embedders_and_audio():
    plan = imported("unsloth/u15_gemma4_e2b_vision.py").plan
    names = {t.name for t in plan.targets}
    assert "model.vision_tower.encoder.layers.0.self_attn.q_proj.linear" in names  # through the wrapper's Linear
    assert "model.embed_vision.embedding_projection" in names  # the vision embedder, under the mlp flag
    assert any(t.component == "audio" for t in plan.targets)  # all-linear turns the audio toggle on


def test_unsloth_adds_expert_weights_itself_and_leaves_routers_out():
    gemma = imported("unsloth/u17_gemma4_26b_a4b_vision.py")
    assert {t.leaf for t in gemma.plan.parameter_targets} == {"experts.gate_up_proj", "experts.down_proj"}
    assert any("target_parameters by itself" in d for d in gemma.differences)


def test_unsloth_default_toggles_on_llama4_plan_what_it_trains(tmp_path):
    call = tmp_path / "llama4.py"
    call.write_text("model = FastVisionModel.get_peft_model(model, r=16, lora_alpha=16)\n")
    plan = import_config(call, "unsloth", "Llama-4-Scout-17B-16E-Instruct").plan
    assert len(plan.module_targets) == 542  # what the real get_peft_regex selects (the issue measured 542)
    assert not any(t.name.endswith(".router") for t in plan.targets)


def test_unsloth_narrows_an_explicit_list_by_the_toggles(tmp_path):
    call = tmp_path / "list.py"
    call.write_text("model = FastVisionModel.get_peft_model(model, target_modules=['q_proj', 'v_proj'],\n"
                    "    finetune_vision_layers=False)\n")
    plan = import_config(call, "unsloth", "Qwen2-VL-7B-Instruct").plan
    assert {t.component for t in plan.targets} == {"language"}
    assert len(plan.targets) == 2 * 28  # q and v of the 28 language layers; the vision tower's qkv is not listed


def test_llamafactory_knows_qwen3_5_and_freezes_its_towers():
    result = imported("llamafactory/lf05_qwen3_5moe_lora_sft_fsdp2_ascend.yaml")
    assert {t.component for t in result.plan.targets} == {"language"}
    assert not any("composite-model table" in d for d in result.differences)


def test_a_llamafactory_export_of_qwen3_vl_projector_lora_keeps_the_deepstack_mergers():
    plan = resolve({"finetune_projector": "lora", "finetune_vision_layers": False}, "Qwen3-VL-8B-Instruct")
    deepstack = [t.name for t in plan.targets if "deepstack_merger_list" in t.name]
    assert len(deepstack) == 6
    export = export_plan(plan, "llamafactory")
    assert export.kwargs["freeze_vision_tower"] is False and not export.lost
    # LLaMA-Factory 0.9.5's rule for qwen3_vl, stated here: a module whose name holds a lora_target entry and none
    # of the frozen keys (the tower's keys, which hold the DeepStack mergers, are not frozen now)
    wanted = export.kwargs["lora_target"].split(",")
    frozen = ["patch_embed"] + (["visual.merger"] if export.kwargs["freeze_multi_modal_projector"] else [])
    tree = tree_for("Qwen3-VL-8B-Instruct", default_registry())
    chosen = {e.name for e in tree.entries if e.name and any(w in e.name for w in wanted)
              and not any(f in e.name for f in frozen)}
    assert chosen == {t.name for t in plan.targets}


def test_an_import_says_what_gemma4_adapts_outside_every_component():
    result = imported("swift/s10_gemma4_train.sh")
    assert result.unexpressed == ("model.language_model.per_layer_model_projection",)
    assert "model.language_model.per_layer_model_projection" in result.to_yaml()
    assert "1 module outside" in result.to_yaml()


def test_a_written_spec_says_a_whole_alpha_as_people_write_it():
    text = imported("llamafactory/lf09_qwen2_5vl_lora_sft.yaml").to_yaml()
    assert "\nlora_alpha: 16\n" in text and "16.0" not in text  # LLaMA-Factory's default alpha, twice rank 8


def test_an_unsloth_notebook_imports_on_the_model_its_from_pretrained_names(tmp_path):
    notebook = tmp_path / "nb.py"
    call = (CORPUS / "unsloth" / "u01_qwen2_vl_7b_vision.py").read_text()
    notebook.write_text('model, tokenizer = FastVisionModel.from_pretrained(\n    "unsloth/Qwen2-VL-7B-Instruct",\n'
                        '    load_in_4bit = True,\n)\n' + call)
    result = import_config(notebook, "unsloth")  # no --model: the file names it, a re-upload of a bundled one
    assert result.model == "unsloth/Qwen2-VL-7B-Instruct" and len(result.plan.targets) == MEASURED[
        "unsloth/u01_qwen2_vl_7b_vision.py"][2]
