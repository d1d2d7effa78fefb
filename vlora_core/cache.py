"""The module-tree cache: what resolve reads from a model, kept on disk so that a warm run imports neither
torch nor transformers.

Building a model's module tree means importing torch and transformers (seconds) and instantiating the model
on the meta device; resolving it takes milliseconds. For a model named by a reference string (a bundled
reference, a directory or ``config.json``, a Hub id whose config is in the Hub's local cache), the tree is
kept in one file per key, where the key is a hash of the config's content (its parsed JSON, so formatting
does not matter) and the installed versions of transformers, torch, vlora and the plugin that claims the
model (``inferred`` where none does; then the inferred architecture is kept too).

An entry is two lines: a header (format, key, what it holds, the SHA-256 of the second line) and the tree.
An entry whose header, key, digest or contents do not check out is rebuilt and overwritten, never trusted.
Entries are written to a temporary file and renamed into place, so concurrent runs never see half a file.

The folder is the platform's user cache folder (``platformdirs``), or ``VLORA_CACHE_DIR``; ``VLORA_NO_CACHE=1``
(or ``--no-cache`` on the command line) turns the cache off. A live model or a config object is never
cached: whoever holds one has imported torch already.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .architecture import ArchitectureSpec
from .boundary import read_bytes, read_json, write_text
from .errors import ModelLoadError, UsageError, VloraError
from .infer import INFERENCE_RULES, Inference, InferenceRefused, infer_architecture
from .modeltree import ModuleEntry, ModuleTree, config_location, module_tree
from .plugins import Registry
from .versions import core_version, package_version

FORMAT = 2  # 2: sub_models name a composite encoder's own towers (encoder.vision_config)
CACHE_ENV = "VLORA_CACHE_DIR"
NO_CACHE_ENV = "VLORA_NO_CACHE"
MAX_ENTRY_BYTES = 256 << 20  # far above the largest tree (a 100-layer model is about 1 MiB)
_SUFFIX = ".tree.json"
_KEY_NAME = re.compile(r"[0-9a-f]{64}" + re.escape(_SUFFIX))
_INFERRED = f"inferred (rules {INFERENCE_RULES})"  # new rules make new keys: no stale inference


def cache_dir() -> Path:
    """The cache folder: ``VLORA_CACHE_DIR``, or the platform's user cache folder for vlora."""
    configured = os.environ.get(CACHE_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("vlora", appauthor=False))


def cache_enabled() -> bool:
    return os.environ.get(NO_CACHE_ENV, "").strip().lower() not in ("1", "true", "yes", "on")


class CacheWarning(UserWarning):
    """The cache was turned off for this run (a folder others may write to): a cost in speed only."""


def untrusted(folder: Path) -> str | None:
    """Why the cache folder must not be trusted (None: it may): entries are module trees vlora plans from, so only
    its owner may write there. A folder writable by other users, or owned by another user, is refused."""
    try:
        info = folder.stat()
    except OSError:
        return None  # not there yet: it is created with the umask's mode
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        return "it belongs to another user"
    if info.st_mode & 0o022:
        return "other users may write to it"
    return None


def _trusted_dir() -> Path | None:
    """The cache folder, or None (with a ``CacheWarning``, once per folder) where it is not to be trusted."""
    folder = cache_dir()
    why = untrusted(folder)
    if why is None:
        return folder
    if str(folder) not in _WARNED:
        _WARNED.add(str(folder))
        warnings.warn(f"the cache folder {folder} is not used: {why}, and vlora plans from what it holds; the cache "
                      f"is off for this run (make it yours with mode 700, or point {CACHE_ENV} elsewhere)",
                      CacheWarning, stacklevel=3)
    return None


_WARNED: set[str] = set()


@dataclass
class CacheStats:
    """What the cache did in this process (for tests, benchmarks and ``vlora cache info``)."""

    hits: int = 0
    misses: int = 0
    rebuilt: list[str] = field(default_factory=list)  # entries refused (corrupt, foreign) and written anew
    write_failures: list[str] = field(default_factory=list)


STATS = CacheStats()


def tree_for(model: Any, registry: Registry, *, label: str | None = None) -> ModuleTree:
    """The module tree of ``model`` (anything ``module_tree`` takes), from the cache where the model is a
    reference string whose config can be read from disk and the cache is on."""
    if isinstance(model, ModuleTree):
        return model
    if not isinstance(model, str | Path) or not cache_enabled():
        return module_tree(model, registry, label=label)
    located = config_location(str(model), registry)
    data = _read_config(located[0]) if located is not None else None
    if data is None:  # not on disk, unreadable or malformed: the uncached path says why
        return module_tree(model, registry, label=label)
    source = label or located[1]
    key, versions = entry_key(data, registry)
    folder = _trusted_dir()
    if folder is None:
        return module_tree(model, registry, label=label)
    path = folder / f"{key}{_SUFFIX}"
    tree = _load(path, key, source)
    if tree is not None:
        STATS.hits += 1
        return tree
    STATS.misses += 1
    tree = module_tree(model, registry, label=label)
    if versions["plugin"] == _INFERRED:
        try:
            tree = _with(tree, inference=infer_architecture(tree))
        except InferenceRefused:
            pass  # resolve refuses it again, with the reason
    _store(path, key, versions, tree)
    return tree


