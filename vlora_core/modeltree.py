"""Module trees: the names, types and shapes of a model's modules, from whatever the user has.

A tree comes from a live ``nn.Module``, a ``PretrainedConfig``, or a reference string: a bundled
reference name (``vlora models``), a directory holding ``config.json``, a ``config.json`` path, or a Hub
id (config only, never weights). Configs are built into a model on the meta device: no memory, no weights.
The tree is plain data, so ``resolve`` never touches the model itself.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .boundary import CAPS, read_json, shown
from .diagnostics import Location, os_error_hint
from .errors import ModelLoadError, UsageError, VloraError
from .peft.rules import is_peft_part, unwrapped
from .vocabulary import CONV, EMBEDDING, LINEAR, SUB_CONFIG_COMPONENTS

if TYPE_CHECKING:
    import torch.nn as nn
    from transformers import PretrainedConfig

    from .plugins import Registry

# kinds of module LoRA (PEFT) can wrap, and how its adapter is shaped
# a composite model's sub-configs, whose sub-models are its towers
SUB_CONFIGS = tuple(SUB_CONFIG_COMPONENTS)


@dataclass(frozen=True, slots=True)
class ModuleEntry:
    """One module of a tree. ``kind`` is None for modules LoRA cannot wrap."""

    name: str
    type_name: str
    kind: str | None
    in_features: int = 0
    out_features: int = 0
    kernel: int = 1  # product of the kernel size for convolutions
    own_params: int = 0  # parameters held directly by this module (not its children), tied ones counted once
    bias_params: int = 0
    # a Linear subclass with a forward of its own (Llama-4's MoE router returns a tuple): PEFT's wrapper adds
    # its output to the base output, which such a forward may not allow
    custom_forward: bool = False

    def lora_params(self, r: int, *, dora: bool = False) -> int:
        """Trainable parameters PEFT adds for an adapter of rank ``r`` on this module."""
        if self.kind == CONV:
            n = r * self.in_features * self.kernel + self.out_features * r
        else:
            n = r * (self.in_features + self.out_features)
        if dora and self.kind != EMBEDDING:
            n += self.out_features
        return n


@dataclass(frozen=True)
class ModuleTree:
    """The module names of one model with what vlora needs to know about each."""

    entries: tuple[ModuleEntry, ...]
    model_type: str | None
    source: str  # what it was built from, for reports
    total_params: int
    transformers_version: str
    params: tuple[tuple[str, tuple[int, ...]], ...] = ()  # every parameter's full name and shape (tied: once)
    # parameters that share another's storage (tied input/output embeddings): (name, the name it shares with)
    tied: tuple[tuple[str, str], ...] = ()
    # a live model's weights as stored: "4-bit" / "8-bit" where bitsandbytes quantized some, and their bytes
    quantization: str | None = None
    stored_bytes: int | None = None
    model_config: Any = field(default=None, compare=False, repr=False)  # the model's PretrainedConfig, if any
    # the outermost modules whose own ``.config`` is one of the model config's sub-configs: (module name,
    # "vision_config" | "text_config" | "audio_config" | another sub-config's name); what structural
    # inference reads the towers from
    sub_models: tuple[tuple[str, str], ...] = ()
    # the config as a dict where there is no PretrainedConfig to make it from (a tree read from the cache)
    config_data: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    # the architecture inferred from this tree (an ``infer.Inference``), where the cache kept one
    inference: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {e.name: e for e in self.entries})
        object.__setattr__(self, "_params", dict(self.params))
        object.__setattr__(self, "_index", {e.name: i for i, e in enumerate(self.entries)})

    @property
    def config(self) -> dict[str, Any]:
        """The model's config as a dict (``to_dict()``; empty when it has none), made on first use."""
        cached = getattr(self, "_config_dict", None) or self.config_data
        if cached is None:
            cfg = self.model_config
            cached = cfg.to_dict() if hasattr(cfg, "to_dict") else {}
            object.__setattr__(self, "_config_dict", cached)
        return cached

    def tied_with(self, module: str) -> list[tuple[str, str]]:
        """The (parameter, the parameter it shares storage with) pairs where one side lies in ``module``."""
        inside = (lambda n: n == module or n.startswith(module + ".")) if module else (lambda n: True)
        return [(a, b) for a, b in self.tied if inside(a.rpartition(".")[0]) or inside(b.rpartition(".")[0])]

    def param_shape(self, name: str) -> tuple[int, ...] | None:
        """Shape of the parameter with this full name, if there is one."""
        return self._params.get(name)  # type: ignore[attr-defined]

    def get(self, name: str) -> ModuleEntry | None:
        return self._by_name.get(name)  # type: ignore[attr-defined]

    def __contains__(self, name: str) -> bool:
        return name in self._by_name  # type: ignore[attr-defined]

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    def subtree_params(self, prefix: str, *, bias: bool = False) -> int:
        """Parameters (or, with ``bias=True``, bias parameters) of the module ``prefix`` and everything under it.

        Entries are in ``named_modules()`` order (depth first), so a module's subtree is the run of entries
        that starts at it and whose names continue with ``prefix.``."""
        if not prefix:
            return sum(e.bias_params if bias else e.own_params for e in self.entries)
        start = self._index.get(prefix)  # type: ignore[attr-defined]
        if start is None:
            return 0
        dotted = prefix + "."
        end = start + 1
        entries = self.entries
        while end < len(entries) and entries[end].name.startswith(dotted):
            end += 1
        return sum(e.bias_params if bias else e.own_params for e in entries[start:end])


