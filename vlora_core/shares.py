"""The source document's claim, measured: language-only and vision-only LoRA as shares of full LoRA, for
every bundled reference config (``vlora shares``; docs/memory.md is its output)."""

from __future__ import annotations

from typing import Any

from .modeltree import module_tree
from .plugins import Registry
from .resolve import resolve

# --- the source document's claim: language-only ~50-70 %, vision-only ~30-50 % of full LoRA ------------

CLAIM = {"language": (0.50, 0.70), "vision": (0.30, 0.50)}


def share_rows(registry: Registry, r: int = 16) -> list[dict[str, Any]]:
    """For each bundled reference config: full LoRA (attention + MLP, vision and language, projector
    frozen) and the language-only and vision-only shares of it, at rank ``r``."""
    rows = []
    for _, arch, ref in sorted(registry.references(), key=lambda item: (item[1].display_name, item[2].name)):
        if not (arch.component("vision") and arch.component("language")):
            continue
        tree = module_tree(ref.name, registry)  # built once, resolved three ways
        full = resolve({"r": r, "lora_alpha": r}, tree, registry=registry)
        by_component = {c: sum(t.lora_params for t in full.targets if t.component == c) for c in ("vision", "language")}
        language = resolve({"r": r, "lora_alpha": r, "finetune_vision_layers": False}, tree, registry=registry)
        vision = resolve({"r": r, "lora_alpha": r, "finetune_language_layers": False}, tree, registry=registry)
        assert language.lora_params == by_component["language"] and vision.lora_params == by_component["vision"]
        rows.append({
            "model": ref.name,
            "family": arch.display_name,
            "full": full.lora_params,
            "language": language.lora_params / full.lora_params,
            "vision": vision.lora_params / full.lora_params,
        })
    return rows


def _verdict(share: float, component: str) -> str:
    low, high = CLAIM[component]
    if low <= share <= high:
        return "holds"
    return "above" if share > high else "below"


def render_share_table(rows: list[dict[str, Any]]) -> str:
    """The rows of ``share_rows`` as a Markdown table."""
    lines = [
        "| model | family | full LoRA params (r=16) | language-only share | claim 50–70 % | vision-only share "
        "| claim 30–50 % |",
        "|---|---|---:|---:|---|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['family']} | {row['full']:,} | {100 * row['language']:.1f} % | "
            f"{_verdict(row['language'], 'language')} | {100 * row['vision']:.1f} % | "
            f"{_verdict(row['vision'], 'vision')} |"
        )
    return "\n".join(lines) + "\n"


__all__ = ["CLAIM", "render_share_table", "share_rows"]
