"""One error hierarchy. Every message says what is wrong, where, and how to fix it.

Each family carries the exit code the CLI uses for it, so a script can tell the kinds apart:

=====  ==========================================================
code   meaning
=====  ==========================================================
0      success
1      internal error (a bug in vlora: please report it)
2      usage error (bad command-line arguments)
3      invalid spec (file unreadable, malformed, or fails the schema)
4      resolution failure (spec and model do not fit together)
5      plugin failure (a plugin failed to load, is invalid, or conflicts)
6      lock mismatch (``vlora validate`` found a plan that differs from its lock file)
7      adapter files invalid (not an adapter, damaged weights, a config that disagrees with them)
8      adapter does not fit the model (``vlora adapter check``: it would not load completely)
=====  ==========================================================
"""

from __future__ import annotations

import re

from .diagnostics import Diagnostic, Location

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_SPEC = 3
EXIT_RESOLUTION = 4
EXIT_PLUGIN = 5
EXIT_LOCK = 6
EXIT_ADAPTER = 7
EXIT_ADAPTER_MISFIT = 8
EXIT_NOT_SERVED = 9
EXIT_NO_FIT = 10

# what each exit code means: the one list (`vlora --help` and every command's help print it; docs/cli.md's
# failure table is checked against it and against each error class's ``exit_code``)
EXIT_MEANINGS: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_INTERNAL: "internal error (a bug: please report it)",
    EXIT_USAGE: "usage error (bad arguments, no model given)",
    EXIT_SPEC: "invalid spec (unreadable, malformed, or fails the schema)",
    EXIT_RESOLUTION: "resolution failure (spec and model do not fit together)",
    EXIT_PLUGIN: "plugin failure (failed to load, invalid, conflicting, or --require-plugins unmet)",
    EXIT_LOCK: "lock mismatch (the plan differs from its lock file)",
    EXIT_ADAPTER: "adapter files invalid (no adapter, damaged weights, a config that disagrees with them)",
    EXIT_ADAPTER_MISFIT: "the adapter would not load completely into the model (vlora adapter check)",
    EXIT_NOT_SERVED: "a serving engine would not apply the adapter as trained, or vlora cannot tell (--serve)",
    EXIT_NO_FIT: "nothing vlora fit tried stays within the memory budget",
}


class VloraError(Exception):
    """Base of every error vlora raises on purpose.

    It carries one ``Diagnostic`` (``SpecValidationError``: one per invalid field): ``location`` names the
    place at fault (a file and line, a spec field, a plugin), ``hint`` says how to fix it, ``code`` is a
    stable kebab-case name derived from the class (``LayerSelectionError`` -> ``layer-selection``).
    ``str(error)`` is the complete one-paragraph message shown to users, rendered from those fields.
    """

    exit_code = EXIT_INTERNAL
    code = "vlora"

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        cls.code = re.sub(r"(?<!^)(?=[A-Z])", "-", cls.__name__.removesuffix("Error")).lower()

    def __init__(self, message: str, *, where: str | Location | None = None, hint: str | None = None) -> None:
        self.message = message
        self.location = Location.of(where)
        self.hint = hint
        super().__init__(message)

    @property
    def where(self) -> str | None:
        return self.location.render() if self.location else None

    @property
    def diagnostics(self) -> list[Diagnostic]:
        return [Diagnostic(self.code, self.message, self.location, self.hint)]

    def render(self) -> str:
        return self.diagnostics[0].render()

    def __str__(self) -> str:
        return self.render()


class UsageError(VloraError):
    """The command line or the call itself is wrong (missing model, unreadable path...)."""

    exit_code = EXIT_USAGE


# --- spec ------------------------------------------------------------------------------------------


class SpecError(VloraError):
    """The spec file or object is invalid: unreadable, malformed, or fails the schema."""

    exit_code = EXIT_SPEC


class SpecFileError(SpecError):
    """The spec file cannot be read or parsed (missing, unknown extension, malformed YAML/JSON/TOML)."""


