"""Derive what a serving engine applies of a LoRA adapter from the engine's own wheel, and write it as vlora's
versioned serving data (``vlora_core/serving/data/<engine>-<version>.json``).

    pip download --no-deps vllm==0.33.0 sglang==0.5.23 -d wheels/
    python scripts/derive_serving.py wheels/vllm-0.33.0-*.whl wheels/sglang-0.5.23-*.whl

The wheel is read as a zip (never installed, never imported): model classes, their registry, the LoRA loader's
checks. Each fact names the file it was read from; a fact whose source text is gone stops the derivation with
that file's name instead of guessing. tests/test_serving_derivation.py re-derives and compares with the
committed table when a wheel is present (VLORA_ENGINE_WHEELS=folder).
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
import zipfile
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "vlora_core" / "serving" / "data"


class Wheel:
    """The Python sources of one wheel, read from its zip."""

    def __init__(self, path: Path) -> None:
        self.path = path
        name = path.name.split("-")
        self.engine, self.version = name[0], name[1]
        self.zip = zipfile.ZipFile(path)
        self.names = set(self.zip.namelist())
        self._ast: dict[str, ast.Module] = {}

    def text(self, name: str) -> str:
        if name not in self.names:
            raise SystemExit(f"{self.path.name}: {name} is gone; the derivation must be revisited for this version")
        return self.zip.read(name).decode()

    def tree(self, name: str) -> ast.Module:
        if name not in self._ast:
            self._ast[name] = ast.parse(self.text(name))
        return self._ast[name]

    def needs(self, name: str, *snippets: str) -> str:
        """``name``, after checking that every snippet the facts rest on is still in it."""
        text = self.text(name)
        for s in snippets:
            if s not in text:
                raise SystemExit(f"{self.path.name}: {name} no longer says {s!r}; revisit the derivation")
        return name


def fact(value: object, read_from: str) -> dict[str, object]:
    return {"value": value, "read_from": read_from}


def literal_dict(tree: ast.Module, name: str) -> dict:
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) \
            else []
        if any(isinstance(t, ast.Name) and t.id == name for t in targets) and node.value is not None:
            return {k: v for k, v in _dict_items(node.value)}
    raise KeyError(name)


def _dict_items(node: ast.AST):
    if not isinstance(node, ast.Dict):
        return
    for k, v in zip(node.keys, node.values, strict=True):
        if k is None:  # **other
            continue
        try:
            yield ast.literal_eval(k), ast.literal_eval(v)
        except ValueError:
            continue


# ---------------------------------------------------------------- vLLM

VLLM_MODELS = "vllm/model_executor/models/"
LAYERS = "vllm.model_executor.layers."
# layer files that define the linear layers themselves (their attributes are weights, not LoRA targets)
SKIPPED_LAYERS = ("vllm.model_executor.layers.linear",)


class VllmModels:
    def __init__(self, wheel: Wheel) -> None:
        self.w = wheel
        linear = wheel.tree("vllm/model_executor/layers/linear.py")
        bases = {n.name: [b.id for b in n.bases if isinstance(b, ast.Name)] for n in linear.body
                 if isinstance(n, ast.ClassDef)}

        def is_linear(c: str, seen: int = 0) -> bool:
            return c == "LinearBase" or (seen < 10 and any(is_linear(b, seen + 1) for b in bases.get(c, [])))
        self.linear_classes = {c for c in bases if is_linear(c)} - {"LinearBase"}
        self.moe_classes = {"FusedMoE", "SharedFusedMoE", "FusedMoEFactory"}

    def module_file(self, module: str) -> str:
        return f"{VLLM_MODELS}{module}.py"

    def imports(self, file: str, layers: bool = False) -> dict[str, str]:
        """Name -> the model file it is imported from (relative or absolute, within the models package; with
        ``layers``, also the layer files of vllm/model_executor/layers/)."""
        out = {}
        for node in ast.walk(self.w.tree(file)):
            if isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                if node.level == 1 and file.startswith(VLLM_MODELS):
                    target = f"{VLLM_MODELS}{mod.replace('.', '/')}.py"
                elif mod.startswith("vllm.model_executor.models."):
                    target = f"{VLLM_MODELS}{mod.removeprefix('vllm.model_executor.models.').replace('.', '/')}.py"
                elif layers and mod.startswith(LAYERS) and mod not in SKIPPED_LAYERS:
                    target = mod.replace(".", "/") + ".py"
                    if target not in self.w.names:
                        target = mod.replace(".", "/") + "/__init__.py"
                else:
                    continue
                if target in self.w.names:
                    for a in node.names:
                        out[a.asname or a.name] = target
        return out

    def find_class(self, file: str, name: str, depth: int = 0) -> tuple[str, ast.ClassDef] | None:
        for node in self.w.tree(file).body:
            if isinstance(node, ast.ClassDef) and node.name == name:
                return file, node
        where = self.imports(file).get(name)
        if where and depth < 6:
            return self.find_class(where, name, depth + 1)
        return None

    def lineage(self, file: str, cls: ast.ClassDef, depth: int = 0) -> list[tuple[str, ast.ClassDef]]:
        """The class and its bases defined in the models package, nearest first (a simple MRO)."""
        out = [(file, cls)]
        for b in cls.bases:
            name = b.id if isinstance(b, ast.Name) else b.attr if isinstance(b, ast.Attribute) else None
            found = self.find_class(file, name) if name and depth < 8 else None
            if found:
                out += self.lineage(*found, depth + 1)
        return out

    def base_names(self, lineage) -> set[str]:
        names = set()
        for _, cls in lineage:
            for b in cls.bases:
                names.add(b.id if isinstance(b, ast.Name) else getattr(b, "attr", ""))
        return names

    def class_attr(self, lineage, attr: str):
        for _, cls in lineage:
            for node in cls.body:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
                    if isinstance(node, ast.AnnAssign) else []
                if any(isinstance(t, ast.Name) and t.id == attr for t in targets) and node.value is not None:
                    if isinstance(node.value, ast.Dict):
                        return dict(_dict_items(node.value))
                    try:
                        return ast.literal_eval(node.value)
                    except ValueError:
                        return None
        return None

    def mm_mapping(self, lineage) -> dict[str, list[str]]:
        for _, cls in lineage:
            for node in cls.body:
                if isinstance(node, ast.FunctionDef) and node.name == "get_mm_mapping":
                    for call in ast.walk(node):
                        if isinstance(call, ast.Call) and getattr(call.func, "attr", "") == "from_string_field":
                            out = {}
                            for kw in call.keywords:
                                try:
                                    v = ast.literal_eval(kw.value)
                                except ValueError:
                                    continue
                                out[kw.arg] = [v] if isinstance(v, str) else list(v)
                            return out
        return {}

    def children(self, lineage) -> tuple[list[tuple[str, ast.ClassDef]], list[str], bool]:
        """The model classes a class builds (``Qwen2ForCausalLM(...)``), the text architectures it asks the
        registry for (``init_vllm_registered_model(..., architectures=[...])``), and whether it asks for one the
        config decides (no literal ``architectures``)."""
        built, archs, dynamic = [], [], False
        for file, cls in lineage:
            for call in ast.walk(cls):
                if not isinstance(call, ast.Call):
                    continue
                func = call.func
                callee = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                if callee == "init_vllm_registered_model":
                    literal = [kw.value for kw in call.keywords if kw.arg == "architectures"]
                    try:
                        archs += list(ast.literal_eval(literal[0])) if literal else []
                    except ValueError:
                        literal = []
                    dynamic |= not literal
                elif callee and callee[0].isupper():
                    found = self.find_class(file, callee)
                    if found is not None:
                        built.append(found)
        return built, archs, dynamic

    def leaves(self, file: str) -> set[str]:
        """Attribute names assigned a LinearBase layer (or a fused-MoE layer: ``experts``) in ``file`` and the
        model files it imports from: a superset of the vLLM model's LoRA-capable leaf names."""
        seen, todo, names = set(), [file], set()
        while todo:
            f = todo.pop()
            if f in seen:
                continue
            seen.add(f)
            tree = self.w.tree(f)
            # methods that build a layer: def create_qkvz_proj(...): return MergedColumnParallelLinear(...)
            makers = {fn.name for fn in ast.walk(tree) if isinstance(fn, ast.FunctionDef)
                      and any(isinstance(r, ast.Return) and isinstance(r.value, ast.Call)
                              and self._callee(r.value) in self.linear_classes for r in ast.walk(fn))}
            layer = self.linear_classes | makers
            for node in ast.walk(tree):
                if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                    callee = self._callee(node.value)
                    if callee in layer or callee in self.moe_classes:
                        for t in node.targets:
                            if isinstance(t, ast.Attribute):
                                names.add("experts" if callee in self.moe_classes else t.attr)
                    elif callee in ("ModuleList", "Sequential"):
                        # nn.ModuleList([ColumnParallelLinear(...), GELU(), RowParallelLinear(...)]): leaves "0", "2"
                        items = node.value.args
                        if callee == "ModuleList" and items and isinstance(items[0], ast.List | ast.Tuple):
                            items = items[0].elts
                        for index, item in enumerate(items):
                            if isinstance(item, ast.Call) and self._callee(item) in layer:
                                names.add(str(index))
                            elif isinstance(item, ast.ListComp | ast.GeneratorExp) \
                                    and isinstance(item.elt, ast.Call) and self._callee(item.elt) in layer:
                                names.add("#")  # a list of layers: every index is a layer's name
            # model files transitively; the layer files a model file imports (one step: a layer such as the
            # gated-delta-net attention that declares its projections itself)
            todo += [t for t in set(self.imports(f, layers=f.startswith(VLLM_MODELS)).values()) if t not in seen]
        return names

    @staticmethod
    def _callee(call: ast.Call) -> str:
        func = call.func
        return func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")


