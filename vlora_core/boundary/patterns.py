"""Patterns that come from outside (the spec's own, an adapter config's ``target_modules`` / ``rank_pattern``,
other tools' ``target_modules`` / ``target_regex``, ``--explain NAME``) are matched by one time-bounded engine
(the ``regex`` package with a deadline): a pattern that backtracks catastrophically is an error naming it, never
minutes of work.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from ..diagnostics import Location
from ..errors import UserPatternError, VloraError
from .text import shown

PATTERN_SECONDS = 2.0  # the time one pattern may take over all the names of a model
_HINT = "simplify it: no quantified group inside a quantified group, e.g. 'model\\.visual\\.blocks\\.\\d+\\.attn\\.qkv'"


def bounded_fullmatches(pattern: str, names: Iterable[str], *, where: Location | str | None, what: str = "pattern",
                        error: type[VloraError] = UserPatternError, search: bool = False) -> set[str]:
    """The names ``pattern`` matches whole (``search``: PEFT's rank-pattern form ``(.*\\.)?(KEY)$``), within
    ``PATTERN_SECONDS`` over all of them; a pattern that does not compile, or takes longer, is one ``error``
    naming it (``what`` says which key it is)."""
    import regex

    try:
        rx = regex.compile(rf"(.*\.)?({pattern})$" if search else pattern)
    except (regex.error, RecursionError, OverflowError) as exc:
        raise error(f"{what} {shown(pattern, 80)} is not a valid regular expression ({exc})", where=where,
                    hint="fix the pattern") from None
    deadline = time.monotonic() + PATTERN_SECONDS
    found = set()
    try:
        for name in names:
            hit = (rx.match(name, timeout=max(deadline - time.monotonic(), 0.001)) if search
                   else rx.fullmatch(name, timeout=max(deadline - time.monotonic(), 0.001)))
            if hit:
                found.add(name)
    except TimeoutError:
        raise error(f"{what} {shown(pattern, 80)} takes more than {PATTERN_SECONDS:g} s to match this model's module "
                    "names (it backtracks catastrophically)", where=where, hint=_HINT) from None
    return found


__all__ = ["PATTERN_SECONDS", "bounded_fullmatches"]
