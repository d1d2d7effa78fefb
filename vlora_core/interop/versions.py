"""Which versions of each tool a format targets, as data: one ``ToolVersion`` per range of releases that behave
alike, newest first, each fact with the file it was read from. The next rename is one entry (and one failing
test), not a code change; the serving engines' rules are the same kind of data.
"""

from __future__ import annotations

from typing import Any

from ..errors import UsageError
from ..serving.engines import RELEASES
from ..versions import NAMES, ToolVersion

VERSIONS: dict[str, tuple[ToolVersion, ...]] = {
    "peft": (ToolVersion("peft", "0.21", "peft/tuners/lora/config.py", proven="0.21.2"),),
    "unsloth": (ToolVersion("unsloth", "2026", "unsloth 2026.10.9 models/vision.py (get_peft_model) with unsloth-zoo "
                            "2026.10.9 peft_utils.py (get_peft_regex)",
                            proven="unsloth-zoo 2026.10.9's get_peft_regex"),
                # .ci/real_unsloth.py
                # an export's regex reads alike in 2025 (its import follows 2026: audio, narrowed lists, MoE experts)
                ToolVersion("unsloth", "2025", "unsloth-zoo peft_utils.py (get_peft_regex), 2025-09")),
    "llamafactory": (ToolVersion("llamafactory", "0.9", "model/model_utils/visual.py (COMPOSITE_MODELS) and "
                                 "misc.py (find_all_linear_modules), 0.9.5",
                                 proven="0.9.5"),),  # .ci/real_llamafactory.py
    "swift": (
        ToolVersion("swift", "4.x", "swift/arguments and swift/model/model_arch.py (ms-swift 4.6.0: --tuner_type, "
                    "--target_parameters)",
                    proven="4.6.0", facts={"tuner_flag": "tuner_type", "target_parameters": True}),  # .ci/real_swift.py
        ToolVersion("swift", "3.x", "swift/llm/argument/tuner_args.py (ms-swift 3.x)",
                    facts={"tuner_flag": "train_type", "target_parameters": False}),
    ),
    "axolotl": (ToolVersion("axolotl", "0.x", "axolotl/utils/config (lora_target_modules, lora_target_parameters)"),),
    # a serving engine's releases: facts derived from its wheel (serving.engines)
    "vllm": RELEASES["vllm"],
}


def tool_version(tool: str, requested: str | None = None) -> ToolVersion:
    """The newest range of ``tool`` (the default), or the one ``requested`` falls in."""
    known = VERSIONS[tool]
    if requested is None:
        return known[0]
    found = next((v for v in known if v.matches(requested)), None)
    if found is None:
        raise UsageError(f"--tool-version {requested!r}: vlora knows {NAMES.get(tool, tool)} "
                         + ", ".join(v.versions for v in known),
                         hint="leave --tool-version out for the newest, or give one of those")
    return found


def spellings(tool: str, fact: str) -> set[Any]:
    """Every value a fact has had in any known range (an import reads every spelling)."""
    return {v.facts[fact] for v in VERSIONS[tool] if fact in v.facts}


__all__ = ["NAMES", "VERSIONS", "ToolVersion", "spellings", "tool_version"]