def _read_config(path: Path) -> dict[str, Any] | None:
    try:
        data = read_json(path, "config.json", ModelLoadError)
    except ModelLoadError:
        return None
    return data if isinstance(data, dict) and isinstance(data.get("model_type"), str) else None


def entry_key(config: dict[str, Any], registry: Registry) -> tuple[str, dict[str, str]]:
    """The cache key of a config (a dict read from config.json) under the installed versions."""
    try:
        plugin, _ = registry.lookup(config["model_type"], config)
        owner = f"{plugin.distribution} {plugin.version}"
    except VloraError:  # no plugin claims it (inferred), or several do (resolve says so)
        owner = _INFERRED
    versions = {"transformers": package_version("transformers"), "torch": package_version("torch"),
                "vlora": core_version(), "plugin": owner}
    text = json.dumps({"format": FORMAT, "config": config, "versions": versions}, sort_keys=True,
                      separators=(",", ":"), default=repr)
    return hashlib.sha256(text.encode()).hexdigest(), versions


# --- reading and writing entries ----------------------------------------------------------------------------


def _payload(tree: ModuleTree) -> str | None:
    """The tree as one line of JSON, or None where its config does not survive JSON unchanged (then caching
    it could change what a plugin reads from it: such a tree is not cached)."""
    config = tree.config
    try:
        encoded = _encode(config)
        if _decode(json.loads(json.dumps(encoded))) != config:
            return None
    except (TypeError, ValueError, RecursionError):
        return None
    inference = tree.inference
    data = {
        "model_type": tree.model_type,
        "transformers_version": tree.transformers_version,
        "total_params": tree.total_params,
        "entries": [[e.name, e.type_name, e.kind, e.in_features, e.out_features, e.kernel, e.own_params,
                     e.bias_params, e.custom_forward] for e in tree.entries],
        "params": [[name, list(shape)] for name, shape in tree.params],
        "tied": [list(pair) for pair in tree.tied],
        "sub_models": [list(pair) for pair in tree.sub_models],
        "config": encoded,
        "inference": None if inference is None else {
            "architecture": inference.architecture.model_dump(mode="json"),
            "unclassified": inference.unclassified, "unplaced": inference.unplaced},
    }
    return json.dumps(data, separators=(",", ":"))


_TAGS = ("__tuple__", "__items__")


