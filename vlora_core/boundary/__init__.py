"""The one guarded way in and out. Everything vlora reads from outside (specs, locks, config.json,
adapter_config.json and safetensors headers, other tools' files, cache entries, ``--set`` values) goes through
``reading`` and ``documents`` (regular files, size caps, UTF-8, nesting caps, finite numbers, no YAML base-60);
everything it writes goes through ``writing`` (never onto an input, never through a link, atomic, umask mode);
foreign patterns through ``patterns`` (time-bounded); foreign text through ``text`` (escaped for terminals,
refused in generated files). tests/test_boundary.py keeps every other module off the raw calls.
"""

from __future__ import annotations

from .documents import LOADER, Lines, field_path, load_yaml, location_of, read_document
from .patterns import PATTERN_SECONDS, bounded_fullmatches
from .reading import CAPS, check_values, decode, load_json, read_bytes, read_head, read_json, read_text
from .text import escape, escape_lines, one_line, shown
from .writing import check_output, write_bytes, write_folder, write_text

__all__ = ["CAPS", "LOADER", "PATTERN_SECONDS", "Lines", "bounded_fullmatches", "check_output", "check_values",
           "decode", "escape", "escape_lines", "field_path", "load_json", "load_yaml", "location_of", "one_line",
           "read_bytes", "read_document", "read_head", "read_json", "read_text", "shown", "write_bytes",
           "write_folder", "write_text"]
