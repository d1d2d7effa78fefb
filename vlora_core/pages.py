"""The documentation pages the package ships (``vlora docs``): the Markdown of docs/, installed as the data
package ``vlora_core.docs``; in a source checkout (an editable install), the repository's docs/ folder."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .boundary import read_text
from .diagnostics import DOC_PAGES
from .errors import UsageError


def page_file(key: str) -> Path:
    """Where page ``key`` (a key of ``DOC_PAGES``) is on this machine."""
    if key not in DOC_PAGES:
        raise UsageError(f"no documentation page {key!r}", hint="the pages: " + ", ".join(DOC_PAGES)
                         + " (`vlora docs` lists them with their titles)")
    name = Path(DOC_PAGES[key][0]).name
    try:
        shipped = Path(str(resources.files("vlora_core.docs") / name))
    except ModuleNotFoundError:  # an editable install: the checkout's docs/
        shipped = Path(__file__).resolve().parents[1] / "docs" / name
    if not shipped.is_file():
        raise UsageError(f"the page {key!r} is not installed ({shipped})",
                         hint="reinstall vlora-core: `pip install --force-reinstall vlora-core`")
    return shipped


def page_text(key: str) -> str:
    return read_text(page_file(key), "documentation page", UsageError)


__all__ = ["page_file", "page_text"]
