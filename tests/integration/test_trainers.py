"""The trainers people use, for a few steps on a tiny Qwen2-VL: TRL's SFTTrainer with the model from
``apply`` and with ``peft_config=plan.to_lora_config()``, the HF Trainer with ``param_groups`` as its
optimizer, gradient checkpointing on. Each checks that exactly the planned parameters changed and every
other stayed bit-identical."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from vlora_core import apply, param_groups, resolve

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins" / "qwen2_vl" / "tests"))
from qwen_tiny import image_batch, tiny_model

trl = pytest.importorskip("trl", reason="trainer tests need the train extra: pip install 'vlora[train]'")

from datasets import Dataset  # noqa: E402
from tokenizers import Tokenizer, models  # noqa: E402
from transformers import PreTrainedTokenizerFast, Trainer, TrainingArguments  # noqa: E402

SPEC = {"finetune_projector": "lora", "modules_to_save": ["lm_head"], "r": 4, "lora_alpha": 8}
ROWS = Dataset.from_dict({"input_ids": [[1, 5, 6, 2]] * 8})  # the collator below supplies the real batch


def tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over the tiny model's 128 ids (no download)."""
    vocab = {f"t{i}": i for i in range(127)} | {"[UNK]": 127}
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="[UNK]")),
                                   pad_token="t0", bos_token="t1", eos_token="t2")


class ImageBatches:
    """Every step gets the tiny image batch: one image inside a short text, with its labels."""

    def __init__(self, config) -> None:
        self.config = config

    def __call__(self, rows) -> dict[str, torch.Tensor]:
        batch = image_batch(self.config)
        batch["attention_mask"] = torch.ones_like(batch["input_ids"])
        return batch


def args(tmp_path, cls=None, **extra):
    cls = cls or trl.SFTConfig
    common = dict(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=1, learning_rate=1e-2,
                  report_to=[], save_strategy="no", use_cpu=True, remove_unused_columns=False,
                  lr_scheduler_type="constant", disable_tqdm=True)
    if cls is trl.SFTConfig:
        common["dataset_kwargs"] = {"skip_prepare_dataset": True}
    return cls(**common, **extra)


def train(trainer, model) -> tuple[set[str], set[str]]:
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.train()
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}
    return changed, {n for n, p in model.named_parameters() if p.requires_grad}


def adapted(model) -> set[str]:
    """Base modules whose LoRA B weight is trainable, read from the wrapped model's parameter names."""
    return {n.removeprefix("base_model.model.").split(".lora_B.")[0] for n, p in model.named_parameters()
            if p.requires_grad and ".lora_B." in n}


def moved(changed: set[str]) -> set[str]:
    return {n.removeprefix("base_model.model.").split(".lora_B.")[0] for n in changed if ".lora_B." in n}


@pytest.mark.parametrize("checkpointing", [False, True])
def test_sft_trainer_with_the_model_from_apply(tmp_path, checkpointing):
    model = tiny_model("qwen2_vl")
    peft_model = apply(model, SPEC)
    plan = peft_model.vlora_plan
    optimizer = torch.optim.AdamW(param_groups(peft_model, lr=1e-2, lr_scale={"vision": 0.5}))
    trainer = trl.SFTTrainer(model=peft_model, args=args(tmp_path, gradient_checkpointing=checkpointing),
                             train_dataset=ROWS, data_collator=ImageBatches(model.config),
                             processing_class=tokenizer(), optimizers=(optimizer, None))
    changed, trainable = train(trainer, peft_model)
    assert any(getattr(m, "gradient_checkpointing", False) for m in peft_model.modules()) == checkpointing
    assert changed <= trainable
    assert moved(changed) == {t.name for t in plan.targets}  # every adapter learned, checkpointing or not
    assert any("lm_head.modules_to_save" in n for n in changed)
    assert {g["name"]: g["lr"] for g in trainer.optimizer.param_groups}["vision"] == pytest.approx(5e-3)


def test_sft_trainer_with_the_plan_as_peft_config(tmp_path):
    model = tiny_model("qwen2_vl")
    plan = resolve(SPEC, model)
    trainer = trl.SFTTrainer(model=model, args=args(tmp_path), train_dataset=ROWS,
                             data_collator=ImageBatches(model.config), processing_class=tokenizer(),
                             peft_config=plan.to_lora_config())
    wrapped = trainer.model
    assert adapted(wrapped) == {t.name for t in plan.targets}
    assert sum(p.numel() for p in wrapped.parameters() if p.requires_grad) == plan.trainable_params
    changed, trainable = train(trainer, wrapped)
    assert changed <= trainable and moved(changed) == {t.name for t in plan.targets}


def test_hf_trainer_with_param_groups_keeps_the_rates_per_component(tmp_path):
    model = tiny_model("qwen2_vl")
    peft_model = apply(model, {**SPEC, "lr_scale": {"vision": 0.1, "projector": 5.0}, "loraplus_lr_ratio": 4})
    optimizer = torch.optim.AdamW(param_groups(peft_model, lr=1e-3, weight_decay=0.01))
    trainer = Trainer(model=peft_model, args=args(tmp_path, TrainingArguments), train_dataset=ROWS,
                      data_collator=ImageBatches(model.config), optimizers=(optimizer, None))
    changed, trainable = train(trainer, peft_model)
    assert changed <= trainable and moved(changed) == {t.name for t in peft_model.vlora_plan.targets}
    rates = {g["name"]: g["lr"] for g in trainer.optimizer.param_groups}
    assert rates["vision"] == pytest.approx(1e-4) and rates["vision lora_B"] == pytest.approx(4e-4)
    assert rates["projector"] == pytest.approx(5e-3) and rates["language"] == pytest.approx(1e-3)
