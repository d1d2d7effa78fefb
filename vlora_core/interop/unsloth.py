"""Unsloth: ``FastVisionModel.get_peft_model(model, **kwargs)``.

Export. Unsloth hands every keyword ``LoraConfig`` accepts to PEFT, and a ``target_modules`` string other than
"all-linear" verbatim (unsloth/models/vision.py, ``FastBaseModel.get_peft_model``, 2025-2026), so the plan's
regex, rank and alpha patterns, ``modules_to_save`` and ``target_parameters`` pass unchanged: nothing is lost.
``target_parameters`` is always written (an empty list where the plan has none): newer versions look for MoE
expert parameters themselves when it is left out. The four toggles are written for the reader and for the
vLLM check (``fast_inference`` refuses ``finetune_vision_layers=True``); with a regex Unsloth does not read them.

Import. The keywords of a ``get_peft_model`` call (a Python file holding the call, read and never run, with
module-level constants read as a person would; or a YAML/JSON mapping). What Unsloth 2026.10.9 then does
(unsloth/models/vision.py ``FastBaseModel.get_peft_model`` around unsloth-zoo's ``get_peft_regex``; CI checks this
emulation against that real function, .ci/real_unsloth.py):

- ``target_modules`` left out, or "all-linear" (which turns all five toggles on, ``finetune_audio_layers`` too):
  one regex from name tags. Leaves: the names of ``nn.Linear`` modules seen more than once or inside a numbered
  stack, less MoE ``router`` leaves. A module matches when a name part holds a tower tag
  (``vision|image|visual|patch``, ``language|text``), then a role tag (``self_attn|attention|attn|mixer``,
  ``mlp|feed_forward|ffn|dense|mixer``), then ``.<leaf>``; or ``model.layers.N.<role tag>...<leaf>`` outside
  routed experts. Gemma-4/3n add branches for the audio tower and the vision/audio embedders. When nothing
  matches, the tower tags are dropped. Parameter-free placeholders and MoE router gates are left out.
- An explicit list with any toggle off (or audio on) is narrowed by the same regex: a module is adapted where
  both select it. Otherwise a list goes to PEFT as its suffix list, and a string as a regex.
- ``embed_tokens``/``lm_head`` in a list move to ``modules_to_save``.
- A Gemma-4 clippable wrapper a target names is adapted through its inner ``.linear`` (Unsloth patches PEFT).
- On a mixture-of-experts model, when ``target_parameters`` is left out, the fused expert weights whose leaves the
  targets name (``mlp.experts.gate_up_proj``/``down_proj``, or ``experts.*``) join ``target_parameters`` by
  themselves (its detection reads the regex, so this happens even with the language MLP toggled off).
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
VERSION_READ = "unsloth 2026.10.9 (FastBaseModel.get_peft_model), unsloth-zoo 2026.10.9 (get_peft_regex)"
DEFAULTS: dict[str, Any] = {"r": 16, "lora_alpha": 16, "lora_dropout": 0.0, "bias": "none",
                            "finetune_vision_layers": True, "finetune_language_layers": True,
                            "finetune_attention_modules": True, "finetune_mlp_modules": True,
                            "finetune_audio_layers": False, "target_modules": None}
TAGS = {"vision": ("vision", "image", "visual", "patch"), "language": ("language", "text"),
        "attention": ("self_attn", "attention", "attn", "mixer"),
        "mlp": ("mlp", "feed_forward", "ffn", "dense", "mixer")}
TOGGLES = ("finetune_vision_layers", "finetune_language_layers", "finetune_attention_modules",
           "finetune_mlp_modules", "finetune_audio_layers")
ROUTERS = frozenset({"router"})  # MoE router leaves, never chosen by the automatic regex
MOE_MLP = frozenset({"gate_proj", "up_proj", "down_proj", "gate_up_proj"})


def export(plan: TargetPlan, tree: Any = None, version: ToolVersion | None = None) -> Export:
    spec = plan.spec
    config = plan.lora_config_data()  # plain data: the export imports neither torch nor PEFT
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
        "target_parameters": list(config["target_parameters"] or []),
    }
    if config["rank_pattern"]:
        kwargs["rank_pattern"] = dict(config["rank_pattern"])
    if config["alpha_pattern"]:
        kwargs["alpha_pattern"] = dict(config["alpha_pattern"])
    if config["modules_to_save"]:
        kwargs["modules_to_save"] = list(config["modules_to_save"])
    if spec.use_rslora:
        kwargs["use_rslora"] = True
    if spec.use_dora:
        kwargs["use_dora"] = True
    if spec.init_lora_weights is not True:
        kwargs["init_lora_weights"] = spec.init_lora_weights
    if config.get("ensure_weight_tying"):
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
    model = _loaded_model(tree, constants)
    if model is not None and MODEL_KEY not in out:
        out[MODEL_KEY] = model
    return out


def _loaded_model(tree: ast.Module, constants: dict[str, ast.expr]) -> str | None:
    """The model a ``FastVisionModel.from_pretrained("unsloth/...")`` call in the same file loads (its first
    argument or ``model_name=``, a literal or a module-level constant), when there is exactly one."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "from_pretrained":
            value = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "model_name"),
                                                        None)
            if value is not None:
                try:
                    name = ast.literal_eval(_substituted(value, constants))
                except ValueError:
                    continue
                if isinstance(name, str) and name:
                    found.append(name)
    return found[0] if len(set(found)) == 1 else None