class SpecValidationError(SpecError):
    """The spec parses but fields are invalid: one diagnostic per field, in file order."""

    def __init__(self, problems: list[Diagnostic], *, hint: str | None = None) -> None:
        self._problems = problems
        first = problems[0]
        super().__init__(first.message, where=first.location, hint=hint)

    @property
    def diagnostics(self) -> list[Diagnostic]:
        return [Diagnostic(d.code, d.message, d.location, self.hint) for d in self._problems]

    @property
    def problems(self) -> list[tuple[str | None, str]]:
        """``(where, message)`` per field, as text."""
        return [(d.where, d.message) for d in self._problems]

    def render(self) -> str:
        if len(self._problems) == 1:
            return self.diagnostics[0].render()
        text = "\n".join(f"{d.where}: {d.message}" if d.where else d.message for d in self._problems)
        return text + (f"\n  hint: {self.hint}" if self.hint else "")


# --- resolution --------------------------------------------------------------------------------------


class ResolutionError(VloraError):
    """The spec is valid, but it cannot be turned into a plan for this model."""

    exit_code = EXIT_RESOLUTION


class ResolutionErrors(ResolutionError):
    """Several independent faults of one spec on one model (two layer selections, three patterns...), each
    with its own location and hint; ``errors`` holds them, ``diagnostics`` has one per fault."""

    def __init__(self, errors: list[ResolutionError]) -> None:
        self.errors = list(errors)
        super().__init__(f"{len(self.errors)} problems: " + "; ".join(e.message for e in self.errors),
                         where=self.errors[0].location)

    @property
    def diagnostics(self) -> list[Diagnostic]:
        return [d for e in self.errors for d in e.diagnostics]

    def render(self) -> str:
        return "\n".join(d.render() for d in self.diagnostics)


class ModelLoadError(ResolutionError):
    """The model reference (bundled name, directory, config.json, Hub id) cannot be turned into a module tree."""


class StepSimulationError(ResolutionError):
    """The model's own training step fails inside the installed transformers (or PEFT) while vlora simulates it,
    so no peak can be predicted; the message names the library's error."""


class UnsupportedModelError(ResolutionError):
    """No installed plugin handles the model's ``model_type``; ``inference_refused`` is why structural
    inference refused it too, where it was tried (None: not tried)."""

    inference_refused: str | None = None


class PatternMatchError(ResolutionError):
    """A plugin pattern of an enabled component matches no module: the plugin is out of date for this layout."""


class UnsupportedModuleTypeError(ResolutionError):
    """A target is a module type LoRA cannot wrap (PEFT would fail half-way, after modifying the model)."""


class ComponentOverlapError(ResolutionError):
    """Two components claim the same module, or a target falls in no component."""


class LayerSelectionError(ResolutionError):
    """A layer selection names a layer the model does not have."""


class EmptySelectionError(ResolutionError):
    """The spec selects nothing on this model."""


class UserPatternError(ResolutionError):
    """A user pattern (``target_modules_extra`` / ``exclude_modules``) matches nothing it could."""


class SpecArchitectureMismatch(ResolutionError):
    """A spec field does not apply to this architecture (e.g. cross-attention on a model without it)."""


# --- plugins -----------------------------------------------------------------------------------------


class PluginError(VloraError):
    """A plugin failed to import, declared invalid data, or conflicts with another plugin."""

    exit_code = EXIT_PLUGIN


class PluginConflictError(PluginError):
    """Two plugins claim the same ``model_type``."""


# --- lock --------------------------------------------------------------------------------------------


class LockMismatchError(VloraError):
    """A resolved plan differs from its lock file."""

    exit_code = EXIT_LOCK


# --- adapters on disk --------------------------------------------------------------------------------


class AdapterError(VloraError):
    """An adapter folder that cannot be read as a PEFT LoRA adapter, or whose config and weights disagree."""

    exit_code = EXIT_ADAPTER
