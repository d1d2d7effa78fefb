"""Training for real on tiny Qwen2-VL models: quantized (bitsandbytes 4-bit and 8-bit on its CPU backend)
plans and QLoRA apply, gradient checkpointing; each test trains a step and checks that exactly the planned
parameters changed and every other stayed bit-identical."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch

from vlora_core import apply, resolve

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins" / "qwen2_vl" / "tests"))
from qwen_tiny import image_batch, tiny_model

bnb = pytest.importorskip("bitsandbytes", reason="QLoRA tests need the train extra: pip install 'vlora[train]'")

from transformers import BitsAndBytesConfig, Qwen2VLForConditionalGeneration  # noqa: E402

ADAPTER = re.compile(r"^base_model\.model\.(.+?)\.(?:lora_[AB]\.default(?:\.weight)?|lora_magnitude_vector.*)$")


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A tiny Qwen2-VL saved to disk, the way a checkpoint is loaded (from_pretrained) and quantized."""
    path = tmp_path_factory.mktemp("tiny-qwen2-vl")
    tiny_model("qwen2_vl").save_pretrained(path)
    return path


def load(path: Path, bits: int | None):
    quantization = None
    if bits == 4:
        quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.float32)
    elif bits == 8:
        quantization = BitsAndBytesConfig(load_in_8bit=True)
    return Qwen2VLForConditionalGeneration.from_pretrained(path, quantization_config=quantization, device_map="cpu")


def checkpointing_on(model) -> bool:
    return any(getattr(m, "gradient_checkpointing", False) for m in model.modules())


def adapted_modules(peft_model) -> set[str]:
    """The base modules PEFT put a trainable adapter on, read from the trainable parameters' names."""
    return {m.group(1) for n, p in peft_model.named_parameters() if p.requires_grad and (m := ADAPTER.match(n))}


def train_one_step(peft_model) -> tuple[set[str], set[str]]:
    """One AdamW step on an image batch; returns (names of parameters that changed, trainable names)."""
    before = {n: p.detach().clone() for n, p in peft_model.named_parameters()}
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    peft_model.train()
    peft_model(**image_batch(peft_model.config)).loss.backward()
    optimizer.step()
    changed = {n for n, p in peft_model.named_parameters() if not torch.equal(before[n], p.detach())}
    return changed, trainable


@pytest.mark.parametrize("bits", [4, 8])
def test_quantized_plans_count_the_real_weights(saved, bits):
    """Packed 4-bit weights are counted as the weights they hold: the plan's totals equal the fp32 model's."""
    full, quantized = resolve({"finetune_projector": "lora"}, load(saved, None)), \
        resolve({"finetune_projector": "lora"}, load(saved, bits))
    model = load(saved, None)
    assert full.total_params == sum(p.numel() for p in model.parameters())  # the fp32 model counts as stored
    assert quantized.total_params == full.total_params
    assert quantized.component_params == full.component_params
    same = [{k: v for k, v in t.to_dict().items() if k != "module_type"} for t in quantized.targets]
    assert same == [{k: v for k, v in t.to_dict().items() if k != "module_type"} for t in full.targets]
    assert {t.module_type for t in quantized.targets} == {"Linear4bit" if bits == 4 else "Linear8bitLt"}
    assert quantized.quantization == f"{bits}-bit" and full.quantization is None
    assert quantized.stored_bytes < full.stored_bytes  # what the weights occupy as loaded
    share = f"= {100 * full.lora_params / full.total_params:.3f}% of {full.total_params:,} model parameters"
    assert share in quantized.table()
    assert f"({bits}-bit)" in quantized.table()


@pytest.mark.parametrize("checkpointing", [False, True])
def test_qlora_trains_exactly_the_plan(saved, checkpointing):
    spec = {"finetune_projector": "lora", "r": 4, "lora_alpha": 8}
    model = load(saved, 4)
    peft_model = apply(model, spec, gradient_checkpointing=checkpointing)
    plan = peft_model.vlora_plan
    assert adapted_modules(peft_model) == {t.name for t in plan.targets}
    assert plan.quantization == "4-bit"
    changed, trainable = train_one_step(peft_model)
    assert changed and changed <= trainable  # the quantized base weights, norms, embeddings: bit-identical
    # every adapter got a gradient: B moves at once (A's gradient is B's value, zero before the first step)
    moved = {ADAPTER.match(n).group(1) for n in changed if ".lora_B." in n}
    assert moved == {t.name for t in plan.targets}
    assert type(peft_model.base_model.model.model.language_model.layers[0].self_attn.q_proj).__name__ == \
        "Linear4bit"
    assert checkpointing_on(model) == checkpointing


def test_gradient_checkpointing_on_a_full_precision_model():
    peft_model = apply(tiny_model("qwen2_vl"), {"finetune_projector": "lora"}, gradient_checkpointing=True)
    assert checkpointing_on(peft_model)
    changed, trainable = train_one_step(peft_model)
    assert changed <= trainable
    assert {ADAPTER.match(n).group(1) for n in changed if ".lora_B." in n} == \
        {t.name for t in peft_model.vlora_plan.targets}


def state_bytes(peft_model, optimizer) -> int:
    """What training holds for the trainable parameters after a step: the weights, their gradients and the
    optimizer's state tensors (Adam's m and v; its step counters are counted too)."""
    params = [p for p in peft_model.parameters() if p.requires_grad]
    total = sum(p.numel() * p.element_size() for p in params)
    total += sum(p.grad.numel() * p.grad.element_size() for p in params if p.grad is not None)
    for state in optimizer.state.values():
        total += sum(t.numel() * t.element_size() for t in state.values() if torch.is_tensor(t))
    return total


@pytest.mark.parametrize("bits", [None, 4])
def test_the_memory_estimate_holds_after_a_step(saved, bits):
    """The plan's adapter training estimate against the bytes really held after one AdamW step, fp32 and
    QLoRA, with a module trained in full: within 5 %."""
    peft_model = apply(load(saved, bits), {"finetune_projector": "lora", "modules_to_save": ["lm_head"]})
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-3)
    peft_model.train()
    peft_model(**image_batch(peft_model.config)).loss.backward()
    optimizer.step()
    estimate = peft_model.vlora_plan.memory("fp32")["adapter_training_bytes"]
    measured = state_bytes(peft_model, optimizer)
    print(f"memory {bits}: measured {measured:,} estimate {estimate:,} ratio {measured / estimate:.4f}")
    assert abs(measured - estimate) <= 0.05 * estimate, (measured, estimate)