def _kind(module: nn.Module) -> tuple[str | None, int, int, int]:
    import torch.nn as nn

    if isinstance(module, nn.Linear):  # includes quantized Linear subclasses (bitsandbytes, ...)
        return LINEAR, int(module.in_features), int(module.out_features), 1
    if isinstance(module, nn.Embedding):
        return EMBEDDING, int(module.num_embeddings), int(module.embedding_dim), 1
    if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d):
        return CONV, int(module.in_channels), int(module.out_channels), math.prod(module.kernel_size)
    if type(module).__name__ == "Conv1D" and hasattr(module, "nf") and hasattr(module, "nx"):
        return LINEAR, int(module.nx), int(module.nf), 1  # HF GPT-2 style Conv1D: weight is (in, out)
    return None, 0, 0, 1


def _weight_shape(param: Any) -> tuple[int, ...]:
    """The shape of the weight a parameter holds: a bitsandbytes 4-bit parameter stores its weight packed
    (two values per byte, as a (n/2, 1) tensor) and keeps the real shape in its quant_state."""
    state = getattr(param, "quant_state", None)
    shape = getattr(state, "shape", None)
    return tuple(shape) if shape is not None else tuple(param.shape)


def _quantization(param: Any) -> str | None:
    name = type(param).__name__
    return "4-bit" if name == "Params4bit" else "8-bit" if name == "Int8Params" else None


def _own_forward(module: nn.Module) -> bool:
    """Whether a Linear subclass replaces ``nn.Linear.forward`` (quantized Linears, which PEFT knows, aside)."""
    import torch.nn as nn

    cls = type(module)
    if not isinstance(module, nn.Linear) or cls.forward is nn.Linear.forward:
        return False
    return not cls.__module__.startswith(("bitsandbytes", "torch.", "peft", "torchao", "awq", "auto_gptq", "optimum"))