def derive_vllm(w: Wheel) -> dict:
    registry = w.tree(f"{VLLM_MODELS}registry.py")
    multimodal = literal_dict(registry, "_MULTIMODAL_MODELS")
    previous = literal_dict(registry, "_PREVIOUSLY_SUPPORTED_MODELS")
    helper = w.needs("vllm/lora/peft_helper.py", "vLLM does not yet support DoRA.", '["classifier", "score"]',
                     "Adapter bias is not supported.", "is greater than max_lora_rank")
    loader = w.needs("vllm/lora/lora_model.py", "expected\"\n                    f\" target modules in")
    manager = w.needs("vllm/lora/model_manager.py", "enable_tower_connector_lora", "enable_mixed_moe_lora_format",
                      "will be ignored")
    config_file = "vllm/config/lora.py"
    config_text = w.text(config_file)
    ranks = re.search(r"MaxLoRARanks = Literal\[([0-9, ]+)\]", config_text)
    default = re.search(r"max_lora_rank: MaxLoRARanks = (\d+)", config_text)
    if not (ranks and default and "enable_tower_connector_lora: bool = False" in config_text):
        raise SystemExit(f"{w.path.name}: {config_file} changed; revisit the derivation")
    runner = w.needs("vllm/v1/worker/lora_model_runner_mixin.py", "does not support LoRA yet.")
    text_models = literal_dict(registry, "_TEXT_GENERATION_MODELS")
    models = VllmModels(w)

    def located(module: str, cls_name: str):
        file = models.module_file(module)
        return models.find_class(file, cls_name) if file in w.names else None

    def packed_and_leaves(found) -> tuple[dict, set[str]]:
        lineage = models.lineage(*found)
        return dict(models.class_attr(lineage, "packed_modules_mapping") or {}), models.leaves(found[0])

    text: dict[str, dict] = {}
    for arch, (module, cls_name) in sorted(text_models.items()):
        found = located(module, cls_name)
        if found is not None:
            packed, leaves = packed_and_leaves(found)
            text[arch] = {"read_from": found[0], "packed": dict(sorted(packed.items())), "leaves": sorted(leaves)}
    out: dict[str, dict] = {}
    for arch, (module, cls_name) in sorted(multimodal.items()):
        found = located(module, cls_name)
        if found is None:
            continue
        lineage = models.lineage(*found)
        bases = models.base_names(lineage)
        mapping = models.mm_mapping(lineage)
        packed, leaves = packed_and_leaves(found)
        built, archs, dynamic = models.children(lineage)
        child_packed: dict = {}
        for child in built:
            p, child_leaves = packed_and_leaves(child)
            child_packed.update(p)
            leaves |= child_leaves
        for a in archs:
            if a in text:
                child_packed.update(text[a]["packed"])
                leaves |= set(text[a]["leaves"])
        out[arch] = {
            "read_from": found[0],
            "lora": "SupportsLoRA" in bases,
            "tower_connector": bool(models.class_attr(lineage, "supports_tower_connector_lora")),
            "moe_3d": bool(models.class_attr(lineage, "is_3d_moe_weight")),
            # the class's own mapping; else its children's (vllm/model_executor/utils.py get_packed_modules_mapping)
            "packed": {k: list(v) for k, v in sorted((packed or child_packed).items())},
            "leaves": sorted(leaves),
            "text_from_config": dynamic,
            "language": mapping.get("language_model", []),
            "connector": mapping.get("connector", []),
            "tower": mapping.get("tower_model", []),
        }
    return {
        "engine": "vllm", "version": w.version, "source": w.path.name,
        "facts": {
            "dora": fact("refused", helper),
            "modules_to_save": fact(["classifier", "score"], helper),
            "bias": fact("refused", helper),
            "rank_pattern": fact("applied", helper),
            "rslora": fact("applied", helper),
            "max_lora_ranks": fact([int(r) for r in ranks.group(1).split(",")], config_file),
            "max_lora_rank_default": fact(int(default.group(1)), config_file),
            "leaf_check": fact("every adapter module's last name must be a LoRA-capable layer's name in the model "
                               "(packed names expanded), else the whole adapter is refused", loader),
            "tower_flag": fact("--enable-tower-connector-lora", manager),
            "mixed_moe_flag": fact("--enable-mixed-moe-lora-format", manager),
            "model_lora": fact("a model class without SupportsLoRA refuses --enable-lora", runner),
        },
        "previously_supported": dict(sorted(previous.items())),
        "models": out,
        "text_models": text,
    }


