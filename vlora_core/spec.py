"""The user's intent: ``VisionLoRASpec``, task presets, per-component overrides, and a spec from data or a file
(the file format itself is ``documents``; other tools' keys, for messages, ``foreign_keys``).

Nothing here knows about any architecture or imports torch: a spec can be checked without a model.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from .boundary import LOADER, location_of, read_document, shown
from .diagnostics import Diagnostic, Location, see_docs
from .errors import SpecFileError, SpecValidationError, UsageError
from .foreign_keys import FOREIGN_KEYS, RANK_KEYS
from .vocabulary import KNOWN_COMPONENTS, ROLE_TOGGLES

# The "Training Strategy Guidelines" of the source document: which towers each task trains.
# A preset only fills toggles the user did not set; explicit fields always win.
TASK_PRESETS: dict[str, dict[str, bool]] = {
    "ocr": {"finetune_vision_layers": True, "finetune_language_layers": True},
    "captioning": {"finetune_vision_layers": True, "finetune_language_layers": True},
    "vqa": {"finetune_vision_layers": False, "finetune_language_layers": True},
    "domain_adaptation": {"finetune_vision_layers": True, "finetune_language_layers": False},
}

Task = Literal["ocr", "captioning", "vqa", "domain_adaptation"]
_COMPONENT_TOGGLES = {
    "vision": "finetune_vision_layers",
    "audio": "finetune_audio_layers",
    "projector": "finetune_projector",
    "language": "finetune_language_layers",
}
ProjectorMode = Literal["frozen", "lora", "full"]

_INIT_CHOICES = ("gaussian", "olora", "pissa", "orthogonal")
_INIT_NEEDS_EXTRA = ("eva", "corda", "loftq")


class LayerRange(BaseModel):
    """``{last: N}`` or ``{first: N}``: the last or first N layers of a component."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    first: int | None = Field(default=None, ge=1, description="the first N layers (0 .. N-1)")
    last: int | None = Field(default=None, ge=1, description="the last N layers")

    def indices(self, count: int) -> list[int]:
        if self.first is not None:
            return list(range(min(self.first, count)))
        assert self.last is not None
        return list(range(max(count - self.last, 0), count))

    def describe(self) -> str:
        return f"first {self.first}" if self.first is not None else f"last {self.last}"


LayerSelection = list[int] | LayerRange | dict[str, list[int] | LayerRange]

_LAYERS_FORMS = "a list of layer indices like [0, 1, 2], {last: N}, {first: N}, or one of those per stack"


def _check_one(value: Any, what: str) -> list[int] | LayerRange:
    if isinstance(value, LayerRange):
        return value
    if isinstance(value, Mapping):
        keys = set(value)
        if len(keys) != 1 or not keys <= {"first", "last"}:
            raise ValueError(f"{what}expected [0, 1, 2], {{last: N}} or {{first: N}}; got {dict(value)}")
        (key,) = keys
        n = value[key]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"{what}{key}: N must be a whole number >= 1, got {n!r}")
        return LayerRange(**{key: n})
    if isinstance(value, list | tuple):
        bad = [v for v in value if isinstance(v, bool) or not isinstance(v, int) or v < 0]
        if bad:
            raise ValueError(
                f"{what}layer indices must be whole numbers >= 0 (use {{last: N}} for the last N layers); "
                f"got {bad[0]!r}"
            )
        if not value:
            raise ValueError(f"{what}an empty list selects no layer; leave `layers` out to train every layer")
        dupes = sorted(v for v, n in Counter(value).items() if n > 1)  # linear: a list may be long
        if dupes:
            raise ValueError(f"{what}layer {dupes[0]} is listed twice")
        return sorted(value)
    raise ValueError(f"{what}expected {_LAYERS_FORMS}; got {value!r}")


def _check_layers(value: Any) -> Any:
    """``[0, 1, 2]``, ``{last: N}``, ``{first: N}``, or a mapping of stack name to one of those."""
    if value is None:
        return None
    if isinstance(value, Mapping) and value and not set(value) & {"first", "last"}:
        if not all(isinstance(k, str) and k.strip() for k in value):
            raise ValueError(f"expected {_LAYERS_FORMS}, stacks named by non-empty strings; got {dict(value)}"[:300])
        return {stack: _check_one(sel, f"{stack}: ") for stack, sel in value.items()}
    return _check_one(value, "")