def _adapted_error(model: nn.Module, adapted: list[str]) -> ModelLoadError:
    """A model PEFT has already wrapped (a PeftModel, or one ``apply``/``get_peft_model`` changed in place) has
    its names moved and its Linears replaced: planning it again would target PEFT's own layers."""
    what = (f"PEFT adapters on {adapted[0]}" + (f" and {len(adapted) - 1:,} other modules" if len(adapted) > 1 else "")
            if adapted else f"a PEFT {type(model).__name__}")
    return ModelLoadError(
        f"this model already carries {what}: vlora plans adapters for a base model",
        hint="apply to a fresh model, or to the PeftModel with another adapter_name to add a second adapter; or "
        "unwrap this one first: model = peft_model.unload() drops the adapters, merge_and_unload() merges them "
        "into the weights",
    )


def _is_peft_wrapper(module: nn.Module) -> bool:
    return type(module).__module__.startswith("peft.") and (hasattr(module, "base_layer")
                                                            or hasattr(module, "original_module"))


def _base_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """``named_modules()`` of a model PEFT has wrapped, as the base model had them: each wrapper's original
    (``base_layer``, ``original_module``) under the wrapper's name, PEFT's own modules left out."""
    for name, module in model.named_modules():
        if _is_peft_wrapper(module) or is_peft_part(name):
            continue
        yield unwrapped(name), module


def tree_from_module(model: nn.Module, *, source: str | None = None, through_adapters: bool = False) -> ModuleTree:
    """Read a live model (or one built on the meta device). A model PEFT has wrapped is refused, unless
    ``through_adapters``: then the tree is its base model's (to plan another adapter on it)."""
    import transformers

    seen: dict[int, str] = {}  # id of each parameter -> its first full name
    entries: list[ModuleEntry] = []
    params: list[tuple[str, tuple[int, ...]]] = []
    tied: list[tuple[str, str]] = []
    total = stored = 0
    live = False  # a parameter with real storage (not the meta device)
    quantized: set[str] = set()
    config = getattr(model, "config", None)
    keys = [*SUB_CONFIGS, *(k for k in getattr(config, "sub_configs", None) or {} if k not in SUB_CONFIGS)]
    sub_configs = {id(c): key for key in keys
                   if (c := getattr(config, key, None)) is not None and hasattr(c, "to_dict")}
    for key in keys[len(SUB_CONFIGS):]:  # a composite encoder's own towers (T5Gemma-2: encoder.vision_config, ...)
        outer = getattr(config, key, None)
        for inner in getattr(outer, "sub_configs", None) or {}:
            if (c := getattr(outer, inner, None)) is not None and hasattr(c, "to_dict") and id(c) not in sub_configs:
                sub_configs[id(c)] = f"{key}.{inner}"
    sub_models: list[tuple[str, str]] = []
    adapted: list[str] = []  # modules PEFT has wrapped already
    for name, module in (_base_modules(model) if through_adapters else model.named_modules()):
        if type(module).__module__.startswith("peft.tuners") and hasattr(module, "base_layer"):
            adapted.append(name)
        key = sub_configs.get(id(getattr(module, "config", None)))
        if key is not None and name and not any(name.startswith(f"{outer}.") and not key.startswith(f"{k}.")
                                                for outer, k in sub_models):
            sub_models.append((name, key))  # the outermost module of each tower only (and of a composite's towers)
        own = bias = 0
        for pname, param in module._parameters.items():  # own parameters, as named_parameters(recurse=False)
            if param is None:
                continue
            full = f"{name}.{pname}" if name else pname
            if id(param) in seen:
                tied.append((full, seen[id(param)]))
                continue
            seen[id(param)] = full
            shape = _weight_shape(param)
            n = math.prod(shape)
            own += n
            if not param.is_meta:
                live = True
                stored += param.numel() * param.element_size()
            if (q := _quantization(param)) is not None:
                quantized.add(q)
            params.append((full, shape))
            if "bias" in full:  # what PEFT's bias="all" makes trainable
                bias += n
        total += own
        kind, fin, fout, kernel = _kind(module)
        custom = kind == LINEAR and _own_forward(module)
        entries.append(ModuleEntry(name, type(module).__name__, kind, fin, fout, kernel, own, bias, custom))
    if not through_adapters and (adapted or type(model).__module__.startswith("peft.")):
        raise _adapted_error(model, adapted)
    return ModuleTree(
        entries=tuple(entries),
        model_type=getattr(config, "model_type", None),
        source=source or type(model).__name__,
        total_params=total,
        transformers_version=transformers.__version__,
        params=tuple(params),
        tied=tuple(tied),
        quantization=" and ".join(sorted(quantized)) or None,
        stored_bytes=stored if live else None,
        model_config=config,
        sub_models=tuple(sub_models),
    )


