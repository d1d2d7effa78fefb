"""A rule of thumb LoRA guides repeat, measured: language-only and vision-only LoRA as shares of full LoRA, for
every bundled reference config (``vlora shares``; docs/memory.md is its output)."""

from __future__ import annotations

from typing import Any

from .cache import tree_for
from .plugins import Registry
from .resolve import resolve

# --- the rule of thumb: language-only ~50-70 %, vision-only ~30-50 % of full LoRA ------------------------

CLAIM = {"language": (0.50, 0.70), "vision": (0.30, 0.50)}


TOWERS = ("language", "vision", "audio")


def share_rows(registry: Registry, r: int = 16) -> list[dict[str, Any]]:
    """For each bundled reference config: full LoRA (attention + MLP in every tower: vision, language, and
    audio where the model has it; projector frozen) and the share of it that each tower alone trains, at
    rank ``r``. A model without audio has ``audio`` None."""
    rows = []
    for _, arch, ref in sorted(registry.references(), key=lambda item: (item[1].display_name, item[2].name)):
        if not (arch.component("vision") and arch.component("language")):
            continue
        tree = tree_for(ref.name, registry)  # built once, resolved once per tower
        full = resolve({"r": r, "lora_alpha": r}, tree, registry=registry)
        present = [t for t in TOWERS if any(x.component == t for x in full.targets)]
        row: dict[str, Any] = {"model": ref.name, "family": arch.display_name, "full": full.lora_params,
                               "audio": None}
        for tower in present:
            alone = {"r": r, "lora_alpha": r, **{f"finetune_{t}_layers": t == tower for t in present}}
            plan = resolve(alone, tree, registry=registry)
            assert plan.lora_params == sum(x.lora_params for x in full.targets if x.component == tower)
            row[tower] = plan.lora_params / full.lora_params
        rows.append(row)
    return rows


def _verdict(share: float, component: str) -> str:
    low, high = CLAIM[component]
    if low <= share <= high:
        return "holds"
    return "above" if share > high else "below"


def render_share_table(rows: list[dict[str, Any]]) -> str:
    """The rows of ``share_rows`` as a Markdown table."""
    lines = [
        "| model | family | full LoRA params (r=16) | language-only share | vs 50–70 % | vision-only share "
        "| vs 30–50 % | audio-only share |",
        "|---|---|---:|---:|---|---:|---|---:|",
    ]
    for row in rows:
        audio = "–" if row["audio"] is None else f"{100 * row['audio']:.1f} %"
        lines.append(
            f"| {row['model']} | {row['family']} | {row['full']:,} | {100 * row['language']:.1f} % | "
            f"{_verdict(row['language'], 'language')} | {100 * row['vision']:.1f} % | "
            f"{_verdict(row['vision'], 'vision')} | {audio} |"
        )
    return "\n".join(lines) + "\n"


__all__ = ["CLAIM", "TOWERS", "render_share_table", "share_rows"]