class ComponentOverride(BaseModel):
    """Per-component settings; anything left out follows the top-level value."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    r: int | None = Field(default=None, ge=1, le=4096, description="LoRA rank for this component")
    lora_alpha: float | None = Field(
        default=None, gt=0, allow_inf_nan=False, description="LoRA alpha for this component"
    )
    layers: LayerSelection | None = Field(
        default=None,
        description="layers to adapt: a list of indices ([0, 1, 2]), {last: N} or {first: N}; for a component "
        "with several stacks of layers, one of those per stack name; default: all",
    )

    _check = field_validator("layers", mode="before")(lambda cls, v: _check_layers(v))


class ProjectorOverride(BaseModel):
    """Projector settings (it has no layers)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    r: int | None = Field(default=None, ge=1, le=4096, description="LoRA rank for the projector")
    lora_alpha: float | None = Field(
        default=None, gt=0, allow_inf_nan=False, description="LoRA alpha for the projector"
    )


_SCALE = dict(default=None, gt=0, allow_inf_nan=False)


class LearningRateScales(BaseModel):
    """Learning rate multipliers for ``param_groups``: each component's parameters train at ``lr`` times its
    scale (1 where unset); the cross-attention role's scale multiplies its component's."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    vision: float | None = Field(**_SCALE, description="vision encoder (ms-swift's vit_lr / lr)")
    projector: float | None = Field(**_SCALE, description="projector (ms-swift's aligner_lr / lr)")
    language: float | None = Field(**_SCALE, description="language model")
    audio: float | None = Field(**_SCALE, description="audio encoder, on models with one")
    cross_attention: float | None = Field(**_SCALE, description="cross-attention layers, on models with them")

    def scale(self, component: str, role: str | None = None) -> float:
        """The multiplier of a parameter of ``component`` (and ``role``)."""
        value = getattr(self, component) if component in KNOWN_COMPONENTS else None
        out = 1.0 if value is None else value
        if role == "cross_attention" and self.cross_attention is not None:
            out *= self.cross_attention
        return out


MAX_PATTERN_LENGTH = 2000


def _compile_user_pattern(pattern: str) -> str:
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise ValueError(f"a pattern of {len(pattern):,} characters is not a module-name pattern (at most "
                         f"{MAX_PATTERN_LENGTH:,})")
    try:
        re.compile(pattern)
    except (re.error, OverflowError, RecursionError) as exc:
        raise ValueError(f"invalid regular expression {pattern[:80]!r}: {exc}") from None
    return pattern


UserPattern = Annotated[str, AfterValidator(_compile_user_pattern)]


class VisionLoRASpec(BaseModel):
    """What to train in a vision-language model, independent of any architecture.

    The four ``finetune_*`` toggles keep the names and defaults users know from Unsloth.
    """

    # strict: `r: true`, `r: "16"` and `finetune_vision_layers: "off"` are errors, not silently coerced
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, title="vlora spec")

    def __init__(self, /, **data: Any) -> None:
        """``VisionLoRASpec(r=16, ...)``: invalid fields raise ``SpecValidationError`` (one diagnostic per field,
        unknown keys with "did you mean"), as spec files and ``resolve({...})`` do, not pydantic's raw error."""
        try:
            super().__init__(**data)
        except ValidationError as exc:
            if _FROM_DATA.get():  # spec_from_data (pydantic's model_validate calls __init__) adds file and lines
                raise
            raise SpecValidationError(_problems(exc, None, {}), hint=_SCHEMA_HINT) from None

    task: Task | None = Field(
        default=None,
        description="preset for the tower toggles: ocr, captioning (both towers), vqa (language only), "
        "domain_adaptation (vision only). Explicit toggles win over the preset.",
    )
    finetune_vision_layers: bool = Field(default=True, description="adapt the vision encoder's layers")
    finetune_language_layers: bool = Field(default=True, description="adapt the language model's layers")
    finetune_audio_layers: bool | None = Field(
        default=None,
        description="adapt the audio encoder's layers, on models with an audio tower (Gemma-4); unset: true there. "
        "Set on a model without audio it is an error",
    )
    finetune_attention_modules: bool = Field(default=True, description="adapt attention projections")
    finetune_mlp_modules: bool = Field(default=True, description="adapt MLP projections")
    finetune_projector: ProjectorMode = Field(
        default="frozen", description="the vision→language projector: frozen, lora (adapters), full (train all of it)"
    )
    finetune_cross_attention: bool | None = Field(
        default=None,
        description="for architectures with cross-attention layers; unset follows finetune_attention_modules",
    )

    r: int = Field(default=16, ge=1, le=4096, description="LoRA rank")
    lora_alpha: float = Field(default=16, gt=0, allow_inf_nan=False, description="LoRA alpha (scaling = alpha / r)")
    lora_dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="dropout on the LoRA input, in [0, 1)")
    bias: Literal["none", "all", "lora_only"] = Field(default="none", description="which biases train (PEFT)")
    use_rslora: bool = Field(default=False, description="rank-stabilised scaling alpha / sqrt(r)")
    use_dora: bool = Field(default=False, description="weight-decomposed LoRA (adds a magnitude vector)")
    init_lora_weights: bool | str = Field(
        default=True,
        description="true (B=0), false (random, for tests), gaussian, olora, pissa, pissa_niter_<N>, orthogonal",
    )

    vision: ComponentOverride = Field(default_factory=ComponentOverride, description="vision encoder overrides")
    audio: ComponentOverride = Field(default_factory=ComponentOverride, description="audio encoder overrides")
    projector: ProjectorOverride = Field(default_factory=ProjectorOverride, description="projector overrides")
    language: ComponentOverride = Field(default_factory=ComponentOverride, description="language model overrides")

    include_unused_layers: bool = Field(
        default=False,
        description="also adapt layers whose output the model never uses (e.g. LLaVA's vision layers after "
        "vision_feature_layer); they get no gradient, so they are left out by default, with a warning",
    )

    target_modules_extra: list[UserPattern] = Field(
        default_factory=list,
        description="extra targets: regular expressions matched against full dotted module names (fullmatch)",
    )
    exclude_modules: list[UserPattern] = Field(
        default_factory=list,
        description="drop planned targets whose full dotted name matches one of these regular expressions",
    )
    modules_to_save: list[UserPattern] = Field(
        default_factory=list,
        description="modules trained in full besides the projector (lm_head, embed_tokens when you add tokens): "
        "full dotted names or full-name regular expressions (fullmatch); a plain name without dots (lm_head) "
        "also matches the modules it ends; each must match, and none may be or hold a LoRA target",
    )

    lr_scale: LearningRateScales = Field(
        default_factory=LearningRateScales,
        description="learning rate multipliers per component (and for cross-attention), used by param_groups",
    )
    loraplus_lr_ratio: float | None = Field(
        default=None, gt=0, allow_inf_nan=False,
        description="LoRA+: lora_B trains at this multiple of its group's learning rate (the paper suggests 16); "
        "used by param_groups",
    )

    architecture: str | None = Field(
        default=None, description="architecture name or model_type; default: detected from the model config"
    )
    model: str | None = Field(
        default=None,
        description="default model reference: bundled name (vlora models), directory, config.json or Hub id",
    )

    _source: str | None = PrivateAttr(default=None)
    _lines: dict[tuple[str | int, ...], int] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _apply_task_preset(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and isinstance(data.get("task"), str) and data["task"] in TASK_PRESETS:
            merged = dict(TASK_PRESETS[data["task"]])
            merged.update(data)
            return merged
        return data

    @field_validator("init_lora_weights", mode="before")
    @classmethod
    def _check_init(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            if value in _INIT_CHOICES or re.fullmatch(r"pissa_niter_[1-9]\d*", value):
                return value
            if value in _INIT_NEEDS_EXTRA:
                raise ValueError(
                    f"{value!r} needs an extra PEFT config vlora does not pass; build the LoraConfig with "
                    f"plan.to_lora_config() and set it there"
                )
        raise ValueError(
            f"expected true, false, or one of {', '.join(_INIT_CHOICES)}, pissa_niter_<N>; got {value!r}"
        )

    # --- what the spec switches on: the one place each toggle's meaning is decided ---------------------

    def component_toggle(self, component: str) -> str:
        """The field that switches ``component`` on (``finetune_vision_layers``, ``finetune_projector``, ...)."""
        return _COMPONENT_TOGGLES[component]

    def role_toggle(self, role: str) -> str:
        """The field that switches ``role`` on (``finetune_attention_modules``, ``finetune_projector``, ...)."""
        return ROLE_TOGGLES.get(role, role)

    def component_enabled(self, component: str) -> bool:
        """Whether the spec trains anything in ``component`` (the projector: in ``lora`` or ``full`` mode)."""
        if component == "projector":
            return self.finetune_projector != "frozen"
        if component == "audio":
            return self.finetune_audio_layers is not False
        return component in _COMPONENT_TOGGLES and bool(getattr(self, _COMPONENT_TOGGLES[component]))

    def role_enabled(self, role: str) -> bool:
        """Whether modules of ``role`` get adapters in an enabled component."""
        if role == "attention":
            return self.finetune_attention_modules
        if role == "mlp":
            return self.finetune_mlp_modules
        if role == "cross_attention":
            if self.finetune_cross_attention is not None:
                return self.finetune_cross_attention
            return self.finetune_attention_modules
        if role == "projection":
            return self.finetune_projector == "lora"
        return False

    def override(self, component: str) -> ComponentOverride | ProjectorOverride | None:
        """The per-component settings block (``vision:``, ``projector:``, ``language:``), if the spec has one."""
        return getattr(self, component) if component in KNOWN_COMPONENTS else None

    def rank_for(self, component: str) -> int:
        """LoRA rank of ``component``'s targets: its override, else the top-level ``r``."""
        override = self.override(component)
        return override.r if override is not None and override.r is not None else self.r

    def alpha_for(self, component: str) -> float:
        """LoRA alpha of ``component``'s targets: its override, else the top-level ``lora_alpha``."""
        override = self.override(component)
        return override.lora_alpha if override is not None and override.lora_alpha is not None else self.lora_alpha

    def with_task(self, task: str) -> VisionLoRASpec:
        """This spec with the tower toggles of preset ``task`` (those the spec wrote itself are replaced)."""
        written = self.model_dump(mode="json", exclude_unset=True)
        for field in TASK_PRESETS[task]:
            written.pop(field, None)
        return spec_from_data({**written, "task": task})

    # --- provenance ---------------------------------------------------------------------------------

    @property
    def source(self) -> str | None:
        """The file this spec was loaded from, if any."""
        return self._source

    def model_ref(self) -> str | None:
        """``model:`` as a reference to load: a relative path is read against the spec file's folder (where the
        spec came from a file), so a spec names the same model from whatever folder it is used."""
        ref = self.model
        if ref is None or self._source is None or Path(ref).is_absolute():
            return ref
        beside = Path(self._source).parent / ref
        if beside.exists() or ref.startswith(("./", "../")):
            return str(beside)
        return ref  # a bundled reference name or a Hub id

    @property
    def origin(self) -> Location:
        """The spec as a whole: its file, or ``spec`` for one made in memory."""
        return Location(file=self._source) if self._source else Location(subject="spec")

    def location(self, *path: str | int) -> Location:
        """Where a field is: file and line when the spec came from a file, and the dotted field path."""
        return location_of(self._source, self._lines, path)

    def locate(self, *path: str | int) -> str:
        """``file:line: field`` of a field when the spec came from a file (else the dotted field path)."""
        return self.location(*path).render()

    def normalized(self) -> dict[str, Any]:
        """Every field with its effective value (presets expanded), JSON-safe and deterministic."""
        return self.model_dump(mode="json")


def _clip(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters, saying how long it was (values are echoed in messages)."""
    return text if len(text) <= limit else f"{text[:limit - 40]}... ({len(text):,} characters)"


def _problems(
    exc: ValidationError, source: str | None, lines: Mapping[tuple[str | int, ...], int]
) -> list[Diagnostic]:
    known = sorted(VisionLoRASpec.model_fields)
    problems: list[Diagnostic] = []
    for err in exc.errors():
        raw = err["loc"]
        tags = raw[:-1] if err["type"] == "extra_forbidden" else raw  # the unknown key itself is kept as written
        loc = tuple(part for part in tags if not (isinstance(part, str) and ("[" in part or part in (
            "LayerRange", "list")))) + ((raw[-1],) if err["type"] == "extra_forbidden" and raw else ())
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            key = str(loc[-1])
            parent = loc[:-1]
            choices = known
            if parent and parent[0] in ("vision", "audio", "language"):
                choices = sorted(ComponentOverride.model_fields)
            elif parent and parent[0] == "projector":
                choices = sorted(ProjectorOverride.model_fields)
            close = difflib.get_close_matches(key, choices, n=1)
            foreign = FOREIGN_KEYS.get(key) if not parent or key in RANK_KEYS else None
            if foreign:
                message = f"unknown key {key!r}, another tool's; in vlora: {foreign}"
            else:
                message = f"unknown key {key!r}" + (
                    f" (did you mean {close[0]!r}?)" if close else f"; known keys here: {', '.join(choices)}"
                )
        elif "input" in err and err["type"] not in ("missing", "value_error") and not isinstance(
            err["input"], dict | list
        ):
            message += f" (got {err['input']!r})"
        code = "unknown-key" if err["type"] == "extra_forbidden" else "invalid-field"
        location = location_of(source, lines, loc)
        if location.field and len(location.field) > 120:  # a key of thousands of characters is not echoed whole
            location = Location(location.file, location.line, _clip(location.field, 120), location.subject)
        problems.append(Diagnostic(code, _clip(message, 400), location))
    if source is not None:  # in file order
        problems.sort(key=lambda d: d.location.line or 0 if d.location else 0)
    return problems


_FROM_DATA: ContextVar[bool] = ContextVar("vlora_spec_from_data", default=False)
_SCHEMA_HINT = "`vlora schema` lists every field; " + see_docs("spec")


def spec_from_data(data: Any, *, source: str | None = None, lines: Mapping | None = None) -> VisionLoRASpec:
    """Validate already-parsed data (a dict) into a spec; errors name the field (and ``file:line``)."""
    lines = dict(lines or {})
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise SpecFileError(
            f"a spec must be a mapping of fields, got {type(data).__name__}",
            where=Location(file=source) if source else "spec",
            hint="see `vlora schema` for the fields",
        )
    odd = [k for k in data if not isinstance(k, str)]
    if odd:  # YAML allows keys that are not strings (`? [a, b]`, `1: x`, a lone `?`): a spec's keys are names
        raise SpecValidationError(
            [Diagnostic("invalid-field", f"key {_clip(repr(k), 60)} is not a field name (a spec's keys are names "
                        "like r or finetune_vision_layers)", location_of(source, lines, ())) for k in odd[:5]],
            hint=_SCHEMA_HINT)
    token = _FROM_DATA.set(True)
    try:
        spec = VisionLoRASpec.model_validate(dict(data))
    except RecursionError:
        raise SpecFileError("the spec nests too deeply, or contains itself", where=Location(file=source) if source
                            else "spec", hint="a spec is a mapping with a few flat blocks") from None
    except ValidationError as exc:
        raise SpecValidationError(_problems(exc, source, lines), hint=_SCHEMA_HINT) from None
    finally:
        _FROM_DATA.reset(token)
    spec._source = source
    spec._lines = lines
    return spec


def apply_sets(data: Any, sets: Sequence[str]) -> Any:
    """``--set key=value`` overrides on parsed spec data: a dotted key for nested fields (``language.r=8``), the
    value read as YAML (``r=16`` is the integer 16, ``layers=[0, 1]`` a list, ``task=vqa`` a string)."""
    import copy

    out = copy.deepcopy(data) if isinstance(data, Mapping) else {}
    for item in sets:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise UsageError(f"--set {item!r}: expected KEY=VALUE", hint="e.g. --set r=16 or --set language.r=8")
        try:
            value = yaml.load(raw, Loader=LOADER) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise UsageError(f"--set {item!r}: the value is not valid YAML ({str(exc).splitlines()[0]})",
                             hint="quote it for the shell, e.g. --set 'language.layers=[0, 1]'") from None
        except (ValueError, RecursionError) as exc:  # an integer of thousands of digits, nesting without end
            raise UsageError(f"--set {shown(item, 120)}: the value cannot be read ({str(exc)[:120]})",
                             hint="write the value as a spec expects it (see `vlora schema`)") from None
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise UsageError(f"--set {item!r}: {part} is {child!r}, not a group of fields")
            node = child
        node[parts[-1]] = value
    return out


def load_spec(path: str | Path, *, sets: Sequence[str] = ()) -> VisionLoRASpec:
    """Load and validate a spec from a YAML, JSON or TOML file (with ``--set`` overrides applied)."""
    path = Path(path)
    data, lines = read_document(path)
    if sets:
        data = apply_sets(data, sets)
        changed = {tuple(item.partition("=")[0].strip().split(".")): item for item in sets}
        # a field set on the command line has no line in the file (nor does the document start for it): its
        # problems name the option that set it
        lines = {k: v for k, v in lines.items() if k and not any(k[:len(c)] == c for c in changed)}
        lines.update({c: f"--set {item}" for c, item in changed.items()})
    return spec_from_data(data, source=str(path), lines=lines)


def spec_json_schema() -> dict[str, Any]:
    """JSON Schema of the spec file format (for editors and CI)."""
    schema = VisionLoRASpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