@contextmanager
def quiet_transformers():
    logger = logging.getLogger("transformers")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def model_class(config: PretrainedConfig) -> Any:
    """The transformers class that builds a model of ``config`` (its ``architectures``, else the Auto classes)."""
    import transformers

    for arch in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, arch, None)
        if cls is not None:
            return cls
    for auto in ("AutoModelForImageTextToText", "AutoModelForVision2Seq", "AutoModelForCausalLM"):
        cls = getattr(transformers, auto, None)
        if cls is not None and type(config) in cls._model_mapping:
            return cls
    raise ModelLoadError(
        f"transformers {transformers.__version__} has no model class for model_type "
        f"{getattr(config, 'model_type', '?')!r}",
        hint="upgrade transformers, or pass a live model instead of a config",
    )


def build_meta_model(config: PretrainedConfig) -> nn.Module:
    """Instantiate a model from its config on the meta device (no memory, no weights)."""
    import torch

    cls = model_class(config)
    with quiet_transformers(), torch.device("meta"):
        if hasattr(cls, "_model_mapping"):  # an Auto class
            return cls.from_config(config)
        return cls._from_config(config)


def tree_from_config(config: PretrainedConfig, *, source: str | None = None) -> ModuleTree:
    try:
        model = build_meta_model(config)
    except (ModelLoadError, ImportError):
        raise
    except Exception as exc:  # the model class refuses the config's values (a layer count of the wrong type, ...)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ModelLoadError(f"the {getattr(config, 'model_type', '?')} model does not build from this config: "
                             f"{type(exc).__name__}: {reason}"[:300], where=source,
                             hint="check the config's fields") from None
    return tree_from_module(model, source=source or f"{type(config).__name__} (meta device)")


def config_from_dict(data: dict[str, Any], *, where: str) -> PretrainedConfig:
    from transformers import AutoConfig

    if not isinstance(data, dict):
        raise ModelLoadError(f"a config is a JSON object, not a {type(data).__name__}", where=where,
                             hint="is this a transformers config.json?")
    model_type = data.get("model_type")
    if not model_type:
        raise ModelLoadError("config has no model_type", where=where, hint="is this a transformers config.json?")
    if not isinstance(model_type, str):
        raise ModelLoadError(f"config's model_type is a {type(model_type).__name__}, not a string", where=where,
                             hint="is this a transformers config.json?")
    try:
        with quiet_transformers():
            return AutoConfig.for_model(**data)
    except ValueError:  # transformers' own message lists its ~900 model types: say it short
        import transformers

        remote = isinstance(data.get("auto_map"), dict)
        raise ModelLoadError(
            f"transformers {transformers.__version__} does not know model_type {shown(model_type)}"
            + (" (the config's auto_map names remote code, which vlora does not run)" if remote else ""),
            where=where,
            hint=("vlora plans models whose code ships with transformers; a remote-code model is not one"
                  if remote else "check the model_type; if the model is newer than this transformers, upgrade it "
                  "(`pip install -U transformers`)"),
        ) from None
    except Exception as exc:  # a field of the wrong type or value, refused by the config class itself
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ModelLoadError(f"transformers cannot make a {model_type} config from it: {type(exc).__name__}: "
                             f"{reason}"[:300], where=where, hint="check the config's fields") from None


