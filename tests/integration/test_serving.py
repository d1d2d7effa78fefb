"""Will a serving engine apply an adapter as trained: for every family a built-in plugin handles, an adapter
written from a plan on a tiny model is checked against vLLM 0.33.0 and SGLang 0.5.23 (`vlora adapter check
--serve`), and the verdicts agree with what those engines' sources do (read from their wheels; the files are
named in each expectation). `plan --serve`, `validate --serve` and `export --to vllm` say the same."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from vlora_core import apply
from vlora_core.cli import main
from vlora_core.serving import DROPPED, FLAG, REFUSED, RESCALED, SERVED, UNKNOWN

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from families import FAMILIES, spec_for, tiny

ROOT = Path(__file__).resolve().parents[2]
# every tower on: the question is what the engines do with each part
SPEC = {"finetune_vision_layers": True, "finetune_language_layers": True, "finetune_projector": "lora", "r": 8,
        "lora_alpha": 16}
# vllm/model_executor/models/registry.py: Mllama was dropped after 0.10.2;
# llava_onevision.py: LlavaOnevisionForConditionalGeneration is no SupportsLoRA ("does not support LoRA yet")
# and the 0.33.0 wheel holds no fuyu.py (nor persimmon.py): Fuyu is not served at all
VLLM_LANGUAGE_REFUSED = {"mllama", "llava_onevision", "fuyu"}
# sglang/srt/models: no native class for these (EntryClass lists none of their architectures)
SGLANG_NO_CLASS = {"paligemma", "idefics3", "smolvlm", "internvl", "llava_next", "llava_onevision", "fuyu"}

_built: dict[str, tuple[str, Path, Path]] = {}


@pytest.fixture
def adapter(request, tmp_path_factory):
    """(family, adapter folder, model config folder), written once per session."""
    family = request.param
    if family not in _built:
        model = tiny(family)
        peft_model = apply(model, spec_for(family, SPEC))
        root = tmp_path_factory.mktemp(family)
        peft_model.save_pretrained(root / "adapter")
        peft_model.base_model.model.config.save_pretrained(root / "model")
        _built[family] = (family, root / "adapter", root / "model")
    return _built[family]


def check(capsys, adapter_dir: Path, model_dir: Path, engine: str, *more: str) -> tuple[int, dict]:
    code = main(["adapter", "check", str(adapter_dir), "--model", str(model_dir), "--serve", engine, "--json", *more])
    return code, json.loads(capsys.readouterr().out)


def groups(served: dict, name: str) -> set[str]:
    return {g["verdict"] for g in served["groups"] if g["group"] == name}


@pytest.mark.parametrize("adapter", sorted(FAMILIES), indirect=True, ids=sorted(FAMILIES))
def test_every_family_on_vllm(adapter, capsys):
    family, adapter_dir, model_dir = adapter
    code, data = check(capsys, adapter_dir, model_dir, "vllm")
    served = data["serve"]
    assert data["ok"], data  # it loads into its own model
    # every module of the adapter is in exactly one group
    assert sum(g["modules"] for g in served["groups"]) == _modules(adapter_dir)
    assert code == (0 if served["ok"] else 9)
    language = groups(served, "language layers")
    if family in VLLM_LANGUAGE_REFUSED:
        assert language == {REFUSED} and served["refusals"]
    else:
        assert language == {SERVED}, served
    # a tower or connector is never simply "served" by vLLM: it needs the flag, or it is dropped or refused
    for part in ("vision tower", "projector", "audio tower"):
        assert SERVED not in groups(served, part), (part, served)
    if FLAG in groups(served, "vision tower"):
        assert "--enable-tower-connector-lora" in served["flags"]


@pytest.mark.parametrize("adapter", sorted(FAMILIES), indirect=True, ids=sorted(FAMILIES))
def test_every_family_on_sglang(adapter, capsys):
    family, adapter_dir, model_dir = adapter
    code, data = check(capsys, adapter_dir, model_dir, "sglang")
    served = data["serve"]
    # PEFT wrote vlora's target_modules (one regex): SGLang's lora_manager.py refuses every string but all/all-linear
    assert any("target_modules" in r for r in served["refusals"]) and code == 9
    language = groups(served, "language layers")
    assert language == ({UNKNOWN} if family in SGLANG_NO_CLASS else {SERVED}), served
    for part in ("vision tower", "projector", "audio tower"):  # SGLang applies LoRA to the language model only
        assert groups(served, part) <= {DROPPED, UNKNOWN}, (part, served)


def _copy(adapter_dir: Path, folder: Path, **config) -> Path:
    """The adapter's weights with its config changed by ``config``."""
    folder.mkdir()
    (folder / "adapter_model.safetensors").write_bytes((adapter_dir / "adapter_model.safetensors").read_bytes())
    data = json.loads((adapter_dir / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps(data | config))
    return folder


def _modules(adapter_dir: Path) -> int:
    from vlora_core.adapters import read_adapter
    from vlora_core.plugins import default_registry

    return len(read_adapter(str(adapter_dir), default_registry()).modules)


@pytest.mark.parametrize("adapter", ["qwen2_5_vl"], indirect=True)
def test_sglang_serves_a_list_of_names_and_says_where_the_scale_differs(adapter, capsys, tmp_path):
    _, adapter_dir, model_dir = adapter
    code, data = check(capsys, _copy(adapter_dir, tmp_path / "names", target_modules=["q_proj", "k_proj"]),
                       model_dir, "sglang")
    assert not data["serve"]["refusals"]
    assert groups(data["serve"], "language layers") == {SERVED}
    # a per-module alpha: SGLang's lora.py scales every module by lora_alpha / r
    code, data = check(capsys, _copy(adapter_dir, tmp_path / "alpha", target_modules=["q_proj"],
                                     alpha_pattern={"q_proj": 64}), model_dir, "sglang")
    assert code == 9 and RESCALED in groups(data["serve"], "language layers")


@pytest.mark.parametrize("adapter", ["qwen2_5_vl"], indirect=True)
def test_vllm_refuses_dora_and_needs_a_larger_max_rank(adapter, capsys, tmp_path):
    _, adapter_dir, model_dir = adapter
    code, data = check(capsys, _copy(adapter_dir, tmp_path / "dora", use_dora=True), model_dir, "vllm")
    assert code == 9 and any("DoRA" in r for r in data["serve"]["refusals"])
    code, data = check(capsys, adapter_dir, model_dir, "vllm")
    assert "--max-lora-rank" not in " ".join(data["serve"]["flags"])  # r=8 fits vLLM's default of 16


def test_plan_serve_exits_0_and_validate_serve_exits_9(capsys, tmp_path):
    spec = str(ROOT / "examples" / "qwen2_vl_ocr.yaml")
    assert main(["plan", spec, "--serve", "vllm"]) == 0
    out = capsys.readouterr().out
    assert "trained in full" in out and "refused" in out and "vllm serve" in out
    assert main(["validate", spec, "--serve", "vllm"]) == 9
    assert "would not serve as trained on vLLM 0.33.0" in capsys.readouterr().out
    assert main(["plan", spec, "--serve", "vllm", "--set", "finetune_projector=lora", "--set", "r=32"]) == 0
    assert "--max-lora-rank 32" in capsys.readouterr().out
    lora = tmp_path / "ocr.yaml"  # the projector with LoRA instead of in full (no lock beside it)
    lora.write_text(Path(spec).read_text().replace("finetune_projector: full", "finetune_projector: lora"))
    assert main(["validate", str(lora), "--serve", "vllm"]) == 0
    assert "serves as trained on vLLM 0.33.0 with --enable-tower-connector-lora" in capsys.readouterr().out
    assert main(["plan", spec, "--serve", "vllm", "--engine-version", "0.20"]) == 2
    assert "0.33.0" in capsys.readouterr().err


def test_export_to_vllm_is_a_script_with_the_flags_the_plan_needs(tmp_path, capsys):
    spec = str(ROOT / "examples" / "qwen2_vl_ocr.yaml")
    out = tmp_path / "serve.sh"
    assert main(["export", spec, "--to", "vllm", "--set", "finetune_projector=lora", "-o", str(out)]) == 0
    text = out.read_text()
    assert "--enable-lora" in text and "--enable-tower-connector-lora" in text and "nothing is lost" in text
    subprocess.run(["bash", "-n", str(out)], check=True)  # a script bash can run
    # with the projector trained in full, vLLM refuses the adapter: named as lost, in the header and on stderr
    assert main(["export", spec, "--to", "vllm"]) == 0
    captured = capsys.readouterr()
    assert "# lost: vLLM loads modules_to_save only" in captured.out and "lost:" in captured.err


def test_an_audio_tower_is_its_own_group(tmp_path, capsys):
    """Gemma-4 with its audio tower (E2B-like): vLLM's Gemma-4 class maps no tower or connector prefix, and
    SGLang's should_apply_lora keeps LoRA to the language layers: the audio tower is never served."""
    from families import _builders

    if importlib.util.find_spec("transformers.models.gemma4") is None:
        pytest.skip("transformers has no gemma4 here")
    peft_model = apply(_builders("gemma4", "gemma4_tiny").tiny_model("audio"), {**SPEC, "finetune_audio_layers": True})
    peft_model.save_pretrained(tmp_path / "adapter")
    peft_model.base_model.model.config.save_pretrained(tmp_path / "model")
    for engine in ("vllm", "sglang"):
        code, data = check(capsys, tmp_path / "adapter", tmp_path / "model", engine)
        audio = groups(data["serve"], "audio tower")
        assert audio and SERVED not in audio and code == 9, (engine, data["serve"])