def _linears(tree: ModuleTree) -> list[str]:
    """The Linear modules ``get_peft_regex`` lists: every ``nn.Linear`` (Conv1D is not one), each named once."""
    return [e.name for e in tree.entries if e.kind == LINEAR and e.type_name != "Conv1D" and e.name]


def _full(rx: str, name: str) -> bool:
    return re.fullmatch(rx, name, flags=re.DOTALL) is not None


def regex_for(tree: ModuleTree, vision: bool, language: bool, attention: bool, mlp: bool, audio: bool = False,
              target_modules: list[str] | None = None, source: str = "") -> str:
    """The regex ``get_peft_regex`` builds for this model, these toggles and (when given) an explicit list of
    leaf names; see the module's docstring. Its own regex, built from the tree's leaf names (all escaped), so
    Python's engine runs it."""
    if not (vision or language or audio):
        raise SpecError("Unsloth refuses finetune_vision_layers, finetune_language_layers and "
                        "finetune_audio_layers all False (\"No layers to finetune\")", where=source or None,
                        hint="turn one of them on")
    if not (attention or mlp):
        raise SpecError("Unsloth refuses finetune_attention_modules=False with finetune_mlp_modules=False "
                        "(\"No modules to finetune\")", where=source or None,
                        hint="turn one of them on")
    linear = _linears(tree)
    counts = Counter(n.rpartition(".")[2] for n in linear)
    in_stack = {n.rpartition(".")[2] for n in linear if re.search(r"\.\d+\.", n)}
    if target_modules is None:  # a leaf seen once is a head (lm_head) unless it sits in a numbered stack
        leaves = [k for k, c in counts.items() if k not in ROUTERS and (c != 1 or k in in_stack)]
    else:
        leaves = list(target_modules)
    parts = (TAGS["vision"] if vision else ()) + (TAGS["language"] if language else ())
    roles = "|".join((TAGS["attention"] if attention else ()) + (TAGS["mlp"] if mlp else ()))
    leaf_rx = "(?:" + "|".join(re.escape(k) for k in leaves) + ")"
    if not parts:
        rx = r"(?!x)x"  # audio only: the tower branches below are all there is
    else:
        rx = rf".*?(?:{'|'.join(parts)}).*?(?:{roles}).*?\.{leaf_rx}"
        if language:
            rx = rf"(?:{rx})|(?:\bmodel\.layers\.[\d]{{1,}}(?!.*\.experts\.\d)\..*?(?:{roles}).*?\.(?:{leaf_rx}))"

    def scoped(names: list[str]) -> list[str]:
        return names if target_modules is None else [n for n in names if n in leaves]

    gemma = any(t in (tree.model_type or "").lower() for t in ("gemma4", "gemma3n", "embedding_gemma2"))
    cores = []
    if audio and gemma:
        audio_leaves = (["q_proj", "k_proj", "v_proj", "relative_k_proj", "pos_proj", "post"] if attention else []) + (
            ["ffw_layer_1", "ffw_layer_2", "linear_start", "linear_end", "input_proj_linear", "output_proj"]
            if mlp else [])
        cores += [r"\baudio_tower\.(?:.*\.)?" + re.escape(x) for x in scoped(audio_leaves)]
        if mlp and scoped(["embedding_projection"]):
            cores.append(r"\bembed_audio\.embedding_projection")
    if vision and mlp and gemma:
        cores += [core for leaf, core in (("embedding_projection", r"\bembed_vision\.embedding_projection"),
                                          ("patch_dense", r"\bvision_embedder\.patch_dense"),
                                          ("input_proj", r"\bvision_tower\.patch_embedder\.input_proj"))
                  if scoped([leaf])]
    branches = []
    for core in cores:  # the branch for a Clippable wrapper's inner .linear, or for the Linear itself
        for form in (rf"(?:.*?{core}\.linear)", rf"(?:.*?{core})"):
            if any(_full(form, n) for n in linear):
                branches.append(form)
    if branches:
        rx = rf"(?:{rx})|" + "|".join(branches)
    if parts and not any(_full(rx, n) for n in linear):  # no tower tag in the names: drop the tower requirement
        rx = (r"(?!(?:.*\.)?(?:codec_model|audio_tokenizer|acoustic_tokenizer|semantic_tokenizer)\.)"
              rf".*?(?:{roles}).*?\.{leaf_rx}")
    parents = {n.rpartition(".")[0] for n in (e.name for e in tree.entries) if n}
    excluded = [e.name for e in tree.entries  # parameter-free leaves (placeholders) it matches
                if e.name and not e.own_params and e.name not in parents and _full(rx, e.name)]
    if target_modules is None:  # router gates: a `gate` Linear beside `experts` or inside a router module
        for name in linear:
            holder, _, leaf = name.rpartition(".")
            owner = tree.get(holder)
            if leaf == "gate" and owner is not None and (
                    tree.get(f"{holder}.experts") is not None or "router" in owner.type_name.lower()
                    or any(p == f"{holder}.experts" or p.startswith(f"{holder}.experts.") for p, _ in tree.params)
            ) and _full(rx, name):
                excluded.append(name)
    if excluded:
        rx = r"(?!(?:" + "|".join(re.escape(x) for x in excluded) + r")$)(?:" + rx + ")"
    if not any(re.search(rx, n, flags=re.DOTALL) for n in linear):
        raise SpecError("Unsloth finds nothing to finetune on this model with these settings (\"No layers to "
                        "finetune\")" + (f": target_modules={target_modules} names no Linear it keeps"
                                         if target_modules is not None else ""),
                        where=source or None, hint="check the finetune_* toggles and target_modules against the model")
    return rx