MAX_CONFIG_BYTES = CAPS["config.json"]  # the largest published config.json files are a few MiB (long label maps)


def config_from_file(path: Path) -> PretrainedConfig:
    try:
        data = read_json(path, "config.json", ModelLoadError, cap=MAX_CONFIG_BYTES)
    except ModelLoadError as exc:
        raise ModelLoadError(f"cannot read config: {exc.message}", where=exc.location,
                             hint=exc.hint if exc.hint != "fix the config file" else "is this the model's config.json?"
                             ) from None
    return config_from_dict(data, where=str(path))


def config_from_ref(ref: str, registry: Registry) -> tuple[PretrainedConfig, str]:
    """Turn a reference string into a config. Returns the config and a label for reports."""
    found = registry.find_reference(ref)
    if found is not None:
        reference = found[2]
        return config_from_file(reference.config_path), reference.name
    path = Path(ref)
    try:
        return _config_from_path(ref, path, registry)
    except OSError as exc:  # a name the file system refuses (a component over 255 bytes), a folder it hides
        raise ModelLoadError(f"cannot read the model path: {exc.strerror or exc}", where=Location(file=ref),
                             hint=os_error_hint(exc)) from None


def config_location(ref: str, registry: Registry) -> tuple[Path, str] | None:
    """Where the config.json of a reference string lies on disk, and the label ``config_from_ref`` gives it,
    found without importing transformers (a Hub id: in the Hub's local cache). None where it cannot be told
    that way (a path that does not exist, a Hub id not cached): ``config_from_ref`` then says why."""
    try:
        found = registry.find_reference(ref)
        if found is not None:
            return found[2].config_path, found[2].name
        path = Path(ref)
        if path.is_dir():
            return ((path / "config.json"), str(path)) if (path / "config.json").is_file() else None
        if path.is_file():
            return path, str(path)
        if path.parent != Path(".") and path.parent.is_dir():
            return None
    except (OSError, VloraError):
        return None
    if ref.count("/") == 1 and not ref.startswith((".", "/")) and not ref.endswith(".json"):
        from huggingface_hub import try_to_load_from_cache

        try:
            cached = try_to_load_from_cache(ref, "config.json")
        except Exception:  # a malformed repository id: config_from_ref says so
            return None
        return (Path(cached), ref) if isinstance(cached, str) else None
    return None


