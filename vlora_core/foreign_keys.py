"""Keys of other tools' configs (LLaMA-Factory, ms-swift, PEFT, Unsloth) that people write in a vlora spec, and
what a vlora spec writes instead: data for the spec's "unknown key" message."""

from __future__ import annotations

_INVERTED = "{0}, with the meaning inverted ({1}: true is {0}: false)"
_PICKED = ("vlora picks the targets from components and roles (finetune_* toggles); add modules outside them "
           "with target_modules_extra, leave some out with exclude_modules")
RANK_KEYS = ("lora_rank", "lora_r", "rank", "alpha")
# keys of other tools' configs (LLaMA-Factory, ms-swift, PEFT, Unsloth) and what a vlora spec writes instead
FOREIGN_KEYS = {
    "lora_rank": "r", "lora_r": "r", "rank": "r", "alpha": "lora_alpha", "dropout": "lora_dropout",
    "freeze_vision_tower": _INVERTED.format("finetune_vision_layers", "freeze_vision_tower"),
    "freeze_vit": _INVERTED.format("finetune_vision_layers", "freeze_vit"),
    "freeze_language_model": _INVERTED.format("finetune_language_layers", "freeze_language_model"),
    "freeze_llm": _INVERTED.format("finetune_language_layers", "freeze_llm"),
    "freeze_multi_modal_projector": "finetune_projector (frozen, lora or full; freeze_multi_modal_projector: "
                                    "false trains it in full, which is finetune_projector: full)",
    "freeze_aligner": "finetune_projector (frozen, lora or full; freeze_aligner: false is finetune_projector: full)",
    "target_modules": _PICKED, "lora_target": _PICKED, "lora_target_modules": _PICKED,
    "layers_to_transform": "layers (top level, or per component: language: {layers: {last: 8}})",
    "rank_pattern": "r per component (vision: {r: 8})",
    "alpha_pattern": "lora_alpha per component (vision: {lora_alpha: 16})",
    "init_weights": "init_lora_weights", "pissa_init": "init_lora_weights: pissa",
    "finetune_vision": "finetune_vision_layers", "finetune_language": "finetune_language_layers",
    "additional_target": "modules_to_save (full names or patterns, e.g. [lm_head, embed_tokens])",
}



__all__ = ["FOREIGN_KEYS", "RANK_KEYS"]
