"""What vlora makes of every model type in transformers' own image-text-to-text registry (``vlora coverage``;
docs/coverage.md is its output): resolved by a plugin, inferred from the model's structure, or refused,
with the reason. Each row is built from the model type's default config on the meta device."""

from __future__ import annotations

import re
import sys
import warnings
from typing import Any

from .errors import VloraError
from .infer import TOWERS, closest_key, tower_counts, tower_keys
from .modeltree import quiet_transformers, tree_from_config
from .plugins import Registry
from .resolve import resolve

_SUB_CONFIG_OF = {component: key for key, component in TOWERS.items()}
# timm with a torchvision it can load: a CUDA build of torch that runs on the CPU, from pip's local wheels here
TIMM_SETUP = "`pip install torch==2.14.1 torchvision==0.29.1 timm==1.0.31`"


def registry_model_types() -> list[str]:
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    return sorted(MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES)


def _config_key(sub: dict[str, Any], count: int, stack: str) -> str | None:
    """The sub-config value that states ``count`` layers (what the row says it was checked against): a stage's
    entry of a per-stage list (``depths[2]``) for a staged tower, the key that names the stack
    (``decoder_layers``) where several state the count."""
    if stack.isdigit():
        staged = next((f"{key}[{stack}]" for key, value in sub.items() if isinstance(value, list)
                       and int(stack) < len(value) and value[int(stack)] == count), None)
        if staged is None and isinstance(sub.get("architecture"), str):  # a timm tower: its architecture's stage
            return f"a stage of timm's {sub['architecture']}"
        return staged
    keys = [key for key, value in tower_counts(sub).items() if value == count]
    return closest_key(stack, keys) if keys else None


def coverage_row(model_type: str, registry: Registry) -> dict[str, Any]:
    """``{"model_type", "status": plugin | inferred | refused, "detail", "counts_match"}`` for one model type."""
    from transformers import AutoConfig

    row: dict[str, Any] = {"model_type": model_type, "counts_match": None}
    try:
        with quiet_transformers(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            config = AutoConfig.for_model(model_type)
    except Exception as exc:
        return row | {"status": "refused", "detail": f"transformers cannot make its default config ({_first(exc)})"}
    text_only = hasattr(config, "vision_config") and config.vision_config is None
    claimed = [(a, r) for _, a, r in registry.references() if model_type in a.model_types]
    if text_only and claimed:  # a plugin's claim, with its published references, beats a text-only default
        return row | _from_references(claimed, registry)
    if text_only:
        return row | {"status": "refused",
                      "detail": "the default config is text-only (its vision config is empty), and no plugin claims "
                      "it with a published config that has one"}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = tree_from_config(config)
    except ImportError as exc:
        named = re.search(r"requires the (\S+) library", str(exc))
        missing = getattr(exc, "name", None) or (named.group(1) if named else _first(exc))
        detail = f"needs {missing}, which is not installed here"
        if missing == "timm":  # timm needs torchvision, which the CPU build of torch cannot sit beside
            detail += f" ({TIMM_SETUP} sets up an environment where it builds; CI's timm environment checks it)"
        return row | {"status": "refused", "detail": detail}
    except VloraError as exc:
        return row | {"status": "refused", "detail": exc.message}
    except Exception as exc:
        return row | {"status": "refused", "detail": f"the default config does not build ({_first(exc)})"}
    try:
        plan = resolve({}, tree, registry=registry)
    except VloraError as exc:
        message = exc.message
        refused = getattr(exc, "inference_refused", None)
        if refused is not None and tree.entries[0].type_name.endswith("ForCausalLM") and not getattr(
                config, "sub_configs", None):
            message = (f"the default config builds a text-only model ({tree.entries[0].type_name}): a published "
                       "config with a vision config is needed")
        elif refused is not None:
            message = "no plugin claims it, and inference refuses: " + refused
        return row | {"status": "refused", "detail": message}
    detail, match = _counts(plan, tree)
    return row | {"status": "inferred" if plan.inferred else "plugin", "detail": detail, "counts_match": match}


def _counts(plan: Any, tree: Any) -> tuple[str, bool]:
    """Each stack's layers with the config value that states the count, and whether every count has one."""
    config_dict = tree.config
    sub_of = _SUB_CONFIG_OF | {c: k for k, c in tower_keys(config_dict, [k for _, k in tree.sub_models]).items()}
    parts, match = [], True
    for key, count in sorted(plan.layer_counts.items()):
        component, _, stack = key.partition(".")
        sub = _at(config_dict, sub_of[component]) or (config_dict if component == "language" else {})
        checked = _config_key(sub, count, stack)
        match = match and checked is not None
        parts.append(f"{key.replace('.', ' ')} {count} ({checked or 'no config value'})")
    return "; ".join(parts), match


def _at(config: dict[str, Any], key: str) -> dict[str, Any]:
    """The sub-config at a key, dotted for a composite encoder's own (``encoder.vision_config``)."""
    for part in key.split("."):
        config = config.get(part) if isinstance(config, dict) else None
    return config if isinstance(config, dict) else {}


def _from_references(claimed: list[tuple[Any, Any]], registry: Registry) -> dict[str, Any]:
    """A claimed model type resolved on each of the plugin's bundled references (its default config being
    text-only): the plugin's row, each reference with its layers."""
    from .cache import tree_for

    parts, match = [], True
    for _arch, reference in claimed:
        tree = tree_for(reference.name, registry)
        detail, ok = _counts(resolve({}, tree, registry=registry), tree)
        parts.append(f"{reference.name}: {detail}")
        match = match and ok
    arch = claimed[0][0]
    return {"status": "plugin", "counts_match": match,
            "detail": f"the default config is text-only; resolved by the {arch.name} plugin on its bundled "
            "references: " + " · ".join(parts)}


def coverage_rows(registry: Registry, *, progress: bool = False) -> list[dict[str, Any]]:
    """A row per model type of the registry; ``progress``: a bar on stderr while they are built (tqdm, which
    draws nothing when stderr is not a terminal)."""
    types = registry_model_types()
    if not progress:
        return [coverage_row(model_type, registry) for model_type in types]
    from tqdm import tqdm

    rows = []
    with tqdm(types, desc="vlora coverage", unit="type", file=sys.stderr, disable=None, leave=False) as bar:
        for model_type in bar:
            bar.set_postfix_str(model_type, refresh=False)
            rows.append(coverage_row(model_type, registry))
    return rows


def _first(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:160].rstrip(": ")


def render_coverage(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table, after a line of totals."""
    counts = {s: sum(1 for r in rows if r["status"] == s) for s in ("plugin", "inferred", "refused")}
    lines = [
        f"{len(rows)} model types: {counts['plugin']} resolved by a plugin, {counts['inferred']} inferred, "
        f"{counts['refused']} refused.",
        "",
        "| model type | how | layers found (config value checked) or the reason |",
        "|---|---|---|",
    ]
    for row in rows:
        detail = row["detail"].replace("|", "\\|")
        lines.append(f"| {row['model_type']} | {row['status']} | {detail} |")
    return "\n".join(lines) + "\n"


__all__ = ["coverage_row", "coverage_rows", "registry_model_types", "render_coverage"]