def _clipped(tree: ModuleTree, names: list[str]) -> list[str]:
    """PEFT under Unsloth's patch adapts a Gemma-4 clippable wrapper through its inner ``.linear``."""
    out = []
    for n in names:
        entry = tree.get(n)
        inner = tree.get(f"{n}.linear")
        if entry is not None and entry.kind is None and "ClippableLinear" in entry.type_name and inner is not None \
                and inner.kind == LINEAR:
            n = f"{n}.linear"
        if n not in out:
            out.append(n)
    return out


def _moe_leaves(detect: Any) -> set[str]:
    """The expert leaves Unsloth's MoE detection reads from its targets (``_moe_target_set_from_string``)."""
    if isinstance(detect, list | tuple):
        return {t for t in detect if isinstance(t, str) and "." not in t and t in MOE_MLP}
    if not isinstance(detect, str):
        return set()
    if detect in MOE_MLP:
        return {detect}
    if re.search(r"[*+?()[\]{}|\\^$]", detect) is None or not any(
            t in detect for t in ("mlp", "ffn", "feed_forward", "experts")):
        return set()
    named = {t for t in MOE_MLP if t in detect}
    if named:
        return named
    if re.search(r"(?<![qkvo]_)(?<!out_)(?<!in_)proj", detect) or "mlp|feed_forward|ffn|dense" in detect:
        return set(MOE_MLP)
    return set()


def moe_parameters(tree: ModuleTree, detect: Any) -> list[str]:
    """The ``target_parameters`` Unsloth adds by itself on a mixture-of-experts model when the call gives none:
    the fused expert weights (``mlp.experts.gate_up_proj`` / ``down_proj``, or ``experts.*`` where that is the
    layout) whose leaves its targets name."""
    names = [p for p, _ in tree.params]

    def exists(suffix: str) -> bool:
        return any(p == suffix or p.endswith("." + suffix) for p in names)

    def resolved(leaf: str) -> str:
        for p in names:
            if p == f"mlp.experts.{leaf}" or p.endswith(f".mlp.experts.{leaf}"):
                return f"mlp.experts.{leaf}"
            if p == f"experts.{leaf}" or p.endswith(f".experts.{leaf}"):
                return f"experts.{leaf}"
        return f"experts.{leaf}" if "gemma4" in (tree.model_type or "") else f"mlp.experts.{leaf}"

    if not any(".experts." in p for p in names):
        return []
    wanted = _moe_leaves(detect)
    out = []
    if wanted & {"gate_proj", "up_proj", "gate_up_proj"}:
        if exists(resolved("gate_up_proj")):
            out.append(resolved("gate_up_proj"))
        else:
            out += [resolved(leaf) for leaf in ("gate_proj", "up_proj")
                    if (leaf in wanted or "gate_up_proj" in wanted) and exists(resolved(leaf))]
    if "down_proj" in wanted and exists(resolved("down_proj")):
        out.append(resolved("down_proj"))
    return out


