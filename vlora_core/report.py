"""Text views of a plan: the plan table and several plans side by side.

Pure formatting of a plan's data: nothing here resolves, imports torch, or touches a model. It sits
below ``plan`` in the module layers (``TargetPlan.table()`` calls ``render_table``) and knows the plan
by its attributes only; the share table of the bundled models is in ``shares``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .vocabulary import group_order

if TYPE_CHECKING:
    from .plan import TargetPlan


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def grid(rows: list[tuple[str, ...]], right: set[int], rules: set[int]) -> list[str]:
    """Rows as aligned columns (``right``: right-aligned column indices), a rule of dashes after each row in
    ``rules``."""
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
        "base model weights: " + " · ".join(f"{format_bytes(v)} {k}" for k, v in base.items())
        + (f" · as loaded: {format_bytes(mem['loaded_bytes'])}" + (f" ({mem['quantization']})"
           if mem["quantization"] else "") if mem["loaded_bytes"] is not None else ""),
    ]


def render_table(plan: TargetPlan, dtype: str = "fp32") -> str:
    """One row per component × role (modules, layers, LoRA parameters, their share of all LoRA parameters
    and of the component's base parameters), then totals, memory, fully trained modules and warnings."""
    spec = plan.spec
    head = [] if plan.inferred is None else [
        f"inferred: {plan.inferred}; the architecture was read from the model's structure"]
    head += [
        f"{plan.model} · {plan.architecture_title} ({plan.model_type}) · plugin {plan.plugin} "
        f"{plan.plugin_version} · transformers {plan.transformers_version}",
        f"spec {spec.source or '(in memory)'}: "
        + (f"task={spec.task}, " if spec.task else "")
        + f"r={spec.r}, lora_alpha={spec.lora_alpha:g}, projector={spec.finetune_projector}",
        "",
    ]
    rows = [("component", "role", "modules", "layers", "r", "alpha", "LoRA params", "share", "of component")]
    for row in plan.summary():
        rows.append((row.component, row.label, str(row.modules), row.layers, row.r, row.alpha,
                     f"{row.lora_params:,}", f"{100 * row.share:.1f}%", f"{100 * row.component_share:.2f}%"))
    rows.append(("total", "", str(len(plan.targets)), "", "", "", f"{plan.lora_params:,}",
                 "100.0%" if plan.targets else "-", ""))
    lines = grid(rows, right={2, 4, 5, 6, 7, 8}, rules={0, len(rows) - 2})
    total = plan.total_params or 1
    tail = [""]
    for m in plan.full_modules:
        where = m.component or "outside the components"
        what = f"shares its weight with {m.tied_to}" if m.tied_to and not m.params else f"{m.params:,} parameters"
        tail.append(f"fully trained: {m.name} ({where}, {what})")
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


def render_compare(plans: list[tuple[str, TargetPlan]], dtype: str = "fp32", peaks: list[int] | None = None) -> str:
    """Several plans for one model side by side: LoRA parameters per component × role, then totals (with
    ``peaks``, the predicted peak of a training step of each, from ``vlora plan --memory``)."""
    first = plans[0][1]
    labels = {(r.component, r.role, r.variant): r.label for _, p in plans for r in p.summary()}
    keys = sorted(labels, key=lambda k: (group_order(k[0], k[1]), k[2] or ""))
    rows: list[tuple[str, ...]] = [("", *(label for label, _ in plans))]
    for key in keys:
        cells = []
        for _, p in plans:
            row = next((r for r in p.summary() if (r.component, r.role, r.variant) == key), None)
            cells.append(f"{row.lora_params:,} ({row.layers})" if row else "-")
        rows.append((f"{key[0]} {labels[key]}", *cells))
    total = first.total_params or 1
    rows.append(("LoRA parameters", *(f"{p.lora_params:,}" for _, p in plans)))
    rows.append(("% of model", *(f"{100 * p.lora_params / total:.3f}%" for _, p in plans)))
    if any(p.full_modules for _, p in plans):
        rows.append(("fully trained", *(f"{p.full_params:,}" if p.full_modules else "-" for _, p in plans)))
    rows.append(("trainable parameters", *(f"{p.trainable_params:,}" for _, p in plans)))
    rows.append((f"adapter memory ({dtype})",
                 *(format_bytes(p.memory(dtype)["adapter_training_bytes"]) for _, p in plans)))
    if peaks is not None:
        rows.append(("peak of a training step", *(format_bytes(b) for b in peaks)))
    head = [f"{first.model} · {first.architecture_title} · {first.total_params:,} parameters", ""]
    lines = grid(rows, right=set(range(1, len(plans) + 1)), rules={0, len(keys)})
    notes = [f"{label}: warning: {w}" for label, p in plans for w in p.warnings]
    return "\n".join(head + lines + (["", *notes] if notes else [])) + "\n"


__all__ = ["format_bytes", "grid", "memory_lines", "render_compare", "render_table"]
