"""Unsloth: ``FastVisionModel.get_peft_model(model, **kwargs)``.

Export. Unsloth hands every keyword ``LoraConfig`` accepts to PEFT, and a ``target_modules`` string other than
"all-linear" verbatim (unsloth/models/vision.py, ``FastBaseModel.get_peft_model``, 2025-2026), so the plan's
regex, rank and alpha patterns, ``modules_to_save`` and ``target_parameters`` pass unchanged: nothing is lost.
``target_parameters`` is always written (an empty list where the plan has none): newer versions look for MoE
expert parameters themselves when it is left out. The four toggles are written for the reader and for the
vLLM check (``fast_inference`` refuses ``finetune_vision_layers=True``); with a regex Unsloth does not read them.

Import. The keywords of a ``get_peft_model`` call (a Python file holding the call, or a YAML/JSON mapping).
Without ``target_modules`` (or with "all-linear", which turns the four toggles on) Unsloth builds its regex from
substring tags (``get_peft_regex``, unsloth_zoo/peft_utils.py, unchanged 2025-09 to 2026-11): Linear leaf
names that occur more than once, under a name part that contains a tower tag (``vision|image|visual|patch``,
``language|text``) and then a role tag (``self_attn|attention|attn``, ``mlp|feed_forward|ffn|dense``), or
``model.layers.N.<role tag>.<leaf>``; when that matches nothing, the tower tags are dropped. A string goes to
PEFT as a regex; a list as PEFT's suffix list.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path
from typing import Any

from ..boundary import read_text
from ..errors import SpecError
from ..modeltree import ModuleTree
from ..peft.rules import dead_entry_warnings, pattern_values
from ..plan import TargetPlan
from ..plugins import Registry
from ..vocabulary import LINEAR
from .common import (
    Export,
    Imported,
    Trains,
    as_bool,
    as_dropout,
    as_names,
    as_number,
    as_regex,
    export_file,
    peft_matches,
    read_mapping,
    saved_matches,
)
from .common import spec_for as _spec_for
from .versions import ToolVersion

TITLE = "Unsloth (FastVisionModel.get_peft_model keyword arguments)"
VERSION_READ = "unsloth 2025.9-2026.11, unsloth_zoo.peft_utils.get_peft_regex"
DEFAULTS: dict[str, Any] = {"r": 16, "lora_alpha": 16, "lora_dropout": 0.0, "bias": "none",
                            "finetune_vision_layers": True, "finetune_language_layers": True,
                            "finetune_attention_modules": True, "finetune_mlp_modules": True, "target_modules": None}
TAGS = {"vision": ("vision", "image", "visual", "patch"), "language": ("language", "text"),
        "attention": ("self_attn", "attention", "attn"), "mlp": ("mlp", "feed_forward", "ffn", "dense")}


def export(plan: TargetPlan, tree: Any = None, version: ToolVersion | None = None) -> Export:
    spec = plan.spec
    config = plan.to_lora_config()
    components = {t.component for t in plan.targets} | {m.component for m in plan.full_modules}
    roles = {t.role for t in plan.targets}
    kwargs: dict[str, Any] = {
        "finetune_vision_layers": "vision" in components,
        "finetune_language_layers": "language" in components,
        "finetune_attention_modules": bool(roles & {"attention", "cross_attention"}),
        "finetune_mlp_modules": "mlp" in roles,
        "r": spec.r,
        "lora_alpha": plan.alpha,
        "lora_dropout": spec.lora_dropout,
        "bias": spec.bias,
        "target_modules": plan.target_regex,
        "target_parameters": list(config.target_parameters or []),
    }
    if config.rank_pattern:
        kwargs["rank_pattern"] = dict(config.rank_pattern)
    if config.alpha_pattern:
        kwargs["alpha_pattern"] = dict(config.alpha_pattern)
    if config.modules_to_save:
        kwargs["modules_to_save"] = list(config.modules_to_save)
    if spec.use_rslora:
        kwargs["use_rslora"] = True
    if spec.use_dora:
        kwargs["use_dora"] = True
    if spec.init_lora_weights is not True:
        kwargs["init_lora_weights"] = spec.init_lora_weights
    if getattr(config, "ensure_weight_tying", False):
        kwargs["ensure_weight_tying"] = True
    notes = ["with a regex in target_modules Unsloth does not read the four finetune_* toggles; they are set to "
             "what the plan trains, for the reader and for fast_inference's check"]
    if kwargs["finetune_vision_layers"]:
        notes.append("fast_inference=True (vLLM) refuses finetune_vision_layers=True: load without it to train the "
                     "vision tower")
    body = "\nfrom unsloth import FastVisionModel\n\nmodel = FastVisionModel.get_peft_model(\n    model,\n"
    body += "".join(f"    {k}={v!r},\n" for k, v in kwargs.items()) + ")\n"
    return export_file(plan, "unsloth", body, notes=notes, kwargs=kwargs, version=version)


# --- import -------------------------------------------------------------------------------------------


def _module_constants(tree: ast.Module) -> dict[str, ast.expr]:
    """Names bound once, at module level, to a literal (``lora_rank = 32``), as a person reads a notebook:
    ``r = lora_rank`` then means 32. A name bound twice, or to anything else, is not a constant."""
    bound: dict[str, list[ast.expr]] = {}
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign | ast.AugAssign) else []
        for target in targets:
            if isinstance(target, ast.Name):
                bound.setdefault(target.id, []).append(node.value if node in tree.body and not isinstance(
                    node, ast.AugAssign) else None)  # type: ignore[arg-type]
    out = {}
    for name, values in bound.items():
        if len(values) == 1 and values[0] is not None:
            try:
                ast.literal_eval(values[0])
            except ValueError:
                continue
            out[name] = values[0]
    return out


def _substituted(value: ast.expr, constants: dict[str, ast.expr]) -> ast.expr:
    """``value`` with each module-level constant name replaced by its literal."""
    class Substitute(ast.NodeTransformer):
        def visit_Name(self, node: ast.Name) -> ast.AST:
            return constants.get(node.id, node)

    return Substitute().visit(ast.parse(ast.unparse(value), mode="eval").body)


def read(path: str | Path) -> dict[str, Any]:
    """The keywords of the ``get_peft_model`` call in a Python file, or a YAML/JSON mapping of them."""
    p = Path(path)
    if p.suffix != ".py":
        return read_mapping(p)
    text = read_text(p, "tool config", SpecError)
    try:
        tree = ast.parse(text, filename=str(p))
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        line = getattr(exc, "lineno", None)
        raise SpecError(f"cannot read the Python file ({exc.__class__.__name__}: {getattr(exc, 'msg', exc)})",
                        where=f"{p}:{line}" if line else str(p),
                        hint="fix the file, or give the keywords as YAML") from None
    calls = [n for n in ast.walk(tree)
             if isinstance(n, ast.Call) and getattr(n.func, "attr", getattr(n.func, "id", "")) == "get_peft_model"]
    if len(calls) != 1:
        raise SpecError(f"expected one get_peft_model(...) call, found {len(calls)}", where=str(p),
                        hint="keep the one call to import, or give its keywords as a YAML mapping")
    constants = _module_constants(tree)
    out: dict[str, Any] = {}
    for kw in calls[0].keywords:
        if kw.arg is None:
            raise SpecError("get_peft_model(**kwargs) cannot be read without running the file",
                            where=f"{p}:{kw.value.lineno}", hint="write the keywords out")
        try:
            out[kw.arg] = ast.literal_eval(_substituted(kw.value, constants))
        except ValueError:
            if kw.arg in DEFAULTS or kw.arg in ("target_parameters", "modules_to_save", "rank_pattern",
                                                "alpha_pattern"):
                raise SpecError(f"{kw.arg}={ast.unparse(kw.value)} is not a literal value",
                                where=f"{p}:{kw.value.lineno}", hint=f"write {kw.arg} as a literal") from None
            # other keywords (use_gradient_checkpointing="unsloth", random_state=...) do not change the targets
    return out


def regex_for(tree: ModuleTree, vision: bool, language: bool, attention: bool, mlp: bool, source: str = "") -> str:
    """The regex ``get_peft_regex`` builds for this model and these toggles (see the module's docstring)."""
    if not (vision or language):
        raise SpecError("Unsloth refuses finetune_vision_layers=False with finetune_language_layers=False "
                        "(\"No layers to finetune\")", where=source or None,
                        hint="turn one of them on")
    if not (attention or mlp):
        raise SpecError("Unsloth refuses finetune_attention_modules=False with finetune_mlp_modules=False "
                        "(\"No modules to finetune\")", where=source or None,
                        hint="turn one of them on")
    linear = [e.name for e in tree.entries if e.kind == LINEAR and e.type_name != "Conv1D"]
    counts = Counter(n.rpartition(".")[2] for n in linear)
    leaves = "(?:" + "|".join(re.escape(k) for k, c in counts.items() if c != 1) + ")"
    parts = "|".join((TAGS["vision"] if vision else ()) + (TAGS["language"] if language else ()))
    roles = "|".join((TAGS["attention"] if attention else ()) + (TAGS["mlp"] if mlp else ()))
    rx = rf".*?(?:{parts}).*?(?:{roles}).*?{leaves}.*?"
    if language:
        rx = rf"(?:{rx})|(?:\bmodel\.layers\.[\d]{{1,}}\.(?:{roles})\.(?:{leaves}))"
    if not any(re.search(rx, n, flags=re.DOTALL) for n in linear):
        rx = rf".*?(?:{roles}).*?{leaves}.*?"
    return rx


def trains(kwargs: dict[str, Any], tree: ModuleTree, source: str) -> tuple[Trains, dict[str, Any]]:
    """What Unsloth trains with these keywords, and the spec its four toggles suggest."""
    known = {**DEFAULTS, **kwargs}
    flags = {k: as_bool(known[k], k, source) for k in ("finetune_vision_layers", "finetune_language_layers",
                                                        "finetune_attention_modules", "finetune_mlp_modules")}
    r = as_number(known["r"], "r", source)
    alpha = as_number(known["lora_alpha"], "lora_alpha", source, float)
    target = known["target_modules"]
    if target is not None and not isinstance(target, str):
        target = as_names(target, "target_modules", source)
    elif isinstance(target, str) and target != "all-linear":
        as_regex(target, "target_modules", source)
    if known["bias"] not in ("none", "all", "lora_only"):
        raise SpecError(f"bias must be none, all or lora_only, got {known['bias']!r}", where=source,
                        hint='set bias = "none"')
    dropout = as_dropout(known["lora_dropout"], "lora_dropout", source)
    notes = []
    if target in (None, "all-linear"):
        if target == "all-linear":
            flags = dict.fromkeys(flags, True)
            notes.append('target_modules="all-linear" turns all four finetune_* toggles on')
        target = regex_for(tree, flags["finetune_vision_layers"], flags["finetune_language_layers"],
                           flags["finetune_attention_modules"], flags["finetune_mlp_modules"], source)
        notes.append("no flag of Unsloth trains the projector: its regex needs a tower tag and a role tag in the name")
    else:
        notes.append("an explicit target_modules goes to PEFT as given: the four finetune_* toggles are not read")
    if known.get("layers_to_transform") is not None and isinstance(target, str):
        raise SpecError("layers_to_transform cannot be combined with a regex target_modules (PEFT refuses it)",
                        where=source, hint="select layers in vlora's spec instead")
    names = [e.name for e in tree.entries if e.name]
    matched = peft_matches(target, names, source=source)
    notes += dead_entry_warnings(target)
    wrappable = [n for n in matched if tree.get(n).kind is not None]
    skipped = [n for n in matched if tree.get(n).kind is None]
    if skipped:
        notes.append(f"the regex also matches {len(skipped)} modules PEFT cannot wrap (e.g. {skipped[0]}): PEFT "
                     "would fail on them")
    patterns = {}
    for key in ("rank_pattern", "alpha_pattern"):
        value = known.get(key) or {}
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise SpecError(f"{key} must be a mapping of patterns to numbers, got {value!r}", where=source,
                            hint=f"write {key} as {{'pattern': value}}")
        for k in value:
            as_regex(k, key, source)
        kind = int if key == "rank_pattern" else float
        patterns[key] = {k: as_number(v, key, source, kind) for k, v in value.items()}
    ranks = pattern_values(patterns["rank_pattern"], wrappable, r, where=source, error=SpecError, what="rank_pattern")
    alphas = pattern_values(patterns["alpha_pattern"], wrappable, alpha, where=source, error=SpecError,
                            what="alpha_pattern")
    lora = {n: (ranks[n], alphas[n]) for n in wrappable}
    params = as_names(known.get("target_parameters"), "target_parameters", source)
    if params:
        notes.append(f"target_parameters ({', '.join(params)}) are not imported: the spec below leaves those "
                     "parameters out")
    full = saved_matches(as_names(known.get("modules_to_save"), "modules_to_save", source), names)
    settings = {"r": r, "lora_alpha": alpha, "lora_dropout": dropout, "bias": known["bias"],
                **{k: as_bool(known[k], k, source) for k in ("use_rslora", "use_dora") if k in known}}
    suggested = {"finetune_vision_layers": flags["finetune_vision_layers"],
                 "finetune_language_layers": flags["finetune_language_layers"],
                 "finetune_attention_modules": flags["finetune_attention_modules"],
                 "finetune_mlp_modules": flags["finetune_mlp_modules"], "r": r, "lora_alpha": alpha}
    return Trains(lora=lora, full=tuple(full), notes=tuple(notes), settings=settings), suggested


MODEL_KEY = None  # the keywords do not name the model (from_pretrained does)


def import_config(config: dict[str, Any], source: str, tree: ModuleTree, registry: Registry, *,
                  model: str) -> Imported:
    found, suggested = trains(config, tree, source)
    return _spec_for(found, tree, registry, tool="Unsloth", source=source, model=model, flags_spec=suggested)


__all__ = ["DEFAULTS", "MODEL_KEY", "TITLE", "VERSION_READ", "export", "import_config", "read", "regex_for", "trains"]
