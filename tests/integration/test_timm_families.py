"""The families whose vision tower is a timm model (Gemma-3n, FastVLM; PerceptionLM), in CI's timm environment
(torch 2.14.1 with torchvision 0.29.1 and timm: README, "Environments"): their coverage rows, and Gemma-3n through
every command a user runs (plan, --explain, lock and validate, export, the serving check, --memory), on
transformers' default config built on the meta device. Skipped where timm is not installed (the main environment,
whose CPU build of torch cannot load torchvision)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytest.importorskip("timm", reason="needs the timm environment")

from transformers import AutoConfig

from vlora_core.cli import main
from vlora_core.coverage import coverage_row
from vlora_core.plugins import default_registry


def test_coverage_of_the_timm_families():
    from vlora_core.coverage import render_coverage

    rows = {t: coverage_row(t, default_registry()) for t in ("fast_vlm", "gemma3n", "perception_lm")}
    page = (Path(__file__).resolve().parents[2] / "docs" / "coverage.md").read_text()
    documented = re.search(r"<!-- coverage-timm:begin -->\n(.*?)<!-- coverage-timm:end -->", page, re.S).group(1)
    assert documented == render_coverage(list(rows.values())), "docs/coverage.md's timm block is stale"
    for family in ("gemma3n", "fast_vlm"):
        assert rows[family]["status"] == "plugin" and rows[family]["counts_match"], rows[family]
    assert "audio 12 (conf_num_hidden_layers)" in rows["gemma3n"]["detail"]
    assert "vision 2 37 (a stage of timm's mobilenetv5_300m_enc)" in rows["gemma3n"]["detail"]
    assert "language 28 (num_hidden_layers)" in rows["fast_vlm"]["detail"]
    # transformers' own default PerceptionLM config does not build, with timm or without
    assert rows["perception_lm"]["status"] == "refused" and "does not build" in rows["perception_lm"]["detail"]


@pytest.fixture(scope="module")
def gemma3n(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gemma3n")
    AutoConfig.for_model("gemma3n").save_pretrained(folder)
    spec = folder / "spec.yaml"
    spec.write_text(f"model: {folder}\nfinetune_vision_layers: true\nfinetune_projector: lora\n")
    return spec


def test_gemma3n_through_every_command(gemma3n, tmp_path, capsys):
    assert main(["plan", str(gemma3n), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert {row["component"] for row in plan["summary"]} == {"vision", "audio", "projector", "language"}
    assert main(["plan", str(gemma3n), "--explain", "laurel.linear_left"]) == 0
    assert "LAuReL's low-rank residual" in capsys.readouterr().out
    lock = tmp_path / "gemma3n.lock.json"
    assert main(["lock", str(gemma3n), "-o", str(lock)]) == 0
    assert main(["validate", str(gemma3n), "--lock", str(lock)]) == 0
    for tool in ("peft", "unsloth", "swift"):
        assert main(["export", str(gemma3n), "--to", tool, "-o", str(tmp_path / tool)]) == 0, tool
    capsys.readouterr()
    # LLaMA-Factory adapts the Linear layers its lora_target names: the tower's convolutions are lost, and export
    # says which
    assert main(["export", str(gemma3n), "--to", "llamafactory", "-o", str(tmp_path / "lf")]) == 0
    assert "lost: 233 planned targets LLaMA-Factory does not adapt" in capsys.readouterr().err
    main(["plan", str(gemma3n), "--serve", "vllm"])
    assert "Gemma3nForConditionalGeneration does not support LoRA yet." in capsys.readouterr().out
    assert main(["plan", str(gemma3n), "--memory", "--seq", "128", "--json"]) == 0
    memory = json.loads(capsys.readouterr().out)["memory"]
    assert memory["peak_bytes"] > memory["base_weights_bytes"] > 0


@pytest.mark.parametrize("plugin", ["gemma3n", "fast_vlm"])
def test_the_conformance_kit_on_the_timm_plugins(plugin):
    """What CI's installed-wheel check runs on every other plugin (it has no timm): the kit, at full size."""
    from vlora_core.modeltree import build_meta_model
    from vlora_core.testing import check_plugin

    check_plugin(plugin, build_meta_model(AutoConfig.for_model(plugin)), registry=default_registry())