def trains(kwargs: dict[str, Any], tree: ModuleTree, source: str) -> tuple[Trains, dict[str, Any]]:
    """What Unsloth trains with these keywords (``get_peft_model``'s path to PEFT, as read from the pinned
    version), and the spec its four toggles suggest."""
    known = {**DEFAULTS, **kwargs}
    flags = {k: as_bool(known[k], k, source) for k in TOGGLES}
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
    saved_names = as_names(known.get("modules_to_save"), "modules_to_save", source)
    notes = []
    if target == "all-linear":
        flags = dict.fromkeys(flags, True)
        notes.append('target_modules="all-linear" turns all five finetune_* toggles on (the audio tower too)')
    vision, language, attention, mlp, audio = (flags[k] for k in TOGGLES)
    if isinstance(target, list) and language:  # LoRA on embeddings never trains under Unsloth: it saves them
        moved = [t for t in target if t.rpartition(".")[2] in ("embed_tokens", "lm_head")]
        if moved:
            target = [t for t in target if t not in moved]
            saved_names += [m for m in moved if m not in saved_names]
            notes.append(f"Unsloth moves {', '.join(moved)} from target_modules to modules_to_save (trained in full)")
    detect = target if isinstance(target, list) and mlp and language else None
    scoping = not all((vision, language, attention, mlp))
    if target in (None, "all-linear"):
        target = regex_for(tree, vision, language, attention, mlp, audio, source=source)
        notes.append("no flag of Unsloth trains the projector: its regex needs a tower tag and a role tag in the name")
    elif isinstance(target, list) and (scoping or audio):
        target = regex_for(tree, vision, language, attention, mlp, audio, target_modules=target, source=source)
        notes.append("Unsloth narrows an explicit target_modules list by the finetune_* toggles: a module is "
                     "adapted only where both select it")
    else:
        notes.append("an explicit target_modules goes to PEFT as given: the finetune_* toggles do not narrow it")
    if detect is None:
        detect = target
    if known.get("layers_to_transform") is not None and isinstance(target, str):
        raise SpecError("layers_to_transform cannot be combined with a regex target_modules (PEFT refuses it)",
                        where=source, hint="select layers in vlora's spec instead")
    names = [e.name for e in tree.entries if e.name]
    matched = _clipped(tree, peft_matches(target, names, source=source))
    notes += dead_entry_warnings(target)
    wrappable = [n for n in matched if tree.get(n).kind is not None]
    skipped = [n for n in matched if tree.get(n).kind is None]
    if skipped:
        notes.append(f"the regex also matches {len(skipped)} modules PEFT cannot wrap (e.g. {skipped[0]}): PEFT "
                     "would fail on them")
    params = known.get("target_parameters")
    if params is None:
        params = moe_parameters(tree, detect)
        if params:
            notes.append("Unsloth adds the expert weights (" + ", ".join(params) + ") to target_parameters by "
                         "itself on a mixture-of-experts model" + ("" if mlp and language else
                                                                   ", even where the toggles leave the language "
                                                                   "MLP out"))
    params = as_names(params, "target_parameters", source)
    adapted_params = [p for p, _ in tree.params if any(p == t or p.endswith("." + t) for t in params)]
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
    everything = wrappable + adapted_params
    ranks = pattern_values(patterns["rank_pattern"], everything, r, where=source, error=SpecError,
                           what="rank_pattern")
    alphas = pattern_values(patterns["alpha_pattern"], everything, alpha, where=source, error=SpecError,
                            what="alpha_pattern")
    lora = {n: (ranks[n], alphas[n]) for n in everything}
    full = saved_matches(saved_names, names)
    settings = {"r": r, "lora_alpha": alpha, "lora_dropout": dropout, "bias": known["bias"],
                **{k: as_bool(known[k], k, source) for k in ("use_rslora", "use_dora") if k in known}}
    suggested = {**{k: flags[k] for k in TOGGLES if k != "finetune_audio_layers"}, "r": r, "lora_alpha": alpha}
    if flags["finetune_audio_layers"] and any(".audio_tower." in f".{n}." for n in names):
        suggested["finetune_audio_layers"] = True
    return Trains(lora=lora, full=tuple(full), notes=tuple(notes), settings=settings), suggested


MODEL_KEY = "model_name"  # from_pretrained's, where the file holds that call (get_peft_model does not name it)


def import_config(config: dict[str, Any], source: str, tree: ModuleTree, registry: Registry, *,
                  model: str) -> Imported:
    found, suggested = trains(config, tree, source)
    return _spec_for(found, tree, registry, tool="Unsloth", source=source, model=model, flags_spec=suggested)


__all__ = ["DEFAULTS", "MODEL_KEY", "TITLE", "VERSION_READ", "export", "import_config", "moe_parameters", "read",
           "regex_for", "trains"]