# ---------------------------------------------------------------- SGLang

SGLANG_MODELS = "sglang/srt/models/"


def derive_sglang(w: Wheel) -> dict:
    utils = w.needs("sglang/srt/lora/utils.py", "def get_normalized_target_modules", "params_mapping = {",
                    'raise NotImplementedError("get_hidden_dim not implemented for "')
    manager = w.needs("sglang/srt/lora/lora_manager.py", "SGLang does not recognize target_modules=",
                      "doesn't support DoRA adapters", "should_apply_lora")
    lora = w.needs("sglang/srt/lora/lora.py", "self.scaling: float = self.config.lora_alpha / self.config.r")
    # the leaf names get_default_hidden_dim can size (others stop the server unless the model sizes them)
    tree = w.tree(utils)
    fn = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "get_default_hidden_dim")
    sized = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Compare) and isinstance(node.left, ast.Name) and node.left.id == "module_name":
            for c in node.comparators:
                try:
                    v = ast.literal_eval(c)
                except ValueError:
                    continue
                sized |= {v} if isinstance(v, str) else set(v)
    norm = next(n for n in ast.walk(tree)
                if isinstance(n, ast.FunctionDef) and n.name == "get_normalized_target_modules")
    mapping = next(dict(_dict_items(n.value)) for n in ast.walk(norm)
                   if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "params_mapping")
    models: dict[str, dict] = {}
    for name in sorted(w.names):
        if not (name.startswith(SGLANG_MODELS) and name.endswith(".py")):
            continue
        tree = w.tree(name)
        classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
        entry = next((n.value for n in tree.body if isinstance(n, ast.Assign)
                      and any(getattr(t, "id", "") == "EntryClass" for t in n.targets)), None)
        if entry is None:
            continue
        names = [e.id for e in (entry.elts if isinstance(entry, (ast.List, ast.Tuple)) else [entry])
                 if isinstance(e, ast.Name)]
        for cls_name in names:
            cls = classes.get(cls_name)
            if cls is None:
                continue
            lineage = [cls] + [classes[b.id] for b in cls.bases if isinstance(b, ast.Name) and b.id in classes]
            methods = {f.name: f for c in lineage for f in c.body if isinstance(f, ast.FunctionDef)}
            gate = methods.get("should_apply_lora")
            # a gate that matches a compiled class attribute: that pattern, in SGLang's module names
            used = {a.attr for a in ast.walk(gate) if isinstance(a, ast.Attribute)} if gate else set()
            pattern = None
            for c in lineage:
                for node in c.body:
                    if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) \
                            and getattr(node.value.func, "attr", "") == "compile" \
                            and any(getattr(t, "id", "") in used for t in node.targets):
                        pattern = ast.literal_eval(node.value.args[0])
            models[cls_name] = {
                "read_from": name,
                "gate": ast.get_source_segment(w.text(name), gate.body[-1]).strip() if gate else None,
                "gate_pattern": pattern,
                "sizes_own": "get_hidden_dim" in methods,
            }
    return {
        "engine": "sglang", "version": w.version, "source": w.path.name,
        "facts": {
            "dora": fact("refused", manager),
            "target_modules": fact("a list of names, or 'all-linear'/'all'; any other string is refused", manager),
            "normalized": fact(dict(sorted(mapping.items())), utils),
            "sized": fact(sorted(sized), utils),
            "rank_pattern": fact("ignored: one scale, lora_alpha / r, for every module", lora),
            "rslora": fact("ignored: one scale, lora_alpha / r, for every module", lora),
            "gate": fact("a model's should_apply_lora picks the modules that get LoRA; the rest keep the base "
                         "weights", manager),
        },
        "models": models,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheels", nargs="+", type=Path, help="vllm-*.whl and/or sglang-*.whl")
    parser.add_argument("--output", type=Path, default=DATA, help="folder for the JSON tables (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="compare with the committed tables; write nothing")
    args = parser.parse_args(argv)
    status = 0
    for path in args.wheels:
        w = Wheel(path)
        derive = {"vllm": derive_vllm, "sglang": derive_sglang}.get(w.engine)
        if derive is None:
            raise SystemExit(f"{path.name}: not a vllm or sglang wheel")
        table = derive(w)
        target = args.output / f"{w.engine}-{w.version}.json"
        text = json.dumps(table, indent=1, sort_keys=True) + "\n"
        if args.check:
            same = target.exists() and target.read_text() == text
            print(f"{target.name}: {'matches' if same else 'DIFFERS from'} {path.name}")
            status |= 0 if same else 1
        else:
            target.write_text(text)
            print(f"wrote {target}: {len(table['models'])} model classes")
    return status


if __name__ == "__main__":
    sys.exit(main())