def _config_from_path(ref: str, path: Path, registry: Registry) -> tuple[PretrainedConfig, str]:
    if path.is_dir():
        if not ((path / "config.json").exists() or (path / "config.json").is_symlink()):
            raise ModelLoadError("directory holds no config.json", where=str(path))
        return config_from_file(path / "config.json"), str(path)
    if path.is_file() or path.exists() or (path / "config.json").exists():  # a pipe or a device: refused there
        return config_from_file(path / "config.json" if path.is_dir() else path), str(path)
    close = registry.close_references(ref)
    bundled = (f"did you mean {' or '.join(close)}? " if close else "") + "use a bundled reference (`vlora models` " \
        "lists them)"
    if path.parent != Path(".") and path.parent.is_dir():  # a folder here: a mistyped path, not a Hub id
        import difflib

        close = difflib.get_close_matches(path.name, sorted(p.name for p in path.parent.iterdir())[:10_000], n=3)
        raise ModelLoadError(
            f"no file or folder {path.name!r} in {str(path.parent)!r}",
            where=ref,
            hint=(f"did you mean {' or '.join(repr(str(path.parent / c)) for c in close)}? " if close else "")
            + f"({path.parent}/ is a local folder, so {ref!r} is read as a path, not a Hub id)",
        )
    if ref.count("/") == 1 and not ref.startswith((".", "/")) and not ref.endswith(".json"):
        return _config_from_hub(ref, bundled), ref
    raise ModelLoadError(
        f"model {ref!r} is not a bundled reference, an existing path, or a Hub id (owner/name)",
        hint=f"{bundled}, a local directory / config.json, or a Hub id (owner/name)",
    )


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hub answers a TCP connection within ``timeout`` seconds, the name lookup included (a socket's
    own timeout does not bound the lookup, which offline can take many seconds): the probe runs in a thread that
    is left behind when it does not answer in time."""
    import socket
    import threading
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    answer: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((url.hostname or "", url.port or 443), timeout=timeout):
                answer.append(True)
        except OSError:
            answer.append(False)

    thread = threading.Thread(target=probe, name="vlora-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answer and answer[0])


def _config_from_hub(ref: str, bundled: str) -> PretrainedConfig:
    """A Hub config: from the local cache if there, else fetched (config.json only, never weights)."""
    from transformers import AutoConfig

    hint = f"{bundled}, or a local directory / config.json"
    with quiet_transformers():
        try:
            return AutoConfig.from_pretrained(ref, local_files_only=True)
        except Exception:
            pass
        if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
            raise ModelLoadError(
                f"the config of Hub model {ref!r} is not in the local cache, and HF_HUB_OFFLINE is set",
                hint=hint,
            )
        if not _hub_reachable():
            raise ModelLoadError(
                f"the config of Hub model {ref!r} is not in the local cache and the Hub cannot be reached",
                hint=hint,
            )
        hub_logger = logging.getLogger("huggingface_hub")
        level = hub_logger.level
        hub_logger.setLevel(logging.ERROR)
        try:
            return _within(hub_timeout(), lambda: AutoConfig.from_pretrained(ref), ref, hint)
        except ModelLoadError:
            raise
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(f"cannot get the config of Hub model {ref!r}: {reason}", hint=hint) from None
        finally:
            hub_logger.setLevel(level)


HUB_TIMEOUT = 30.0  # seconds a Hub config fetch may take; VLORA_HUB_TIMEOUT overrides it


def hub_timeout() -> float:
    raw = os.environ.get("VLORA_HUB_TIMEOUT", "")
    try:
        value = float(raw) if raw else HUB_TIMEOUT
    except ValueError:
        raise UsageError(f"VLORA_HUB_TIMEOUT={raw!r} is not a number of seconds", where="environment",
                         hint="e.g. VLORA_HUB_TIMEOUT=60") from None
    if not value > 0:
        raise UsageError(f"VLORA_HUB_TIMEOUT={raw!r} must be more than 0", where="environment")
    return value


def _within(seconds: float, fetch: Any, ref: str, hint: str) -> Any:
    """``fetch()`` with a hard deadline: an endpoint that accepts the connection and never answers would
    otherwise hang the command (the Hub client's own timeouts do not cover every stage)."""
    import threading

    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fetch()
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=run, name="vlora-hub-fetch", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():  # the daemon thread is abandoned; it cannot keep the process alive
        raise ModelLoadError(
            f"the Hub did not answer within {seconds:g} s for the config of {ref!r}",
            hint=f"{hint}; or allow longer with VLORA_HUB_TIMEOUT=<seconds>",
        )
    if "error" in box:
        raise box["error"]
    return box["value"]


def module_tree(model: Any, registry: Registry, *, label: str | None = None) -> ModuleTree:
    """A module tree from a live model, a config, or a reference string/path (``label`` names it in
    reports and locks instead of the path it was read from)."""
    if isinstance(model, ModuleTree):
        return model
    import torch.nn as nn
    from transformers import PretrainedConfig

    if isinstance(model, nn.Module):
        return tree_from_module(model)
    if isinstance(model, PretrainedConfig):
        return tree_from_config(model)
    if isinstance(model, str | Path):
        config, found = config_from_ref(str(model), registry)
        return tree_from_config(config, source=label or found)
    raise UsageError(
        f"cannot read a model from a {type(model).__name__}",
        hint="pass an nn.Module, a PretrainedConfig, a bundled reference name, a config path, or a Hub id",
    )
