"""Targets -> the spec that plans exactly them: the one synthesis behind ``vlora adapter spec`` (an adapter on
disk) and every ``vlora import`` (what another tool would train). Reads plans; resolves only to check that the
spec it writes reproduces the targets.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from .architecture import ArchitectureSpec
from .boundary import escape
from .errors import VloraError
from .patterns import names_regex
from .plugins import Registry
from .resolve import resolve


@dataclass(frozen=True)
class AdapterSpec:
    """The spec (as spec-file data) whose plan reproduces an adapter's targets on a model, and what it cannot
    express (LoRA modules outside every component)."""

    data: dict[str, Any]
    unexpressed: tuple[str, ...]
    plan: Any  # the TargetPlan the spec gives

    def to_yaml(self, source: str) -> str:
        import yaml

        head = [f"# the spec whose plan reproduces the adapter {escape(source)} (vlora adapter spec)"]
        if self.unexpressed:
            head.append(f"# it cannot express {len(self.unexpressed)} adapted modules outside every component: "
                        + escape(", ".join(self.unexpressed[:4])) + (" ..." if len(self.unexpressed) > 4 else ""))
        return "\n".join(head) + "\n" + yaml.safe_dump(self.data, sort_keys=False, allow_unicode=True)


_NEUTRAL = {"lora_dropout": 0.0, "use_dora": False}


def _plain(number: float) -> float | int:
    """A whole alpha as people write it (``16``, not ``16.0``) in the spec vlora writes."""
    return int(number) if float(number).is_integer() else number


def _layers_value(layers: list[int], count: int) -> Any:
    """A layer selection in the spec's words: None (all), {first: N}, {last: N} or the list."""
    chosen = sorted(set(layers))
    if chosen == list(range(count)):
        return None
    if chosen == list(range(len(chosen))):
        return {"first": len(chosen)}
    if chosen == list(range(count - len(chosen), count)):
        return {"last": len(chosen)}
    return chosen


