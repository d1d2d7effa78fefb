"""Structural inference: a module tree -> an ``ArchitectureSpec`` for a model no plugin claims.

What it reads is the model's structure, never leaf names shared across families:

* the towers are the sub-models whose ``.config`` is the composite config's ``vision_config``,
  ``text_config`` or ``audio_config`` (recorded in ``ModuleTree.sub_models``);
* a tower's layers are the ``nn.ModuleList`` under it whose length equals a layer count of its sub-config
  (``num_hidden_layers``, ``depth``, ``num_global_layers``, ...); two such lists that differ in one path
  segment are two stacks (Llama-3.2-Vision); no list of that length is a refusal, never a guess;
* the role of a Linear inside a layer comes from the classes of the modules that hold it: an attention
  module (cross-attention, linear attention), an MLP, feed-forward, mixture-of-experts or convolution
  module; fused 3-D expert weights are MLP; a Linear with one output, or one per expert or per head, is a
  gate or a router, and never a target; a Linear it cannot place is reported, never targeted;
* the projector is what lies outside the towers' layers and connects them: the composite model's other
  children that hold a Linear (or a bare 2-D weight), and what the vision tower holds after its layers
  (Qwen's merger, Llama-4's vision adapter); what comes before the layers is the patch embedding.

The result has the same shape as a plugin's declaration, which is what ``vlora scaffold`` will write out.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import hookspecs
from .architecture import ArchitectureSpec, Component, UnusedLayers
from .errors import ResolutionError
from .layouts import unused_after_feature_layer
from .modeltree import ModuleTree
from .plugins import PluginInfo
from .versions import core_version
from .vocabulary import CONV, EMBEDDING, LINEAR, SUB_CONFIG_COMPONENTS

TOWERS = SUB_CONFIG_COMPONENTS
# sub-config keys that hold a layer count (an int), or a per-layer list whose length is one
_COUNT_KEY = re.compile(r"(?:\w+_)?num_\w*layers|n_layers|layers|encoder_layers|decoder_layers|\w*depth")
_PER_LAYER_KEY = re.compile(r"\w*layer_types|layers_block_type")
_EXPERT_COUNT_KEYS = ("num_experts", "num_local_experts", "n_routed_experts")
_HEADS_KEY = re.compile(r"\w*num_\w*heads")
_TOWER_LIKE = re.compile(r"vision|image|video|audio|speech|text")  # sub-config names of encoders, not connectors
INFERRED_DISTRIBUTION = "vlora (inferred)"
# raised whenever what inference reads changes: cached inferences of older rules are then not read back
INFERENCE_RULES = 6


class InferenceRefused(ResolutionError):
    """The model's structure is not a vision encoder + projector + language model layout vlora can read;
    ``reason`` says why, as data (``vlora coverage`` reads it)."""

    reason = ""


@dataclass
class Inference:
    """An inferred architecture, with what inference checked and what it could not place."""

    architecture: ArchitectureSpec
    unclassified: list[str] = field(default_factory=list)  # Linear paths (layer index as '*') with no role
    unplaced: dict[str, list[str]] = field(default_factory=dict)  # component -> leaves of those Linears

    def plugin(self) -> PluginInfo:
        """A plugin record for the inferred architecture, with the unused-layers rule of LLaVA-style configs."""
        pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        pm.add_hookspecs(hookspecs)
        pm.register(_InferredHooks(), name="inferred")
        return PluginInfo("inferred", INFERRED_DISTRIBUTION, core_version(), (self.architecture,), manager=pm)


class _InferredHooks:
    @hookspecs.hookimpl
    def vlora_unused_layers(
        self, architecture: ArchitectureSpec, config: dict[str, Any], layer_counts: dict[str, int]
    ) -> list[UnusedLayers] | None:
        """Vision layers after ``vision_feature_layer`` (LLaVA-style configs) are never used."""
        return unused_after_feature_layer(config, layer_counts)


def layer_counts_of(sub_config: dict[str, Any]) -> dict[str, int]:
    """The layer counts a sub-config states: ``{"num_hidden_layers": 32, "len(layer_types)": 32, ...}``."""
    counts = {k: v for k, v in sub_config.items() if isinstance(k, str) and _COUNT_KEY.fullmatch(k)
              and isinstance(v, int) and not isinstance(v, bool) and v > 0}
    counts |= {f"len({k})": len(v) for k, v in sub_config.items()
               if isinstance(k, str) and _PER_LAYER_KEY.fullmatch(k) and isinstance(v, list) and v}
    interval = sub_config.get("cross_layer_interval")  # Idefics: a gated cross-attention layer every N layers
    if isinstance(interval, int) and interval > 0 and isinstance(counts.get("num_hidden_layers"), int):
        counts["num_hidden_layers / cross_layer_interval"] = counts["num_hidden_layers"] // interval
    return counts


def infer_architecture(tree: ModuleTree) -> Inference:
    """Read the architecture of ``tree`` from its structure; raises ``InferenceRefused`` with the reason."""
    return _Reader(tree).read()


class _Reader:
    def __init__(self, tree: ModuleTree) -> None:
        self.tree = tree
        self.config = tree.config
        self.index = {e.name: i for i, e in enumerate(tree.entries)}
        self.children: dict[str, list[str]] = {}
        for e in tree.entries:
            if e.name:
                self.children.setdefault(e.name.rpartition(".")[0], []).append(e.name)
        self.params: dict[str, list[tuple[str, tuple[int, ...]]]] = {}
        for name, shape in tree.params:
            owner, _, pname = name.rpartition(".")
            self.params.setdefault(owner, []).append((pname, shape))
        self.model_type = tree.model_type or "unknown"

    def refuse(self, why: str, hint: str) -> InferenceRefused:
        refused = InferenceRefused(f"cannot infer the architecture of model_type {self.model_type!r}: {why}", hint=hint)
        refused.reason = why
        return refused

    # --- structure helpers ------------------------------------------------------------------------------

    def subtree(self, name: str) -> list[str]:
        """``name`` and every module under it, in named_modules() order."""
        start = self.index[name]
        prefix = name + "." if name else ""
        out = [name]
        for e in self.tree.entries[start + 1:]:
            if not e.name.startswith(prefix):
                break
            out.append(e.name)
        return out

    def has_weights(self, name: str) -> bool:
        """Whether the module holds a Linear or a convolution, or a bare 2-D weight of its own."""
        return any(self.tree.get(n).kind in (LINEAR, CONV) for n in self.subtree(name)) or any(
            len(shape) == 2 for _, shape in self.params.get(name, []))

    @staticmethod
    def is_text_config(config: dict[str, Any]) -> bool:
        """Whether a config states a text model itself: a vocabulary, a hidden size and a layer count."""
        width = config.get("hidden_size", config.get("d_model"))
        return isinstance(config.get("vocab_size"), int) and isinstance(width, int) and any(
            not k.startswith("len(") for k in layer_counts_of(config))

    def sub_config(self, key: str) -> dict[str, Any]:
        if key == "":  # the composite config itself
            return self.config
        if "." in key:  # a composite encoder's own (encoder.vision_config)
            outer, _, inner = key.partition(".")
            value = self.sub_config(outer).get(inner)
            return value if isinstance(value, dict) else {}
        value = self.config.get(key)
        return value if isinstance(value, dict) else {}

    # --- towers and their layers ------------------------------------------------------------------------

    def read(self) -> Inference:
        roots: dict[str, list[str]] = {}
        keys: dict[str, str] = {}
        others: list[str] = []  # sub-models with a config of their own that is none of the three
        towers = tower_keys(self.config, [key for _, key in self.tree.sub_models])
        root_keys: dict[str, str] = {}
        for name, key in self.tree.sub_models:
            if key in towers:
                roots.setdefault(towers[key], []).append(name)
                keys.setdefault(towers[key], key)
                root_keys[name] = key
            elif _TOWER_LIKE.search(key):  # a second encoder (a high-resolution vision model): not placed
                others.append(name)
        self.refuse_a_part_beside(root_keys, towers)
        # a tower whose config states a codebook is a tokenizer (Apertus 1.5's image and audio tokenizers): its output
        # is discrete codes the language model reads as tokens of its vocabulary, so no gradient reaches it
        tokenizers = {c: roots.pop(c) for c in ("vision", "audio") if c in roots
                      and "codebook_size" in self.sub_config(keys[c])}
        self.text_key = keys.get("language", "text_config")
        # no vision tower at all (UDOP): a convolution outside every sub-model that reads the config's image
        # channels is the patch embedding, and the image path's only weights: the projector, as Fuyu's plugin says
        patches = self.patch_embeddings() if "vision" not in roots and not tokenizers else []
        if "language" not in roots and ("vision" in roots or patches) and self.is_text_config(self.config):
            # the composite config is the text config itself (GIT, Idefics): the language model is the rest of
            # the model, its layers the lists outside every sub-model with a config of its own
            roots["language"], keys["language"], self.text_key = [""], "", ""
        for needed in ("vision", "language"):
            if needed not in roots and needed not in tokenizers and not (needed == "vision" and patches):
                found = ", ".join(f"{c} ({', '.join(n)})" for c, n in roots.items()) or "none"
                raise self.refuse(
                    f"no sub-model carries its {'vision' if needed == 'vision' else 'text'} config (towers found: "
                    f"{found}); it is not a vision encoder + projector + language model layout",
                    "write a plugin for it (`vlora plugins` lists what is installed)",
                )
        components: list[Component] = []
        unclassified: list[str] = []
        unplaced: dict[str, list[str]] = {}
        stacks: dict[str, list[str]] = {}
        for component in ("vision", "audio", "language"):
            if component not in roots:
                continue
            sub = self.sub_config(keys[component])
            lists, refusals = [], []
            kept = []
            for root in roots[component]:  # a second module with the same sub-config (kosmos-2's x_attn) may hold none
                try:
                    lists += self.layer_lists(component, root, self.sub_config(root_keys.get(root, keys[component])))
                    kept.append(root)
                except InferenceRefused as refusal:
                    refusals.append(refusal)
            if not lists:
                raise refusals[0]
            if kept == [""]:  # the rest of the model: its root is the module that holds its lists of layers
                kept = [functools.reduce(_common_parent, [n.rpartition(".")[0] for n, _, _ in lists])]
            roots[component] = kept  # the towers are the modules that hold layers
            stacks[component] = [name for name, _, _ in lists]
            comp, missing = self.tower(component, lists, sub)
            components.append(comp)
            unclassified += [path for path, _ in missing]
            unplaced[component] = sorted({leaf for _, leaf in missing})
        projector = self.projector(roots, stacks, others) if "vision" in roots else None
        if patches:
            projector = self.patch_projector(patches, stacks["language"])
        cross = any("cross_attention" in c.roles for c in components if c.name == "language")
        if projector is None and not cross and "vision" not in tokenizers:
            raise self.refuse(
                "nothing connects the vision tower to the language model outside their layers (an encoder-"
                "decoder, or a language model that reads the image through cross-attention only)",
                "write a plugin for this family (`vlora plugins` lists what is installed)",
            )
        if projector is not None:  # none: the decoder reads the vision tower's output through cross-attention
            components.insert(1 + ("audio" in roots), projector)
        unclassified += [f"{name} (a sub-model with a config of its own)" for name in others]
        arch = ArchitectureSpec(
            name=f"inferred_{self.model_type}",
            title=f"{self.model_type} (inferred)",
            model_types=(self.model_type,),
            components=tuple(components),
        )
        return Inference(arch, sorted(set(unclassified)), {c: v for c, v in unplaced.items() if v})

    def refuse_a_part_beside(self, root_keys: dict[str, str], towers: dict[str, str]) -> None:
        """Where the towers lie inside a composite sub-model (T5Gemma-2's encoder, pi0's PaliGemma), a sub-model
        beside it that holds layers of its own and is no tower (pi0's action expert) would go unplanned without a
        word: refuse instead."""
        if not any("." in key for key in root_keys.values()):
            return
        for name, key in self.tree.sub_models:
            if "." in key or key in towers or any(root.startswith(f"{name}.") for root in root_keys):
                continue
            counts = layer_counts_of(self.sub_config(key))
            if any(self.tree.get(n).type_name == "ModuleList" and len(self.children.get(n, [])) in counts.values()
                   for n in self.subtree(name)):
                raise self.refuse(
                    f"its vision-language part is one sub-model of a larger model: {name} ({key}) holds layers "
                    "of its own beside it (an action expert, as in pi0); vlora plans vision-language models",
                    "write a plugin that says what the other part is, if it is to be trained")

    def patch_projector(self, found: list[str], language_lists: list[str]) -> Component:
        """The projector of a model without a vision tower (UDOP): its patch embedding, the copy a language stack's
        holder runs where there are tied twins (UDOP's encoder.embed_patches; the top-level patch_embed is tied
        to it and never run)."""
        holders = [name.rpartition(".")[0] for name in language_lists]
        patches = next((p for p in found if any(p.startswith(f"{h}.") for h in holders if h)), found[0])
        holder, _, leaf = patches.rpartition(".")
        return Component(name="projector", prefix=re.escape(holder), roles={"projection": (leaf,)})

    def layer_lists(self, component: str, root: str, sub: dict[str, Any]) -> list[tuple[str, int, str]]:
        """(list name, length, config key) of the layer lists of a tower, checked against its sub-config (or,
        where it states no count itself, the sub-configs it holds: two encoders' ``sam_config`` and
        ``encoder_config``)."""
        wanted = tower_counts(sub)
        found: list[tuple[str, int]] = []
        elsewhere = [n for n, _ in self.tree.sub_models] if root == "" else []  # the rest of the model: not theirs
        for name in self.subtree(root):
            if self.tree.get(name).type_name != "ModuleList":
                continue
            if any(name.startswith(f"{outer}.") for outer, _ in found):
                continue  # inside a layer of a list already taken
            if any(name.startswith(f"{other}.") for other in elsewhere):
                continue
            if root == "" and not self.reads_width(name, sub.get("hidden_size", sub.get("d_model"))):
                continue  # not the text model's layers (Idefics' perceiver resampler works at the vision width)
            kids = self.children.get(name, [])
            if kids and all(k.rpartition(".")[2].isdigit() for k in kids) and any(self.has_weights(k) for k in kids):
                found.append((name, len(kids)))
        matched: list[tuple[str, int, str]] = []
        for name, n in found:
            staged = self.stages(name, sub)
            if staged:
                matched += staged
                continue
            keys = [k for k, v in wanted.items() if v == n and not k.startswith("len(")] or [
                k for k, v in wanted.items() if v == n]
            if keys:
                matched.append((name, n, closest_key(name, keys)))
        if not matched and self.tree.get(root).type_name == "TimmWrapperModel":
            architecture = sub.get("architecture", "?")
            raise self.refuse(
                f"the {component} tower {root} is timm's {architecture}: stages of blocks that no config counts, "
                "which inference does not read", "write a plugin that names its stages and blocks (the gemma3n "
                "plugin does it for MobileNetV5)")
        if not matched:
            seen = ", ".join(f"{n} ({length})" for n, length in found) or "none"
            raise self.refuse(
                f"the {component} tower {root} has no list of layers whose length matches its config "
                f"({', '.join(f'{k}={v}' for k, v in wanted.items()) or 'no layer count'}); lists found: {seen}",
                "write a plugin for this family (start from `vlora plan --infer` on a similar model)",
            )
        by_key: dict[str, list[str]] = {}
        for name, _, key in matched:
            by_key.setdefault(key, []).append(name)
        shared = [names for names in by_key.values() if len(names) > 1]
        if shared:
            for names in shared:  # one count, several lists: distinct keys of that value, one per list
                n = next(length for name, length, _ in matched if name == names[0])
                keys = [k for k, v in wanted.items() if v == n and not k.startswith("len(")]
                if len(keys) < len(names):
                    raise self.refuse(f"the {component} tower has several lists of layers of one length "
                                      f"({', '.join(names)})", "write a plugin that says which one is the tower")
                for name in names:
                    key = closest_key(name, keys)
                    keys.remove(key)
                    matched = [(m, length, key if m == name else k) for m, length, k in matched]
        return matched

    def patch_embeddings(self) -> list[str]:
        """The convolutions outside every sub-model that read the config's ``num_channels`` image channels, where
        the config states a ``patch_size`` (patch embeddings)."""
        channels = self.config.get("num_channels")
        if not isinstance(channels, int) or "patch_size" not in self.config:
            return []
        towers = [n for n, _ in self.tree.sub_models]
        return [e.name for e in self.tree.entries if e.kind == CONV and e.in_features == channels and "." in e.name
                and not any(e.name.startswith(f"{t}.") for t in towers)]

    def reads_width(self, name: str, width: Any) -> bool:
        """Whether a Linear under ``name`` reads vectors of ``width`` (the text model's hidden size)."""
        return any(self.tree.get(n).kind == LINEAR and self.tree.get(n).in_features == width
                   for n in self.subtree(name))

    def stages(self, name: str, sub: dict[str, Any]) -> list[tuple[str, int, str]]:
        """A staged tower (Florence-2's DaViT: a list of stages, each a list of blocks; Swin, Donut's: a list of
        stage modules, each holding one list of blocks): each stage's blocks as a stack, when the stages' lengths
        are a per-stage list of the sub-config (``depths: [2, 2, 14, 2]``); else []."""
        inner = []
        for kid in self.children.get(name, []):
            lists = [kid] if self.tree.get(kid).type_name == "ModuleList" else [
                k for k in self.children.get(kid, []) if self.tree.get(k).type_name == "ModuleList"]
            if len(lists) != 1:
                return []
            inner.append((lists[0], len(self.children.get(lists[0], []))))
        if not inner:
            return []
        lengths = [n for _, n in inner]
        for key, value in sub.items():
            if isinstance(value, list) and value == lengths and all(isinstance(v, int) for v in value):
                return [(k, n, f"{key}[{i}]") for i, (k, n) in enumerate(inner)]
        return []

    def prefix_of(self, lists: list[tuple[str, int, str]]) -> str:
        """The prefix regex of a tower's layers; several lists are stacks, named by the first path segment in
        which they differ (``encoder``/``decoder``; ``sam_encoder``/``vision_encoder``), whatever follows it."""
        if len(lists) == 1:
            return re.escape(lists[0][0]) + r"\.(?P<layer>\d+)"
        parts = [name.split(".") for name, _, _ in lists]
        head = 0
        while all(len(p) > head + 1 and p[head] == parts[0][head] for p in parts):
            head += 1
        tail = 0
        while all(len(p) > head + tail + 1 and p[-1 - tail] == parts[0][-1 - tail] for p in parts):
            tail += 1
        names = [p[head] for p in parts]
        if len(set(names)) != len(names):
            raise self.refuse(f"its stacks of layers ({', '.join(n for n, _, _ in lists)}) are not told apart by "
                              "one path segment", "write a plugin for this family")
        rests = sorted({".".join(p[head + 1:len(p) - tail]) for p in parts})
        middle = "" if rests == [""] else "(?:" + "|".join(r"\." + re.escape(r) if r else "" for r in rests) + ")"
        start = (re.escape(".".join(parts[0][:head])) + r"\.") if head else ""
        end = (r"\." + re.escape(".".join(parts[0][len(parts[0]) - tail:]))) if tail else ""
        return start + f"(?P<stack>{'|'.join(map(re.escape, names))})" + middle + end + r"\.(?P<layer>\d+)"

    # --- roles inside a layer ---------------------------------------------------------------------------

    def tower(
        self, component: str, lists: list[tuple[str, int, str]], sub: dict[str, Any]
    ) -> tuple[Component, list[tuple[str, str]]]:
        gate_widths = {1} | {v for k, v in sub.items() if isinstance(v, int) and (
            k in _EXPERT_COUNT_KEYS or _HEADS_KEY.fullmatch(k))}
        roles: dict[str, dict[str, None]] = {}
        variants: dict[str, str] = {}
        frozen: dict[str, str] = {}
        placed: dict[str, str] = {}
        unclassified: list[tuple[str, str]] = []  # (path with '*', leaf)
        for list_name, _, _ in lists:
            for layer in self.children.get(list_name, []):
                layer_path = list_name + ".*"
                cross = self.cross_attention_modules(layer) if component == "language" else set()
                if "crossattention" in self.tree.get(layer).type_name.lower():  # a cross-attention layer (Idefics')
                    cross |= set(self.attention_modules(layer))
                feed_forward = self.bare_feed_forward(layer, gate_widths)
                for name in self.subtree(layer)[1:]:
                    entry = self.tree.get(name)
                    leaf = name[len(layer) + 1:]
                    classes = self.classes_between(layer, name)
                    if entry.kind == CONV:
                        frozen.setdefault(leaf, "a convolution inside a layer")
                        continue
                    if entry.kind == EMBEDDING:
                        frozen.setdefault(leaf, "an embedding inside a layer (a position bias)")
                        continue
                    if entry.kind == LINEAR:
                        decided = self.linear_role(entry, classes, gate_widths)
                        if any(name.startswith(f"{c}.") for c in cross) and decided == ("attention", None):
                            decided = ("cross_attention", None)
                        elif name in feed_forward and decided is None:
                            decided = ("mlp", None)
                    else:
                        decided = None
                        for pname, shape in self.params.get(name, []):
                            if len(shape) == 3:  # fused expert weights
                                self.place(roles, placed, variants, f"{leaf}.{pname}", ("mlp", "experts"))
                    if entry.kind != LINEAR:
                        continue
                    if decided is None:
                        unclassified.append((f"{layer_path}.{leaf}", leaf))
                    elif decided[0] == "frozen":
                        frozen.setdefault(leaf, decided[1])
                    else:
                        self.place(roles, placed, variants, leaf, decided)
        if not roles:
            first = self.children[lists[0][0]][0]
            held = sorted({leaf for _, leaf in unclassified}) or ["no Linear"]
            raise self.refuse(
                f"no attention or MLP module found in the {component} layers: each "
                f"({self.tree.get(first).type_name}) holds {', '.join(held)} and nothing a class names; which role "
                "those play (a patch-folding projection is neither attention nor MLP) is a plugin's decision",
                "write a plugin for this family")
        comp = Component(
            name=component,
            prefix=self.prefix_of(lists),
            roles={role: tuple(leaves) for role, leaves in roles.items()},
            variants=variants,
            frozen={k: v for k, v in frozen.items() if k not in placed},
        )
        return comp, unclassified

    def place(self, roles, placed, variants, leaf: str, decided: tuple[str, str | None]) -> None:
        role, variant = decided
        if placed.get(leaf, role) != role:
            raise self.refuse(f"{leaf} plays two roles in different layers ({placed[leaf]}, {role})",
                              "write a plugin for this family")
        placed[leaf] = role
        roles.setdefault(role, {})[leaf] = None
        if variant:
            variants[leaf] = variant

    def classes_between(self, layer: str, name: str) -> list[str]:
        """Class names of the modules from ``name`` up to (not including) the layer module, innermost first."""
        out = []
        current = name
        while current != layer:
            out.append(self.tree.get(current).type_name)
            current = current.rpartition(".")[0]
        return out

    def attention_modules(self, layer: str) -> list[str]:
        """The outermost attention modules of a layer, in registration order."""
        out: list[str] = []
        for name in self.subtree(layer)[1:]:
            cls = self.tree.get(name).type_name.lower()
            if ("attention" in cls or cls.endswith("attn")) and not any(name.startswith(f"{o}.") for o in out):
                out.append(name)
        return out

    def cross_attention_modules(self, layer: str) -> set[str]:
        """Attention modules of a decoder layer that read the encoder's (the image's) states although their
        class does not say so: where a layer holds two attention modules of one class (BART's self_attn and
        encoder_attn, BLIP's attention and crossattention), the second is the cross-attention; transformers
        registers a decoder layer's self-attention first, and an encoder layer has one."""
        seen: dict[str, str] = {}
        cross: set[str] = set()
        for name in self.attention_modules(layer):
            cls = self.tree.get(name).type_name
            if cls in seen:
                cross.add(name)
            seen.setdefault(cls, name)
        return cross

    def bare_feed_forward(self, layer: str, gate_widths: set[int]) -> set[str]:
        """The layer's feed-forward where no module class says so: the Linears of a layer outside its attention
        modules that no class places, when they are one up/down pair (hidden -> d_ff -> hidden): BART's and
        Whisper's fc1 and fc2 held by the layer itself, BERT's intermediate.dense and output.dense."""
        inside = self.attention_modules(layer)
        if not inside:
            return set()
        free = [n for n in self.subtree(layer)[1:] if self.tree.get(n).kind == LINEAR
                and not any(n.startswith(f"{a}.") for a in inside)
                and self.linear_role(self.tree.get(n), self.classes_between(layer, n), gate_widths) is None]
        if len(free) != 2:
            return set()
        a, b = (self.tree.get(n) for n in free)
        if a.in_features == b.out_features and a.out_features == b.in_features and a.out_features > a.in_features:
            return set(free)
        return set()

    @staticmethod
    def linear_role(entry: Any, classes: list[str], gate_widths: set[int]) -> tuple[str, str | None] | None:
        own = classes[0].lower()
        if "router" in own or any("router" in c.lower() for c in classes[1:]):
            return "frozen", "a router"
        if entry.custom_forward:
            return "frozen", f"a {entry.type_name} with a forward of its own"
        if entry.out_features in gate_widths:
            return "frozen", "a gate (one output, or one per head or expert)"
        holders = [c.lower() for c in classes[1:]]
        if any("crossattention" in cls for cls in holders):  # also around an inner attention (T5's layers)
            return "cross_attention", None
        for i, cls in enumerate(holders):
            if "deltanet" in cls or "linearattention" in cls:
                return "attention", "linear"
            if "attention" in cls or cls.endswith("attn"):
                return "attention", None
            if "expert" in cls and i == 0 and not cls.endswith("experts"):
                continue
            if any(word in cls for word in ("mlp", "feedforward", "ffn", "moe", "expert", "conv")) or (
                    cls.endswith("layerff") or "denseactdense" in cls or "densegatedactdense" in cls):  # T5's
                if "conv" in cls:
                    return "mlp", "conv module"
                inside_moe = any("moe" in c or "sparse" in c for c in holders[i + 1:])
                return "mlp", "shared expert" if inside_moe else None
        return None

    # --- the projector ----------------------------------------------------------------------------------

    def projector(
        self, roots: dict[str, list[str]], stacks: dict[str, list[str]], others: list[str]
    ) -> Component | None:
        vision_roots, language_root = roots["vision"], roots["language"][0]
        inner = _common_parent(vision_roots[0], language_root)
        tower_roots = {name for names in roots.values() for name in names} | set(others)
        vocab = self.sub_config(self.text_key).get("vocab_size")
        lists = {name for names in stacks.values() for name in names}
        holders: list[str] = []
        for name in self.children.get(inner, []):
            holds_a_tower = any(root == name or root.startswith(f"{name}.") for root in tower_roots)
            if holds_a_tower or name in lists or self.tree.get(name).kind == EMBEDDING or not self.has_weights(name):
                continue
            entry = self.tree.get(name)
            if entry.kind == LINEAR and entry.out_features == vocab:
                continue  # the output head
            holders.append(name)
        # what a vision tower holds after its layers (Qwen's merger, Llama-4's vision adapter), but not a
        # pooling head of the encoder's own (it attends: SigLIP's attention-pooling head)
        last = max(self.index[self.subtree(n)[-1]] for n in stacks["vision"])
        for vision_root in vision_roots:
            for name in self.children.get(vision_root, []):
                if self.index[name] <= last or not self.has_weights(name) or self.attends(name) or \
                        self.tree.get(name).type_name.endswith("Pooler"):  # the encoder's pooler: not read by a decoder
                    continue
                if self.tree.get(name).type_name == "ModuleList":
                    holders += self.children.get(name, [])
                else:
                    holders.append(name)
        if not holders:
            return None
        leaves: dict[str, None] = {}
        for holder in holders:
            for name in self.subtree(holder):
                if self.tree.get(name).kind in (LINEAR, CONV):
                    leaves[name[len(holder) + 1:]] = None
            if not any(self.tree.get(n).kind in (LINEAR, CONV) for n in self.subtree(holder)):
                for pname, shape in self.params.get(holder, []):
                    if len(shape) == 2:
                        leaves[pname] = None
        follows = {h.rpartition(".")[2]: "audio" for h in holders if "audio" in roots and "audio" in h}
        prefix = "(?:" + "|".join(re.escape(h) for h in holders) + ")"
        # a holder that is itself a Linear (leaf "") beside holders that are not: "" is a target only where
        # it is a module LoRA can wrap
        mixed = "" in leaves and any(self.tree.get(h).kind is None for h in holders)
        return Component(name="projector", prefix=prefix, roles={"projection": tuple(leaves)}, follows=follows,
                         optional=("",) if mixed else ())

    def attends(self, name: str) -> bool:
        return any("attention" in self.tree.get(n).type_name.lower() for n in self.subtree(name))


def tower_counts(sub_config: dict[str, Any]) -> dict[str, int]:
    """The layer counts of a tower's sub-config, or where it states none itself, those of the sub-configs it
    holds, by dotted key (``sam_config.num_hidden_layers``: a tower of two encoders)."""
    return layer_counts_of(sub_config) or {f"{key}.{k}": v for key, value in sub_config.items()
                                           if isinstance(value, dict) for k, v in layer_counts_of(value).items()}


def closest_key(name: str, keys: list[str]) -> str:
    """Of config keys stating one count, the one that shares a word with the list's path (``encoder_layers``
    for ``encoder.layers``); else the first."""
    words = set(re.split(r"[^a-z0-9]+", name.lower())) - {""}
    return next((k for k in keys if words & set(re.split(r"[^a-z0-9]+", k.lower())) - {"layers", "num", "hidden"}),
                keys[0])


def tower_keys(config: dict[str, Any], keys: list[str]) -> dict[str, str]:
    """Sub-config key -> component: ``vision_config``, ``text_config``, ``audio_config``; and in a composite of
    ``encoder`` and ``decoder`` configs whose encoder reads images (it states an ``image_size`` or a
    ``patch_size``: Donut, TrOCR and other vision-encoder-decoder models), the encoder is the vision tower and
    the decoder the language model."""
    towers = {key: TOWERS[key] for key in keys if key in TOWERS}
    # a composite encoder (T5Gemma-2's: a vision tower and a text encoder) with a text decoder beside it
    towers |= {key: TOWERS[key.partition(".")[2]] for key in keys if key.partition(".")[2] in TOWERS}
    if "decoder" in keys and any(c == "language" and "." in k for k, c in towers.items()):
        towers["decoder"] = "language"
    encoder = config.get("encoder")
    if {"encoder", "decoder"} <= set(keys) and isinstance(encoder, dict) and (
            "image_size" in encoder or "patch_size" in encoder):
        towers |= {"encoder": "vision", "decoder": "language"}
    return towers


def _common_parent(a: str, b: str) -> str:
    pa, pb = a.split("."), b.split(".")
    common = []
    for x, y in zip(pa, pb, strict=False):
        if x != y:
            break
        common.append(x)
    return ".".join(common)


__all__ = [
    "INFERENCE_RULES",
    "INFERRED_DISTRIBUTION",
    "Inference",
    "InferenceRefused",
    "closest_key",
    "infer_architecture",
    "layer_counts_of",
    "tower_counts",
    "tower_keys",
]
