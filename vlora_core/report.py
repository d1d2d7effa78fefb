"""Human-readable reports: the plan table, plans side by side, and the language/vision share table.

Pure formatting of ``TargetPlan`` data; nothing here resolves or touches a model, except
``share_rows`` which resolves the bundled reference configs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .plan import COMPONENT_ORDER, ROLE_ORDER, TargetPlan

if TYPE_CHECKING:
    from .plugins import Registry


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _grid(rows: list[tuple[str, ...]], right: set[int], rules: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for i, row in enumerate(rows):
        cells = [c.rjust(widths[j]) if j in right else c.ljust(widths[j]) for j, c in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
        if i in rules:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def memory_lines(plan: TargetPlan, dtype: str) -> list[str]:
    mem = plan.memory(dtype)
    base = mem["base_weights_bytes"]
    return [
        f"adapter training memory ({dtype} weights + gradients + Adam m and v): "
        f"{format_bytes(mem['adapter_training_bytes'])}",
        "base model weights: " + " · ".join(f"{format_bytes(v)} {k}" for k, v in base.items()),
    ]


def render_table(plan: TargetPlan, dtype: str = "fp32") -> str:
    """One row per component × role (modules, layers, LoRA parameters, their share of all LoRA parameters
    and of the component's base parameters), then totals, memory, fully trained modules and warnings."""
    spec = plan.spec
    head = [
        f"{plan.model} · {plan.architecture_title} ({plan.model_type}) · plugin {plan.plugin} "
        f"{plan.plugin_version} · transformers {plan.transformers_version}",
        f"spec {spec.source or '(in memory)'}: "
        + (f"task={spec.task}, " if spec.task else "")
        + f"r={spec.r}, lora_alpha={spec.lora_alpha:g}, projector={spec.finetune_projector}",
        "",
    ]
    rows = [("component", "role", "modules", "layers", "LoRA params", "share", "of component")]
    for row in plan.summary():
        rows.append((row.component, row.role, str(row.modules), row.layers, f"{row.lora_params:,}",
                     f"{100 * row.share:.1f}%", f"{100 * row.component_share:.2f}%"))
    rows.append(("total", "", str(len(plan.targets)), "", f"{plan.lora_params:,}",
                 "100.0%" if plan.targets else "-", ""))
    lines = _grid(rows, right={2, 4, 5, 6}, rules={0, len(rows) - 2})
    total = plan.total_params or 1
    tail = [""]
    for m in plan.full_modules:
        tail.append(f"fully trained: {m.name} ({m.component}, {m.params:,} parameters)")
    if plan.bias_params:
        tail.append(f"biases trained (bias={spec.bias}): {plan.bias_params:,} parameters")
    tail.append(
        f"LoRA parameters: {plan.lora_params:,} = {100 * plan.lora_params / total:.3f}% of "
        f"{plan.total_params:,} model parameters"
    )
    if plan.trainable_params != plan.lora_params:
        tail.append(f"trainable parameters: {plan.trainable_params:,} = {100 * plan.trainable_params / total:.3f}%")
    tail += memory_lines(plan, dtype)
    tail += [f"warning: {w}" for w in plan.warnings]
    return "\n".join(head + lines + tail) + "\n"


def render_compare(plans: list[tuple[str, TargetPlan]], dtype: str = "fp32") -> str:
    """Several plans for one model side by side: LoRA parameters per component × role, then totals."""
    first = plans[0][1]
    keys = sorted({(r.component, r.role) for _, p in plans for r in p.summary()},
                  key=lambda k: (COMPONENT_ORDER.index(k[0]) if k[0] in COMPONENT_ORDER else 9,
                                 ROLE_ORDER.index(k[1]) if k[1] in ROLE_ORDER else 9))
    rows: list[tuple[str, ...]] = [("", *(label for label, _ in plans))]
    for comp, role in keys:
        cells = []
        for _, p in plans:
            row = next((r for r in p.summary() if (r.component, r.role) == (comp, role)), None)
            cells.append(f"{row.lora_params:,} ({row.layers})" if row else "-")
        rows.append((f"{comp} {role}", *cells))
    total = first.total_params or 1
    rows.append(("LoRA parameters", *(f"{p.lora_params:,}" for _, p in plans)))
    rows.append(("% of model", *(f"{100 * p.lora_params / total:.3f}%" for _, p in plans)))
    if any(p.full_modules for _, p in plans):
        rows.append(("fully trained", *(f"{p.full_params:,}" if p.full_modules else "-" for _, p in plans)))
    rows.append(("trainable parameters", *(f"{p.trainable_params:,}" for _, p in plans)))
    rows.append((f"adapter memory ({dtype})",
                 *(format_bytes(p.memory(dtype)["adapter_training_bytes"]) for _, p in plans)))
    head = [f"{first.model} · {first.architecture_title} · {first.total_params:,} parameters", ""]
    lines = _grid(rows, right=set(range(1, len(plans) + 1)), rules={0, len(keys)})
    notes = [f"{label}: warning: {w}" for label, p in plans for w in p.warnings]
    return "\n".join(head + lines + (["", *notes] if notes else [])) + "\n"


# --- the source document's claim: language-only ~50-70 %, vision-only ~30-50 % of full LoRA ------------

CLAIM = {"language": (0.50, 0.70), "vision": (0.30, 0.50)}


def share_rows(registry: Registry, r: int = 16) -> list[dict[str, Any]]:
    """For each bundled reference config: full LoRA (attention + MLP, vision and language, projector
    frozen) and the language-only and vision-only shares of it, at rank ``r``."""
    from .modeltree import module_tree
    from .resolve import resolve

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