def synthesize(lora: dict[str, tuple[int, float]], full: list[str], tree: Any, registry: Registry,
               arch: ArchitectureSpec, settings: dict[str, Any], *, model: str | None, origin: str) -> AdapterSpec:
    """The spec whose plan on ``tree`` has exactly the LoRA targets ``lora`` (name -> (r, alpha)) and trains
    ``full`` in full, with ranks, alphas, layers and the projector mode; leaves a component's roles do not
    cover are added with ``target_modules_extra`` and planned targets missing from ``lora`` removed with
    ``exclude_modules``. ``settings``: the config's r, lora_alpha and, where known, lora_dropout, bias,
    use_rslora, use_dora. ``origin`` names what the targets came from, for messages."""
    saved = list(full)
    where = {n: arch.place(n) for n in lora}
    data: dict[str, Any] = {}
    if model:
        data["model"] = model
    components = {w.component for w in where.values() if w}
    roles = {w.role for w in where.values() if w and w.role}
    names = {c.name for c in arch.components}
    data["finetune_vision_layers"] = "vision" in components
    data["finetune_language_layers"] = "language" in components
    if "audio" in names:
        data["finetune_audio_layers"] = "audio" in components
    data["finetune_attention_modules"] = "attention" in roles
    data["finetune_mlp_modules"] = "mlp" in roles
    if any("cross_attention" in c.roles for c in arch.components):
        data["finetune_cross_attention"] = "cross_attention" in roles
    # the projector trained in full is saved as one module: the projector itself (no leaf inside it)
    projector_full = [n for n in saved
                      if (p := arch.place(n)) is not None and p.component == "projector" and not p.leaf]
    data["finetune_projector"] = "lora" if "projector" in components else "full" if projector_full else "frozen"
    saved = [n for n in saved if n not in projector_full]
    ranks = Counter(r for r, _ in lora.values())
    alphas = Counter(a for _, a in lora.values())
    # the config's own r and alpha where its modules have them, else the commonest
    r = settings.get("r") if settings.get("r") in ranks or not ranks else ranks.most_common(1)[0][0]
    alpha = (float(settings["lora_alpha"]) if settings.get("lora_alpha") in alphas or not alphas
             else alphas.most_common(1)[0][0])
    data["r"], data["lora_alpha"] = r, _plain(alpha)
    for key in ("lora_dropout", "bias", "use_rslora", "use_dora"):
        if key in settings and settings[key] is not None:
            data[key] = settings[key]
    counts = resolve({}, tree, registry=registry).layer_counts if lora else {}
    for component in sorted(components):
        mods = [v for n, v in lora.items() if (w := where[n]) and w.component == component]
        block: dict[str, Any] = {}
        rs, als = {m[0] for m in mods}, {m[1] for m in mods}
        if len(rs) == 1 and rs != {r}:
            block["r"] = rs.pop()
        if len(als) == 1 and als != {alpha}:
            block["lora_alpha"] = _plain(als.pop())
        placed = [w for n in lora if (w := where[n]) and w.component == component]
        layers = [w.layer for w in placed if w.layer is not None]
        stacks = {w.stack for w in placed}
        if layers and stacks == {None} and component in counts:
            value = _layers_value(layers, counts[component])
            if value is not None:
                block["layers"] = value
        if block:
            data[component] = block
    if saved:
        data["modules_to_save"] = [re.escape(n) for n in saved]
    def search(spec: dict[str, Any]) -> Any:
        """The plan of a spec on the way to the answer: without dropout and DoRA, which PEFT refuses on expert
        weights the intermediate spec may still plan (the final spec has them back, and leaves those out)."""
        return resolve({**spec, **{k: v for k, v in _NEUTRAL.items() if k in spec}}, tree, registry=registry)

    plan = search(data)
    left = set(lora) - {t.name for t in plan.targets}
    if left:  # modules on layers the model never uses: the adapter trained them, so the spec includes them
        trial = {**data, "include_unused_layers": True}
        again = search(trial)
        if len(set(lora) - {t.name for t in again.targets}) < len(left):
            data, plan = trial, again
    # a layer where the adapter has only a few of the planned modules is better said as extra targets than
    # as a layer with exclusions (an extra target on one layer of a tower whose other layers are selected)
    changed = False
    for component in sorted(components):
        block = data.get(component) if isinstance(data.get(component), dict) else {}
        layers = sorted({t.layer for t in plan.targets if t.component == component and t.layer is not None})
        if not layers or any(t.stack for t in plan.targets if t.component == component):
            continue
        at = {layer: [t.name for t in plan.targets if t.component == component and t.layer == layer]
              for layer in layers}
        partial = [layer for layer in layers if not set(at[layer]) <= set(lora)]
        complete = [layer for layer in layers if layer not in partial]
        have = {layer: [n for n in at[layer] if n in lora] for layer in partial}
        if complete and partial and sum(map(len, have.values())) < sum(
                len(at[layer]) - len(have[layer]) for layer in partial):
            value = _layers_value(complete, counts.get(component, max(layers) + 1))
            data[component] = {**block, "layers": value if value is not None else complete}
            changed = True
    if changed:
        plan = search(data)
    planned = {t.name: t for t in plan.targets}
    extras = sorted(set(lora) - set(planned))
    missing = [planned[n] for n in planned if n not in lora]
    inside = [n for n in extras if where.get(n)]
    unexpressed = [n for n in extras if not where.get(n)]
    if inside:
        data["target_modules_extra"] = [re.escape(n) for n in inside]
    if missing:
        data["exclude_modules"] = names_regex((t.path, t.layer, t.leaf) for t in missing)
    plan = resolve(data, tree, registry=registry)
    got = {t.name for t in plan.targets}
    if got != set(lora) - set(unexpressed):
        raise VloraError(f"internal error: the spec written for {origin} does not reproduce its targets",
                         hint="please report this with `vlora adapter inspect --json` output")
    return AdapterSpec(data=data, unexpressed=tuple(unexpressed), plan=plan)



__all__ = ["AdapterSpec", "synthesize"]
