"""PEFT's rules in one room: how PEFT matches and names modules (``rules``), the config a plan emits, as data
and as a ``LoraConfig`` (``config``), wrapping a live model with the snapshot that puts it back on failure
(``wrap``), and adapter files as PEFT writes them (``files``). Everything else in vlora speaks to PEFT through
this room; the tests check each rule against PEFT itself.
"""

from __future__ import annotations

from .config import check_regex, check_saved, config_data, lora_config, patterns, target_regex, whole_alpha
from .rules import (
    LORA_PARTS,
    LORA_TENSOR,
    PREFIX,
    base_name,
    exact_regex,
    pattern_value,
    saved_entry,
    saved_matches,
    target_matches,
    value_patterns,
    wrapped_owner,
)
from .wrap import Snapshot, checkpointing_on, restored_on_failure, rewritten_weights

__all__ = ["LORA_PARTS", "LORA_TENSOR", "PREFIX", "Snapshot", "base_name", "check_regex", "check_saved",
           "checkpointing_on", "config_data", "exact_regex", "lora_config", "pattern_value", "patterns",
           "restored_on_failure", "rewritten_weights", "saved_entry", "saved_matches", "target_matches",
           "target_regex", "value_patterns", "whole_alpha", "wrapped_owner"]