def _encode(value: Any) -> Any:
    """A config value as JSON that keeps what JSON alone would lose: tuples, and dicts whose keys are not all
    strings (``id2label``'s integer keys). Anything else JSON cannot hold raises TypeError."""
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and not (len(value) == 1 and next(iter(value)) in _TAGS):
            return {k: _encode(v) for k, v in value.items()}
        return {"__items__": [[_encode(k), _encode(v)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"a {type(value).__name__} in the config")


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1 and "__tuple__" in value:
            return tuple(_decode(v) for v in value["__tuple__"])
        if len(value) == 1 and "__items__" in value:
            return {_decode(k): _decode(v) for k, v in value["__items__"]}
        return {k: _decode(v) for k, v in value.items()}
    return value


def _store(path: Path, key: str, versions: dict[str, str], tree: ModuleTree) -> None:
    payload = _payload(tree)
    if payload is None:
        return
    header = {"vlora_cache": FORMAT, "key": key, "sha256": hashlib.sha256(payload.encode()).hexdigest(),
              "model": tree.source, "model_type": tree.model_type, "versions": versions,
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # only its owner writes entries
        write_text(path, json.dumps(header, sort_keys=True) + "\n" + payload + "\n", what="the cache entry")
    except (OSError, UsageError) as exc:  # a read-only or full cache folder: the run goes on uncached
        STATS.write_failures.append(f"{path.parent}: {getattr(exc, 'strerror', None) or exc}")


def _read_entry(path: Path) -> tuple[dict[str, Any], bytes] | None:
    """An entry's header and payload line, where the file is a regular file of ours and its digest checks out
    (None for anything else: damage of any kind means rebuild)."""
    try:
        header_line, _, rest = read_bytes(path, "cache entry", ModelLoadError).partition(b"\n")
        header = json.loads(header_line)
    except (ModelLoadError, ValueError, RecursionError):
        return None
    payload = rest.rstrip(b"\n")
    if (not isinstance(header, dict) or header.get("vlora_cache") != FORMAT
            or header.get("sha256") != hashlib.sha256(payload).hexdigest()):
        return None
    return header, payload


def _load(path: Path, key: str, source: str) -> ModuleTree | None:
    if not (path.exists() or path.is_symlink()):
        return None  # a miss, not damage
    read = _read_entry(path)
    try:
        if read is None or read[0].get("key") != key:
            raise ValueError("not an entry for this key")
        return _tree(json.loads(read[1]), source)
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, RecursionError):  # damaged or foreign:
        # rebuilt by the caller
        STATS.rebuilt.append(path.name)
        return None


def _ints(values: Any, n: int | None = None) -> tuple[int, ...]:
    if not isinstance(values, list) or (n is not None and len(values) != n) or not all(
            type(v) is int for v in values):
        raise TypeError("not a list of integers")
    return tuple(values)


def _strs(values: Any, n: int) -> tuple[str, ...]:
    if not isinstance(values, list) or len(values) != n or not all(isinstance(v, str) for v in values):
        raise TypeError("not a list of names")
    return tuple(values)


def _tree(data: dict[str, Any], source: str) -> ModuleTree:
    """A tree from an entry's payload, every field type-checked (a ValueError/TypeError where one is off)."""
    entries = []
    for row in data["entries"]:
        name, type_name, kind, *numbers, custom = row
        if not (isinstance(name, str) and isinstance(type_name, str) and (kind is None or isinstance(kind, str))
                and isinstance(custom, bool)):
            raise TypeError("malformed module entry")
        entries.append(ModuleEntry(name, type_name, kind, *_ints(numbers, 5), custom))
    inference = data["inference"]
    if inference is not None:
        inference = Inference(ArchitectureSpec.model_validate(inference["architecture"]),
                              list(_strs(inference["unclassified"], len(inference["unclassified"]))),
                              {str(k): list(v) for k, v in inference["unplaced"].items()})
    config, model_type, total = _decode(data["config"]), data["model_type"], data["total_params"]
    if not (isinstance(config, dict) and (model_type is None or isinstance(model_type, str)) and type(total) is int):
        raise TypeError("malformed tree")
    return ModuleTree(
        entries=tuple(entries),
        model_type=model_type,
        source=source,
        total_params=total,
        transformers_version=str(data["transformers_version"]),
        params=tuple((str(name), _ints(shape)) for name, shape in data["params"]),
        tied=tuple(_strs(pair, 2) for pair in data["tied"]),  # type: ignore[misc]
        sub_models=tuple(_strs(pair, 2) for pair in data["sub_models"]),  # type: ignore[misc]
        config_data=config,
        inference=inference,
    )


def _with(tree: ModuleTree, **changes: Any) -> ModuleTree:
    from dataclasses import replace

    return replace(tree, **changes)


# --- vlora cache info | clear ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CacheEntry:
    file: str
    bytes: int
    model: str | None  # None: a file that is no valid entry (it would be rebuilt)
    model_type: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    created: str | None = None


def cache_entries(folder: Path | None = None) -> list[CacheEntry]:
    """Every file of the cache folder that is (or claims to be) an entry, newest first."""
    folder = folder or cache_dir()
    found = []
    for path in sorted(folder.glob(f"*{_SUFFIX}")) if folder.is_dir() else []:
        try:
            size = path.stat().st_size
            read = _read_entry(path)
        except (OSError, ValueError):
            read, size = None, 0
        if read is None:
            found.append(CacheEntry(path.name, size, None))
            continue
        header = read[0]
        found.append(CacheEntry(path.name, size, str(header.get("model")), header.get("model_type"),
                                dict(header.get("versions") or {}), header.get("created")))
    return sorted(found, key=lambda e: e.created or "", reverse=True)


def clear_cache(folder: Path | None = None) -> tuple[int, int]:
    """Remove every entry of the cache folder that is provably vlora's (a regular file named by its key whose
    header and digest check out); anything else there is left alone. Returns (files, bytes) removed."""
    folder = folder or cache_dir()
    removed = size = 0
    for path in folder.glob(f"*{_SUFFIX}") if folder.is_dir() else []:
        read = _read_entry(path) if _KEY_NAME.fullmatch(path.name) and not path.is_symlink() else None
        if read is None or f"{read[0].get('key')}{_SUFFIX}" != path.name:
            continue
        try:
            n = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            continue
        removed += 1
        size += n
    return removed, size


__all__ = ["CACHE_ENV", "NO_CACHE_ENV", "STATS", "CacheEntry", "cache_dir", "cache_enabled", "cache_entries",
           "clear_cache", "entry_key", "tree_for"]
