"""Writing a spec file (``vlora plan ... --set KEY=VALUE --write FILE``): the spec that was read, with the
``--set`` values in it, keeping that file's comments and key order (a YAML round trip), or a new file from the
values alone. Written atomically through the boundary; the caller writes only a spec that planned.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .boundary import read_document, read_text
from .errors import SpecFileError, UsageError
from .spec import apply_sets

YAML_SUFFIXES = (".yaml", ".yml")


def spec_text(source: str | Path | None, sets: Sequence[str], *, target: str | Path,
              extra: Mapping[str, Any] | None = None) -> str:
    """The text of the spec file ``target``: ``source`` (None: an empty spec) with ``sets`` applied and the fields
    of ``extra`` (``model`` when given on the command line) added where the spec lacks them. YAML keeps the
    source's comments and order; JSON is written sorted as read; TOML is not written (no round trip keeps it)."""
    suffix = Path(target).suffix.lower()
    if suffix not in (*YAML_SUFFIXES, ".json"):
        raise UsageError(f"--write {target}: vlora writes spec files as YAML or JSON",
                         hint="give a .yaml, .yml or .json path")
    if suffix == ".json" or source is None or Path(source).suffix.lower() not in YAML_SUFFIXES:
        data = read_document(Path(source))[0] if source is not None else {}
        data = apply_sets(data if isinstance(data, Mapping) else {}, sets)
        data = {**{k: v for k, v in (extra or {}).items() if k not in data}, **data}
        if suffix == ".json":
            return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        import yaml

        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    return _round_trip(Path(source), sets, extra or {})


def _round_trip(source: Path, sets: Sequence[str], extra: Mapping[str, Any]) -> str:
    from ruamel.yaml import YAML, CommentedMap

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 120
    try:
        doc = yaml.load(read_text(source, "spec", SpecFileError))
    except Exception as exc:  # the file was read and validated before; a round-trip parser may still differ
        raise SpecFileError(f"cannot keep the comments of {source} ({type(exc).__name__})", where=str(source),
                            hint="--write to a .json path, or to a new .yaml path") from None
    if doc is None:
        doc = CommentedMap()
    values = apply_sets({}, sets)  # each value as --set reads it (YAML), checked the same way

    def put(node: Any, changes: Mapping[str, Any]) -> None:
        for key, value in changes.items():
            if isinstance(value, Mapping) and isinstance(node.get(key), Mapping):
                put(node[key], value)
            else:
                node[key] = value

    put(doc, values)
    for key, value in extra.items():
        if key not in doc:
            doc.insert(0, key, value)
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()


__all__ = ["spec_text"]
