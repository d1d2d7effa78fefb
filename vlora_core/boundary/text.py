"""Text that goes from outside to a terminal or into a generated file. On a terminal, control characters of a
foreign value (an adapter's tensor names, a config's values) are escaped, so that they cannot clear the screen
or fake a line, and a very long value is cut; in a generated file (an exported script or config, a spec's
header, a plugin's source), a value with a newline or control character is refused, so that it never becomes a
line of its own.
"""

from __future__ import annotations

import re

from ..diagnostics import Location
from ..errors import UsageError, VloraError

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
MAX_SHOWN = 200


def escape(text: str) -> str:
    """``text`` with every control character (newlines included) written as an escape (``\\x1b``, ``\\n``)."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def shown(value: object, limit: int = MAX_SHOWN) -> str:
    """A foreign value as a message quotes it: ``repr`` with control characters escaped, cut to ``limit``
    characters (saying how long it was)."""
    text = escape(repr(value) if isinstance(value, str) else str(value))
    return text if len(text) <= limit else f"{text[:max(limit - 40, 8)]}... ({len(text):,} characters)"


def escape_lines(text: str) -> str:
    """Terminal output built from foreign values: each line's control characters escaped, newlines kept."""
    return "\n".join(escape(line) for line in text.split("\n"))


def one_line(value: str, what: str, *, where: Location | str | None = None,
             error: type[VloraError] = UsageError) -> str:
    """``value`` for a generated file: refused when it holds a newline or any other control character."""
    if _CONTROL.search(value):
        raise error(f"{what} {shown(value, 80)} holds a newline or control character, which would become a line of "
                    "its own in the generated file", where=where, hint=f"rename it, or give a {what} without one")
    return value


__all__ = ["MAX_SHOWN", "escape", "escape_lines", "one_line", "shown"]
